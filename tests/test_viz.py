"""hayabusa.viz: offline 3D HTML view (figure contents), PNG plots (plotted numbers, valid
images) and the study report (tables from analysis.json, thermo summary and flags, runs that
give no results, literature values from their data file, missing pieces, errors, CLI)."""

from __future__ import annotations

import base64
import html.parser
import io
import json
import re
from pathlib import Path

import ase.data.colors
import ase.io
import numpy as np
import plotly.offline
import pytest
from ase.build import bulk
from ase.units import kB
from PIL import Image

from hayabusa.cli import main
from hayabusa.errors import InputError
from hayabusa.md import CSVR, Simulation, ThermoLog, maxwell_boltzmann
from hayabusa.md.reporters import read_thermo_log
from hayabusa.md.trajectory import H5MDWriter
from hayabusa.potentials import LennardJones
from hayabusa.state import State
from hayabusa.viz import li_paths_view, plot_arrhenius, plot_msd, plot_segregation, write_report
from hayabusa.viz.report import load_analysis, load_literature
from hayabusa.viz.view3d import MAX_GRID, density_isosurface, subsample_paths, view_figure

RNG = np.random.default_rng(7)


# ------------------------------------------------------------------------------ helpers
def figure_json(text: str) -> tuple[list, dict]:
    """(traces, layout) of the first Plotly.newPlot call of an HTML page."""
    start = text.index("Plotly.newPlot(")
    start = text.index(",", start) + 1  # after the div id
    decoder = json.JSONDecoder()
    pos = len(text[start:]) - len(text[start:].lstrip()) + start
    data, end = decoder.raw_decode(text, pos)
    pos = text.index(",", end) + 1
    pos += len(text[pos:pos + 100]) - len(text[pos:pos + 100].lstrip())
    layout, _ = decoder.raw_decode(text, pos)
    return data, layout


def arr(value) -> np.ndarray:
    """A plotly JSON array: plain list or base64 typed array {"dtype", "bdata"}."""
    if isinstance(value, dict):
        return np.frombuffer(base64.b64decode(value["bdata"]), dtype=value["dtype"])
    return np.array([np.nan if v is None else v for v in value], dtype=float)


def assert_png_not_blank(path, min_colours=5):
    img = Image.open(path)
    assert img.format == "PNG"
    pixels = np.asarray(img.convert("RGB")).reshape(-1, 3)
    assert pixels.shape[0] >= 200 * 200
    assert pixels.std() > 10
    assert len(np.unique(pixels, axis=0)) >= min_colours


def llzo_like(repeat=2) -> ase.Atoms:
    """A small fcc cell labelled Li/La/Zr/O (not a garnet: only the species matter here)."""
    atoms = bulk("Cu", "fcc", a=3.6, cubic=True).repeat(repeat)
    n = len(atoms)
    head = [3] * (3 * n // 8) + [57] * (n // 8) + [40] * (n // 8)
    atoms.numbers = np.array(head + [8] * (n - len(head)))
    return atoms


# -------------------------------------------------------------------------- 3D view
def test_view_html_is_offline_and_holds_every_trace(tmp_path):
    atoms = llzo_like()
    n_li = int((atoms.numbers == 3).sum())
    frames = 40
    li = atoms.positions[atoms.numbers == 3] + np.cumsum(
        RNG.normal(0, 0.2, (frames, n_li, 3)), axis=0)
    time_ps = np.arange(frames) * 0.05
    density = RNG.random((10, 10, 10)), atoms.cell.array
    path = li_paths_view(atoms, li, density, (2, [1.8, 5.4]), path=tmp_path / "v.html",
                         time_ps=time_ps)
    text = path.read_text()
    assert not re.search(r"<script[^>]*src\s*=\s*[\"']?(https?:)?//", text, re.I)
    assert plotly.offline.get_plotlyjs() in text
    assert not (tmp_path / "v.html.tmp").exists()
    data, layout = figure_json(text)
    by_name = {t.get("name"): t for t in data}
    for z, symbol in [(3, "Li"), (57, "La"), (40, "Zr"), (8, "O")]:
        t = by_name[symbol]
        pos = atoms.positions[atoms.numbers == z]
        np.testing.assert_allclose(arr(t["x"]), pos[:, 0], atol=1e-5)
        np.testing.assert_allclose(arr(t["z"]), pos[:, 2], atol=1e-5)
    r, g, b = (round(255 * c) for c in ase.data.colors.jmol_colors[8])
    assert by_name["O"]["marker"]["color"] == f"rgb({r},{g},{b})"
    # cell: 12 edges, each two corners + a gap
    cell_x = arr(by_name["cell"]["x"])
    assert len(cell_x) == 36 and np.isnan(cell_x[2::3]).all()
    assert set(np.round(cell_x[~np.isnan(cell_x)], 6)) == {0.0, 7.2}
    # Li paths: all ions, all frames, NaN gap after each ion, coloured by time
    paths = by_name["Li paths"]
    x = arr(paths["x"]).reshape(n_li, frames + 1)
    assert np.isnan(x[:, -1]).all()
    np.testing.assert_allclose(x[:, :-1], li[:, :, 0].T, atol=1e-4)
    colour = arr(paths["line"]["color"]).reshape(n_li, frames + 1)
    np.testing.assert_allclose(colour[:, :-1], np.tile(time_ps, (n_li, 1)), atol=1e-6)
    assert paths["line"]["colorbar"]["title"]["text"] == "time (ps)"
    legend = [t for t in data if t.get("legendgroup") == "li-paths" and t is not paths]
    assert legend[0]["name"] == f"Li paths ({n_li} ions, {frames} frames)"
    # isosurface at 3 × the mean density, GB planes at the requested heights
    iso = next(t for t in data if t["type"] == "isosurface")
    assert iso["isomin"] == pytest.approx(3 * density[0].mean(), rel=1e-6) \
        or iso["isomin"] == pytest.approx(0.5 * density[0].max(), rel=1e-6)
    planes = [t for t in data if t["type"] == "mesh3d"]
    assert sorted(set(arr(p["z"])[0] for p in planes)) == pytest.approx([1.8, 5.4])
    assert layout["scene"]["aspectmode"] == "data"


def test_paths_are_subsampled_to_the_budget():
    li = np.zeros((2000, 300, 3))
    frames, ions = subsample_paths(li, max_points=100_000, max_frames=500)
    assert len(frames) == 500 and frames[0] == 0 and np.all(np.diff(frames) == 4)
    assert len(frames) * len(ions) <= 100_000 and len(ions) == 200
    assert ions[0] == 0 and ions[-1] == 299  # spread over all ions
    frames, ions = subsample_paths(np.zeros((30, 5, 3)))
    assert len(frames) == 30 and len(ions) == 5  # small inputs are kept whole


def test_view_figure_stays_within_path_budget():
    atoms = llzo_like()
    li = RNG.normal(size=(900, 150, 3))
    fig = view_figure(atoms, li, max_path_points=10_000, max_path_frames=100)
    paths = next(t for t in fig.data if t.name == "Li paths")
    assert len(paths.x) - np.isnan(paths.x).sum() <= 10_000


def test_isosurface_samples_the_periodic_density_in_a_triclinic_cell():
    """Voxel-centred grid values of f(u, v, w) = 2 + cos 2πu + sin 2πw, read back on the
    axis-aligned bounding grid: trilinear error O(h²), zero outside the cell."""
    cell = np.array([[10.0, 0, 0], [3.0, 9.0, 0], [1.0, 2.0, 8.0]])
    n = 96  # block-averaged to 48 per axis
    c = (np.arange(n) + 0.5) / n
    u, _, w = np.meshgrid(c, c, c, indexing="ij")
    grid = 2 + np.cos(2 * np.pi * u) + np.sin(2 * np.pi * w)
    iso = density_isosurface(grid, cell)
    pts = np.stack([iso.x, iso.y, iso.z], axis=1).astype(float)
    assert len(pts) == MAX_GRID**3
    frac = pts @ np.linalg.inv(cell)
    inside = np.all((frac > 1e-5) & (frac < 1 - 1e-5), axis=1)  # away from float32 rounding
    outside = np.any((frac < -1e-5) | (frac > 1 + 1e-5), axis=1)
    assert 0.3 < inside.mean() < 0.9 and inside.sum() + outside.sum() > 0.99 * len(pts)
    exact = 2 + np.cos(2 * np.pi * frac[:, 0]) + np.sin(2 * np.pi * frac[:, 2])
    np.testing.assert_allclose(np.asarray(iso.value)[inside], exact[inside], atol=0.02)
    assert np.all(np.asarray(iso.value)[outside] == 0)


@pytest.mark.parametrize("kwargs, match", [
    (dict(li_positions=np.zeros((4, 3))), r"li_positions: expected shape \[frames, n_Li, 3\]"),
    (dict(li_positions=np.full((2, 2, 3), np.nan)), "li_positions: NaN"),
    (dict(density=(np.zeros((3, 3, 3)), np.eye(3))), "density: expected finite, non-negat"),
    (dict(density=(np.ones((3, 3)), np.eye(3))), r"density: expected a grid \[nx, ny, nz\]"),
    (dict(gb_planes=(3, [1.0])), "gb_planes: normal axis must be 0, 1 or 2"),
    (dict(li_positions=np.zeros((4, 2, 3)), time_ps=np.zeros(3)), r"time_ps: expected shape"),
])
def test_view_rejects_bad_input(kwargs, match, tmp_path):
    with pytest.raises(InputError, match=match):
        li_paths_view(llzo_like(), path=tmp_path / "v.html", **kwargs)
    assert not (tmp_path / "v.html").exists()


# -------------------------------------------------------------------------------- plots
def test_msd_plot_draws_the_data_the_fit_over_its_window_and_the_threshold(tmp_path):
    t = np.linspace(0, 10, 50)
    d = 2e-5  # cm²/s = 0.2 Å²/ps
    fit = {"D_cm2_s": d, "intercept_A2": 0.5, "window_ps": (2.0, 8.0), "dim": 3,
           "label": "Li fit"}
    fig = plot_msd(t, {"Li": 1.2 * t + 0.5, "O": 0.01 * t}, tmp_path / "msd.png", fit=fit,
                   threshold_A2=3.0, max_lag_ps=9.0)
    ax = fig.axes[0]
    assert ax.get_xscale() == ax.get_yscale() == "log"
    lines = {ln.get_label(): ln for ln in ax.lines}
    np.testing.assert_allclose(lines["Li"].get_xdata(), t[1:])  # lags > 0 on log axes
    np.testing.assert_allclose(lines["Li"].get_ydata(), 1.2 * t[1:] + 0.5)
    line = lines["Li fit: D = 2e-05 cm²/s"]
    x = line.get_xdata()
    assert x.min() == pytest.approx(2.0) and x.max() == pytest.approx(8.0)
    np.testing.assert_allclose(line.get_ydata(), 6 * 0.2 * x + 0.5)  # 6 D t + c in Å²
    np.testing.assert_allclose(lines["3 Å² threshold"].get_ydata(), 3.0)
    np.testing.assert_allclose(lines["longest usable lag"].get_xdata(), 9.0)
    assert_png_not_blank(tmp_path / "msd.png")


def test_arrhenius_plot_fit_line_is_d0_exp_minus_ea_over_kt(tmp_path):
    ea, d0 = 0.3, 1e-3
    temps = np.array([500.0, 700.0, 900.0])
    d = d0 * np.exp(-ea / (kB * temps))
    fig = plot_arrhenius({"bulk": {"temperatures_K": temps, "D_cm2_s": d,
                                   "D_err_cm2_s": 0.1 * d, "Ea_eV": ea, "D0_cm2_s": d0}},
                         tmp_path / "arr.png", literature=[("exp.", 300.0, 1.33e-8)])
    ax = fig.axes[0]
    fit = next(ln for ln in ax.lines if ln.get_label().startswith("bulk fit"))
    x, y = fit.get_xdata(), fit.get_ydata()
    np.testing.assert_allclose(y, d0 * np.exp(-ea / (kB * 1000.0 / x)), rtol=1e-12)
    assert x.max() == pytest.approx(1000.0 / 300.0)  # line spans the literature point too
    lit = next(ln for ln in ax.lines if ln.get_label() == "exp.")
    assert lit.get_xdata()[0] == pytest.approx(1000 / 300) and lit.get_ydata()[0] == 1.33e-8
    assert ax.get_yscale() == "log"
    assert_png_not_blank(tmp_path / "arr.png")


def test_segregation_plot(tmp_path):
    x = np.arange(0.5, 10.0, 1.0)
    rho = 1 + np.exp(-x)
    fig = plot_segregation(x, rho, tmp_path / "seg.png", li_per_zr=3.5 + np.exp(-x))
    np.testing.assert_allclose(fig.axes[0].lines[0].get_ydata(), rho)
    np.testing.assert_allclose(fig.axes[1].lines[0].get_ydata(), 3.5 + np.exp(-x))
    assert_png_not_blank(tmp_path / "seg.png")
    with pytest.raises(InputError, match="li_density_rel: 3 values for 10 distances"):
        plot_segregation(x, rho[:3], tmp_path / "bad.png")
    gap = [4.0, None, 3.6] + [3.5] * 7  # a window without Zr (null in analysis.json)
    fig = plot_segregation(x, rho, tmp_path / "gap.png", li_per_zr=gap)
    drawn = fig.axes[1].lines[0].get_ydata()
    assert np.isnan(drawn[1]) and drawn[0] == 4.0 and drawn[2] == 3.6


# ------------------------------------------------------------------------------- report
class Recorder:
    """Collects (step, T, PotEng, conserved energy) like ThermoLog, at full precision."""

    def __init__(self, interval):
        self.interval, self.rows = interval, []

    def start(self, sim):
        pass

    def report(self, sim):
        t = sim.thermo()
        self.rows.append((sim.step, float(t["temp"][0]), float(t["pe"][0]),
                          float(t["conserved"][0])))

    def finish(self, sim):
        pass


def md_run(run_dir, atoms, temperature, steps=30):
    """A short CSVR run writing log.hayabusa, traj.h5, start.extxyz, run.json."""
    run_dir.mkdir(parents=True)
    ase.io.write(run_dir / "start.extxyz", atoms)
    state = State.from_atoms(atoms)
    maxwell_boltzmann(state, temperature, seed=1)
    rec = Recorder(5)
    sim = Simulation(state, LennardJones(0.01, 2.3, 5.0, n_types=4),
                     CSVR(1.0, temperature, 20.0, "metal", seed=2),
                     reporters=[ThermoLog(5, path=run_dir / "log.hayabusa", stream=None),
                                H5MDWriter(run_dir / "traj.h5", 2), rec])
    sim.run(steps)
    (run_dir / "run.json").write_text(json.dumps(
        {"system": run_dir.name.split("-")[0], "temperature_K": temperature,
         "timestep_fs": 1.0}))
    return np.array(rec.rows)


NO_WINDOW = ("the MSD reaches 0.04 Å² at the longest usable lag 0.016 ps, below the 12 Å² a "
             "diffusive fit needs")


def run_entry(name, temperature, d, seg=None, status="result", flags=()):
    """An analysis.json run entry; ``status`` "not diffusive" leaves D, σ and H null."""
    none = status == "not diffusive"
    reasons = [f"not diffusive: {NO_WINDOW}"] if none else []
    reasons += [f"not equilibrated: {'; '.join(flags)}"] if flags else []
    return {"name": name, "system": name.split("-")[0], "temperature_K": temperature,
            "n_atoms": 32, "composition": {"Li": 12, "La": 4, "Zr": 4, "O": 12},
            "duration_ps": 0.03, "n_frames": 16, "volume_A3": 1000.0,
            "thermo": {"equilibrated": not flags, "flags": list(flags), "frames": 16,
                       "first_step": 0, "last_step": 30, "temperature_source": "kinetic_energy",
                       "n_dof": 93, "target_T_K": temperature,
                       "mean_T_K": temperature - 1.234, "mean_T_err_K": 2.1,
                       "sigma_T_canonical_K": 0.1466 * temperature, "T_drift_K": 3.3,
                       "T_drift_err_K": 4.4, "mean_pe_eV_per_atom": -1.234567,
                       "mean_pe_err_eV_per_atom": 1e-4, "pe_drift_eV_per_atom": 2e-4,
                       "pe_drift_err_eV_per_atom": 1e-4, "conserved": "conserved_energy",
                       "conserved_drift_meV_per_atom": 0.0456,
                       "conserved_drift_meV_per_atom_per_ns": 1520.0, "z_max": 4.0},
            "msd": {"time_ps": [0.0, 0.01, 0.02], "Li": [0.0, 0.5, 1.1],
                    "O": [0.0, 0.01, 0.02]},
            "diffusion": {"Li": {"D_cm2_s": None if none else d,
                                 "D_err_cm2_s": None if none else 0.1 * d,
                                 "window_ps": None if none else [0.01, 0.02],
                                 "reason": NO_WINDOW if none else None,
                                 "loglog_slope": 1.02, "msd_threshold_A2": 0.4,
                                 "hop_length_A": 0.365, "hop_length_source": "test",
                                 "max_lag_ps": 0.02, "msd_at_max_lag_A2": 1.1,
                                 "fit_intercept_A2": -0.1}},
            "charge_diffusion": {"D_cm2_s": None if none else 2 * d,
                                 "D_err_cm2_s": None if none else 0.5 * d},
            "conductivity": {"sigma_S_cm": None if none else 0.0123,
                             "sigma_err_S_cm": None if none else 0.0021,
                             "sigma_tracer_S_cm": None if none else 0.00617,
                             "sigma_tracer_err_S_cm": None if none else 0.0006},
            "haven_ratio": None if none else 0.5, "haven_ratio_err": None if none else 0.13,
            "transport": {"status": status, "reasons": reasons},
            "rdf": {"r_A": [1.0], "Li-O": [0.0]},
            "jumps": None, "segregation": seg,
            "clusters": {"max_size": 2, "mean_size": 1.1, "criterion": "x"},
            "li_density_file": f"{name}/li_density.npz"}


SEGREGATION = {"normal_axis": 2, "gb_planes_A": [1.8, 5.4],
               "distance_A": [0.5, 1.5], "li_density_rel": [1.6, 1.0],
               "li_per_zr": [4.1, None], "gibbs_excess_per_A2": 0.0372,
               "gibbs_excess_err_per_A2": 0.0045}
EA, EA_ERR, D0, D300, D300_ERR, SIGMA300 = 0.3123, 0.0251, 2.5e-3, 1.23e-8, 4.5e-9, 2.34e-4
COV = [[EA_ERR**2, 0.4 * EA_ERR], [0.4 * EA_ERR, 0.3]]


def arrhenius_entry(**changes):
    entry = {"Ea_eV": EA, "Ea_err_eV": EA_ERR, "D0_cm2_s": D0, "cov_Ea_lnD0": COV,
             "weighted": True, "temperatures_K": [400.0, 600.0], "T_range_K": [400.0, 600.0],
             "D_cm2_s": [3.21e-7, 4.56e-6], "D_err_cm2_s": [3.21e-8, 4.56e-7],
             "runs": ["bulk-400K", "bulk-600K"], "excluded": {}, "reason": None,
             "D_300K_cm2_s": D300, "D_300K_err_cm2_s": D300_ERR,
             "sigma_300K_tracer_S_cm": SIGMA300, "sigma_300K_tracer_err_S_cm": 0.5 * SIGMA300}
    return entry | changes


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """A study directory: two real short MD runs (bulk-600K, gb-600K) and a synthetic
    analysis.json with bulk at 400/600 K (bulk-400K has no run files)."""
    root = tmp_path_factory.mktemp("study")
    atoms = llzo_like()
    md_run(root / "bulk-600K", atoms, 600.0)
    md_run(root / "gb-600K", atoms, 600.0, steps=20)
    g = (np.arange(12) + 0.5) / 12
    u, v, w = np.meshgrid(g, g, g, indexing="ij")
    dens = np.exp(-((u - 0.5) ** 2 + (v - 0.5) ** 2 + (w - 0.5) ** 2) / 0.02)
    np.savez(root / "gb-600K" / "li_density.npz", density=dens, cell=atoms.cell.array)
    analysis = {"hayabusa_version": "0.1.0",
                "runs": [run_entry("bulk-400K", 400.0, 3.21e-7),
                         run_entry("bulk-600K", 600.0, 4.56e-6),
                         run_entry("gb-600K", 600.0, 1.52e-6, SEGREGATION)],
                "arrhenius": {"bulk": arrhenius_entry(),
                              "gb": arrhenius_entry(
                                  Ea_eV=None, Ea_err_eV=None, D0_cm2_s=None, cov_Ea_lnD0=None,
                                  temperatures_K=[600.0], T_range_K=None, D_cm2_s=[1.52e-6],
                                  D_err_cm2_s=[1.52e-7], runs=["gb-600K"], D_300K_cm2_s=None,
                                  reason="1 run(s) with a diffusive D from an equilibrated "
                                         "run; the fit needs 2 or more temperatures")}}
    (root / "analysis.json").write_text(json.dumps(analysis))
    (root / "model_metrics.json").write_text(json.dumps(
        {"energy_meV_per_atom": {"mae": 1.234, "rmse": 2.345},
         "forces_meV_per_A": {"mae": 45.6, "rmse": 67.8},
         "labels": "SevenNet-0 (surrogate of PBE), not DFT"}))
    buf = io.BytesIO()
    Image.new("RGB", (20, 10), (200, 30, 30)).save(buf, format="PNG")
    (root / "parity.png").write_bytes(buf.getvalue())
    report = write_report(root)
    return root, report


class Tables(html.parser.HTMLParser):
    """Every <table>: class and rows of cell texts."""

    def __init__(self):
        super().__init__()
        self.tables, self._cell = [], None

    def handle_starttag(self, tag, attrs):
        if tag == "table":
            self.tables.append((dict(attrs).get("class", ""), []))
        elif tag == "tr":
            self.tables[-1][1].append([])
        elif tag in ("td", "th"):
            self._cell = ""

    def handle_data(self, data):
        if self._cell is not None:
            self._cell += data

    def handle_endtag(self, tag):
        if tag in ("td", "th"):
            self.tables[-1][1][-1].append(self._cell)
            self._cell = None


def tables(text) -> dict[str, list[list[str]]]:
    p = Tables()
    p.feed(text)
    return {cls or f"t{i}": rows for i, (cls, rows) in enumerate(p.tables)}


def pm(cell: str) -> tuple[float, float | None]:
    parts = cell.split("±")
    return float(parts[0]), float(parts[1]) if len(parts) > 1 else None


def test_report_transport_table_holds_the_analysis_numbers(study):
    root, report = study
    text = report.read_text()
    t = tables(text)
    rows = {r[0]: r for r in t["transport"][1:]}
    assert list(rows) == ["bulk-400K", "bulk-600K", "gb-600K"]
    for name, d in [("bulk-400K", 3.21e-7), ("bulk-600K", 4.56e-6), ("gb-600K", 1.52e-6)]:
        row = rows[name]
        assert row[3] == "result"
        assert row[4] == "0.01–0.02 ps, slope 1, MSD ≥ 0.4 Å²"
        value, err = pm(row[5])
        assert value == pytest.approx(d, rel=5e-3) and err == pytest.approx(0.1 * d, rel=5e-2)
        assert pm(row[6])[0] == pytest.approx(2 * d, rel=5e-3)
        assert pm(row[7]) == (pytest.approx(0.0123), pytest.approx(0.0021))
        assert pm(row[8]) == (pytest.approx(0.00617), pytest.approx(0.0006))
        assert pm(row[9]) == (0.5, pytest.approx(0.13))
    (arr_row,) = t["arrhenius"][1:]
    assert arr_row[0] == "bulk"
    assert pm(arr_row[1]) == (pytest.approx(EA, rel=5e-3), pytest.approx(EA_ERR, rel=5e-2))
    assert float(arr_row[2]) == pytest.approx(D0, rel=5e-3)
    assert arr_row[3] == "400–600" and arr_row[4] == "bulk-400K, bulk-600K"
    assert pm(arr_row[5]) == (pytest.approx(D300, rel=5e-3), pytest.approx(D300_ERR, rel=5e-2))
    # the system without a fit says why instead of showing a number
    assert "gb: 1 run(s) with a diffusive D from an equilibrated run; the fit needs 2 or more " \
           "temperatures" in html.unescape(text)


def test_report_compares_with_cited_literature_values(study):
    root, report = study
    t = tables(report.read_text())
    lit = {r[0]: r for r in t["literature"][1:]}
    assert lit["Li tracer D, 600 K"][1] == "1.24e-06 cm²/s" and "He et al." in \
        lit["Li tracer D, 600 K"][3]
    assert lit["Ea of Li diffusion"][1] == "0.248 ± 0.012 eV"
    assert lit["Li D, 300 K"][1] == "1.33e-08 cm²/s" and "Ahmad" in lit["Li D, 300 K"][3]
    assert "4e-04 S/cm" in lit["σ, room temperature"][1] and "Cussen" in \
        lit["σ, room temperature"][3]
    assert "Yu & Siegel" in lit["GB vs bulk Li transport"][3]
    cmp = {r[0]: r for r in t["comparison"][1:]}
    assert pm(cmp["Ea, bulk (400–600 K)"][1]) == (pytest.approx(EA, rel=5e-3),
                                                  pytest.approx(EA_ERR, rel=5e-2))
    assert cmp["Ea, bulk (400–600 K)"][2] == "0.248 ± 0.012"
    d600, d600_err = pm(cmp["D(600 K), bulk (interpolated from the fit)"][1])
    assert d600 == pytest.approx(D0 * np.exp(-EA / (kB * 600.0)), rel=5e-3)
    a = -1 / (kB * 600.0)  # error of ln D(600 K) from the fit's covariance
    var = COV[0][0] * a * a + 2 * COV[0][1] * a + COV[1][1]
    assert d600_err == pytest.approx(d600 * np.sqrt(var), rel=5e-2)
    assert cmp["D(600 K), bulk (interpolated from the fit)"][2] == "1.24e-06"
    d300 = cmp["D(300 K), bulk (extrapolated from the fit)"]
    assert pm(d300[1]) == (pytest.approx(D300, rel=5e-3), pytest.approx(D300_ERR, rel=5e-2))
    assert d300[2] == "1.33e-08" and "Ahmad" in d300[3]
    key = next(k for k in cmp if k.startswith("σ(300 K), bulk"))
    assert pm(cmp[key][1])[0] == pytest.approx(SIGMA300, rel=5e-3)
    assert cmp[key][2] == "≤ 0.0004"
    ratio, err = pm(cmp["D bulk / D gb at 600 K (whole cell)"][1])
    assert ratio == pytest.approx(4.56e-6 / 1.52e-6, rel=5e-3)
    assert err == pytest.approx(ratio * np.hypot(0.1, 0.1), rel=5e-2)
    assert not any(k.startswith("Ea, gb") for k in cmp)  # gb has no fit


def test_literature_values_live_in_one_shipped_data_file():
    """Same values and sources as the report showed before; shipped as package data."""
    import hayabusa
    import hayabusa.viz.report as report

    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    lit = load_literature()
    assert [p.model_dump() for p in lit.arrhenius_points] == [
        {"label": "He 2018 AIMD, 600 K", "temperature_K": 600.0, "D_cm2_s": 1.24e-6,
         "source": "He et al., npj Comput. Mater. 2018 (AIMD, PBE)"},
        {"label": "He 2018 AIMD, 1500 K", "temperature_K": 1500.0, "D_cm2_s": 1.83e-5,
         "source": "He et al., npj Comput. Mater. 2018 (AIMD, PBE)"},
        {"label": "Ahmad 2015 exp., 300 K", "temperature_K": 300.0, "D_cm2_s": 1.33e-8,
         "source": "Ahmad, RSC Adv. 2015"}]
    c = lit.comparison
    assert (c.Ea_eV.value, c.Ea_eV.err) == (0.248, 0.012)
    assert (c.D_600K_cm2_s.value, c.D_300K_cm2_s.value) == (1.24e-6, 1.33e-8)
    assert c.sigma_RT_max_S_cm.value == 4e-4 and c.gb_slowdown.value == (2.0, 3.0)
    assert len(lit.table) == 6 and all(row.source for row in lit.table)
    source = Path(report.__file__).read_text()
    assert "1.24e-6" not in source and "0.248" not in source  # no copies in the code
    root = Path(hayabusa.__file__).parent
    pyproject = tomllib.loads((root.parent / "pyproject.toml").read_text())
    patterns = pyproject["tool"]["setuptools"]["package-data"]["hayabusa"]
    assert any((root / "data" / "literature.json") in root.glob(p) for p in patterns)


def test_report_thermo_table_holds_the_analysis_numbers(study):
    root, report = study
    rows = {r[0]: r for r in tables(report.read_text())["thermo"][1:]}
    assert list(rows) == ["bulk-400K", "bulk-600K", "gb-600K"]
    row = rows["bulk-600K"]
    assert row[1] == "0–30" and row[2] == "16" and row[3] == "600"
    assert pm(row[4]) == (pytest.approx(598.766, abs=0.05), pytest.approx(2.1))
    assert float(row[5]) == pytest.approx(0.1466 * 600, rel=5e-3)
    assert pm(row[6]) == (pytest.approx(3.3), pytest.approx(4.4))
    assert float(row[7]) == pytest.approx(-1.234567, abs=5e-6)
    assert pm(row[8]) == (pytest.approx(0.2), pytest.approx(0.1))  # meV/atom
    assert row[9] == "conserved_energy" and float(row[10]) == pytest.approx(0.0456)
    assert float(row[11]) == pytest.approx(1520.0) and row[12] == "yes"


FLAG = "⟨T⟩ = 203.1 ± 5.2 K, 19 standard errors from the 300 K target"


def test_report_shows_no_plain_numbers_for_runs_without_results(tmp_path):
    """A run without a diffusive window shows no D, σ or Haven ratio; a flagged run's numbers
    are marked apparent everywhere; with no fit there is no Ea; the reasons are listed."""
    analysis = {"runs": [run_entry("bulk-300K", 300.0, None, status="not diffusive",
                                   flags=[FLAG]),
                         run_entry("bulk-500K", 500.0, 7.77e-6, status="apparent",
                                   flags=["T drifts by +90.2 ± 13 K over the run"])],
                "arrhenius": {"bulk": arrhenius_entry(
                    Ea_eV=None, Ea_err_eV=None, D0_cm2_s=None, cov_Ea_lnD0=None,
                    temperatures_K=[], T_range_K=None, D_cm2_s=[], D_err_cm2_s=[], runs=[],
                    excluded={"bulk-300K": "not diffusive, not equilibrated",
                              "bulk-500K": "not equilibrated"},
                    D_300K_cm2_s=None, D_300K_err_cm2_s=None, sigma_300K_tracer_S_cm=None,
                    sigma_300K_tracer_err_S_cm=None,
                    reason="0 run(s) with a diffusive D from an equilibrated run; the fit "
                           "needs 2 or more temperatures")}}
    (tmp_path / "analysis.json").write_text(json.dumps(analysis))
    text = write_report(tmp_path).read_text()
    t = tables(text)
    rows = {r[0]: r for r in t["transport"][1:]}
    assert rows["bulk-300K"][3] == "not diffusive"
    assert rows["bulk-300K"][4] == "none (needs MSD ≥ 0.4 Å²)"
    assert rows["bulk-300K"][5:10] == ["none"] * 5
    assert rows["bulk-500K"][3] == "apparent"
    assert all(c.startswith("apparent ") for c in rows["bulk-500K"][5:10])
    assert pm(rows["bulk-500K"][5][len("apparent "):])[0] == pytest.approx(7.77e-6)
    # no table cell anywhere holds the flagged run's D or σ as a plain number
    for _, table in t.items():
        for row in table:
            for cell in row:
                if "7.77e-06" in cell or "0.0123" in cell:
                    assert cell.startswith("apparent "), cell
    assert "arrhenius" not in t and "comparison" not in t
    plain = html.unescape(text)
    assert "No Arrhenius fit:" in plain and "Ea =" not in plain
    assert "bulk: 0 run(s) with a diffusive D from an equilibrated run" in plain
    assert "excluded: bulk-300K: not diffusive, not equilibrated; bulk-500K: not " \
           "equilibrated" in plain
    assert f"bulk-300K: not diffusive: {NO_WINDOW}" in plain
    assert f"bulk-300K: not equilibrated: {FLAG}" in plain
    assert f"bulk-300K: {FLAG}" in plain  # in the thermo section's list
    assert tables(text)["thermo"][1][12] == "no"
    assert not (tmp_path / "plots" / "arrhenius.png").exists()
    # the apparent run's MSD fit line is labelled so in its plot
    assert (tmp_path / "plots" / "msd-bulk-500K.png").is_file()


def test_report_sections_model_segregation_view_and_images(study):
    root, report = study
    text = report.read_text()
    for title in ["Structure", "Model accuracy", "Thermodynamics", "Li transport: D, σ, Ea",
                  "Li segregation at grain boundaries", "3D view"]:
        assert f"<h2>{title}</h2>" in text
    t = tables(text)
    model = {r[0]: r for r in t["t1"][1:]}
    assert model["forces (meV/Å)"][1:] == ["45.6", "67.8"]
    assert "Labels: SevenNet-0 (surrogate of PBE), not DFT" in text
    assert base64.b64encode((root / "parity.png").read_bytes()).decode() in text
    (seg,) = t["segregation"][1:]
    assert seg[0] == "z" and seg[1] == "1.80, 5.40"
    assert pm(seg[2]) == (pytest.approx(0.0372), pytest.approx(0.0045))
    # every image is an embedded PNG that decodes; plots/ holds the same files
    images = re.findall(r'src="data:image/png;base64,([^"]+)"', text)
    assert len(images) >= 7  # 2 structures, parity, 3 MSD, Arrhenius, segregation
    for b64 in images:
        assert Image.open(io.BytesIO(base64.b64decode(b64))).format == "PNG"
    for name in ["msd-bulk-600K.png", "arrhenius.png", "segregation-gb-600K.png",
                 "structure-bulk.png"]:
        assert_png_not_blank(root / "plots" / name)
    # the 3D view (gb run: segregation preferred) is inlined with plotly.js, and view.html
    assert not re.search(r"<script[^>]*src\s*=\s*[\"']?(https?:)?//", text, re.I)
    assert plotly.offline.get_plotlyjs() in text
    data, _ = figure_json(text)
    names = {d.get("name") for d in data}
    assert {"Li", "La", "Zr", "O", "cell", "Li paths", "grain boundary"} <= names
    assert any(d["type"] == "isosurface" for d in data)
    assert figure_json((root / "view.html").read_text())[0] == data


def test_report_states_missing_optional_pieces(tmp_path):
    analysis = {"runs": [run_entry("bulk-500K", 500.0, 1e-6)], "arrhenius": {}}
    (tmp_path / "analysis.json").write_text(json.dumps(analysis))
    text = write_report(tmp_path).read_text()
    assert "No model_metrics.json in the run directory" in text
    assert "No parity.png in the run directory" in text
    assert "No grain-boundary run in this study" in text
    assert "No Arrhenius fit" in text
    assert "No traj.h5 in any run directory: no 3D view" in text
    assert "No starting structure found: bulk-500K/start.extxyz" in text
    assert not (tmp_path / "view.html").exists()


def test_report_errors_name_the_file(tmp_path):
    with pytest.raises(InputError, match=r"analysis\.json: not found"):
        write_report(tmp_path)
    path = tmp_path / "analysis.json"
    path.write_text('{"runs": [')
    with pytest.raises(InputError, match=r"analysis\.json: cannot read JSON"):
        write_report(tmp_path)
    run = run_entry("bulk-500K", 500.0, 1e-6)
    run["temperature_K"] = "hot"
    path.write_text(json.dumps({"runs": [run]}))
    with pytest.raises(InputError, match=r"analysis\.json: runs\.0\.temperature_K"):
        load_analysis(tmp_path)
    old = run_entry("bulk-500K", 500.0, 1e-6)
    del old["transport"]  # an analysis.json of an older hayabusa: no status, no numbers shown
    path.write_text(json.dumps({"runs": [old]}))
    with pytest.raises(InputError, match=r"analysis\.json: runs\.0\.transport: Field required"):
        write_report(tmp_path)
    path.write_text(json.dumps({"runs": [run_entry("bulk-500K", 500.0, 1e-6)]}))
    (tmp_path / "model_metrics.json").write_text("[1, 2")
    with pytest.raises(InputError, match=r"model_metrics\.json: cannot read JSON"):
        write_report(tmp_path)
    assert not (tmp_path / "report.html").exists()
    lit = json.loads(load_literature().model_dump_json())
    del lit["comparison"]["Ea_eV"]
    (tmp_path / "lit.json").write_text(json.dumps(lit))
    with pytest.raises(InputError, match=r"lit\.json: comparison\.Ea_eV: Field required"):
        load_literature(tmp_path / "lit.json")


def test_thermo_log_parser_keeps_the_last_row_of_a_repeated_step(tmp_path):
    """A restart from an earlier checkpoint appends a second header and repeats steps."""
    head = ("# units metal: time fs, Temp K, energies eV, Press GPa; 1 system(s), 4 atoms, "
            "integrator nve\n          Step          Temp        PotEng        KinEng"
            "        TotEng         Press\n")
    rows = "".join(f"{s:>14d}{t:>14g}{-1.0:>14g}{0.1:>14g}{e:>14g}{0.0:>14g}\n"
                   for s, t, e in [(0, 100, -0.9), (10, 200, -0.8), (20, 999, -0.7)])
    again = "".join(f"{s:>14d}{t:>14g}{-1.0:>14g}{0.1:>14g}{e:>14g}{0.0:>14g}\n"
                    for s, t, e in [(20, 300, -0.7), (30, 400, -0.6)])
    path = tmp_path / "log.hayabusa"
    path.write_text(head + rows + "Loop time of 1 on 1 procs for 20 steps with 4 atoms\n\n"
                    "Performance: 12.500 ns/day, 1.920 hours/ns, 1.0 timesteps/s, "
                    "1.0 katom-step/s\n" + head + again)
    log = read_thermo_log(path)
    np.testing.assert_array_equal(log["columns"]["Step"], [0, 10, 20, 30])
    np.testing.assert_array_equal(log["columns"]["Temp"], [100, 200, 300, 400])
    assert log["n_atoms"] == 4 and log["ns_per_day"] == 12.5
    (tmp_path / "bad.log").write_text("garbage\n")
    with pytest.raises(InputError, match=r"bad\.log: no thermo rows"):
        read_thermo_log(tmp_path / "bad.log")


def test_report_cli(study, tmp_path, capsys):
    root, report = study
    assert main(["report", str(root)]) == 2
    assert "pass --overwrite" in capsys.readouterr().err
    assert main(["report", str(root), "--overwrite"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert out[-1] == str(report)
    assert main(["report", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "nowhere: not a directory" in err
