"""``analyze_run(RUN_DIR)`` and ``hayabusa analyze RUN_DIR``: analyse every MD run of a study.

Input layout (written by ``hayabusa study``)::

    RUN_DIR/<system>-<T>K/traj.h5    H5MD (hayabusa.md.trajectory.H5MDWriter): one system,
                                     UNWRAPPED positions (Å), species, cell, time (fs) and the
                                     thermo observables (``analysis.thermo``)
    RUN_DIR/<system>-<T>K/run.json   {"system": "gb", "temperature_K": 500.0, "timestep_fs": 2.0,
                                      "gb_normal_axis": 2, "gb_planes_A": [z1, z2]}
                                     (gb_planes_A only for grain-boundary systems)

Output: ``RUN_DIR/analysis.json`` and ``RUN_DIR/<run>/li_density.npz`` (``density``
[nx, ny, nz] Li per Å³, time-averaged, wrapped into the cell, voxels ≤ 0.5 Å along each cell
vector; ``cell`` [3, 3] the mean cell). ``analysis.json`` (floats; null where a value cannot
be estimated or does not exist)::

    {"hayabusa_version": "0.1.0",
     "settings": {...the parameters below...},
     "runs": [
       {"name": "bulk-500K", "system": "bulk", "temperature_K": 500.0, "n_atoms": 192,
        "composition": {"Li": 56, "La": 24, "Zr": 16, "O": 96}, "duration_ps": 20.0,
        "n_frames": 201, "volume_A3": ..,
        "thermo": {"equilibrated": true, "flags": [], "frames": 201, "first_step": ..,
                   "last_step": .., "temperature_source": "kinetic_energy" | "temperature",
                   "n_dof": 573, "target_T_K": 500.0, "mean_T_K": .., "mean_T_err_K": ..,
                   "sigma_T_canonical_K": .., "T_drift_K": .., "T_drift_err_K": ..,
                   "mean_pe_eV_per_atom": .., "mean_pe_err_eV_per_atom": ..,
                   "pe_drift_eV_per_atom": .., "pe_drift_err_eV_per_atom": ..,
                   "conserved": "conserved_energy" | "total_energy",
                   "conserved_drift_meV_per_atom": .., "conserved_drift_meV_per_atom_per_ns": ..,
                   "z_max": 4.0},
        "msd": {"time_ps": [...], "Li": [...], "La": [...], ...},   # Å², windowed FFT MSD
        "diffusion": {"Li": {"D_cm2_s": .., "D_err_cm2_s": ..,     # tracer; null: no window
                             "window_ps": [lo, hi] | null, "reason": null | "...",
                             "loglog_slope": .., "msd_threshold_A2": .., "hop_length_A": ..,
                             "hop_length_source": "...", "max_lag_ps": ..,
                             "msd_at_max_lag_A2": .., "fit_intercept_A2": ..}},
        "charge_diffusion": {"D_cm2_s": .., "D_err_cm2_s": ..},      # Li charge MSD
        "conductivity": {"sigma_S_cm": .., "sigma_err_S_cm": .., "sigma_tracer_S_cm": ..,
                         "sigma_tracer_err_S_cm": ..},
        "haven_ratio": .., "haven_ratio_err": ..,
        "transport": {"status": "result" | "apparent" | "not diffusive", "reasons": [...]},
        "rdf": {"r_A": [...], "Li-O": [...], "Li-Li": [...], "Zr-O": [...], "La-O": [...]},
        "jumps": null | {"rate_per_ps": .., "counts": {"24d->24d": n, "24d->96h": n,
                                                         "96h->24d": n, "96h->96h": n}},
        "segregation": null | {"normal_axis": 2, "gb_planes_A": [z1, z2], "distance_A": [...],
                               "li_density_rel": [...], "li_per_zr": [...],
                               "gibbs_excess_per_A2": .., "gibbs_excess_err_per_A2": ..},
        "clusters": {"max_size": n, "mean_size": x, "criterion": "Li–Li < 2.6 Å and ..."},
        "li_density_file": "bulk-500K/li_density.npz"}],
     "arrhenius": {"bulk": {"Ea_eV": .., "Ea_err_eV": .., "D0_cm2_s": ..,
                            "cov_Ea_lnD0": [[..], [..]], "weighted": true,
                            "temperatures_K": [...], "T_range_K": [lo, hi], "D_cm2_s": [...],
                            "D_err_cm2_s": [...], "runs": [...], "excluded": {run: why},
                            "reason": null | "...", "D_300K_cm2_s": .., "D_300K_err_cm2_s": ..,
                            "sigma_300K_tracer_S_cm": .., "sigma_300K_tracer_err_S_cm": ..}}}

How each number is made:
- ``thermo``: ``analysis.thermo`` on the frames of traj.h5 (the production run): means with
  errors from 10 time blocks, drifts and the equilibration verdict with its ``flags`` (z = 4).
- Positions: the mean displacement of the non-Li (framework) atoms is removed frame by frame
  (``msd.remove_drift``) before everything below.
- ``msd``: windowed MSD per species (all time origins), at every lag (thinned to ≤ 1000 lags).
- ``diffusion``: ``diffusion.tracer_diffusion`` of the Li: D only over the diffusive window of
  the Li MSD (local log–log slope 0.85–1.15, MSD ≥ ``min_msd_hops`` × hop length², lags ≤ half
  a block), error from 5 time blocks × 4 atom groups; otherwise null with the ``reason``. Hop
  length: ``sites.li_hop_length`` (garnet Li sites, else the median nearest Li–Li distance of
  the first frame) unless ``hop_length_A`` is set.
- ``charge_diffusion``: the Li charge MSD |Σ Δr|²/N fitted over the same window, time-block
  error (``diffusion.charge_diffusion``).
- ``conductivity``: Nernst–Einstein with Li⁺ (z = 1), the mean cell volume and the target
  temperature: ``sigma_S_cm`` from the charge D (the conductivity), ``sigma_tracer_S_cm`` from
  the tracer D (Haven ratio 1), each with its error; ``haven_ratio`` = D_tracer / D_charge with
  the errors propagated.
- ``transport``: "result" when the Li MSD has a diffusive window and the run is equilibrated;
  "apparent" when it has a window but the run is flagged (its numbers are not results);
  "not diffusive" when there is no window (D, σ, Haven ratio null); ``reasons`` says why.
- ``rdf``: partial g(r) up to 6 Å in 0.05 Å bins over ≤ 50 evenly spread frames.
- ``jumps``: only for cubic garnet cells (``sites.garnet_li_sites`` recognises the La/Zr
  framework; else null): capture radius 1.0 Å, visits shorter than 0.2 ps ignored; ``counts``
  per site-label pair, ``rate_per_ps`` = all jumps / (N_Li · duration).
- ``segregation``: only when run.json has ``gb_planes_A``; 1 Å slabs of distance to the nearest
  plane; ``li_per_zr`` over the 3 slabs centred on each; bulk reference = distances ≥ half
  the largest; Gibbs excess with a 5-block error (``segregation.gb_profile``).
- ``clusters``: ``clusters.find_clusters`` with its defaults over ≤ 50 evenly spread frames.
- ``arrhenius``: one entry per system: ``diffusion.fit_arrhenius`` weighted by the D errors
  over the runs whose ``transport.status`` is "result" (the others in ``excluded`` with the
  reason); needs 2 or more temperatures, else the numbers are null and ``reason`` says why.
  D and σ (Nernst–Einstein, tracer D, Li density of the coldest fitted run) at 300 K from the
  fit, with errors from the fit's covariance.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from .. import __version__
from ..errors import InputError
from ..files import write_atomic
from ..rundir import ANALYSIS_NAME, DENSITY_NAME, RUN_JSON_NAME, TRAJECTORY_NAME
from .clusters import find_clusters
from .density import density_grid, grid_shape
from .diffusion import (
    MIN_SPAN,
    SLOPE_RANGE,
    charge_diffusion,
    fit_arrhenius,
    haven_ratio,
    nernst_einstein,
    tracer_diffusion,
)
from .msd import msd_by_species, remove_drift, select_axes
from .rdf import rdf
from .segregation import gb_profile
from .sites import assign_sites, count_jumps, garnet_li_sites, li_hop_length
from .thermo import read_thermo, thermo_summary
from .trajectory import read_trajectory

SETTINGS = {
    "n_blocks": 5, "n_atom_groups": 4, "max_lag_fraction_of_block": 0.5,
    "diffusive_slope_range": list(SLOPE_RANGE), "min_window_span": MIN_SPAN,
    "min_msd_hops": 3.0, "hop_length_A": None, "thermo_blocks": 10, "equilibration_z": 4.0,
    "msd_max_points": 1000,
    "rdf_pairs": ["Li-O", "Li-Li", "Zr-O", "La-O"], "rdf_r_max_A": 6.0, "rdf_dr_A": 0.05,
    "structure_frames": 50, "density_spacing_A": 0.5, "site_capture_radius_A": 1.0,
    "site_min_residence_ps": 0.2, "segregation_bin_A": 1.0,
}
EXTRAPOLATE_K = 300.0
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


def _transport(li, time_ps, symbols, positions0, cell0, volume, temperature,
               settings) -> dict:
    """The diffusion, charge_diffusion, conductivity and Haven ratio entries of one run, from
    the Li positions ``li`` [F, N_Li, 3] (drift removed)."""
    n_blocks = settings["n_blocks"]
    if settings["hop_length_A"] is not None:
        hop, source = float(settings["hop_length_A"]), "settings.hop_length_A"
    else:
        hop, source = li_hop_length(symbols, positions0, cell0)
    tracer = tracer_diffusion(li, time_ps, settings["min_msd_hops"] * hop**2, n_blocks,
                              settings["n_atom_groups"],
                              max_lag_fraction=settings["max_lag_fraction_of_block"])
    charge = charge_diffusion(li, time_ps, tracer.window, n_blocks=n_blocks)
    w = tracer.window
    out = {"diffusion": {_LI: {
        "D_cm2_s": _json_float(tracer.D_cm2_s), "D_err_cm2_s": _json_float(tracer.D_err_cm2_s),
        "window_ps": None if w.window_ps is None else _floats(w.window_ps), "reason": w.reason,
        "loglog_slope": _json_float(w.loglog_slope), "msd_threshold_A2": w.min_msd_A2,
        "hop_length_A": hop, "hop_length_source": source, "max_lag_ps": w.max_lag_ps,
        "msd_at_max_lag_A2": _json_float(w.msd_at_max_lag_A2),
        "fit_intercept_A2": _json_float(tracer.intercept_A2)}},
        "charge_diffusion": {"D_cm2_s": _json_float(charge.D_cm2_s),
                             "D_err_cm2_s": _json_float(charge.D_err_cm2_s)}}
    n_li = li.shape[1]

    def sigma(d):
        return None if d is None else nernst_einstein(d, n_li, volume, temperature)

    h, h_err = haven_ratio(tracer, charge)
    out["conductivity"] = {
        "sigma_S_cm": _json_float(sigma(charge.D_cm2_s)),
        "sigma_err_S_cm": _json_float(sigma(charge.D_err_cm2_s)),
        "sigma_tracer_S_cm": _json_float(sigma(tracer.D_cm2_s)),
        "sigma_tracer_err_S_cm": _json_float(sigma(tracer.D_err_cm2_s))}
    out["haven_ratio"], out["haven_ratio_err"] = _json_float(h), _json_float(h_err)
    return out


def _status(diffusion: dict, thermo: dict) -> dict:
    """{"status", "reasons"}: whether the run's transport numbers are results (see module)."""
    reasons = []
    if diffusion["window_ps"] is None:
        reasons.append(f"not diffusive: {diffusion['reason']}")
    if not thermo["equilibrated"]:
        reasons.append("not equilibrated: " + "; ".join(thermo["flags"]))
    if diffusion["window_ps"] is None:
        status = "not diffusive"
    else:
        status = "apparent" if reasons else "result"
    return {"status": status, "reasons": reasons}


def analyze_one(run: Path, settings: dict = SETTINGS) -> tuple[dict, np.ndarray, np.ndarray]:
    """(entry of ``runs``, Li density grid, mean cell) for one run directory."""
    meta = _read_run_json(run / RUN_JSON_NAME)
    traj_path = run / TRAJECTORY_NAME
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
    thermo = thermo_summary(read_thermo(traj_path), temperature, settings["thermo_blocks"],
                            settings["equilibration_z"])
    x = remove_drift(traj.positions, ~is_li)
    cell = traj.cell
    mean_cell = cell.mean(axis=0)
    volume = float(np.abs(np.linalg.det(cell)).mean())

    msd = msd_by_species(x, symbols)
    stride = max(1, math.ceil(f / settings["msd_max_points"]))
    msd_out = {"time_ps": _floats(time_ps[::stride])}
    msd_out.update({s: _floats(select_axes(m, "xyz")[::stride]) for s, m in msd.items()})

    li = x[:, is_li]
    n_li = int(is_li.sum())
    transport = _transport(li, time_ps, symbols, traj.positions[0], cell[0], volume,
                           temperature, settings)

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
        "volume_A3": volume, "thermo": thermo, "msd": msd_out, **transport,
        "transport": _status(transport["diffusion"][_LI], thermo),
        "rdf": rdf_out, "jumps": jumps, "segregation": segregation,
        "clusters": {"max_size": cl.max_size, "mean_size": _json_float(cl.mean_size),
                     "criterion": cl.criterion},
        "li_density_file": f"{run.name}/{DENSITY_NAME}",
    }
    return entry, density, mean_cell


def _arrhenius_one(runs: list[dict]) -> dict:
    """The ``arrhenius`` entry of one system's runs (see the module docstring)."""
    used = sorted((r for r in runs if r["transport"]["status"] == "result"),
                  key=lambda r: r["temperature_K"])
    out = {"Ea_eV": None, "Ea_err_eV": None, "D0_cm2_s": None, "cov_Ea_lnD0": None,
           "weighted": None, "temperatures_K": [r["temperature_K"] for r in used],
           "T_range_K": None, "D_cm2_s": [r["diffusion"][_LI]["D_cm2_s"] for r in used],
           "D_err_cm2_s": [r["diffusion"][_LI]["D_err_cm2_s"] for r in used],
           "runs": [r["name"] for r in used],
           "excluded": {r["name"]: ", ".join(why.split(":")[0] for why in
                                             r["transport"]["reasons"])
                        for r in runs if r["transport"]["status"] != "result"},
           "reason": None, "D_300K_cm2_s": None, "D_300K_err_cm2_s": None,
           "sigma_300K_tracer_S_cm": None, "sigma_300K_tracer_err_S_cm": None}
    if len(set(out["temperatures_K"])) < 2:
        out["reason"] = (f"{len(used)} run(s) with a diffusive D from an equilibrated run; the "
                         "fit needs 2 or more temperatures")
        return out
    temps, d = np.array(out["temperatures_K"]), np.array(out["D_cm2_s"])
    err = np.array([np.nan if e is None else e for e in out["D_err_cm2_s"]])
    weighted = bool(np.all(err > 0))
    fit = fit_arrhenius(temps, d, err if weighted else None)
    d300, d300_err = fit.diffusion(EXTRAPOLATE_K), fit.diffusion_err(EXTRAPOLATE_K)
    coldest = used[0]
    n_li, volume = coldest["composition"][_LI], coldest["volume_A3"]
    out.update(
        Ea_eV=_json_float(fit.Ea_eV), Ea_err_eV=_json_float(fit.Ea_err_eV),
        D0_cm2_s=_json_float(fit.D0_cm2_s), weighted=weighted,
        cov_Ea_lnD0=None if fit.cov is None else [_floats(row) for row in fit.cov],
        T_range_K=[float(temps.min()), float(temps.max())],
        D_300K_cm2_s=_json_float(d300), D_300K_err_cm2_s=_json_float(d300_err),
        sigma_300K_tracer_S_cm=_json_float(nernst_einstein(d300, n_li, volume, EXTRAPOLATE_K)),
        sigma_300K_tracer_err_S_cm=None if d300_err is None else _json_float(
            nernst_einstein(d300_err, n_li, volume, EXTRAPOLATE_K)))
    return out


def _arrhenius(runs: list[dict]) -> dict:
    return {system: _arrhenius_one([r for r in runs if r["system"] == system])
            for system in dict.fromkeys(r["system"] for r in runs)}


def _positive_int(name: str, value, least: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise InputError(f"{name}: expected an integer >= {least}, got {value!r}")
    return value


def _positive(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise InputError(f"{name}: expected a number > 0, got {value!r}")
    return float(value)


def analysis_settings(n_blocks: int | None = None, n_groups: int | None = None,
                      min_msd_hops: float | None = None, hop_length_A: float | None = None,
                      max_lag_fraction: float | None = None) -> dict:
    """SETTINGS with other values: time blocks (≥ 2), atom groups (≥ 1), MSD threshold in
    squared hop lengths (> 0), hop length in Å (> 0; None: from the structure) and the longest
    lag of the D fit as a fraction of a block (0 < f ≤ 1)."""
    settings = dict(SETTINGS)
    if n_blocks is not None:
        settings["n_blocks"] = _positive_int("blocks", n_blocks, 2)
    if n_groups is not None:
        settings["n_atom_groups"] = _positive_int("groups", n_groups, 1)
    if min_msd_hops is not None:
        settings["min_msd_hops"] = _positive("hops", min_msd_hops)
    if hop_length_A is not None:
        settings["hop_length_A"] = _positive("hop length", hop_length_A)
    if max_lag_fraction is not None:
        f = _positive("max lag", max_lag_fraction)
        if f > 1:
            raise InputError(f"max lag: expected a fraction of a block 0 < f <= 1, got {f:g}")
        settings["max_lag_fraction_of_block"] = f
    return settings


def analyze_run(run_dir, overwrite: bool = False, **options) -> dict:
    """Analyse every ``RUN_DIR/*/`` holding a run.json; write ``analysis.json`` and each run's
    ``li_density.npz`` (atomically); return the analysis dict. Existing results are replaced
    only with ``overwrite=True``. ``options``: the keyword arguments of
    ``analysis_settings``."""
    settings = analysis_settings(**options)
    root = Path(run_dir)
    if not root.is_dir():
        raise InputError(f"{root}: not a directory (expected a study run directory)")
    runs = sorted(p for p in root.iterdir() if (p / RUN_JSON_NAME).is_file())
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


# -------------------------------------------------------------------------------- CLI
def _fmt(x, err=None, spec: str = ".3g") -> str:
    """"x ± err" (or "x"; "–" for None)."""
    if x is None:
        return "–"
    return f"{x:{spec}}" if err is None else f"{x:{spec}} ± {err:.2g}"


def transport_text(status: str, value, err, spec: str = ".3g", apparent: str = "[{}]") -> str:
    """A transport number of a run whose transport ``status`` is "result", "apparent" (a
    flagged run) or "not diffusive": "x ± err" for a result, ``apparent`` formatted with it
    for an apparent one, "none" without a diffusive window ("–": not computed)."""
    if status == "not diffusive":
        return "none"
    text = _fmt(value, err, spec)
    return apparent.format(text) if status == "apparent" and value is not None else text


def _print_table(result: dict) -> None:
    rows = [("run", "T/K", "<T>/K", "D_Li (cm2/s)", "sigma (S/cm)", "Haven", "status")]
    for r in result["runs"]:
        d, c, th = r["diffusion"][_LI], r["conductivity"], r["thermo"]
        status = r["transport"]["status"]
        rows.append((r["name"], f"{r['temperature_K']:g}",
                     _fmt(th["mean_T_K"], th["mean_T_err_K"], ".1f"),
                     transport_text(status, d["D_cm2_s"], d["D_err_cm2_s"], ".3e"),
                     transport_text(status, c["sigma_S_cm"], c["sigma_err_S_cm"]),
                     transport_text(status, r["haven_ratio"], r["haven_ratio_err"]),
                     status))
    widths = [max(len(row[k]) for row in rows) for k in range(len(rows[0]))]
    for row in rows:
        print("  ".join(f"{c:<{w}}" for c, w in zip(row, widths, strict=True)).rstrip())
    if any(r["transport"]["status"] == "apparent" for r in result["runs"]):
        print("[...]: apparent values of flagged runs, not results")
    for r in result["runs"]:
        for reason in r["transport"]["reasons"]:
            print(f"{r['name']}: {reason}")
    for system, a in result["arrhenius"].items():
        if a["Ea_eV"] is None:
            print(f"Arrhenius {system}: no fit: {a['reason']}")
            continue
        lo, hi = a["T_range_K"]
        print(f"Arrhenius {system}: Ea = {_fmt(a['Ea_eV'], a['Ea_err_eV'], '.3f')} eV over "
              f"{lo:g}–{hi:g} K ({len(a['runs'])} runs), D(300 K) = "
              f"{_fmt(a['D_300K_cm2_s'], a['D_300K_err_cm2_s'])} cm2/s")


def _cmd_analyze(args) -> int:
    result = analyze_run(args.run_dir, overwrite=args.overwrite, n_blocks=args.blocks,
                         n_groups=args.groups, min_msd_hops=args.hops,
                         hop_length_A=args.hop_length, max_lag_fraction=args.max_lag)
    _print_table(result)
    print(f"hayabusa analyze: wrote {Path(args.run_dir) / ANALYSIS_NAME}")
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("analyze", help="analyse the MD runs of a study directory",
                       description="Analyse every <system>-<T>K/ run of a study directory: "
                                   "equilibration, MSD, D over the diffusive window, "
                                   "conductivity, Haven ratio, RDF, jumps, GB segregation, Li "
                                   "clusters, Arrhenius fits; writes analysis.json.")
    p.add_argument("run_dir", metavar="RUN_DIR", help="study run directory")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an existing analysis.json and li_density.npz files")
    p.add_argument("--blocks", type=int, default=None, metavar="N",
                   help=f"time blocks for the errors (default {SETTINGS['n_blocks']})")
    p.add_argument("--groups", type=int, default=None, metavar="N",
                   help=f"atom groups for the D errors (default {SETTINGS['n_atom_groups']})")
    p.add_argument("--hops", type=float, default=None, metavar="K",
                   help="a diffusive MSD exceeds K squared hop lengths (default "
                        f"{SETTINGS['min_msd_hops']:g})")
    p.add_argument("--hop-length", type=float, default=None, metavar="A",
                   help="Li hop length in Å (default: from the garnet Li sites, else the "
                        "median nearest Li–Li distance)")
    p.add_argument("--max-lag", type=float, default=None, metavar="F",
                   help="longest MSD lag fitted, as a fraction of one block (default "
                        f"{SETTINGS['max_lag_fraction_of_block']:g})")
    p.set_defaults(func=_cmd_analyze)
