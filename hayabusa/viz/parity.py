"""Parity plots (PNG, matplotlib Agg canvas, no pyplot state): predicted against reference
values, one panel per quantity, one colour per data set, the RMSE of each set in the legend."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from matplotlib.figure import Figure

from ..errors import InputError
from ..files import write_atomic


@dataclass
class ParityPanel:
    """One quantity: ``sets`` maps a set name to (reference, predicted) arrays of equal shape,
    in ``unit``; the legend gives each set's RMSE × ``rmse_scale`` in ``rmse_unit``."""

    title: str
    unit: str
    sets: Mapping[str, tuple[np.ndarray, np.ndarray]]
    rmse_unit: str = ""
    rmse_scale: float = 1.0


def plot_parity(panels: Sequence[ParityPanel], path, *, title: str = "") -> Figure:
    """Write the panels side by side to ``path`` (PNG, atomically); returns the Figure."""
    panels = [p for p in panels if any(np.size(ref) for ref, _ in p.sets.values())]
    if not panels:
        raise InputError(f"{path}: no data to plot")
    fig = Figure(figsize=(4.2 * len(panels), 4.4), layout="constrained")
    for k, panel in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), k + 1)
        lo, hi = np.inf, -np.inf
        for name, (ref, pred) in panel.sets.items():
            ref, pred = np.ravel(ref), np.ravel(pred)
            if ref.shape != pred.shape:
                raise InputError(f"{panel.title}, {name}: {ref.size} reference values but "
                                 f"{pred.size} predictions")
            if not ref.size:
                continue
            rmse = float(np.sqrt(np.mean((pred - ref) ** 2))) * panel.rmse_scale
            ax.scatter(ref, pred, s=4, alpha=0.5, linewidths=0, rasterized=True,
                       label=f"{name}: RMSE {rmse:.3g} {panel.rmse_unit}".rstrip())
            lo, hi = min(lo, ref.min(), pred.min()), max(hi, ref.max(), pred.max())
        pad = 0.05 * (hi - lo) if hi > lo else 1.0
        ax.plot([lo - pad, hi + pad], [lo - pad, hi + pad], color="0.4", lw=0.8, zorder=0)
        ax.set_xlim(lo - pad, hi + pad)
        ax.set_ylim(lo - pad, hi + pad)
        ax.set_aspect("equal")
        ax.set_xlabel(f"reference {panel.title} ({panel.unit})")
        ax.set_ylabel(f"predicted {panel.title} ({panel.unit})")
        ax.legend(loc="upper left", fontsize="small", markerscale=3)
    if title:
        fig.suptitle(title)
    write_atomic(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110))
    return fig
