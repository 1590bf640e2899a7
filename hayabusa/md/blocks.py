"""StepBlocks: a fixed number of MD steps with no host synchronisation, replayed as one CUDA
graph on a GPU.

Before a block the neighbor list decides whether to rebuild (``VerletList.before_block``). A
block takes a snapshot of the dynamic state (``Snapshot.take``), runs its steps — every force
evaluation lets the list fold "stale now" into a device flag (``check``) — and writes the
list's status (stale, a buffer or type section overflowed, the displacement since the build)
into one tensor that the host reads once per block. If the list went stale or overflowed, the
block is undone (``Snapshot.restore``), the list rebuilt at the block's starting positions
(grown where it overflowed) and the block run again (one more replay, recaptured when shapes
grew); only if that fresh list goes stale within the block too are the steps redone one by one
with a check at every step. A block therefore never runs on a stale list (no dangerous builds).
Random numbers are counter-based and their counters are part of the snapshot, so a redone
block draws the same numbers.
"""

from __future__ import annotations

import torch

from ..potentials import PotentialResult
from .forces import ForceEvaluator
from .integrators import Integrator
from .snapshot import Snapshot


class StepBlocks:
    """Blocks of ``steps`` steps of ``integrator`` with ``forces``. ``result``: the persistent
    energy/forces buffers the steps start from and end in; ``snapshot``: the dynamic state
    (it holds ``result``'s buffers too)."""

    def __init__(self, integrator: Integrator, forces: ForceEvaluator, steps: int,
                 result: PotentialResult, snapshot: Snapshot, cuda_graph: bool = True):
        self.integrator = integrator
        self.forces = forces
        self.steps = int(steps)
        self.result = result
        self.snapshot = snapshot
        self.cuda_graph = cuda_graph
        self.graph: torch.cuda.CUDAGraph | None = None
        self._key = None
        self.replays = 0
        self.undone = 0
        self.resized = 0  # of the undone blocks, those whose list had overflowed
        self._status = torch.zeros(3, dtype=torch.float64, device=result.forces.device)

    # -------------------------------------------------------------------- body
    def _compute(self, state, compute_stress: bool = False) -> PotentialResult:
        nl = self.forces.neighbors
        if nl is not None:
            nl.check(state)
        return self.forces(state, compute_stress, update=False)

    def _body(self, state) -> None:
        self.snapshot.take()
        nl = self.forces.neighbors
        if nl is not None:
            nl.reset_checks()
        result = PotentialResult(self.result.energy, self.result.forces)
        for _ in range(self.steps):
            result = self.integrator.step(state, result, self._compute)
        self.result.forces.copy_(result.forces)
        self.result.energy.copy_(result.energy)
        if nl is not None:
            self._status.copy_(nl.block_status(state))

    def _capture(self, state) -> None:
        self._body(state)  # warm-up outside the graph; undone right away
        self.snapshot.restore()
        torch.cuda.synchronize(state.device)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self._body(state)

    # --------------------------------------------------------------------- run
    def _replay(self, state) -> bool:
        """Run the block once (replaying its graph); returns whether it was valid (the host
        reads the block's status: the one host sync)."""
        nl = self.forces.neighbors
        key = (tuple(t.data_ptr() for t in self.snapshot.live()),
               nl.graph_key() if nl is not None else None)
        if key != self._key:  # a tensor the graph reads was replaced or a shape grew
            self._key, self.graph = key, None
        if self.cuda_graph:
            if self.graph is None:
                self._capture(state)
            self.graph.replay()
        else:
            self._body(state)
        self.replays += 1
        if nl is None:
            return True
        status = self._status.tolist()  # host sync
        self.resized += bool(status[1])
        return nl.after_block(state, status)

    def run(self, state) -> None:
        """Advance ``self.steps`` steps from ``self.result`` (forces at the current positions)
        and leave the new ones there."""
        nl = self.forces.neighbors
        if nl is not None:
            nl.before_block(state)
        for fresh_list in (False, True):
            if self._replay(state):
                return
            self.undone += 1
            self.snapshot.restore()
            if not fresh_list:
                nl.build(state)  # at the block's starting positions, grown where needed
        result = PotentialResult(self.result.energy, self.result.forces)
        for _ in range(self.steps):  # stale within one block of a build: step by step
            result = self.integrator.step(state, result, self.forces)
        self.result.forces.copy_(result.forces)
        self.result.energy.copy_(result.energy)
