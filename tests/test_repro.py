"""Seeding, device resolution and the library fingerprint."""
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from glassbox.core import repro


def test_seed_everything_repeats_every_generator():
    repro.seed_everything(3)
    first = (np.random.rand(), torch.rand(2), __import__("random").random())
    repro.seed_everything(3)
    second = (np.random.rand(), torch.rand(2), __import__("random").random())
    assert first[0] == second[0] and torch.equal(first[1], second[1]) and first[2] == second[2]
    assert torch.are_deterministic_algorithms_enabled()


@pytest.mark.parametrize("bad", [-1, 1.5, "3", True])
def test_seed_must_be_a_non_negative_integer(bad):
    with pytest.raises(ValueError, match="seed must be a non-negative integer"):
        repro.seed_everything(bad)


def test_auto_device_is_cpu_without_cuda():
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert repro.resolve_device("auto").type == expected


def test_fingerprint_is_stable_and_short():
    assert repro.library_fingerprint() == repro.library_fingerprint()
    assert len(repro.library_fingerprint()) == 16


def test_fingerprint_covers_every_layer(tmp_path):
    """A change in any module of the package (not only in core/, where repro lives) changes the fingerprint."""
    import glassbox

    package = Path(glassbox.__file__).resolve().parent
    assert repro.library_fingerprint() == repro.library_fingerprint(package)
    copy = tmp_path / "glassbox"
    shutil.copytree(package, copy, ignore=shutil.ignore_patterns("__pycache__"))
    before = repro.library_fingerprint(copy)
    assert before == repro.library_fingerprint()
    target = copy / "studies" / "data.py"
    target.write_text(target.read_text() + "\n# changed\n")
    assert repro.library_fingerprint(copy) != before


def test_run_record_has_what_a_reader_needs():
    record = repro.run_record({"profile": "smoke"}, seed=1, device="cpu")
    for key in ("parameters", "seed", "device", "versions", "glassbox_source", "created"):
        assert key in record
    assert record["versions"]["numpy"] == np.__version__
