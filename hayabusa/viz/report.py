"""``hayabusa report RUN_DIR``: one offline HTML report of an LLZO study run directory.

Reads ``analysis.json`` (required), ``model_metrics.json`` and ``parity.png`` (optional) and,
per run ``<system>-<T>K/``, ``log.hayabusa``, ``run.json``, ``start.extxyz``, ``traj.h5`` and
the Li density grid (all optional). Writes ``report.html`` (PNGs embedded as base64, the 3D
view inlined with plotly.js, so the single file works offline), ``view.html`` (the 3D view
alone) and ``plots/*.png``. Missing optional pieces are stated in the report.
"""

from __future__ import annotations

import base64
import html
import json
import re
from pathlib import Path

import ase
import ase.io
import numpy as np
from ase.units import kB  # eV/K
from pydantic import BaseModel, ConfigDict, ValidationError

from ..errors import InputError
from ..files import write_atomic
from . import plots, view3d

REPORT_NAME = "report.html"
VIEW_NAME = "view.html"
PLOTS_DIR = "plots"
ANALYSIS_NAME = "analysis.json"
METRICS_NAME = "model_metrics.json"
PARITY_NAME = "parity.png"
LOG_NAME = "log.hayabusa"
RUN_JSON_NAME = "run.json"
START_NAME = "start.extxyz"
TRAJ_NAME = "traj.h5"
ELEMENTARY_CHARGE_C = 1.602176634e-19
BOLTZMANN_J_PER_K = 1.380649e-23

# Literature values shown next to the results (sources as read in shared/reference, §1–2).
HE_2018 = "He et al., npj Comput. Mater. 2018 (AIMD, PBE)"
LITERATURE = (
    ("Li tracer D, 600 K", "1.24e-06 cm²/s", "AIMD, cubic LLZO", HE_2018),
    ("Ea of Li diffusion", "0.248 ± 0.012 eV",
     "Arrhenius fit of the 9 AIMD D(T) points, 600–1500 K", HE_2018),
    ("Li D, 300 K", "1.33e-08 cm²/s", "experiment, from conductivity spectra",
     "Ahmad, RSC Adv. 2015"),
    ("σ, room temperature", "up to 4e-04 S/cm", "experiment, total σ of Li garnets",
     "Cussen, review"),
    ("Li at grain boundaries", "GB planes Li-enriched", "Monte Carlo, Σ3/Σ5 tilt GBs",
     "Yu & Siegel, Chem. Mater. 29, 9639 (2017)"),
    ("GB vs bulk Li transport", "2–3× slower at the GB", "MD at processing temperatures",
     "Yu & Siegel, Chem. Mater. 29, 9639 (2017)"),
)
LITERATURE_POINTS = (  # (label, T in K, D in cm²/s) for the Arrhenius plot
    ("He 2018 AIMD, 600 K", 600.0, 1.24e-6),
    ("He 2018 AIMD, 1500 K", 1500.0, 1.83e-5),
    ("Ahmad 2015 exp., 300 K", 300.0, 1.33e-8),
)
EA_LIT_EV, EA_LIT_ERR_EV = 0.248, 0.012
D600_LIT, D300_EXP, SIGMA_RT_LIT = 1.24e-6, 1.33e-8, 4e-4
GB_SLOWDOWN_LIT = (2.0, 3.0)
METRIC_NAMES = {"energy_meV_per_atom": "energy (meV/atom)", "forces_meV_per_A": "forces (meV/Å)",
                "stress_GPa": "stress (GPa)"}


# --------------------------------------------------------------------- analysis.json schema
class _Model(BaseModel):
    model_config = ConfigDict(extra="allow")


class _D(_Model):
    D_cm2_s: float | None
    D_err_cm2_s: float | None = None


class _Sigma(_Model):
    sigma_S_cm: float | None
    sigma_err_S_cm: float | None = None
    sigma_tracer_S_cm: float | None = None


class _Segregation(_Model):
    normal_axis: int
    gb_planes_A: list[float]
    distance_A: list[float]
    li_density_rel: list[float]
    li_per_zr: list[float | None] | None = None  # None: a window without Zr
    gibbs_excess_per_A2: float | None = None
    gibbs_excess_err_per_A2: float | None = None


class _Run(_Model):
    name: str
    system: str
    temperature_K: float
    n_atoms: int | None = None
    composition: dict[str, int] | None = None
    duration_ps: float | None = None
    n_frames: int | None = None
    msd: dict[str, list[float]] | None = None
    diffusion: dict[str, _D]
    charge_diffusion: _D | None = None
    conductivity: _Sigma | None = None
    haven_ratio: float | None = None
    jumps: dict | None = None
    segregation: _Segregation | None = None
    li_density_file: str | None = None


class _Arrhenius(_Model):
    Ea_eV: float
    Ea_err_eV: float | None = None
    D0_cm2_s: float
    temperatures_K: list[float]
    D_cm2_s: list[float]
    D_300K_cm2_s: float | None = None


class _Analysis(_Model):
    hayabusa_version: str | None = None
    runs: list[_Run]
    arrhenius: dict[str, _Arrhenius] = {}


def _read_json(path: Path) -> object:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{path}: cannot read JSON ({exc})") from None


def load_analysis(run_dir) -> _Analysis:
    """Validated ``RUN_DIR/analysis.json``; InputError names the file and the bad key."""
    path = Path(run_dir) / ANALYSIS_NAME
    if not path.is_file():
        raise InputError(f"{path}: not found (run `hayabusa analyze` on the run directory "
                         f"first)")
    try:
        return _Analysis.model_validate(_read_json(path))
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(x) for x in err["loc"]) or "top level"
        raise InputError(f"{path}: {where}: {err['msg']}") from None


# ---------------------------------------------------------------------------- thermo log
def read_thermo_log(path) -> dict:
    """Thermo rows of a ``hayabusa.md.ThermoLog`` file (appended restarts included; a step
    logged twice keeps its last row). Returns ``columns`` {name: [rows] float array} (``Step``,
    optional ``Sys``, ``Temp``, ``PotEng``, …), ``n_atoms`` (from the ``# units`` header, or
    None) and ``ns_per_day`` (last ``Performance:`` line, or None)."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read the thermo log ({exc})") from None
    cols: list[str] | None = None
    rows: dict[tuple, list[float]] = {}
    n_atoms = ns_per_day = None
    for line in lines:
        tokens = line.split()
        if not tokens:
            continue
        if tokens[0] == "#":
            match = re.search(r"(\d+) atoms", line)
            n_atoms = int(match.group(1)) if match else n_atoms
        elif tokens[0] == "Step":
            cols = tokens
        elif tokens[:1] == ["Performance:"] and tokens[2:3] == ["ns/day,"]:
            ns_per_day = float(tokens[1])
        elif cols is not None and tokens[0].isdigit() and len(tokens) == len(cols):
            values = [float(x) for x in tokens]
            key = tuple(values[: 2 if "Sys" in cols else 1])
            rows[key] = values
    if cols is None or not rows:
        raise InputError(f"{path}: no thermo rows (expected a 'Step Temp PotEng …' header "
                         f"followed by rows)")
    table = np.array([rows[k] for k in sorted(rows)])
    return {"columns": {c: table[:, i] for i, c in enumerate(cols)}, "n_atoms": n_atoms,
            "ns_per_day": ns_per_day}


def thermo_summary(log: dict, timestep_fs: float | None = None, system: int = 0) -> dict:
    """Mean temperature (K), mean potential energy per atom (eV/atom) and the drift of the
    conserved energy (``Econs``, or ``TotEng`` for NVE): the least-squares slope times the
    logged span, per atom, in meV/atom, and per ns when ``timestep_fs`` is known."""
    cols = log["columns"]
    keep = cols["Sys"] == system if "Sys" in cols else np.ones(len(cols["Step"]), bool)
    step = cols["Step"][keep]
    energy = cols["Econs" if "Econs" in cols else "TotEng"][keep]
    n = log["n_atoms"]
    out = {"rows": int(keep.sum()), "first_step": int(step[0]), "last_step": int(step[-1]),
           "mean_T_K": float(cols["Temp"][keep].mean()),
           "mean_pe_eV_per_atom": float(cols["PotEng"][keep].mean()) / n if n else None,
           "drift_meV_per_atom": None, "drift_meV_per_atom_per_ns": None,
           "conserved": "Econs" if "Econs" in cols else "TotEng",
           "ns_per_day": log["ns_per_day"]}
    if len(step) >= 2 and n:
        slope = np.polyfit(step, energy, 1)[0]  # eV per step
        out["drift_meV_per_atom"] = 1e3 * slope * (step[-1] - step[0]) / n
        if timestep_fs:
            out["drift_meV_per_atom_per_ns"] = 1e3 * slope / timestep_fs * 1e6 / n
    return out


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


def _sigma_nernst_einstein(n_li: int, volume_A3: float, d_cm2_s: float, t_k: float) -> float:
    """Nernst–Einstein σ = n e² D / (kB T) in S/cm (Haven ratio 1)."""
    n_per_cm3 = n_li / (volume_A3 * 1e-24)
    return n_per_cm3 * ELEMENTARY_CHARGE_C**2 * d_cm2_s / (BOLTZMANN_J_PER_K * t_k)


def _li_d(run: _Run) -> float | None:
    """The run's positive Li tracer D (cm²/s), or None."""
    d = run.diffusion.get("Li")
    return d.D_cm2_s if d is not None and d.D_cm2_s is not None and d.D_cm2_s > 0 else None


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
        rows, missing = [], []
        for r in self.a.runs:
            path = self.dir / r.name / LOG_NAME
            if not path.is_file():
                missing.append(r.name)
                continue
            s = thermo_summary(read_thermo_log(path), self.run_json[r.name].get("timestep_fs"))
            rows.append([r.name, f"{s['first_step']}–{s['last_step']}", s["rows"],
                         _num(r.temperature_K), _num(s["mean_T_K"], 4),
                         _num(s["mean_pe_eV_per_atom"], 6), s["conserved"],
                         _num(s["drift_meV_per_atom"]), _num(s["drift_meV_per_atom_per_ns"]),
                         _num(s["ns_per_day"])])
        out = ""
        if rows:
            out += _table(["run", "steps", "rows", "T target (K)", "⟨T⟩ (K)",
                           "⟨PotEng⟩ (eV/atom)", "conserved", "drift (meV/atom)",
                           "drift (meV/atom/ns)", "ns/day"], rows)
            out += _note("Drift: least-squares slope of the conserved energy (thermostat "
                         "energy included; total energy for NVE) times the logged span.")
        if missing:
            out += _note(f"No {LOG_NAME} for: {', '.join(missing)}.")
        return out

    # -- transport
    def transport(self) -> str:
        rows = []
        for r in self.a.runs:
            li = r.diffusion.get("Li")
            cd, sig = r.charge_diffusion, r.conductivity
            rate = r.jumps.get("rate_per_ps") if r.jumps else None
            rows.append([r.name, _num(r.temperature_K), _num(r.duration_ps),
                         _pm(li.D_cm2_s, li.D_err_cm2_s) if li else "–",
                         _pm(cd.D_cm2_s, cd.D_err_cm2_s) if cd else "–",
                         _pm(sig.sigma_S_cm, sig.sigma_err_S_cm) if sig else "–",
                         _num(sig.sigma_tracer_S_cm) if sig else "–",
                         _num(r.haven_ratio), _num(rate)])
        out = _table(["run", "T (K)", "duration (ps)", "D Li tracer (cm²/s)",
                      "D charge (cm²/s)", "σ (S/cm)", "σ tracer (S/cm)", "Haven ratio",
                      "Li jumps (1/ps)"], rows, "transport")
        arr_rows = [[system, _pm(f.Ea_eV, f.Ea_err_eV), _num(f.D0_cm2_s),
                     ", ".join(_num(t) for t in f.temperatures_K), _num(f.D_300K_cm2_s)]
                    for system, f in self.a.arrhenius.items()]
        if arr_rows:
            out += _table(["system", "Ea (eV)", "D0 (cm²/s)", "T fitted (K)",
                           "D(300 K) extrapolated (cm²/s)"], arr_rows, "arrhenius")
        else:
            out += _note("No Arrhenius fit: no system was run at two or more temperatures.")
        out += "<h3>Next to literature values</h3>" + self._comparison()
        out += _table(["quantity", "literature value", "conditions", "source"],
                      [list(x) for x in LITERATURE], "literature")
        out += self._msd_and_arrhenius_plots()
        return out

    def _comparison(self) -> str:
        rows = []
        for system, f in self.a.arrhenius.items():
            rows.append([f"Ea, {system}", _pm(f.Ea_eV, f.Ea_err_eV),
                         f"{EA_LIT_EV} ± {EA_LIT_ERR_EV}", "He 2018 (AIMD fit)"])
            d600 = f.D0_cm2_s * np.exp(-f.Ea_eV / (kB * 600.0))
            rows.append([f"D(600 K), {system} (from the fit)", _num(d600), _num(D600_LIT),
                         "He 2018 (AIMD)"])
            d300 = f.D_300K_cm2_s
            if d300 is None:
                d300 = f.D0_cm2_s * np.exp(-f.Ea_eV / (kB * 300.0))
            rows.append([f"D(300 K), {system} (extrapolated)", _num(d300), _num(D300_EXP),
                         "Ahmad 2015 (experiment)"])
            run = next((r for r in self.a.runs if r.system == system and r.composition
                        and (self.dir / r.name / START_NAME).is_file()), None)
            if run is not None and run.composition.get("Li"):
                volume = _read_structure(self.dir / run.name / START_NAME).get_volume()
                sigma = _sigma_nernst_einstein(run.composition["Li"], volume, d300, 300.0)
                rows.append([f"σ(300 K), {system} (Nernst–Einstein from the extrapolated "
                             f"tracer D, Haven ratio 1)", _num(sigma), f"≤ {_num(SIGMA_RT_LIT)}",
                             "Cussen review (experiment)"])
        bulk = {r.temperature_K: r for r in self.a.runs if r.system == "bulk"}
        for r in self.a.runs:
            b = bulk.get(r.temperature_K)
            d_gb, d_bulk = _li_d(r), _li_d(b) if b is not None else None
            if r.segregation is None or d_gb is None or d_bulk is None:
                continue
            ratio = d_bulk / d_gb
            rows.append([f"D bulk / D {r.system} at {_num(r.temperature_K)} K (whole cell)",
                         _num(ratio), f"{GB_SLOWDOWN_LIT[0]:g}–{GB_SLOWDOWN_LIT[1]:g} (GB region)",
                         "Yu & Siegel 2017"])
        if not rows:
            return _note("Nothing to compare: no Arrhenius fit and no grain-boundary run with "
                         "a bulk run at the same temperature.")
        return _table(["quantity", "this study", "literature", "source"], rows, "comparison")

    def _msd_and_arrhenius_plots(self) -> str:
        images = []
        for r in self.a.runs:
            if not r.msd or "time_ps" not in r.msd:
                continue
            curves = {k: v for k, v in r.msd.items() if k != "time_ps"}
            png = self._png(f"msd-{r.name}.png")
            plots.plot_msd(r.msd["time_ps"], curves, png,
                           d_cm2_s={k: v.D_cm2_s for k, v in r.diffusion.items()
                                    if v.D_cm2_s is not None},
                           title=f"{r.name}: MSD")
            images.append(_img(png, f"MSD of {r.name}"))
        series = {}
        for system in dict.fromkeys(r.system for r in self.a.runs):
            runs = [r for r in self.a.runs if r.system == system and _li_d(r) is not None]
            if not runs:
                continue
            s = {"temperatures_K": [r.temperature_K for r in runs],
                 "D_cm2_s": [r.diffusion["Li"].D_cm2_s for r in runs]}
            errs = [r.diffusion["Li"].D_err_cm2_s for r in runs]
            if all(e is not None for e in errs):
                s["D_err_cm2_s"] = errs
            fit = self.a.arrhenius.get(system)
            if fit is not None:
                s |= {"Ea_eV": fit.Ea_eV, "D0_cm2_s": fit.D0_cm2_s}
            series[f"{system} (Li tracer)"] = s
        if series:
            png = self._png("arrhenius.png")
            plots.plot_arrhenius(series, png, literature=LITERATURE_POINTS,
                                 title="Li tracer diffusion")
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
        candidates = [r for r in reversed(runs) if (self.dir / r.name / TRAJ_NAME).is_file()]
        if not candidates:
            return _note(f"No {TRAJ_NAME} in any run directory: no 3D view."), None
        r = candidates[0]
        atoms, li, time_ps = _read_li_trajectory(self.dir / r.name / TRAJ_NAME,
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
