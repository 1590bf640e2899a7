"""Command-line options: ``hayabusa bench`` refuses counts and lengths it cannot use (one line,
exit 2, before any work); ``hayabusa label --help`` says that ``module:Name`` runs user code."""

import pytest

from hayabusa.cli import main


@pytest.mark.parametrize("problem, option, value, expected", [
    ("lj", "--steps", "-5", "--steps: must be >= 1, got -5"),
    ("lj", "--steps", "0", "--steps: must be >= 1, got 0"),
    ("lj", "--warmup", "-1", "--warmup: must be >= 0, got -1"),
    ("lj", "--block-steps", "-20", "--block-steps: must be >= 0, got -20"),
    ("lj", "--peer-steps", "0", "--peer-steps: must be >= 1, got 0"),
    ("lj", "--peer-warmup", "-3", "--peer-warmup: must be >= 0, got -3"),
    ("lj", "--atoms", "0,256", "--atoms: expected positive integers, got '0,256'"),
    ("kalj", "--replicas", "0", "--replicas: must be >= 1, got 0"),
    ("kalj", "--atoms-per-replica", "-64", "--atoms-per-replica: must be >= 2, got -64"),
    ("model", "--train-steps", "0", "--train-steps: must be >= 1, got 0"),
    ("model", "--sel", "-1", "--sel: must be >= 1, got -1"),
    ("model", "--r-cut", "0", "--r-cut: must be a finite number > 0, got 0.0"),
    ("model", "--r-cut", "inf", "--r-cut: must be a finite number > 0, got inf"),
    ("model", "--skin", "-0.5", "--skin: must be a finite number >= 0, got -0.5"),
    ("model", "--skin", "nan", "--skin: must be a finite number >= 0, got nan"),
    ("model", "--precisions", "float16", "--precisions: expected some of float64, float32, "
     "mixed, got 'float16'"),
    ("model", "--precisions", ",", "--precisions: expected some of"),
])
def test_bench_refuses_unusable_options(capsys, monkeypatch, problem, option, value, expected):
    import hayabusa.bench.commands as commands

    def no_work(*args, **kwargs):
        raise AssertionError("the options were not checked before the work began")

    monkeypatch.setattr(commands, "environment", no_work)
    assert main(["bench", problem, "--device", "cpu", f"{option}={value}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {expected}"), err


def test_label_help_says_module_name_runs_user_code(capsys):
    with pytest.raises(SystemExit):
        main(["label", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "module:Name imports and runs that Python code with your permissions: use only " \
           "code you trust" in text
