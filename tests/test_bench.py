"""`hayabusa bench` runs end to end (tiny sizes on the CPU): table on stdout, JSON on disk."""

import json

from hayabusa.bench.timing import bytes_per_atom_step
from hayabusa.cli import main


def test_bench_lj_prints_table_and_writes_json(tmp_path, capsys):
    out = tmp_path / "bench.json"
    code = main(["bench", "lj", "--atoms", "256", "--steps", "6", "--warmup", "2",
                 "--block-steps", "3", "--device", "cpu", "--dtype", "float64",
                 "--json", str(out)])
    assert code == 0
    text = capsys.readouterr().out
    assert "atom-steps/s" in text and "copy bandwidth" in text
    report = json.loads(out.read_text())
    assert report["environment"]["device"] == "cpu" and report["environment"]["commit"]
    row = report["rows"][0]
    assert row["atoms"] == 256 and row["steps"] == 6
    assert row["atom_steps_per_s"] > 0
    assert row["achieved_bytes_per_s"] == row["bytes_per_atom_step"] * row["atom_steps_per_s"]


def test_bench_kalj_batches_replicas(tmp_path):
    out = tmp_path / "kalj.json"
    assert main(["bench", "kalj", "--replicas", "3", "--atoms-per-replica", "64", "--steps", "4",
                 "--warmup", "1", "--block-steps", "2", "--device", "cpu", "--json",
                 str(out)]) == 0
    row = json.loads(out.read_text())["rows"][0]
    assert row["systems"] == 3 and row["atoms"] == 192


def test_bytes_model():
    assert bytes_per_atom_step(100, "min_image") == 4 * 100 + 240
    assert bytes_per_atom_step(100, "matrix") == 33 * 100 + 240
