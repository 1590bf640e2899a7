"""Shared test settings.

The test tensors are small: one intra-op thread per process is fastest (with ``-n 2`` on two
cores, more threads only contend).

Tests marked ``gpu`` need a CUDA GPU. Selecting any of them (``pytest -m gpu``) where torch
sees none is an error, not a run that skips them all: a usage error (exit status 4) before any
test runs or, in a pytest-xdist worker (which cannot end the session), a failure of each of
them. The default selection (``-m 'not slow and not gpu'``, pyproject.toml) has none.
"""

import pytest
import torch

torch.set_num_threads(1)

NO_GPU = ("marked gpu, but torch sees no CUDA GPU: run them on the GPU machine, or deselect "
          "them with -m 'not gpu'")


@pytest.hookimpl(trylast=True)  # after -m and -k have deselected
def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available() or hasattr(config, "workerinput"):
        return
    gpu = [item.nodeid for item in items if item.get_closest_marker("gpu") is not None]
    if gpu:
        raise pytest.UsageError(f"{len(gpu)} selected test(s) {NO_GPU} (first: {gpu[0]})")


def pytest_runtest_setup(item):
    if item.get_closest_marker("gpu") is not None and not torch.cuda.is_available():
        pytest.fail(f"{item.nodeid}: {NO_GPU}", pytrace=False)
