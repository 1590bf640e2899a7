"""StepBlocks: a fixed number of MD steps with no host synchronisation, replayed as one CUDA
graph on a GPU.

Before a block the list is rebuilt if an atom has moved more than skin/2 since the build, or
will have by the end of the block judging by how fast that displacement grew in the last
block. A list that builds itself on the device (MinImageNeighborList on a GPU) is rebuilt by
replaying a second CUDA graph that holds only the build; other lists build on the host. So a
list is built only when it is needed, not at every block. During the block every force
evaluation ORs "an atom moved more than skin/2 since the build" into a device flag, and the
block starts by copying the state, the thermostat variables and the incoming forces into
backup buffers. The block ends by writing that flag, an overflow of the list and the largest
displacement since the build into one status tensor, which the host reads (the one host sync
per block). If the flag is set, the block is undone from the backup, the list is rebuilt at
the block's starting positions and the block runs again (one more replay); only if that fresh
list goes stale within the block too are the steps redone one by one with a check at every
step. A block therefore never runs on a stale list (no dangerous builds).

Force evaluations in a block run inside ``fixed_shapes()`` on every device: a potential whose
shapes depend on the data sizes them on the host before a block is captured
(``Potential.fix_sizes``); one whose sizes proved too small during a block flags it like a
stale list, and the block is undone and run again after ``fix_sizes`` (larger sizes, a new
graph).

Integrators that draw random numbers (Langevin, CSVR) run their blocks without a CUDA graph:
their generator state is saved on the host for the undo.
"""

from __future__ import annotations

import torch

from ..potentials import PotentialResult
from ..potentials.base import fixed_shapes
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
        self.build_graph: torch.cuda.CUDAGraph | None = None
        self._key = None
        self.replays = 0
        self.undone = 0
        self.resized = 0  # of the undone blocks, those that outgrew the potential's sizes
        self._moved: float | None = None  # largest displacement since the build, block end
        self._moved_at = None  # (positions' version, list builds) when _moved was read
        self._moved_before = 0.0  # the same at the end of the block before
        self._sizes: tuple | None = None  # the potential's fix_sizes for the block graph
        nl = forces.neighbors
        self.build_on_device = self.cuda_graph and hasattr(nl, "build_async")

    # ----------------------------------------------------------------- buffers
    def _live(self, state) -> list[torch.Tensor]:
        """Tensors a block changes in place: state, thermostat variables, incoming result."""
        return [state.positions, state.velocities, *self.integrator.variables().values(),
                self._forces, self._energy]

    def _prepare(self, state) -> None:
        """(Re)allocate the buffers and drop the graphs when a tensor they read was replaced."""
        nl = self.forces.neighbors
        read = [state.positions, state.velocities, *self.integrator.variables().values(),
                *(nl.buffers() if nl is not None else ())]
        key = tuple(0 if t is None else t.data_ptr() for t in read)
        if key != self._key:  # first block, or a buffer was replaced (restart, list grew)
            self._key = key
            self.graph = self.build_graph = None
            self._forces = torch.empty_like(state.positions)
            self._energy = torch.zeros(state.n_systems, dtype=torch.float64,
                                       device=state.device)
            self._overrun = torch.zeros((), dtype=torch.int32, device=state.device)
            # [list stale or overflowed (0/1), potential's sizes too small (0/1),
            #  largest squared displacement since the build]
            self._status = torch.zeros(3, dtype=torch.float64, device=state.device)
            self._backup = [torch.empty_like(t) for t in self._live(state)]
            self._moved = self._moved_at = self._sizes = None

    def _fix_sizes(self, state) -> None:
        """Let the potential size its data-dependent shapes; a change drops the block graph."""
        sizes = self.forces.potential.fix_sizes(state, self.forces.neighbors)
        if sizes != self._sizes:
            self._sizes, self.graph = sizes, None

    # -------------------------------------------------------------------- body
    def _compute(self, state) -> PotentialResult:
        nl = self.forces.neighbors
        if nl is not None:
            nl.mark_stale(state, self._overrun)
        return self.forces(state, update=False)

    def _body(self, state) -> None:
        for backup, live in zip(self._backup, self._live(state), strict=True):
            backup.copy_(live)
        self._overrun.zero_()
        result = PotentialResult(self._energy, self._forces)
        with fixed_shapes():
            for _ in range(self.steps):
                result = self.integrator.step(state, result, self._compute)
        self._forces.copy_(result.forces)
        self._energy.copy_(result.energy)
        nl = self.forces.neighbors
        if nl is not None:
            disp2 = nl.largest_displacement2(state)
            stale = self._overrun.bool() | nl.overflow
            too_small = self.forces.potential.sizes_overflowed()
            if too_small is None:
                too_small = torch.zeros_like(stale)
            torch.stack([stale.to(disp2.dtype), too_small.to(disp2.dtype), disp2],
                        out=self._status)

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
        """Rebuild when the list is stale now or likely to be before the block ends."""
        nl = self.forces.neighbors
        if nl.reference_positions is None or nl.reference_positions.shape != state.positions.shape:
            nl.build(state)
            self._moved_before = 0.0
            return
        # The displacement read at the last block's end holds if nothing moved the atoms or
        # rebuilt the list since (eager steps bump the positions' version; graphs do not).
        moved = self._moved if self._moved_at == (state.positions._version, nl.n_builds) \
            else float(nl.largest_displacement2(state)) ** 0.5
        growth = max(moved - self._moved_before, 0.0)
        if moved + 1.25 * growth > 0.5 * nl.skin:
            self._build(state)
            moved = 0.0
        self._moved_before = moved

    def _build(self, state) -> None:
        """Rebuild the list: by replaying the build graph when the list builds on the device."""
        nl = self.forces.neighbors
        if not self.build_on_device:
            nl.build(state)
            return
        if self.build_graph is None:
            nl.build_async(state)  # warm-up outside the graph (the result is the same list)
            torch.cuda.synchronize(state.device)
            self.build_graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(self.build_graph):
                nl.build_async(state)
        self.build_graph.replay()
        nl.n_builds += 1

    # --------------------------------------------------------------------- run
    def _replay(self, state, result: PotentialResult, resize: bool = False
                ) -> tuple[bool, bool]:
        """Run the block from ``result``; returns whether it ran on a stale or overflowed list
        and whether it outgrew the potential's sizes (the host reads the block's status: the
        one host sync). ``resize``: ask the potential for its sizes again (after such a
        block)."""
        self._prepare(state)  # the list may have grown since the last block
        if self._sizes is None or resize:
            self._fix_sizes(state)
        self._forces.copy_(result.forces)
        self._energy.copy_(result.energy)
        if self.cuda_graph:
            if self.graph is None:
                self._capture(state)
            self.graph.replay()
        else:
            self._body(state)
        self.replays += 1
        nl = self.forces.neighbors
        if nl is None:
            return False, False
        stale, too_small, moved2 = self._status.tolist()  # host sync
        self._moved, self._moved_at = moved2 ** 0.5, (state.positions._version, nl.n_builds)
        return bool(stale), bool(too_small)

    def run(self, state, result: PotentialResult) -> PotentialResult:
        """Advance ``self.steps`` steps from ``result`` (forces at the current positions).

        A block that ran on a stale list (or outgrew the potential's sizes) is undone and run
        again on a list built at its starting positions (with larger sizes); if that goes
        wrong too, the steps are redone one by one with a check at every step."""
        nl = self.forces.neighbors
        if nl is not None:
            self._prepare(state)
            self._update_list(state)  # a rebuild leaves the forces as they are
        rng_state = self.integrator.generator.get_state() if self.uses_rng else None
        resize = False
        for fresh_list in (False, True):
            stale, resize = self._replay(state, result, resize)
            if not (stale or resize):
                return PotentialResult(self._energy.clone(), self._forces.clone())
            self.undone += 1
            self.resized += resize
            self._restore(state)
            if rng_state is not None:
                self.integrator.generator.set_state(rng_state)
            if not fresh_list:
                nl.build(state)  # at the block's starting positions (grows a full list)
                self._moved_before = 0.0
        for _ in range(self.steps):  # stale within one block of a build: step by step
            result = self.integrator.step(state, result, self.forces)
        return result
