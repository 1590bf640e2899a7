"""``pytest -m gpu`` without a CUDA GPU is an error, while the default selection runs as before
(tests/conftest.py). Checked in a separate pytest process (CUDA hidden from it) with the
settings of pyproject.toml, on a folder holding a copy of our conftest.py and one test with
the gpu marker beside one without."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
PYPROJECT = TESTS.parent / "pyproject.toml"


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    d = tmp_path_factory.mktemp("gpu_marker")
    shutil.copy(TESTS / "conftest.py", d / "conftest.py")
    (d / "test_some.py").write_text(
        "import pytest\n\n\n@pytest.mark.gpu\ndef test_on_gpu():\n    pass\n\n\n"
        "def test_on_cpu():\n    pass\n")
    return d


def pytest_run(folder, *args) -> subprocess.CompletedProcess:
    """pytest in ``folder`` with pyproject.toml's markers and addopts and no CUDA device."""
    env = {"PATH": "/usr/bin:/bin", "CUDA_VISIBLE_DEVICES": ""}
    command = [sys.executable, "-m", "pytest", "-c", str(PYPROJECT), "--rootdir", str(folder),
               "-p", "no:cacheprovider", *args, str(folder)]
    return subprocess.run(command, cwd=folder, env=env, capture_output=True, text=True,
                          timeout=300)


def test_selecting_gpu_tests_without_a_gpu_is_a_usage_error(folder):
    run = pytest_run(folder, "-m", "gpu")
    assert run.returncode == 4, run.stdout + run.stderr
    assert ("1 selected test(s) marked gpu, but torch sees no CUDA GPU" in run.stderr
            and "test_some.py::test_on_gpu" in run.stderr), run.stderr
    assert "passed" not in run.stdout and "skipped" not in run.stdout


def test_selecting_gpu_tests_in_xdist_workers_fails_each(folder):
    run = pytest_run(folder, "-n", "2", "-m", "gpu")
    assert run.returncode == 1, run.stdout + run.stderr
    assert "test_on_gpu: marked gpu, but torch sees no CUDA GPU" in run.stdout, run.stdout
    assert "1 error" in run.stdout and "skipped" not in run.stdout


def test_default_selection_is_unaffected(folder):
    run = pytest_run(folder)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "1 passed, 1 deselected" in run.stdout, run.stdout
