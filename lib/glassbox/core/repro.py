"""Reproducibility: one call seeds every generator, deterministic kernels, a fixed thread count, and a record of
each run.

Randomness inside the library flows through explicit ``numpy.random.Generator`` / ``torch.Generator``
objects; :func:`seed_everything` exists for code we do not control (third-party layers, notebook cells).
"""
from __future__ import annotations

import hashlib
import json
import os
import platform
import random
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import torch
from threadpoolctl import threadpool_limits

from glassbox.core import checks
from glassbox.core.paths import project_root

DEVICES = ("auto", "cpu", "cuda")
SEED_LIMIT = 2**32
"""Chapter seeds are 32-bit: ``0 <= seed < SEED_LIMIT``. The library derives further seeds from them
(``seed + k``, ``seed * 100_003 + i``) that must stay below torch's ``2**64`` and the training loop's ``2**63``."""
_RECORDED_PACKAGES = ("torch", "numpy", "scipy", "scikit-image", "scikit-learn", "pydicom", "FrEIA",
                      "papermill", "jupyter-book")


THREADS = 1
"""Intra-op threads (torch, BLAS, OpenMP) of every run unless a run asks for another count.

The thread count changes the order of floating-point sums, so a default that followed the machine's core
count would make the same commit, profile and seed give different numbers on different machines. Parallelism
comes from running independent trainings side by side (one thread each), not from threads inside one."""

_pinned: int | None = None


def pin_threads(count: int = THREADS) -> int:
    """Use ``count`` threads in torch's intra-op pool and in the BLAS / OpenMP pools of this process."""
    global _pinned
    count = checks.integer(count, "threads")
    if torch.get_num_threads() != count:
        torch.set_num_threads(count)
    threadpool_limits(limits=count)
    _pinned = count
    return count


def ensure_pinned_threads() -> int:
    """Called by every training entry point: pin :data:`THREADS` unless this process already pinned a count
    (``setup_run`` does; a grid worker does at start), so library calls outside a chapter are reproducible too."""
    return _pinned if _pinned is not None else pin_threads(THREADS)


def pinned_threads() -> int | None:
    """The thread count pinned in this process, or ``None`` if none was."""
    return _pinned


@contextmanager
def threads(count: int) -> Iterator[int]:
    """Temporarily pin another thread count (an experiment *about* threads); the previous pin is restored."""
    global _pinned
    previous = _pinned
    before = torch.get_num_threads()
    pin_threads(count)
    try:
        yield count
    finally:
        if previous is None:
            torch.set_num_threads(before)
            threadpool_limits(limits=before)
            _pinned = None
        else:
            pin_threads(previous)


def seed_everything(seed: int, deterministic: bool = True) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA) and turn on deterministic algorithms.

    On CUDA, deterministic cuBLAS needs ``CUBLAS_WORKSPACE_CONFIG``; we set it when it is unset.
    ``deterministic=False`` leaves the fast non-deterministic GPU kernels on (used to *measure*
    GPU non-determinism).
    """
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or not 0 <= seed < SEED_LIMIT:
        raise ValueError(f"seed must be a non-negative integer below 2**32 = {SEED_LIMIT} (the library derives "
                         f"further seeds from it), got {seed!r}")
    random.seed(int(seed))
    np.random.seed(int(seed) % 2**32)
    torch.manual_seed(int(seed))
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(deterministic, warn_only=False)
    torch.backends.cudnn.deterministic = deterministic
    torch.backends.cudnn.benchmark = not deterministic


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """Turn the ``device`` parameter into a torch device; fail clearly if CUDA is asked for but absent."""
    if isinstance(device, torch.device):
        device = device.type
    if device not in DEVICES:
        raise ValueError(f"device must be one of {DEVICES}, got {device!r}")
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("device='cuda' was requested but CUDA is not available on this machine; "
                         "use device='cpu' or device='auto'")
    return torch.device(device)


def library_fingerprint(root: str | os.PathLike | None = None) -> str:
    """A short hash of the glassbox source code (every ``*.py`` under ``lib/glassbox``, all layers): results
    computed by other code never match it. ``root`` hashes another copy of the package (tests)."""
    root = Path(root) if root is not None else Path(__file__).resolve().parents[1]  # glassbox/, not glassbox/core/
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        digest.update(path.relative_to(root).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def notebook_fingerprint(path: str | os.PathLike) -> str | None:
    """A short hash of a notebook's code cells (``None`` if the file does not exist).

    Markdown and outputs are left out: the same code gives the same results. A results file records the
    fingerprint of its chapter's notebook so that the Verdicts chapter can tell a file written by other
    chapter code from a current one.
    """
    path = Path(path)
    if not path.is_file():
        return None
    try:
        cells = json.loads(path.read_text())["cells"]
    except (ValueError, KeyError) as exc:
        raise ValueError(f"{path} is not a notebook (JSON with a 'cells' list): {exc}") from exc
    digest = hashlib.sha256()
    for cell in cells:
        if cell.get("cell_type") == "code":
            source = cell.get("source", "")
            digest.update(("".join(source) if isinstance(source, list) else source).encode())
            digest.update(b"\0")
    return digest.hexdigest()[:16]


def git_state(folder: str | os.PathLike | None = None) -> dict[str, Any]:
    """``{"commit": sha, "dirty": bool}`` of the checkout holding ``folder`` (default: the project root).

    ``dirty`` is true when tracked files differ from the commit or untracked, not ignored files exist.
    Both are ``None`` outside a git checkout or without git.
    """

    root = Path(folder) if folder is not None else project_root()
    try:
        commit = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                                timeout=10)
        status = subprocess.run(["git", "-C", str(root), "status", "--porcelain"], capture_output=True,
                                text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}
    if commit.returncode != 0 or status.returncode != 0:
        return {"commit": None, "dirty": None}
    return {"commit": commit.stdout.strip(), "dirty": bool(status.stdout.strip())}


def package_versions() -> dict[str, str]:
    """Versions of the packages a result depends on (``"missing"`` when not installed)."""
    versions = {"python": platform.python_version()}
    for name in _RECORDED_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "missing"
    return versions


def run_record(parameters: dict[str, Any] | None = None, *, seed: int | None = None,
               device: torch.device | str | None = None) -> dict[str, Any]:
    """What is stored beside every result: parameters, versions, device (GPU name, CUDA version), seed,
    git commit and dirty flag, library hash, time."""
    device_name = str(device) if device is not None else "unspecified"
    gpu = None
    if device is not None and torch.device(device).type == "cuda" and torch.cuda.is_available():
        gpu = torch.cuda.get_device_name(torch.device(device))
        device_name = f"cuda ({gpu})"
    return {
        "parameters": dict(parameters or {}),
        "seed": seed,
        "device": device_name,
        "gpu": gpu,
        "cuda": torch.version.cuda,
        "versions": package_versions(),
        "git": git_state(),
        "glassbox_source": library_fingerprint(),
        "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
        "torch_threads": torch.get_num_threads(),
        "pinned_threads": _pinned,
        "platform": f"{platform.system()} {platform.machine()}",
        "argv0": Path(sys.argv[0]).name if sys.argv else "",
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
    }
