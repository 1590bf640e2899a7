"""PNG plots (matplotlib, Agg canvas, no pyplot state): MSD (log–log, with the diffusive fit
window), Arrhenius, segregation profile, structure picture.

Each ``plot_*`` writes ``path`` atomically and returns the matplotlib ``Figure`` it drew, so
callers and tests can read the plotted data back. Units: Å, ps, K, cm²/s, eV.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import ase
import numpy as np
from ase.units import kB  # eV/K
from matplotlib.figure import Figure

from ..errors import InputError
from ..files import write_atomic

A2_PER_PS_PER_CM2_PER_S = 1e4  # 1 cm²/s = 1e16 Å² / 1e12 ps
T_TICKS_K = (200, 300, 400, 500, 600, 800, 1000, 1500, 2000, 3000)  # Arrhenius top axis


def _save(fig: Figure, path) -> Figure:
    write_atomic(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110))
    return fig


def _array(values, name: str) -> np.ndarray:
    a = np.asarray(values, dtype=float)
    if a.ndim != 1 or a.size == 0 or not np.isfinite(a).all():
        raise InputError(f"{name}: expected a non-empty list of finite numbers")
    return a


def plot_msd(time_ps, msd_A2: Mapping[str, Sequence[float]], path, *,
             fit: Mapping | None = None, threshold_A2: float | None = None,
             max_lag_ps: float | None = None, title: str = "") -> Figure:
    """MSD (Å²) against lag time (ps) on log–log axes (lags > 0), one line per species.

    ``fit``: {"D_cm2_s", "intercept_A2", "window_ps": (lo, hi), "dim", "label"} draws the
    fitted line 2·dim·D·t + intercept over its window (shaded), labelled ``label`` and D;
    ``threshold_A2`` draws the MSD a diffusive window must exceed and ``max_lag_ps`` the
    longest lag a fit may use (dotted)."""
    t = _array(time_ps, "time_ps")
    fig = Figure(figsize=(6.0, 4.2))
    ax = fig.add_subplot()
    lag = t > 0
    for species, values in msd_A2.items():
        m = _array(values, f"msd[{species}]")
        if m.shape != t.shape:
            raise InputError(f"msd[{species}]: {m.size} values for {t.size} lag times")
        keep = lag & (m > 0)
        ax.plot(t[keep], m[keep], label=species)
    if threshold_A2 is not None:
        ax.axhline(threshold_A2, color="gray", ls=":", label=f"{threshold_A2:.3g} Å² threshold")
    if max_lag_ps is not None:
        ax.axvline(max_lag_ps, color="gray", ls="-.", label="longest usable lag")
    if fit is not None:
        lo, hi = fit["window_ps"]
        ax.axvspan(lo, hi, color="tab:green", alpha=0.12)
        tw = np.linspace(lo, hi, 50)
        d = fit["D_cm2_s"]
        ax.plot(tw, 2 * fit["dim"] * d * A2_PER_PS_PER_CM2_PER_S * tw + fit["intercept_A2"],
                "--", color="black", label=f"{fit['label']}: D = {d:.3g} cm²/s")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("lag time (ps)")
    ax.set_ylabel("MSD (Å²)")
    ax.set_title(title, fontsize="medium")
    ax.legend(fontsize="small")
    fig.tight_layout()
    return _save(fig, path)


def _thousand_over(x):
    """1000/x (1000/T ↔ T) for the secondary axis; matplotlib probes x = 0 too."""
    with np.errstate(divide="ignore"):
        return 1000.0 / np.asarray(x, dtype=float)


def plot_arrhenius(series: Mapping[str, Mapping], path, *,
                   literature: Sequence[tuple[str, float, float]] | None = None,
                   title: str = "") -> Figure:
    """log D against 1000/T per series, with Arrhenius fit lines D0·exp(−Ea/kB·T).

    ``series[label]``: ``temperatures_K``, ``D_cm2_s``, optional ``D_err_cm2_s`` (error bars)
    and optional ``Ea_eV`` with ``D0_cm2_s`` (fit line over the plotted temperature range) and
    ``Ea_err_eV`` (in its legend entry).
    ``literature``: (label, T in K, D in cm²/s) markers."""
    fig = Figure(figsize=(6.0, 4.4))
    ax = fig.add_subplot()
    all_t = [float(t) for _, t, _ in literature or []]
    for label, s in series.items():
        all_t += list(_array(s["temperatures_K"], f"{label}: temperatures_K"))
    if not all_t:
        raise InputError("plot_arrhenius: no data points")
    t_line = np.linspace(min(all_t), max(all_t), 100)
    for label, s in series.items():
        temp = _array(s["temperatures_K"], f"{label}: temperatures_K")
        d = _array(s["D_cm2_s"], f"{label}: D_cm2_s")
        if d.shape != temp.shape or (d <= 0).any():
            raise InputError(f"{label}: D_cm2_s must hold one positive value per temperature")
        err = s.get("D_err_cm2_s")
        bars = ax.errorbar(1000.0 / temp, d, yerr=None if err is None else np.asarray(err),
                           fmt="o", capsize=3, label=label)
        if s.get("Ea_eV") is not None and s.get("D0_cm2_s") is not None:
            ea_err = f" ± {s['Ea_err_eV']:.2g}" if s.get("Ea_err_eV") is not None else ""
            ax.plot(1000.0 / t_line, s["D0_cm2_s"] * np.exp(-s["Ea_eV"] / (kB * t_line)), "-",
                    color=bars.lines[0].get_color(),
                    label=f"{label} fit, Ea = {s['Ea_eV']:.3g}{ea_err} eV")
    markers = iter("s^vDP*X")
    for label, temp, d in literature or []:
        ax.plot([1000.0 / temp], [d], next(markers, "x"), color="gray", mfc="none",
                label=label)
    ax.set_yscale("log")
    ax.set_xlabel("1000/T (1/K)")
    ax.set_ylabel("D (cm²/s)")
    top = ax.secondary_xaxis("top", functions=(_thousand_over, _thousand_over))
    ticks = [t for t in T_TICKS_K if min(all_t) * 0.95 <= t <= max(all_t) * 1.05]
    top.set_xticks(ticks, [f"{t:g}" for t in ticks])
    top.set_xlabel("T (K)")
    ax.set_title(title)
    ax.legend(fontsize="x-small")
    fig.tight_layout()
    return _save(fig, path)


def plot_segregation(distance_A, li_density_rel, path, *, li_per_zr=None,
                     title: str = "") -> Figure:
    """Li density relative to the bulk (left axis) and Li/Zr per slab (right axis, optional;
    None where a slab has no Zr) against the distance to the nearest grain-boundary plane (Å)."""
    x = _array(distance_A, "distance_A")
    rho = _array(li_density_rel, "li_density_rel")
    if rho.shape != x.shape:
        raise InputError(f"li_density_rel: {rho.size} values for {x.size} distances")
    fig = Figure(figsize=(6.0, 4.2))
    ax = fig.add_subplot()
    ax.plot(x, rho, "o-", color="tab:purple", label="ρ_Li / ρ_Li,bulk")
    ax.axhline(1.0, color="gray", lw=0.8, ls=":")
    ax.set_xlabel("distance to nearest GB plane (Å)")
    ax.set_ylabel("Li density / bulk")
    if li_per_zr is not None:
        # a slab window without Zr has no ratio (null in analysis.json): a gap in the line
        ratio = np.array([np.nan if v is None else v for v in li_per_zr], dtype=float)
        if ratio.shape != x.shape:
            raise InputError(f"li_per_zr: {ratio.size} values for {x.size} distances")
        right = ax.twinx()
        right.plot(x, ratio, "s--", color="tab:green", label="Li/Zr")
        right.set_ylabel("Li/Zr per slab")
        ax.legend(ax.lines[:1] + right.lines, ["ρ_Li / ρ_Li,bulk", "Li/Zr"], fontsize="small")
    else:
        ax.legend(fontsize="small")
    ax.set_title(title)
    fig.tight_layout()
    return _save(fig, path)


def plot_structure(atoms: ase.Atoms, path, *, rotation: str = "10x,-20y,0z",
                   title: str = "") -> Figure:
    """Projected picture of ``atoms`` with the cell (Jmol colours, ase.visualize.plot)."""
    from ase.visualize.plot import plot_atoms

    fig = Figure(figsize=(5.0, 5.0))
    ax = fig.add_subplot()
    plot_atoms(atoms, ax, rotation=rotation, radii=0.6)
    ax.set_axis_off()
    ax.set_title(title)
    fig.tight_layout()
    return _save(fig, path)
