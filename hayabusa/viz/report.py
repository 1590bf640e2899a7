"""``hayabusa report RUN_DIR``: one offline HTML report of an LLZO study run directory.

Reads structured results only: ``analysis.json`` (required; thermo summary, equilibration
flags, transport numbers with their status, Arrhenius fits), ``model_metrics.json`` and
``parity.png`` (optional), per run ``<system>-<T>K/`` its ``run.json``, ``start.extxyz`` (the
structure pictures), ``traj.h5`` and the Li density grid (the 3D view; all optional), and the
literature values of ``hayabusa/data/literature.json``. Writes ``report.html`` (PNGs embedded
as base64, the 3D view inlined with plotly.js, so the single file works offline),
``view.html`` (the 3D view alone) and ``plots/*.png``. Missing optional pieces are stated.

Transport numbers (D, σ, Haven ratio) appear as results only for runs whose
``transport.status`` is "result" (diffusive window, equilibrated run); a flagged run's numbers
are marked "apparent", a run without a diffusive window shows none, and the reasons are
listed. Arrhenius fits come from analysis.json, which fits results only.
"""

from __future__ import annotations

import base64
import html
import json
from importlib import resources
from pathlib import Path
from typing import Literal

import ase
import ase.io
import numpy as np
from pydantic import BaseModel, ConfigDict, ValidationError

from ..analysis.diffusion import ArrheniusFit
from ..analysis.run import transport_text
from ..errors import InputError
from ..files import write_atomic
from ..rundir import (
    ANALYSIS_NAME,
    METRICS_NAME,
    PARITY_NAME,
    PLOTS_DIR,
    REPORT_NAME,
    RUN_JSON_NAME,
    START_NAME,
    TRAJECTORY_NAME,
    VIEW_NAME,
)
from . import plots, view3d

METRIC_NAMES = {"energy_meV_per_atom": "energy (meV/atom)", "forces_meV_per_A": "forces (meV/Å)",
                "stress_GPa": "stress (GPa)"}


# --------------------------------------------------------------------- analysis.json schema
class _Record(BaseModel):
    """A record of analysis.json (keys this report does not read are allowed)."""

    model_config = ConfigDict(extra="allow")


class _D(_Record):
    D_cm2_s: float | None
    D_err_cm2_s: float | None = None


class _TracerD(_D):
    window_ps: list[float] | None = None
    reason: str | None = None
    loglog_slope: float | None = None
    msd_threshold_A2: float | None = None
    max_lag_ps: float | None = None
    hop_length_A: float | None = None
    hop_length_source: str | None = None
    fit_intercept_A2: float | None = None


class _Sigma(_Record):
    sigma_S_cm: float | None
    sigma_err_S_cm: float | None = None
    sigma_tracer_S_cm: float | None = None
    sigma_tracer_err_S_cm: float | None = None


class _Thermo(_Record):
    equilibrated: bool
    flags: list[str]
    first_step: int
    last_step: int
    frames: int
    target_T_K: float
    mean_T_K: float | None
    mean_T_err_K: float | None = None
    sigma_T_canonical_K: float | None = None
    T_drift_K: float | None = None
    T_drift_err_K: float | None = None
    mean_pe_eV_per_atom: float | None = None
    pe_drift_eV_per_atom: float | None = None
    pe_drift_err_eV_per_atom: float | None = None
    conserved: str
    conserved_drift_meV_per_atom: float | None = None
    conserved_drift_meV_per_atom_per_ns: float | None = None


class _Transport(_Record):
    status: Literal["result", "apparent", "not diffusive"]
    reasons: list[str]


class _Segregation(_Record):
    normal_axis: int
    gb_planes_A: list[float]
    distance_A: list[float]
    li_density_rel: list[float]
    li_per_zr: list[float | None] | None = None  # None: a window without Zr
    gibbs_excess_per_A2: float | None = None
    gibbs_excess_err_per_A2: float | None = None


class _Run(_Record):
    name: str
    system: str
    temperature_K: float
    n_atoms: int | None = None
    composition: dict[str, int] | None = None
    duration_ps: float | None = None
    n_frames: int | None = None
    thermo: _Thermo
    msd: dict[str, list[float]] | None = None
    diffusion: dict[str, _TracerD]
    charge_diffusion: _D | None = None
    conductivity: _Sigma | None = None
    haven_ratio: float | None = None
    haven_ratio_err: float | None = None
    transport: _Transport
    jumps: dict | None = None
    segregation: _Segregation | None = None
    li_density_file: str | None = None


class _Arrhenius(_Record):
    Ea_eV: float | None
    Ea_err_eV: float | None = None
    D0_cm2_s: float | None = None
    cov_Ea_lnD0: list[list[float]] | None = None
    temperatures_K: list[float]
    T_range_K: list[float] | None = None
    D_cm2_s: list[float]
    D_err_cm2_s: list[float | None] = []
    runs: list[str] = []
    excluded: dict[str, str] = {}
    reason: str | None = None
    D_300K_cm2_s: float | None = None
    D_300K_err_cm2_s: float | None = None
    sigma_300K_tracer_S_cm: float | None = None
    sigma_300K_tracer_err_S_cm: float | None = None


class _Analysis(_Record):
    hayabusa_version: str | None = None
    runs: list[_Run]
    arrhenius: dict[str, _Arrhenius] = {}


# --------------------------------------------------------------------- literature.json schema
class _LitRow(BaseModel):
    quantity: str
    value: str
    conditions: str
    source: str


class _LitPoint(BaseModel):
    label: str
    temperature_K: float
    D_cm2_s: float
    source: str


class _LitValue(BaseModel):
    value: float
    err: float | None = None
    source: str


class _LitRange(BaseModel):
    value: tuple[float, float]
    source: str


class _LitComparison(BaseModel):
    Ea_eV: _LitValue
    D_600K_cm2_s: _LitValue
    D_300K_cm2_s: _LitValue
    sigma_RT_max_S_cm: _LitValue
    gb_slowdown: _LitRange


class _Literature(BaseModel):
    about: str
    table: list[_LitRow]
    arrhenius_points: list[_LitPoint]
    comparison: _LitComparison


def _read_json(path: Path) -> object:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{path}: cannot read JSON ({exc})") from None


def _validated(model, path: Path, data):
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(x) for x in err["loc"]) or "top level"
        raise InputError(f"{path}: {where}: {err['msg']}") from None


def load_analysis(run_dir) -> _Analysis:
    """Validated ``RUN_DIR/analysis.json``; InputError names the file and the bad key."""
    path = Path(run_dir) / ANALYSIS_NAME
    if not path.is_file():
        raise InputError(f"{path}: not found (run `hayabusa analyze` on the run directory "
                         f"first)")
    return _validated(_Analysis, path, _read_json(path))


def load_literature(path=None) -> _Literature:
    """Validated literature values (default: hayabusa/data/literature.json)."""
    path = Path(path) if path is not None else \
        Path(str(resources.files("hayabusa") / "data" / "literature.json"))
    return _validated(_Literature, path, _read_json(path))


# ----------------------------------------------------------------------------- helpers
def _num(x, digits: int = 3) -> str:
    return "–" if x is None else f"{x:.{digits}g}"


def _pm(x, err, digits: int = 3) -> str:
    return _num(x, digits) if err is None else f"{_num(x, digits)} ± {_num(err, 2)}"


def _table(header: list[str], rows: list[list[str]], cls: str = "") -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r) + "</tr>"
                   for r in rows)
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _img(path: Path, alt: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def _note(text: str) -> str:
    return f'<p class="note">{html.escape(text)}</p>'


def _list(items) -> str:
    return '<ul class="reasons">' + "".join(f"<li>{html.escape(x)}</li>" for x in items) + \
        "</ul>"


def _result_d(run: _Run) -> tuple[float, float | None] | None:
    """(D, error) of the run's Li tracer D when it is a result (see the module), else None."""
    d = run.diffusion.get("Li")
    if run.transport.status != "result" or d is None or d.D_cm2_s is None:
        return None
    return d.D_cm2_s, d.D_err_cm2_s


def _transport_cell(run: _Run, value, err) -> str:
    """A transport number as the tables show it (``analysis.run.transport_text``: an apparent
    one as "apparent x ± e")."""
    return transport_text(run.transport.status, value, err, apparent="apparent {}")


def _read_structure(path: Path) -> ase.Atoms:
    try:
        return ase.io.read(path)
    except Exception as exc:  # ASE raises many types for unreadable files
        raise InputError(f"{path}: cannot read the structure ({exc})") from None


def _read_li_trajectory(path: Path, max_frames: int):
    """Frame-0 atoms, Li positions [F, N_Li, 3] (Å, every stride-th frame, ≤ max_frames) and
    their times (ps) from an H5MD file of ``H5MDWriter`` (system 0). Reads only the positions
    it needs: ``read_h5md`` would load velocities and forces of every frame too."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            part = f["particles/system_0"]
            n = part["position/step"].shape[0]
            if n == 0:
                raise InputError(f"{path}: the trajectory holds no frames")
            stride = -(-n // max_frames)
            pos = part["position/value"][:n:stride]
            time_fs = part["position/time"][:n:stride]
            numbers = part["species"][()]
            cell = part["box/edges/value"][0]
            boundary = [b.decode() if isinstance(b, bytes) else str(b)
                        for b in part["box"].attrs["boundary"]]
    except (OSError, KeyError) as exc:
        raise InputError(f"{path}: cannot read the H5MD trajectory ({exc})") from None
    atoms = ase.Atoms(numbers=numbers, positions=pos[0], cell=cell,
                      pbc=[b == "periodic" for b in boundary])
    atoms.wrap()
    return atoms, pos[:, numbers == 3], time_fs / 1000.0


# ----------------------------------------------------------------------------- sections
CSS = """
body{font-family:system-ui,sans-serif;max-width:1150px;margin:1em auto;padding:0 1em;
color:#222} h1{font-size:1.6em} h2{border-bottom:1px solid #ccc;margin-top:1.6em}
table{border-collapse:collapse;margin:.6em 0;font-size:.9em} th,td{border:1px solid #ccc;
padding:.25em .5em;text-align:right} th{background:#f3f3f3} td:first-child{text-align:left}
table.literature td,table.comparison td{text-align:left}
.note{color:#555;font-style:italic} img{max-width:100%;margin:.3em}
.grid{display:flex;flex-wrap:wrap;gap:.5em} .grid img{max-width:48%}
"""


class _Report:
    def __init__(self, run_dir: Path, analysis: _Analysis):
        self.dir = run_dir
        self.a = analysis
        self.plots = run_dir / PLOTS_DIR
        self.lit = load_literature()
        self.run_json = {r.name: self._run_json(r.name) for r in analysis.runs}

    def _run_json(self, name: str) -> dict:
        path = self.dir / name / RUN_JSON_NAME
        if not path.is_file():
            return {}
        data = _read_json(path)
        if not isinstance(data, dict):
            raise InputError(f"{path}: expected a JSON object")
        return data

    def _png(self, name: str) -> Path:
        return self.plots / name

    # -- structure
    def structure(self) -> str:
        rows, pictures, missing = [], [], []
        seen = set()
        for r in self.a.runs:
            if r.system in seen:
                continue
            path = self.dir / r.name / START_NAME
            if not path.is_file():
                missing.append(str(path.relative_to(self.dir)))
                continue
            seen.add(r.system)
            atoms = _read_structure(path)
            lengths_angles = atoms.cell.cellpar()
            volume = atoms.get_volume()
            density = atoms.get_masses().sum() / volume * 1.66053906660  # amu/Å³ → g/cm³
            rows.append([r.system, atoms.get_chemical_formula(), len(atoms)]
                        + [f"{x:.3f}" for x in lengths_angles[:3]]
                        + [f"{x:.2f}" for x in lengths_angles[3:]]
                        + [f"{volume:.1f}", f"{density:.3f}"])
            png = self._png(f"structure-{r.system}.png")
            plots.plot_structure(atoms, png, title=f"{r.system}: {atoms.get_chemical_formula()}")
            pictures.append(_img(png, f"structure of {r.system}"))
        out = ""
        if rows:
            out += _table(["system", "formula", "atoms", "a (Å)", "b (Å)", "c (Å)", "α (°)",
                           "β (°)", "γ (°)", "V (Å³)", "ρ (g/cm³)"], rows)
            out += f'<div class="grid">{"".join(pictures)}</div>'
        if missing:
            out += _note(f"No starting structure found: {', '.join(missing)}.")
        return out

    # -- model accuracy
    def model(self) -> str:
        path = self.dir / METRICS_NAME
        out = ""
        if path.is_file():
            metrics = _read_json(path)
            if not isinstance(metrics, dict):
                raise InputError(f"{path}: expected a JSON object")
            rows = [[METRIC_NAMES.get(key, key), _num(value["mae"]), _num(value.get("rmse"))]
                    for key, value in metrics.items() if isinstance(value, dict)
                    and "mae" in value]
            if not rows:
                raise InputError(f"{path}: expected entries like "
                                 f"{{'forces_meV_per_A': {{'mae': …, 'rmse': …}}}}")
            out += _table(["test metric", "MAE", "RMSE"], rows)
            labels = metrics.get("labels")
            out += _note(f"Labels: {labels}" if labels else
                         "The metrics file does not say what the labels are.")
        else:
            out += _note(f"No {METRICS_NAME} in the run directory: the model's accuracy was "
                         f"not recorded.")
        parity = self.dir / PARITY_NAME
        out += _img(parity, "parity plot") if parity.is_file() else _note(
            f"No {PARITY_NAME} in the run directory.")
        return out

    # -- thermo
    def thermo(self) -> str:
        rows = []
        for r in self.a.runs:
            t = r.thermo
            rows.append([r.name, f"{t.first_step}–{t.last_step}", t.frames, _num(t.target_T_K),
                         _pm(t.mean_T_K, t.mean_T_err_K, 4), _num(t.sigma_T_canonical_K),
                         _pm(t.T_drift_K, t.T_drift_err_K),
                         _num(t.mean_pe_eV_per_atom, 6),
                         _pm(None if t.pe_drift_eV_per_atom is None else
                             1e3 * t.pe_drift_eV_per_atom,
                             None if t.pe_drift_err_eV_per_atom is None else
                             1e3 * t.pe_drift_err_eV_per_atom),
                         t.conserved, _num(t.conserved_drift_meV_per_atom),
                         _num(t.conserved_drift_meV_per_atom_per_ns),
                         "yes" if t.equilibrated else "no"])
        out = _table(["run", "steps", "frames", "T target (K)", "⟨T⟩ (K)", "σ_T canonical (K)",
                      "T drift (K)", "⟨PotEng⟩ (eV/atom)", "PotEng drift (meV/atom)",
                      "conserved", "drift (meV/atom)", "drift (meV/atom/ns)", "equilibrated"],
                     rows, "thermo")
        out += _note("Production frames of traj.h5. ⟨T⟩ ± its block-averaging error; σ_T = "
                     "T·√(2/N_f) (N_f = 3N − 3) is the canonical fluctuation of the kinetic "
                     "temperature; drifts: change over the run of a straight line through the "
                     "block means, ± its error. Conserved-energy drift: least-squares slope "
                     "times the span (the thermostat energy is included only where the file "
                     "holds conserved_energy; total_energy is not conserved under a "
                     "thermostat).")
        flagged = [(r.name, f) for r in self.a.runs for f in r.thermo.flags]
        if flagged:
            out += "<p>Not equilibrated (these runs give no results):</p>" + _list(
                f"{name}: {flag}" for name, flag in flagged)
        return out

    # -- transport
    def transport(self) -> str:
        rows = []
        for r in self.a.runs:
            li = r.diffusion.get("Li")
            cd, sig = r.charge_diffusion, r.conductivity
            rate = r.jumps.get("rate_per_ps") if r.jumps else None
            window = "–" if li is None else (
                f"none (needs MSD ≥ {_num(li.msd_threshold_A2)} Å²)" if li.window_ps is None
                else f"{_num(li.window_ps[0])}–{_num(li.window_ps[1])} ps, slope "
                     f"{_num(li.loglog_slope, 2)}, MSD ≥ {_num(li.msd_threshold_A2)} Å²")
            rows.append([r.name, _num(r.temperature_K), _num(r.duration_ps), r.transport.status,
                         window,
                         _transport_cell(r, li.D_cm2_s, li.D_err_cm2_s) if li else "–",
                         _transport_cell(r, cd.D_cm2_s, cd.D_err_cm2_s) if cd else "–",
                         _transport_cell(r, sig.sigma_S_cm, sig.sigma_err_S_cm) if sig
                         else "–",
                         _transport_cell(r, sig.sigma_tracer_S_cm, sig.sigma_tracer_err_S_cm)
                         if sig else "–",
                         _transport_cell(r, r.haven_ratio, r.haven_ratio_err), _num(rate)])
        out = _table(["run", "T (K)", "duration (ps)", "status", "diffusive window",
                      "D Li tracer (cm²/s)", "D charge (cm²/s)", "σ (S/cm)",
                      "σ tracer (S/cm)", "Haven ratio", "Li jumps (1/ps)"], rows, "transport")
        hops = sorted({f"{r.name}: {_num(li.hop_length_A)} Å, {li.hop_length_source}"
                       for r in self.a.runs if (li := r.diffusion.get("Li")) is not None})
        out += _note(
            "D only from a diffusive window: lags where the MSD's local log–log slope stays "
            "within 0.85–1.15 and the MSD exceeds a few squared Li hop lengths (" +
            "; ".join(hops) + "). σ from the charge (summed-displacement) MSD, σ tracer "
            "from the tracer D (Nernst–Einstein, Haven ratio 1). \"apparent\": the run is "
            "not equilibrated, so its numbers are not results; \"none\": no diffusive "
            "window.")
        reasons = [f"{r.name}: {why}" for r in self.a.runs for why in r.transport.reasons]
        if reasons:
            out += "<p>Runs without results and why:</p>" + _list(reasons)
        out += self._arrhenius_table()
        out += "<h3>Next to literature values</h3>" + self._comparison()
        out += _table(["quantity", "literature value", "conditions", "source"],
                      [[x.quantity, x.value, x.conditions, x.source] for x in self.lit.table],
                      "literature")
        out += self._msd_and_arrhenius_plots()
        return out

    def _fits(self) -> dict[str, _Arrhenius]:
        return {k: f for k, f in self.a.arrhenius.items() if f.Ea_eV is not None}

    def _arrhenius_table(self) -> str:
        rows = [[system, _pm(f.Ea_eV, f.Ea_err_eV), _num(f.D0_cm2_s),
                 f"{_num(f.T_range_K[0])}–{_num(f.T_range_K[1])}", ", ".join(f.runs),
                 _pm(f.D_300K_cm2_s, f.D_300K_err_cm2_s)]
                for system, f in self._fits().items()]
        out = _table(["system", "Ea (eV)", "D0 (cm²/s)", "T range fitted (K)", "runs",
                      "D(300 K) from the fit (cm²/s)"], rows, "arrhenius") if rows else ""
        missing = [f"{system}: {f.reason}" + (
            " (excluded: " + "; ".join(f"{k}: {v}" for k, v in f.excluded.items()) + ")"
            if f.excluded else "")
            for system, f in self.a.arrhenius.items() if f.Ea_eV is None]
        if missing:
            out += "<p>No Arrhenius fit:</p>" + _list(missing)
        if not self.a.arrhenius:
            out += _note("No Arrhenius fit: no system in the analysis.")
        return out

    def _comparison(self) -> str:
        lit = self.lit.comparison
        rows = []
        for system, f in self._fits().items():
            lo, hi = f.T_range_K

            def where(t, lo=lo, hi=hi):
                return "interpolated" if lo <= t <= hi else "extrapolated"

            rows.append([f"Ea, {system} ({_num(lo)}–{_num(hi)} K)", _pm(f.Ea_eV, f.Ea_err_eV),
                         _pm(lit.Ea_eV.value, lit.Ea_eV.err), lit.Ea_eV.source])
            cov = None if f.cov_Ea_lnD0 is None else np.array(f.cov_Ea_lnD0)
            fit = ArrheniusFit(f.Ea_eV, f.D0_cm2_s, cov)
            rows.append([f"D(600 K), {system} ({where(600.0)} from the fit)",
                         _pm(float(fit.diffusion(600.0)), None if cov is None else
                             float(fit.diffusion_err(600.0))),
                         _num(lit.D_600K_cm2_s.value), lit.D_600K_cm2_s.source])
            rows.append([f"D(300 K), {system} ({where(300.0)} from the fit)",
                         _pm(f.D_300K_cm2_s, f.D_300K_err_cm2_s),
                         _num(lit.D_300K_cm2_s.value), lit.D_300K_cm2_s.source])
            rows.append([f"σ(300 K), {system} (Nernst–Einstein from the fitted tracer D, "
                         f"Haven ratio 1)", _pm(f.sigma_300K_tracer_S_cm,
                                                f.sigma_300K_tracer_err_S_cm),
                         f"≤ {_num(lit.sigma_RT_max_S_cm.value)}",
                         lit.sigma_RT_max_S_cm.source])
        bulk = {r.temperature_K: r for r in self.a.runs if r.system == "bulk"}
        low, high = lit.gb_slowdown.value
        for r in self.a.runs:
            b = bulk.get(r.temperature_K)
            d_gb, d_bulk = _result_d(r), _result_d(b) if b is not None else None
            if r.segregation is None or d_gb is None or d_bulk is None:
                continue
            ratio = d_bulk[0] / d_gb[0]
            err = None if d_bulk[1] is None or d_gb[1] is None else \
                ratio * np.hypot(d_bulk[1] / d_bulk[0], d_gb[1] / d_gb[0])
            rows.append([f"D bulk / D {r.system} at {_num(r.temperature_K)} K (whole cell)",
                         _pm(ratio, err), f"{low:g}–{high:g} (GB region)",
                         lit.gb_slowdown.source])
        if not rows:
            return _note("Nothing to compare: no Arrhenius fit and no grain-boundary run with "
                         "a bulk run at the same temperature, both with results.")
        return _table(["quantity", "this study", "literature", "source"], rows, "comparison")

    def _msd_and_arrhenius_plots(self) -> str:
        images = []
        for r in self.a.runs:
            if not r.msd or "time_ps" not in r.msd:
                continue
            curves = {k: v for k, v in r.msd.items() if k != "time_ps"}
            li = r.diffusion.get("Li")
            fit = None
            if li is not None and li.window_ps is not None and li.D_cm2_s is not None:
                label = "fit" if r.transport.status == "result" else \
                    "apparent (run not equilibrated)"
                fit = {"D_cm2_s": li.D_cm2_s, "intercept_A2": li.fit_intercept_A2 or 0.0,
                       "window_ps": li.window_ps, "dim": 3, "label": f"Li {label}"}
            png = self._png(f"msd-{r.name}.png")
            plots.plot_msd(r.msd["time_ps"], curves, png, fit=fit,
                           threshold_A2=li.msd_threshold_A2 if li is not None else None,
                           max_lag_ps=li.max_lag_ps if li is not None else None,
                           title=f"{r.name}: MSD ({r.transport.status})")
            images.append(_img(png, f"MSD of {r.name}"))
        series = {}
        for system in dict.fromkeys(r.system for r in self.a.runs):
            runs = [r for r in self.a.runs if r.system == system and _result_d(r) is not None]
            if not runs:
                continue
            s = {"temperatures_K": [r.temperature_K for r in runs],
                 "D_cm2_s": [_result_d(r)[0] for r in runs]}
            errs = [_result_d(r)[1] for r in runs]
            if None not in errs:
                s["D_err_cm2_s"] = errs
            fit = self._fits().get(system)
            if fit is not None:
                s |= {"Ea_eV": fit.Ea_eV, "Ea_err_eV": fit.Ea_err_eV, "D0_cm2_s": fit.D0_cm2_s}
            series[f"{system} (Li tracer)"] = s
        if series:
            png = self._png("arrhenius.png")
            plots.plot_arrhenius(series, png, title="Li tracer diffusion (results only)",
                                 literature=[(p.label, p.temperature_K, p.D_cm2_s)
                                             for p in self.lit.arrhenius_points])
            images.append(_img(png, "Arrhenius plot"))
        return f'<div class="grid">{"".join(images)}</div>'

    # -- segregation
    def segregation(self) -> str:
        parts = []
        for r in self.a.runs:
            s = r.segregation
            if s is None:
                continue
            png = self._png(f"segregation-{r.name}.png")
            plots.plot_segregation(s.distance_A, s.li_density_rel, png, li_per_zr=s.li_per_zr,
                                   title=f"{r.name}: Li near the grain boundaries")
            excess = _pm(s.gibbs_excess_per_A2, s.gibbs_excess_err_per_A2)
            parts.append(
                f"<h3>{html.escape(r.name)}</h3>"
                + _table(["GB normal axis", "GB planes (Å)", "Gibbs excess Γ_Li (1/Å²)"],
                         [["xyz"[s.normal_axis],
                           ", ".join(f"{z:.2f}" for z in s.gb_planes_A), excess]],
                         "segregation")
                + _img(png, f"segregation profile of {r.name}"))
        if not parts:
            return _note("No grain-boundary run in this study: no segregation profile.")
        return "".join(parts) + _note(
            "Literature: Yu & Siegel (Chem. Mater. 2017) find the GB planes Li-enriched; "
            "Γ_Li > 0 means Li excess at the grain boundaries.")

    # -- 3D view
    def view(self):
        """(HTML section, figure or None)."""
        runs = sorted(self.a.runs, key=lambda r: (r.segregation is not None, r.temperature_K))
        candidates = [r for r in reversed(runs) if (self.dir / r.name / TRAJECTORY_NAME).is_file()]
        if not candidates:
            return _note(f"No {TRAJECTORY_NAME} in any run directory: no 3D view."), None
        r = candidates[0]
        atoms, li, time_ps = _read_li_trajectory(self.dir / r.name / TRAJECTORY_NAME,
                                                 view3d.MAX_PATH_FRAMES)
        density, missing = None, []
        if r.li_density_file:
            npz = self.dir / r.li_density_file
            if npz.is_file():
                try:
                    with np.load(npz) as d:
                        density = (d["density"], d["cell"])
                except (OSError, KeyError, ValueError) as exc:
                    raise InputError(f"{npz}: cannot read the Li density grid ({exc})") \
                        from None
            else:
                missing.append(f"the Li density grid {r.li_density_file}")
        planes = None
        if r.segregation is not None:
            planes = (r.segregation.normal_axis, r.segregation.gb_planes_A)
        elif "gb_planes_A" in self.run_json[r.name]:
            rj = self.run_json[r.name]
            planes = (int(rj.get("gb_normal_axis", 2)), rj["gb_planes_A"])
        li = li if li.shape[1] else None
        fig = view3d.view_figure(atoms, li, density, planes, time_ps,
                                 title=f"{r.name}: {atoms.get_chemical_formula()}")
        text = (f"Run {r.name} (first frame; Li paths over {len(time_ps)} frames, subsampled "
                f"to ≤ {view3d.MAX_PATH_POINTS} points). Drag to rotate; click a legend entry "
                f"to hide it. The same view fills the window in {VIEW_NAME}.")
        if missing:
            text += f" Missing: {', '.join(missing)}."
        return _note(text), fig

    def html(self) -> tuple[str, object]:
        view_text, fig = self.view()
        view_html = fig.to_html(full_html=False, include_plotlyjs=True, default_height="750px",
                                config={"displaylogo": False}) if fig is not None else ""
        sections = [("Structure", self.structure()), ("Model accuracy", self.model()),
                    ("Thermodynamics", self.thermo()),
                    ("Li transport: D, σ, Ea", self.transport()),
                    ("Li segregation at grain boundaries", self.segregation()),
                    ("3D view", view_text + view_html)]
        version = html.escape(self.a.hayabusa_version or "unknown")
        body = "".join(f"<h2>{html.escape(t)}</h2>\n{s}\n" for t, s in sections)
        page = (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
                f"<title>hayabusa report: {html.escape(self.dir.name)}</title>"
                f"<style>{CSS}</style></head><body>"
                f"<h1>hayabusa report: {html.escape(self.dir.name)}</h1>"
                f"<p>{len(self.a.runs)} run(s); analysis by hayabusa {version}.</p>"
                f"{body}</body></html>\n")
        return page, fig


def write_report(run_dir, overwrite: bool = False) -> Path:
    """Write ``RUN_DIR/report.html`` (+ ``view.html``, ``plots/*.png``); returns its path."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise InputError(f"{run_dir}: not a directory")
    analysis = load_analysis(run_dir)
    out = run_dir / REPORT_NAME
    if out.exists() and not overwrite:
        raise InputError(f"{out} exists; pass --overwrite to replace it (with {VIEW_NAME} and "
                         f"{PLOTS_DIR}/)")
    page, fig = _Report(run_dir, analysis).html()
    if fig is not None:
        view3d.write_view(fig, run_dir / VIEW_NAME)
    return write_atomic(out, lambda tmp: tmp.write_text(page, encoding="utf-8"))


# -------------------------------------------------------------------------------- CLI
def run_report(args) -> int:
    path = write_report(args.run_dir, overwrite=args.overwrite)
    view = path.with_name(VIEW_NAME)
    sizes = f"{path.stat().st_size / 1e6:.1f} MB"
    if view.exists():
        sizes += f"; {VIEW_NAME} {view.stat().st_size / 1e6:.1f} MB"
    print(f"hayabusa report: wrote {path.name} ({sizes}) and {PLOTS_DIR}/ in {path.parent}")
    print(path)
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("report", help="write an offline HTML report of a study run directory",
                       description="Write RUN_DIR/report.html (one offline file: structure, "
                                   "model accuracy, thermo, D/σ/Ea with literature values, "
                                   "segregation, 3D view), view.html and plots/*.png.")
    p.add_argument("run_dir", metavar="RUN_DIR", help="study run directory with analysis.json")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an earlier report, view and plots")
    p.set_defaults(func=run_report)
