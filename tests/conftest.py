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
