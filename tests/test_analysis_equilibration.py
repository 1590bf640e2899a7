"""Runs that are not equilibrated are flagged and give no results.

The thermo series come from traj.h5 (checked against the simulation's own thermo); canonical
temperature fluctuations about the target are rarely flagged (negative control over many
seeds); an offset mean, a drifting temperature and a drifting potential energy are flagged;
``analyze_run`` keeps flagged and non-diffusive runs out of the Arrhenius fit, and the CLI
table and the report show their numbers as apparent or not at all, with the reasons.
"""

from __future__ import annotations

import html
import json
import math

import h5py
import numpy as np
import pytest
from test_analysis import D_600, EA, KB_EV, llzo_56_li, write_run
from test_viz import llzo_like, md_run, tables

from hayabusa.analysis import read_thermo, thermo_summary
from hayabusa.analysis.thermo import Thermo
from hayabusa.cli import main
from hayabusa.viz import write_report

N_ATOMS, TARGET = 192, 300.0
N_DOF = 3 * N_ATOMS - 3
SIGMA_T = TARGET * math.sqrt(2 / N_DOF)


def series(seed: int, frames=200, tau_frames=5.0, offset=0.0, t_drift=0.0,
           pe_drift=0.0) -> Thermo:
    """Thermo of an equilibrated run: AR(1) temperature with the canonical fluctuation σ_T
    and correlation time ``tau_frames``, AR(1) potential energy (2 meV/atom), plus the given
    offset of ⟨T⟩ and linear drifts over the run."""
    rng = np.random.default_rng(seed)
    phi = math.exp(-1 / tau_frames)

    def ar1(scale):
        x = np.empty(frames)
        x[0] = rng.normal()
        for k in range(1, frames):
            x[k] = phi * x[k - 1] + math.sqrt(1 - phi**2) * rng.normal()
        return scale * x

    ramp = np.linspace(-0.5, 0.5, frames)
    temp = TARGET + offset + t_drift * ramp + ar1(SIGMA_T)
    pe = N_ATOMS * (-7.0 + pe_drift * ramp + ar1(2e-3))
    step = np.arange(frames) * 10
    return Thermo(step, step * 2e-3, temp, pe, pe + 0.5, "total_energy", "kinetic_energy",
                  N_ATOMS, N_DOF)


def test_thermo_from_traj_h5_matches_the_simulation(tmp_path):
    """T from the kinetic energy in traj.h5 with N_f = 3N − 3 is the engine's temperature,
    the potential energy is the engine's, and the means are over the trajectory's frames."""
    rec = md_run(tmp_path / "lj-600K", llzo_like(), 600.0, steps=30)  # rows every 5 steps
    path = tmp_path / "lj-600K" / "traj.h5"
    th = read_thermo(path)  # frames every 2 steps
    assert th.step.tolist() == list(range(0, 31, 2)) and th.n_dof == 3 * 32 - 3
    with h5py.File(path, "r+") as f:  # without the temperature dataset: from the KE
        obs = f["observables/system_0"]
        for name in ("temperature", "conserved_energy"):
            if name in obs:
                del obs[name]
    from_ke = read_thermo(path)
    assert from_ke.temperature_source == "kinetic_energy"
    assert from_ke.conserved == "total_energy"
    for step, temp, pe, conserved in rec[::2]:  # steps 0, 10, 20, 30
        k = int(step) // 2
        assert from_ke.temperature_K[k] == pytest.approx(temp, rel=1e-10)
        assert th.temperature_K[k] == pytest.approx(temp, rel=1e-10)
        assert th.potential_eV[k] == pytest.approx(pe, rel=1e-10)
        if th.conserved == "conserved_energy":  # the integrator's, thermostat included
            assert th.conserved_eV[k] == pytest.approx(conserved, rel=1e-10)
    s = thermo_summary(th, 600.0, n_blocks=4)
    assert s["mean_T_K"] == pytest.approx(th.temperature_K.mean())
    assert s["mean_pe_eV_per_atom"] == pytest.approx(th.potential_eV.mean() / 32)
    slope = np.polyfit(th.time_ps, th.conserved_eV, 1)[0]
    assert s["conserved_drift_meV_per_atom"] == pytest.approx(1e3 * slope * 0.030 / 32)
    assert (s["first_step"], s["last_step"], s["frames"]) == (0, 30, 16)


def test_canonical_fluctuations_are_rarely_flagged():
    """Negative control: 300 equilibrated runs (10 blocks of 4 correlation times), at most 4 %
    flagged (measured: 7, 2.3 %)."""
    flagged = [bool(thermo_summary(series(seed), TARGET, 10)["flags"]) for seed in range(300)]
    assert np.mean(flagged) <= 0.04


@pytest.mark.parametrize("kwargs, flag", [
    ({"offset": -40.0}, "standard errors from the 300 K target"),
    ({"t_drift": 120.0}, "T drifts by +"),
    ({"pe_drift": 0.02}, "the potential energy drifts by +"),
])
def test_offset_and_drifting_runs_are_flagged(kwargs, flag):
    """⟨T⟩ 40 K (2.3 σ_T, ~12 standard errors) below the target, T rising by 120 K over the
    run (its mean on target) or the potential energy rising by 20 meV/atom: flagged in 20 of
    20 runs, by the right test."""
    for seed in range(20):
        s = thermo_summary(series(seed, **kwargs), TARGET, 10)
        assert not s["equilibrated"]
        assert any(flag in f for f in s["flags"]), s["flags"]
    s = thermo_summary(series(0, t_drift=120.0), TARGET, 10)
    assert s["T_drift_K"] == pytest.approx(120.0, abs=4 * s["T_drift_err_K"])


def test_temperature_and_conserved_energy_are_read_when_the_file_has_them(tmp_path):
    atoms = llzo_56_li()
    write_run(tmp_path, "bulk-600K", {"system": "bulk", "temperature_K": 600.0}, atoms, 1.0, 1,
              frames=30)
    path = tmp_path / "bulk-600K" / "traj.h5"
    with h5py.File(path, "r+") as f:
        obs = f["observables/system_0"]
        for name in ("temperature", "conserved_energy"):
            if name in obs:  # a writer that stores them: replaced by known values
                del obs[name]
        obs["temperature/value"] = np.full(30, 612.5)
        obs["conserved_energy/value"] = -1300.0 + 1e-3 * np.arange(30)
    th = read_thermo(path)
    assert th.temperature_source == "temperature" and th.conserved == "conserved_energy"
    np.testing.assert_array_equal(th.temperature_K, 612.5)
    s = thermo_summary(th, 600.0, 10)
    assert s["conserved"] == "conserved_energy"
    # 1 meV per frame of 0.5 ps over 192 atoms
    assert s["conserved_drift_meV_per_atom_per_ns"] == pytest.approx(1e3 * 2e-3 * 1e3 / 192)


def test_flagged_and_non_diffusive_runs_give_no_results(tmp_path, capsys):
    """bulk-500K: equilibrated, but its Li barely move (no diffusive window); bulk-600K:
    diffusive, but its temperature rises by 200 K (apparent); bulk-750K and bulk-900K: the
    Arrhenius fit uses these two only. The CLI table and the report show the status and the
    reasons, and no plain number of the first two."""
    atoms = llzo_56_li()
    base = {"system": "bulk", "timestep_fs": 2.0}
    d = {t: D_600 * math.exp(-EA / KB_EV * (1 / t - 1 / 600)) for t in (600, 750, 900)}
    write_run(tmp_path, "bulk-500K", base | {"temperature_K": 500.0}, atoms, 1e-3, 30)
    write_run(tmp_path, "bulk-600K", base | {"temperature_K": 600.0}, atoms, d[600], 31,
              t_drift_K=200.0)
    write_run(tmp_path, "bulk-750K", base | {"temperature_K": 750.0}, atoms, d[750], 32)
    write_run(tmp_path, "bulk-900K", base | {"temperature_K": 900.0}, atoms, d[900], 33)
    assert main(["analyze", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    result = json.loads((tmp_path / "analysis.json").read_text())
    runs = {r["name"]: r for r in result["runs"]}

    cold = runs["bulk-500K"]
    assert cold["thermo"]["equilibrated"]
    assert cold["transport"]["status"] == "not diffusive"
    assert cold["diffusion"]["Li"]["D_cm2_s"] is None
    assert cold["conductivity"]["sigma_S_cm"] is None and cold["haven_ratio"] is None
    assert "below the 12 Å² a diffusive fit needs" in cold["transport"]["reasons"][0]

    hot = runs["bulk-600K"]
    assert not hot["thermo"]["equilibrated"]
    assert any(f.startswith("T drifts by +") for f in hot["thermo"]["flags"])
    assert hot["transport"]["status"] == "apparent"
    assert hot["transport"]["reasons"][0].startswith("not equilibrated: ")
    assert hot["diffusion"]["Li"]["D_cm2_s"] is not None  # kept, labelled apparent
    for name in ("bulk-750K", "bulk-900K"):
        assert runs[name]["transport"] == {"status": "result", "reasons": []}

    fit = result["arrhenius"]["bulk"]
    assert fit["runs"] == ["bulk-750K", "bulk-900K"] and fit["T_range_K"] == [750.0, 900.0]
    assert fit["excluded"] == {"bulk-500K": "not diffusive", "bulk-600K": "not equilibrated"}
    assert abs(fit["Ea_eV"] - EA) < 4 * fit["Ea_err_eV"]

    lines = {line.split()[0]: line for line in out.splitlines() if line.startswith("bulk-")}
    assert lines["bulk-500K"].split()[-2:] == ["not", "diffusive"]
    assert lines["bulk-500K"].count("none") == 3
    hot_d = hot["diffusion"]["Li"]["D_cm2_s"]
    assert f"[{hot_d:.3e} ±" in lines["bulk-600K"] and lines["bulk-600K"].endswith("apparent")
    assert "[...]: apparent values of flagged runs, not results" in out
    reason = f"bulk-600K: {hot['transport']['reasons'][0]}"
    assert reason in out.splitlines() and "T drifts by +" in reason
    assert "bulk-500K: not diffusive: the MSD reaches" in out
    assert "Arrhenius bulk: Ea = " in out and "over 750–900 K (2 runs)" in out

    text = write_report(tmp_path).read_text()
    rows = {r[0]: r for r in tables(text)["transport"][1:]}
    assert rows["bulk-500K"][3:4] + rows["bulk-500K"][5:10] == ["not diffusive"] + ["none"] * 5
    assert rows["bulk-600K"][3] == "apparent"
    assert all(c.startswith("apparent ") for c in rows["bulk-600K"][5:10])
    assert not rows["bulk-750K"][5].startswith("apparent")
    assert tables(text)["arrhenius"][1][4] == "bulk-750K, bulk-900K"
    plain = html.unescape(text)
    assert reason in plain
