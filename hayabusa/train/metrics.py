"""Model predictions next to their labels, and the error metrics computed from them.

Units: energy per atom eV/atom, forces eV/Å, stress eV/Å³ in the arrays; the metrics report
MAE and RMSE in meV/atom, meV/Å and GPa.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields

import ase.units
import numpy as np

#: metric name → (Predictions field, scale from the array's unit to the reported unit)
QUANTITIES = {"energy_meV_per_atom": ("energy", 1e3), "forces_meV_per_A": ("forces", 1e3),
              "stress_GPa": ("stress", 1 / ase.units.GPa)}
LABELS = {"energy_meV_per_atom": "E (meV/atom)", "forces_meV_per_A": "F (meV/Å)",
          "stress_GPa": "S (GPa)"}


@dataclass
class Predictions:
    """Labels (``*_ref``) and predictions of a set of frames (float64 numpy arrays)."""

    energy_ref: np.ndarray  # [F] eV/atom
    energy: np.ndarray  # [F] eV/atom
    forces_ref: np.ndarray  # [N, 3] eV/Å
    forces: np.ndarray  # [N, 3] eV/Å
    stress_ref: np.ndarray  # [Fs, 3, 3] eV/Å³, frames with a stress label only
    stress: np.ndarray  # [Fs, 3, 3] eV/Å³
    volume_per_atom: np.ndarray  # [Fs] Å³ (stress × volume per atom = virial per atom, eV)

    @property
    def n_frames(self) -> int:
        return len(self.energy)

    @classmethod
    def concat(cls, parts: Sequence[Predictions]) -> Predictions:
        return cls(**{f.name: np.concatenate([getattr(p, f.name) for p in parts])
                      for f in fields(cls)})


def errors(pred: Predictions) -> dict:
    """{metric: {"mae", "rmse"}} for every quantity with labels, plus ``n_frames``."""
    out: dict = {"n_frames": pred.n_frames}
    for name, (field, scale) in QUANTITIES.items():
        err = (getattr(pred, field) - getattr(pred, field + "_ref")).ravel() * scale
        if err.size:
            out[name] = {"mae": float(np.abs(err).mean()),
                         "rmse": float(np.sqrt((err**2).mean()))}
    return out


def weighted_loss(pred: Predictions, pe: float, pf: float, ps: float) -> float:
    """The training loss with prefactors (pe, pf, ps) over a whole set (eV² units)."""
    loss = pe * float(((pred.energy - pred.energy_ref) ** 2).mean()) if pred.n_frames else 0.0
    if pred.forces.size:
        loss += pf * float(((pred.forces - pred.forces_ref) ** 2).mean())
    if pred.stress.size and ps:
        virial = (pred.stress - pred.stress_ref) * pred.volume_per_atom[:, None, None]
        loss += ps * float((virial**2).mean())
    return loss


def format_table(results: dict[str, dict]) -> str:
    """Rows per set (train/valid/test), MAE and RMSE columns per quantity."""
    names = [n for n in QUANTITIES if any(n in r for r in results.values())]
    header = f"{'set':<6} {'frames':>6}" + "".join(
        f" {LABELS[n] + ' MAE':>18} {'RMSE':>9}" for n in names)
    lines = [header]
    for set_name, r in results.items():
        row = f"{set_name:<6} {r['n_frames']:>6d}"
        for n in names:
            row += (f" {r[n]['mae']:>18.4g} {r[n]['rmse']:>9.4g}" if n in r
                    else f" {'-':>18} {'-':>9}")
        lines.append(row)
    return "\n".join(lines)
