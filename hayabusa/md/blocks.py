"""StepBlocks: a fixed number of MD steps with no host synchronisation, replayed as one CUDA
graph on a GPU.

A list that can build itself on the device (MinImageNeighborList on a GPU) is rebuilt at the
start of every block, inside the graph. Other lists are checked before a block (one host
sync) and rebuilt if an atom has moved more than skin/2 since the build, or will have by the
end of the block judging by how fast that displacement grew in the last block. During the
block every force evaluation ORs "an atom moved more than skin/2 since the build" into a
device flag, and the block starts by copying the state, the thermostat variables and the
incoming forces into backup buffers. If the flag is set after the block, the block is undone
from the backup, the list is rebuilt and the same steps are redone one by one with a check at
every step. A block therefore never runs on a stale list (no dangerous builds), and the only
host syncs are one or two flag reads per block.

Integrators that draw random numbers (Langevin, CSVR) run their blocks without a CUDA graph:
their generator state is saved on the host for the undo.
"""

from __future__ import annotations

import torch

from ..potentials import PotentialResult
from .forces import ForceEvaluator
from .integrators import Integrator


class StepBlocks:
    def __init__(self, integrator: Integrator, forces: ForceEvaluator, steps: int,
                 cuda_graph: bool = True):
        self.integrator = integrator
        self.forces = forces
        self.steps = int(steps)
        self.uses_rng = hasattr(integrator, "generator")
        self.cuda_graph = cuda_graph and not self.uses_rng
        self.graph: torch.cuda.CUDAGraph | None = None
        self._key = None
        self.replays = 0
        self.undone = 0
        self._moved_before = 0.0  # largest displacement since the build, at the last block
        nl = forces.neighbors
        self.rebuild_inside = self.cuda_graph and hasattr(nl, "build_async")

    # ----------------------------------------------------------------- buffers
    def _live(self, state) -> list[torch.Tensor]:
        """Tensors a block changes in place: state, thermostat variables, incoming result."""
        return [state.positions, state.velocities, *self.integrator.variables().values(),
                self._forces, self._energy]

    def _prepare(self, state, result) -> None:
        nl = self.forces.neighbors
        read = [state.positions, state.velocities, *self.integrator.variables().values(),
                *(nl.buffers() if nl is not None else ())]
        key = tuple(t.data_ptr() for t in read)
        if key != self._key:  # first block, or a buffer was replaced (restart, list grew)
            self._key = key
            self.graph = None
            self._forces = torch.empty_like(result.forces)
            self._energy = torch.empty_like(result.energy)
            self._overrun = torch.zeros((), dtype=torch.bool, device=state.device)
            self._backup = [torch.empty_like(t) for t in self._live(state)]
        self._forces.copy_(result.forces)
        self._energy.copy_(result.energy)

    # -------------------------------------------------------------------- body
    def _compute(self, state) -> PotentialResult:
        nl = self.forces.neighbors
        if nl is not None:
            torch.logical_or(self._overrun, nl.needs_rebuild(state), out=self._overrun)
        return self.forces(state, update=False)

    def _body(self, state) -> None:
        for backup, live in zip(self._backup, self._live(state), strict=True):
            backup.copy_(live)
        self._overrun.zero_()
        if self.rebuild_inside:
            self.forces.neighbors.build_async(state)
        result = PotentialResult(self._energy, self._forces)
        for _ in range(self.steps):
            result = self.integrator.step(state, result, self._compute)
        self._forces.copy_(result.forces)
        self._energy.copy_(result.energy)

    def _capture(self, state) -> None:
        self._body(state)  # warm-up outside the graph; undone right away
        self._restore(state)
        torch.cuda.synchronize(state.device)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self._body(state)

    def _restore(self, state) -> None:
        for backup, live in zip(self._backup, self._live(state), strict=True):
            live.copy_(backup)

    def _update_list(self, state) -> None:
        """Rebuild when the list is stale now or likely to be before the block ends (one
        host sync)."""
        nl = self.forces.neighbors
        if nl.reference_positions is None or nl.reference_positions.shape != state.positions.shape:
            nl.build(state)
            self._moved_before = 0.0
            return
        moved = float((state.positions - nl.reference_positions).norm(dim=1).max())
        growth = max(moved - self._moved_before, 0.0)
        if bool(nl.overflow) or moved + 1.25 * growth > 0.5 * nl.skin:
            nl.build(state)
            moved = 0.0
        self._moved_before = moved

    # --------------------------------------------------------------------- run
    def run(self, state, result: PotentialResult) -> PotentialResult:
        """Advance ``self.steps`` steps from ``result`` (forces at the current positions)."""
        nl = self.forces.neighbors
        if nl is not None and not self.rebuild_inside:
            self._update_list(state)  # a rebuild leaves the forces as they are
        self._prepare(state, result)
        rng_state = self.integrator.generator.get_state() if self.uses_rng else None
        if self.cuda_graph:
            if self.graph is None:
                self._capture(state)
            self.graph.replay()
        else:
            self._body(state)
        self.replays += 1
        if self.rebuild_inside:
            nl.n_builds += 1
        bad = self._overrun | nl.overflow if self.rebuild_inside else self._overrun
        if nl is not None and bool(bad):  # host sync
            self.undone += 1
            self._restore(state)
            if self.rebuild_inside:  # the list of the block start, or a larger one
                nl.build(state)
            if rng_state is not None:
                self.integrator.generator.set_state(rng_state)
            result = PotentialResult(self._energy.clone(), self._forces.clone())
            for _ in range(self.steps):
                result = self.integrator.step(state, result, self.forces)
            return result
        return PotentialResult(self._energy.clone(), self._forces.clone())
