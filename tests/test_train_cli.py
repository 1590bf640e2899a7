"""``hayabusa train`` and ``hayabusa test``: outputs, consistency of the metrics with an
independent evaluation, resume from a checkpoint, progress bar, one-line errors."""

import csv
import io
import json
import sys

import ase.io
import matplotlib.image
import numpy as np
import pytest
import torch
from ase.build import bulk
from test_train import with_emt_labels

from hayabusa import HayabusaCalculator, load_model
from hayabusa.cli import main
from hayabusa.train import load_frames, split
from hayabusa.train.job import LOG_COLUMNS

CONFIG = """\
seed: 1
device: cpu
data:
  files: [cu*.extxyz]
  split: {{train: 0.6, valid: 0.2, test: 0.2}}
model: {{r_cut_A: 4.5, r_smth_A: 3.0, embedding: [8, 16], axis_neurons: 4, fitting: [16, 16]}}
training:
  steps: 12
  batch_atoms: 64
  lr_start: {lr}
  lr_stop: 1.0e-4
  stress_prefactor: [0.02, 1.0]
  valid_every: 4
  checkpoint_every: 4
"""


def cu_frames(n, seed=0, symbol="Cu"):
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        atoms = bulk(symbol, "fcc", a=3.61 if symbol == "Cu" else 4.09, cubic=True).repeat(2)
        atoms.rattle(0.06, seed=int(rng.integers(1 << 30)))
        out.append(with_emt_labels(atoms))
    return out


def setup(folder, lr=0.005, text=None):
    folder.mkdir(parents=True, exist_ok=True)
    ase.io.write(folder / "cu_a.extxyz", cu_frames(12))
    ase.io.write(folder / "cu_b.extxyz", cu_frames(8, seed=1))
    cfg = folder / "train.yaml"
    cfg.write_text(text if text is not None else CONFIG.format(lr=lr))
    return cfg


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One trained run: (config path, output folder)."""
    folder = tmp_path_factory.mktemp("trained")
    cfg = setup(folder)
    assert main(["train", str(cfg), "--output", str(folder / "out")]) == 0
    return cfg, folder / "out"


def rows(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_train_writes_model_log_checkpoint_metrics_and_parity(trained, tmp_path, capsys):
    cfg, out = trained
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["model.pt", "train.csv", "checkpoint.pt", "metrics.json", "parity.png", "config.yaml",
         ".hayabusa-run.json"])
    assert (out / "config.yaml").read_text() == cfg.read_text()
    log = rows(out / "train.csv")
    assert list(log[0]) == [c[0] for c in LOG_COLUMNS]
    assert [int(r["step"]) for r in log] == [4, 8, 12]
    assert all(float(r["valid_forces_rmse_meV_per_A"]) > 0 for r in log)
    report = json.loads((out / "metrics.json").read_text())
    assert [report[k]["n_frames"] for k in ("train", "valid", "test")] == [12, 4, 4]
    assert report["run"]["steps"] == 12 and not report["run"]["stopped_early"]
    png = matplotlib.image.imread(out / "parity.png")
    assert png.shape[1] > 2.5 * png.shape[0]  # three panels side by side

    # the test split, evaluated by the ASE calculator: the same errors as metrics.json
    frames = load_frames(sorted(cfg.parent.glob("cu*.extxyz")))
    test = split(frames, (0.6, 0.2, 0.2), seed=1)[2]
    model = load_model(out / "model.pt")
    assert model.species == (29,) and model.cutoff == 4.5
    de, df, ds = [], [], []
    for f in test:
        atoms = f.atoms.copy()
        atoms.calc = HayabusaCalculator(model)
        de.append((atoms.get_potential_energy() - f.energy) / len(atoms))
        df.append(atoms.get_forces() - f.forces)
        ds.append(atoms.get_stress(voigt=False) - f.stress)
    rmse = {"energy_meV_per_atom": 1e3 * np.sqrt(np.mean(np.square(de))),
            "forces_meV_per_A": 1e3 * np.sqrt(np.mean(np.square(np.concatenate(df)))),
            "stress_GPa": np.sqrt(np.mean(np.square(ds))) / ase.units.GPa}
    for key, value in rmse.items():
        assert report["test"][key]["rmse"] == pytest.approx(value, rel=1e-9), key

    # hayabusa test on the same frames prints and writes the same numbers
    ase.io.write(tmp_path / "test.extxyz", [f.atoms for f in test])
    capsys.readouterr()
    assert main(["test", str(out / "model.pt"), str(tmp_path / "test.extxyz"),
                 "--output", str(tmp_path / "eval")]) == 0
    printed = capsys.readouterr().out
    assert "4 frames" in printed and "F (meV/Å)" in printed
    again = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    for key in rmse:
        for stat in ("mae", "rmse"):
            assert again["test"][key][stat] == pytest.approx(report["test"][key][stat],
                                                             rel=1e-12)
    assert (tmp_path / "eval" / "parity.png").stat().st_size > 1000


def test_results_are_kept_unless_overwrite(trained, capsys):
    cfg, out = trained
    before = (out / "model.pt").read_bytes()
    assert main(["train", str(cfg), "--output", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "holds results of an earlier run" in err and "--overwrite" in err
    assert f"--resume {out / 'checkpoint.pt'} to continue" in err
    assert (out / "model.pt").read_bytes() == before


def test_until_step_and_resume_reproduce_a_straight_run(trained, tmp_path):
    cfg, straight = trained
    out = tmp_path / "parts"
    assert main(["train", str(cfg), "-o", str(out), "--until-step", "6"]) == 0
    assert torch.load(out / "checkpoint.pt", weights_only=True)["step"] == 6
    step6 = tmp_path / "step6.pt"
    step6.write_bytes((out / "checkpoint.pt").read_bytes())
    assert main(["train", str(cfg), "-o", str(out), "--resume", str(out / "checkpoint.pt")]) == 0

    def same_results():
        a = torch.load(straight / "model.pt", weights_only=True)["weights"]
        b = torch.load(out / "model.pt", weights_only=True)["weights"]
        assert all(torch.equal(a[k], b[k]) for k in a)
        ca = torch.load(straight / "checkpoint.pt", weights_only=True)
        cb = torch.load(out / "checkpoint.pt", weights_only=True)
        assert all(torch.equal(ca["model"][k], cb["model"][k]) for k in ca["model"])
        ra, rb = rows(straight / "train.csv"), rows(out / "train.csv")
        for r in ra + rb:
            del r["time_s"]
        assert ra == rb
        ja = json.loads((straight / "metrics.json").read_text())
        jb = json.loads((out / "metrics.json").read_text())
        assert {k: ja[k] for k in ("train", "valid", "test")} == \
            {k: jb[k] for k in ("train", "valid", "test")}

    same_results()
    # resuming again from step 6 drops the log rows written after it, then rewrites them
    assert main(["train", str(cfg), "-o", str(out), "--resume", str(step6)]) == 0
    same_results()


def test_progress_bar_only_on_a_terminal(tmp_path, monkeypatch, capsys):
    cfg = setup(tmp_path)
    assert main(["train", str(cfg), "-o", str(tmp_path / "plain"), "--until-step", "4"]) == 0
    assert capsys.readouterr().err == ""

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    term = Terminal()
    monkeypatch.setattr(sys, "stderr", term)
    assert main(["train", str(cfg), "-o", str(tmp_path / "tty"), "--until-step", "4"]) == 0
    assert "4/4" in term.getvalue()


BAD_CONFIGS = [
    (CONFIG.format(lr=0.005).replace("steps: 12", "stepz: 12"),
     r"train.yaml: training.stepz: unknown key; allowed keys: steps, batch_atoms"),
    (CONFIG.format(lr=0.005).replace("cu*.extxyz", "nope.extxyz"),
     r"train.yaml: data.files\[0\]: 'nope.extxyz' matches no file"),
    (CONFIG.format(lr=0.005).replace("r_smth_A: 3.0", "r_smth_A: 5.0"),
     r"model: r_smth_A \(5\) must be below r_cut_A \(4.5\)"),
    (CONFIG.format(lr=0.005).replace("fitting: [16, 16]", "fitting: [16, 16], e0_eV: {Ag: -1}"),
     r"model.e0_eV: no reference energy for \['Cu'\]"),
    (CONFIG.format(lr=0.005).replace("fitting: [16, 16]", "fitting: [16, 16], species: [Ag]"),
     r"cu_a.extxyz, frame 0: species \['Cu'\] unknown to the model"),
    (CONFIG.format(lr=0.005).replace("test: 0.2", "test: 0.3"),
     r"data.split: fractions must sum to 1"),
    (CONFIG.format(lr=0.005).replace("valid_every: 4", "valid_every: 4\n  patience: 2")
     .replace("valid: 0.2, test: 0.2", "valid: 0.0, test: 0.4"),
     r"training.patience: early stopping needs validation frames"),
    ("data: [", r"train.yaml: invalid YAML"),
]


@pytest.mark.parametrize(("text", "message"), BAD_CONFIGS)
def test_bad_configs_are_one_line_errors(tmp_path, capsys, text, message):
    import re

    cfg = setup(tmp_path, text=text)
    assert main(["train", str(cfg), "-o", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and re.search(message, err), err
    assert not (tmp_path / "out").exists()


def test_bad_model_data_and_checkpoint_are_one_line_errors(trained, tmp_path, capsys):
    cfg, out = trained
    ase.io.write(tmp_path / "ag.extxyz", cu_frames(2, symbol="Ag"))
    cases = [
        (["test", str(out / "model.pt"), str(tmp_path / "ag.extxyz")],
         "ag.extxyz, frame 0: species ['Ag'] unknown to the model"),
        (["test", str(tmp_path / "none.pt"), str(tmp_path / "ag.extxyz")],
         "none.pt: model file not found"),
        (["test", str(out / "model.pt"), str(tmp_path / "missing.extxyz")],
         "missing.extxyz: file not found"),
        (["train", str(setup(tmp_path / "other", lr=0.002)), "-o", str(tmp_path / "r"),
          "--resume", str(out / "checkpoint.pt")],
         "checkpoint.pt: written for another training settings (lr_start)"),
        (["train", str(cfg), "-o", str(tmp_path / "r2"), "--resume", str(tmp_path / "no.pt")],
         "no.pt: checkpoint not found"),
    ]
    for argv, message in cases:
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and message in err, err


def test_parity_plot_shows_each_set_with_its_rmse(tmp_path):
    from hayabusa import InputError
    from hayabusa.viz.parity import ParityPanel, plot_parity

    rng = np.random.default_rng(0)
    ref = rng.normal(size=(50, 3))
    sets = {"train": (ref, ref + 0.01), "test": (ref[:10], ref[:10] - 0.03)}
    panels = [ParityPanel("force components", "eV/Å", sets, "meV/Å", 1e3),
              ParityPanel("stress components", "GPa", {"train": (np.zeros(0), np.zeros(0))})]
    fig = plot_parity(panels, tmp_path / "p.png", title="t")
    assert len(fig.axes) == 1  # the panel without data is left out
    ax = fig.axes[0]
    points = [c.get_offsets() for c in ax.collections]
    assert np.allclose(points[0], np.c_[ref.ravel(), ref.ravel() + 0.01])
    assert np.allclose(points[1], np.c_[ref[:10].ravel(), ref[:10].ravel() - 0.03])
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == ["train: RMSE 10 meV/Å", "test: RMSE 30 meV/Å"]
    lo, hi = ax.get_xlim()
    assert lo < ref.min() - 0.03 and hi > ref.max() + 0.01 and ax.get_ylim() == (lo, hi)
    assert (tmp_path / "p.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(InputError, match="train: 150 reference values but 3 predictions"):
        plot_parity([ParityPanel("F", "eV/Å", {"train": (ref, np.zeros(3))})],
                    tmp_path / "q.png")


def test_training_stops_early_when_validation_stalls(tmp_path):
    # a learning rate of 1e-300 leaves the weights (and, with ema_decay 0, the EMA) as they
    # are: no validation after the first improves, and patience 2 ends the run at step 6
    text = (CONFIG.format(lr="1.0e-300").replace("lr_stop: 1.0e-4", "lr_stop: 1.0e-300")
            .replace("valid_every: 4", "valid_every: 2\n  patience: 2\n  ema_decay: 0.0"))
    cfg = setup(tmp_path, text=text)
    assert main(["train", str(cfg), "-o", str(tmp_path / "out")]) == 0
    run = json.loads((tmp_path / "out" / "metrics.json").read_text())["run"]
    assert (run["steps"], run["best_step"], run["stopped_early"]) == (6, 2, True)
    log = rows(tmp_path / "out" / "train.csv")
    assert [int(r["step"]) for r in log] == [2, 4, 6]
    assert len({r["valid_loss"] for r in log}) == 1
    assert torch.load(tmp_path / "out" / "checkpoint.pt", weights_only=True)["stopped"]
