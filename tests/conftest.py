"""Test-session set-up: artifacts and results go to temporary folders, never into the checkout."""
import os

import pytest


@pytest.fixture(autouse=True, scope="session")
def _isolated_outputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("glassbox")
    old = {k: os.environ.get(k) for k in ("GLASSBOX_STORE", "GLASSBOX_RESULTS", "MPLBACKEND")}
    os.environ["GLASSBOX_STORE"] = str(root / "artifacts")
    os.environ["GLASSBOX_RESULTS"] = str(root / "results")
    os.environ["MPLBACKEND"] = "Agg"
    yield root
    for key, value in old.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    """Unit tests use tiny tensors: one thread is as fast and immune to OpenMP spin-waiting on a busy
    2-core machine (measured 5-10x slower with two threads under load). Results are unchanged."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
