"""Snapshot: copies of a simulation's dynamic state, taken and restored in place.

The dynamic state is every tensor a step changes: positions, velocities and cell, the
integrator's variables (thermostat variables, random-number draw counters, the step counter)
and the last forces and energies. ``take()`` copies them into buffers made once;
``restore(mask)`` copies them back for the systems where ``mask`` [S] (bool, on the device) is
true — per-atom tensors through ``system_idx`` — and leaves the other systems as they are. Both
are fixed-shape tensor operations with no host synchronisation, so they can run inside a
captured CUDA graph (undoing a block, hybrid Monte Carlo's accept/reject, isoconfigurational
replicas). A tensor without a per-system axis (the step counter) is restored only by a full
``restore()``.
"""

from __future__ import annotations

import torch


class Snapshot:
    """Buffers for the tensors in ``atom`` ([N, …]), ``system`` ([S, …]) and ``batch``
    (no system axis), each a dict name → live tensor; ``system_idx`` [N]."""

    def __init__(self, atom: dict[str, torch.Tensor], system: dict[str, torch.Tensor],
                 batch: dict[str, torch.Tensor], system_idx: torch.Tensor):
        self.groups = {"atom": dict(atom), "system": dict(system), "batch": dict(batch)}
        self.system_idx = system_idx
        self.saved = {kind: {k: torch.empty_like(v) for k, v in live.items()}
                      for kind, live in self.groups.items()}

    def live(self) -> list[torch.Tensor]:
        """Every live tensor (a captured graph reads and writes these)."""
        return [t for group in self.groups.values() for t in group.values()]

    def take(self) -> Snapshot:
        """Copy the live tensors into the buffers; returns self."""
        for kind, live in self.groups.items():
            for name, tensor in live.items():
                self.saved[kind][name].copy_(tensor)
        return self

    def restore(self, mask: torch.Tensor | None = None) -> None:
        """Copy the buffers back into the live tensors for the systems in ``mask`` [S] bool
        (all systems, and the tensors without a system axis, when None)."""
        for kind, live in self.groups.items():
            for name, tensor in live.items():
                saved = self.saved[kind][name]
                if mask is None:
                    tensor.copy_(saved)
                elif kind != "batch":
                    rows = mask if kind == "system" else mask[self.system_idx]
                    rows = rows.reshape(-1, *([1] * (tensor.ndim - 1)))
                    tensor.copy_(torch.where(rows, saved, tensor))
