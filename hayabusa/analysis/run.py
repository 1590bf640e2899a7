"""``analyze_run(RUN_DIR)`` and ``hayabusa analyze RUN_DIR``: analyse every MD run of a study.

Input layout (written by ``hayabusa study``)::

    RUN_DIR/<system>-<T>K/traj.h5    H5MD (hayabusa.md.trajectory.H5MDWriter): one system,
                                     UNWRAPPED positions (Å), species, cell, time (fs)
    RUN_DIR/<system>-<T>K/run.json   {"system": "gb", "temperature_K": 500.0, "timestep_fs": 2.0,
                                      "gb_normal_axis": 2, "gb_planes_A": [z1, z2]}
                                     (gb_planes_A only for grain-boundary systems)

Output: ``RUN_DIR/analysis.json`` and ``RUN_DIR/<run>/li_density.npz`` (``density``
[nx, ny, nz] Li per Å³, time-averaged, wrapped into the cell, voxels ≤ 0.5 Å along each cell
vector; ``cell`` [3, 3] the mean cell). ``analysis.json`` (floats; null where a value cannot
be estimated)::

    {"hayabusa_version": "0.1.0",
     "settings": {...the parameters below...},
     "runs": [
       {"name": "bulk-500K", "system": "bulk", "temperature_K": 500.0, "n_atoms": 192,
        "composition": {"Li": 56, "La": 24, "Zr": 16, "O": 96}, "duration_ps": 20.0,
        "n_frames": 201,
        "msd": {"time_ps": [...], "Li": [...], "La": [...], ...},   # Å², windowed FFT MSD
        "diffusion": {"Li": {"D_cm2_s": .., "D_err_cm2_s": ..}},     # tracer
        "charge_diffusion": {"D_cm2_s": .., "D_err_cm2_s": ..},      # Li centre of mass
        "conductivity": {"sigma_S_cm": .., "sigma_err_S_cm": .., "sigma_tracer_S_cm": ..},
        "haven_ratio": ..,
        "rdf": {"r_A": [...], "Li-O": [...], "Li-Li": [...], "Zr-O": [...], "La-O": [...]},
        "jumps": null | {"rate_per_ps": .., "counts": {"24d->24d": n, "24d->96h": n,
                                                         "96h->24d": n, "96h->96h": n}},
        "segregation": null | {"normal_axis": 2, "gb_planes_A": [z1, z2], "distance_A": [...],
                               "li_density_rel": [...], "li_per_zr": [...],
                               "gibbs_excess_per_A2": .., "gibbs_excess_err_per_A2": ..},
        "clusters": {"max_size": n, "mean_size": x, "criterion": "Li–Li < 2.6 Å and ..."},
        "li_density_file": "bulk-500K/li_density.npz"}],
     "arrhenius": {"bulk": {"Ea_eV": .., "Ea_err_eV": .., "D0_cm2_s": ..,
                            "temperatures_K": [...], "D_cm2_s": [...], "D_300K_cm2_s": ..}}}

How each number is made:
- Positions: the mean displacement of the non-Li (framework) atoms is removed frame by frame
  (``msd.remove_drift``) before everything below.
- ``msd``: windowed MSD per species (all time origins), at every lag (thinned to ≤ 1000 lags).
- ``diffusion``/``charge_diffusion``: straight-line fit (OLS with intercept) of the Li tracer
  MSD / the Li collective MSD (|Σ Δr|²/N) over lags of 10–50 % of one fifth of the run; error:
  standard error over 5 consecutive time blocks fitted over the same lags
  (``diffusion.tracer_diffusion``). The number of blocks and the fit window (fractions of a
  block) can be changed (``analyze_run(n_blocks=, fit_window=)``, ``hayabusa analyze --blocks
  --fit-window``): short runs whose MSD is still caged at 10–50 % of a fifth need longer lags.
- ``conductivity``: Nernst–Einstein with Li⁺ (z = 1), the mean cell volume and the run
  temperature: ``sigma_S_cm`` from the charge D (error from its block error),
  ``sigma_tracer_S_cm`` from the tracer D; ``haven_ratio`` = D_tracer / D_charge.
- ``rdf``: partial g(r) up to 6 Å in 0.05 Å bins over ≤ 50 evenly spread frames.
- ``jumps``: only for cubic garnet cells (``sites.garnet_li_sites`` recognises the La/Zr
  framework; else null): capture radius 1.0 Å, visits shorter than 0.2 ps ignored; ``counts``
  per site-label pair, ``rate_per_ps`` = all jumps / (N_Li · duration).
- ``segregation``: only when run.json has ``gb_planes_A``; 1 Å slabs of distance to the nearest
  plane; ``li_per_zr`` over the 3 slabs centred on each; bulk reference = distances ≥ half
  the largest; Gibbs excess with a 5-block error (``segregation.gb_profile``).
- ``clusters``: ``clusters.find_clusters`` with its defaults over ≤ 50 evenly spread frames.
- ``arrhenius``: per system with ≥ 2 temperatures (runs with D ≤ 0 left out),
  ``diffusion.fit_arrhenius`` weighted by the block errors; D_300K extrapolated.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from .. import __version__
from ..errors import InputError
from ..files import write_atomic
from .clusters import find_clusters
from .density import density_grid, grid_shape
from .diffusion import (
    charge_diffusion,
    fit_arrhenius,
    haven_ratio,
    nernst_einstein,
    tracer_diffusion,
)
from .msd import msd_by_species, remove_drift, select_axes
from .rdf import rdf
from .segregation import gb_profile
from .sites import assign_sites, count_jumps, garnet_li_sites
from .trajectory import read_trajectory

ANALYSIS_NAME = "analysis.json"
DENSITY_NAME = "li_density.npz"
SETTINGS = {
    "n_blocks": 5, "fit_window_fraction_of_block": [0.1, 0.5], "msd_max_points": 1000,
    "rdf_pairs": ["Li-O", "Li-Li", "Zr-O", "La-O"], "rdf_r_max_A": 6.0, "rdf_dr_A": 0.05,
    "structure_frames": 50, "density_spacing_A": 0.5, "site_capture_radius_A": 1.0,
    "site_min_residence_ps": 0.2, "segregation_bin_A": 1.0,
}
_LI = "Li"


def _json_float(x):
    """float, or None when not finite (JSON has no NaN)."""
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def _floats(a) -> list:
    return [_json_float(v) for v in np.asarray(a, dtype=np.float64).ravel()]


def _read_run_json(path: Path) -> dict:
    if not path.is_file():
        raise InputError(f"{path}: missing (each run directory needs run.json)")
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}: not valid JSON ({exc.msg}, line {exc.lineno})") from None
    if not isinstance(meta, dict):
        raise InputError(f"{path}: expected a JSON object")
    if not isinstance(meta.get("system"), str) or not meta["system"]:
        raise InputError(f"{path}: key 'system' must be a non-empty string")
    t = meta.get("temperature_K")
    if not isinstance(t, (int, float)) or isinstance(t, bool) or not t > 0:
        raise InputError(f"{path}: key 'temperature_K' must be a number > 0, got {t!r}")
    planes = meta.get("gb_planes_A")
    if planes is not None:
        if not isinstance(planes, list) or not planes or \
                not all(isinstance(z, (int, float)) and not isinstance(z, bool) for z in planes):
            raise InputError(f"{path}: key 'gb_planes_A' must be a list of numbers (Å)")
        if meta.get("gb_normal_axis") not in (0, 1, 2):
            raise InputError(f"{path}: key 'gb_normal_axis' must be 0, 1 or 2 with gb_planes_A")
    return meta


def _spread(n_frames: int, n: int) -> np.ndarray:
    return np.unique(np.linspace(0, n_frames - 1, min(n, n_frames)).round().astype(int))


def analyze_one(run: Path, settings: dict = SETTINGS) -> tuple[dict, np.ndarray, np.ndarray]:
    """(entry of ``runs``, Li density grid, mean cell) for one run directory."""
    meta = _read_run_json(run / "run.json")
    traj_path = run / "traj.h5"
    if not traj_path.is_file():
        raise InputError(f"{traj_path}: missing (each run directory needs traj.h5)")
    traj = read_trajectory(traj_path)
    symbols, time_ps = traj.symbols, traj.time_ps - traj.time_ps[0]
    f = time_ps.size
    is_li = symbols == _LI
    if not is_li.any():
        raise InputError(f"{traj_path}: no Li atoms to analyse")
    n_blocks = settings["n_blocks"]
    if f < 6 * n_blocks:
        raise InputError(f"{traj_path}: {f} frames; the analysis with {n_blocks} blocks needs "
                         f"at least {6 * n_blocks}")
    temperature = float(meta["temperature_K"])
    x = remove_drift(traj.positions, ~is_li)
    cell = traj.cell
    mean_cell = cell.mean(axis=0)
    volume = float(np.abs(np.linalg.det(cell)).mean())

    msd = msd_by_species(x, symbols)
    stride = max(1, math.ceil(f / settings["msd_max_points"]))
    msd_out = {"time_ps": _floats(time_ps[::stride])}
    msd_out.update({s: _floats(select_axes(m, "xyz")[::stride]) for s, m in msd.items()})

    block_span = (f // n_blocks - 1) * (time_ps[1] - time_ps[0])
    lo, hi = settings["fit_window_fraction_of_block"]
    window = (lo * block_span, hi * block_span)
    li = x[:, is_li]
    tracer = tracer_diffusion(li, time_ps, n_blocks, window)
    charge = charge_diffusion(li, time_ps, n_blocks, window)
    n_li = int(is_li.sum())
    sigma = nernst_einstein(charge.D_cm2_s, n_li, volume, temperature)
    sigma_err = nernst_einstein(charge.D_err_cm2_s, n_li, volume, temperature)
    sigma_tracer = nernst_einstein(tracer.D_cm2_s, n_li, volume, temperature)
    haven, _ = haven_ratio(tracer, charge)

    frames = _spread(f, settings["structure_frames"])
    present = set(symbols.tolist())
    pairs = [tuple(p.split("-")) for p in settings["rdf_pairs"]]
    pairs = [p for p in pairs if set(p) <= present]
    r, g = rdf(x[frames], cell[frames], symbols, pairs, settings["rdf_r_max_A"],
               settings["rdf_dr_A"])
    rdf_out = {"r_A": _floats(r)}
    rdf_out.update({k: _floats(v) for k, v in g.items()})

    jumps = None
    sites = garnet_li_sites(symbols, x[0], cell[0])
    if sites is not None:
        dt = time_ps[1] - time_ps[0]
        assigned = assign_sites(li, cell, sites, settings["site_capture_radius_A"])
        residence = max(1, math.ceil(settings["site_min_residence_ps"] / dt - 1e-9))
        counts = count_jumps(assigned, sites.labels, residence)
        jumps = {"rate_per_ps": _json_float(sum(counts.values()) / (n_li * time_ps[-1])),
                 "counts": counts}

    segregation = None
    if meta.get("gb_planes_A") is not None:
        axis = int(meta["gb_normal_axis"])
        prof = gb_profile(x, cell, symbols, axis, meta["gb_planes_A"], _LI, "Zr",
                          settings["segregation_bin_A"], n_blocks=n_blocks)
        segregation = {"normal_axis": axis, "gb_planes_A": _floats(meta["gb_planes_A"]),
                       "distance_A": _floats(prof.distance_A),
                       "li_density_rel": _floats(prof.density_rel),
                       "li_per_zr": _floats(prof.per_reference),
                       "gibbs_excess_per_A2": _json_float(prof.gibbs_excess_per_A2),
                       "gibbs_excess_err_per_A2": _json_float(prof.gibbs_excess_err_per_A2)}

    cl = find_clusters(x[frames], cell[frames], symbols)
    density = density_grid(li, cell, grid_shape(mean_cell, settings["density_spacing_A"]))

    entry = {
        "name": run.name, "system": meta["system"], "temperature_K": temperature,
        "n_atoms": int(symbols.size),
        "composition": {s: int((symbols == s).sum()) for s in dict.fromkeys(symbols.tolist())},
        "duration_ps": _json_float(time_ps[-1]), "n_frames": int(f),
        "msd": msd_out,
        "diffusion": {_LI: {"D_cm2_s": _json_float(tracer.D_cm2_s),
                            "D_err_cm2_s": _json_float(tracer.D_err_cm2_s)}},
        "charge_diffusion": {"D_cm2_s": _json_float(charge.D_cm2_s),
                             "D_err_cm2_s": _json_float(charge.D_err_cm2_s)},
        "conductivity": {"sigma_S_cm": _json_float(sigma),
                         "sigma_err_S_cm": _json_float(sigma_err),
                         "sigma_tracer_S_cm": _json_float(sigma_tracer)},
        "haven_ratio": _json_float(haven),
        "rdf": rdf_out, "jumps": jumps, "segregation": segregation,
        "clusters": {"max_size": cl.max_size, "mean_size": _json_float(cl.mean_size),
                     "criterion": cl.criterion},
        "li_density_file": f"{run.name}/{DENSITY_NAME}",
    }
    return entry, density, mean_cell


def _arrhenius(runs: list[dict]) -> dict:
    out = {}
    for system in dict.fromkeys(r["system"] for r in runs):
        rows = [(r["temperature_K"], r["diffusion"][_LI]["D_cm2_s"],
                 r["diffusion"][_LI]["D_err_cm2_s"]) for r in runs if r["system"] == system]
        rows = sorted(row for row in rows if row[1] is not None and row[1] > 0)
        if len({row[0] for row in rows}) < 2:
            continue
        temps, d, err = (np.array([row[k] for row in rows], dtype=np.float64) for k in range(3))
        use_err = bool(np.all(np.isfinite(err)) and np.all(err > 0))
        fit = fit_arrhenius(temps, d, err if use_err else None)
        out[system] = {"Ea_eV": _json_float(fit.Ea_eV), "Ea_err_eV": _json_float(fit.Ea_err_eV),
                       "D0_cm2_s": _json_float(fit.D0_cm2_s), "temperatures_K": _floats(temps),
                       "D_cm2_s": _floats(d), "D_300K_cm2_s": _json_float(fit.diffusion(300.0))}
    return out


def analysis_settings(n_blocks: int | None = None, fit_window=None) -> dict:
    """SETTINGS with another number of blocks (≥ 2) and/or D fit window (fractions of a block,
    0 ≤ lo < hi ≤ 1)."""
    settings = dict(SETTINGS)
    if n_blocks is not None:
        if isinstance(n_blocks, bool) or not isinstance(n_blocks, int) or n_blocks < 2:
            raise InputError(f"blocks: expected an integer >= 2, got {n_blocks!r}")
        settings["n_blocks"] = n_blocks
    if fit_window is not None:
        lo, hi = (float(x) for x in fit_window)
        if not 0.0 <= lo < hi <= 1.0:
            raise InputError(f"fit window: expected fractions of a block 0 <= lo < hi <= 1, "
                             f"got {lo:g}, {hi:g}")
        settings["fit_window_fraction_of_block"] = [lo, hi]
    return settings


def analyze_run(run_dir, overwrite: bool = False, n_blocks: int | None = None,
                fit_window=None) -> dict:
    """Analyse every ``RUN_DIR/*/`` holding a run.json; write ``analysis.json`` and each run's
    ``li_density.npz`` (atomically); return the analysis dict. Existing results are replaced
    only with ``overwrite=True``. ``n_blocks``, ``fit_window``: see ``analysis_settings``."""
    settings = analysis_settings(n_blocks, fit_window)
    root = Path(run_dir)
    if not root.is_dir():
        raise InputError(f"{root}: not a directory (expected a study run directory)")
    runs = sorted(p for p in root.iterdir() if (p / "run.json").is_file())
    if not runs:
        raise InputError(f"{root}: no run directories (<system>-<T>K/ with run.json) found")
    outputs = [root / ANALYSIS_NAME] + [p / DENSITY_NAME for p in runs]
    existing = [p for p in outputs if p.exists()]
    if existing and not overwrite:
        raise InputError(f"{existing[0]} exists; pass --overwrite to replace the analysis")
    entries, grids = [], []
    for run in runs:
        entry, density, mean_cell = analyze_one(run, settings)
        entries.append(entry)
        grids.append((run / DENSITY_NAME, density, mean_cell))
    entries.sort(key=lambda e: (e["system"], e["temperature_K"]))
    result = {"hayabusa_version": __version__, "settings": settings, "runs": entries,
              "arrhenius": _arrhenius(entries)}
    for path, density, mean_cell in grids:
        def write_npz(tmp, density=density, mean_cell=mean_cell):
            with open(tmp, "wb") as fh:
                np.savez(fh, density=density, cell=mean_cell)
        write_atomic(path, write_npz)
    text = json.dumps(result, indent=1, allow_nan=False)
    write_atomic(root / ANALYSIS_NAME, lambda tmp: tmp.write_text(text, encoding="utf-8"))
    return result


def _fit_window(text: str) -> tuple[float, float]:
    try:
        lo, hi = (float(x) for x in text.split(","))
    except ValueError:
        raise InputError(f"--fit-window: expected LO,HI (fractions of a block), got {text!r}") \
            from None
    return lo, hi


def _cmd_analyze(args) -> int:
    window = _fit_window(args.fit_window) if args.fit_window is not None else None
    result = analyze_run(args.run_dir, overwrite=args.overwrite, n_blocks=args.blocks,
                         fit_window=window)
    print(f"{'run':<16} {'T/K':>7} {'D_Li ± err (cm2/s)':>22} {'σ (S/cm)':>11} {'Haven':>6}")
    for r in result["runs"]:
        d = r["diffusion"][_LI]
        sig, h = r["conductivity"]["sigma_S_cm"], r["haven_ratio"]
        print(f"{r['name']:<16} {r['temperature_K']:>7.1f} "
              f"{_fmt(d['D_cm2_s'])} ± {_fmt(d['D_err_cm2_s'], 9)} {_fmt(sig, 11)} "
              f"{_fmt(h, 6, '.2f')}")
    for system, a in result["arrhenius"].items():
        print(f"Arrhenius {system}: Ea = {_fmt(a['Ea_eV'], 0, '.3f')} ± "
              f"{_fmt(a['Ea_err_eV'], 0, '.3f')} eV, D(300 K) = "
              f"{_fmt(a['D_300K_cm2_s'], 0)} cm2/s")
    print(f"hayabusa analyze: wrote {Path(args.run_dir) / ANALYSIS_NAME}")
    return 0


def _fmt(x, width: int = 10, spec: str = ".3e") -> str:
    return f"{'n/a':>{width}}" if x is None else f"{x:>{width}{spec}}"


def add_parser(sub) -> None:
    p = sub.add_parser("analyze", help="analyse the MD runs of a study directory",
                       description="Analyse every <system>-<T>K/ run of a study directory: MSD, "
                                   "D, conductivity, Haven ratio, RDF, jumps, GB segregation, "
                                   "Li clusters, Arrhenius fits; writes analysis.json.")
    p.add_argument("run_dir", metavar="RUN_DIR", help="study run directory")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an existing analysis.json and li_density.npz files")
    p.add_argument("--blocks", type=int, default=None, metavar="N",
                   help=f"time blocks for the D errors (default {SETTINGS['n_blocks']})")
    p.add_argument("--fit-window", default=None, metavar="LO,HI",
                   help="MSD lags fitted for D, as fractions of one block (default "
                        "{},{})".format(*SETTINGS["fit_window_fraction_of_block"]))
    p.set_defaults(func=_cmd_analyze)
