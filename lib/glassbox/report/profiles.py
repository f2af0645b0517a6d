"""Profiles: what ``smoke``, ``quick`` and ``paper`` mean for every chapter, in one place.

- ``smoke``: seconds; the tests run every chapter and build the whole book on it.
- ``quick``: the default book build; minutes on a 2-core laptop CPU.
- ``paper``: the papers' protocols; meant for a GPU through papermill.

A chapter's parameters cell names ``profile``, ``device``, ``seed`` and ``data_dir``; its first code
call is :func:`glassbox.chapters.setup_run`, which validates them with the helpers here, seeds everything,
pins the thread count and returns a :class:`Run` with the chapter's typed configuration. The book's default profile comes from ``GLASSBOX_PROFILE``
(unset = ``quick``).
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from glassbox.core import store
from glassbox.core.paths import project_root
from glassbox.core.repro import notebook_fingerprint, run_record
from glassbox.data.dicom import DICOM_SUFFIXES, NoSeriesFoundError, first_dicom_file

PROFILE_NAMES: tuple[str, ...] = ("smoke", "quick", "paper")
"""The three profiles every chapter defines (each study module's ``PROFILE_NAMES`` maps these names to configs)."""
ENV_VAR = "GLASSBOX_PROFILE"


def default_profile() -> str:
    """The profile named by ``GLASSBOX_PROFILE``, or ``quick`` when it is unset."""
    value = os.environ.get(ENV_VAR, "").strip() or "quick"
    if value not in PROFILE_NAMES:
        raise ValueError(f"environment variable {ENV_VAR}={value!r} is not a profile; choose one of {PROFILE_NAMES}")
    return value


def resolve_profile(profile: str | None) -> str:
    """``None`` means the book's default profile; anything else must be a known profile name."""
    if profile is None:
        return default_profile()
    if profile not in PROFILE_NAMES:
        raise ValueError(f"profile must be one of {PROFILE_NAMES} (or None for ${ENV_VAR}), got {profile!r}")
    return profile


def resolve_data_dir(data_dir: str | os.PathLike | None) -> Path | None:
    """``None`` means simulated data; a given folder must exist and hold DICOM files somewhere below it."""
    if data_dir is None or data_dir == "":
        return None
    path = Path(data_dir).expanduser()
    if not path.is_dir():
        raise FileNotFoundError(f"data_dir={str(data_dir)!r} does not exist or is not a folder; "
                                "pass the root of a Mayo or TCIA DICOM tree, or None for simulated data")
    if first_dicom_file(path) is None:
        raise NoSeriesFoundError(f"data_dir={str(data_dir)!r} holds no DICOM files ({', '.join(DICOM_SUFFIXES)}) "
                                 "in it or any folder below it; pass the root of a Mayo or TCIA DICOM tree, or "
                                 "None for simulated data")
    return path


@dataclass(frozen=True)
class Run:
    """Everything a chapter needs to know about this execution."""

    chapter: str
    profile: str
    device: torch.device
    seed: int
    data_dir: Path | None
    config: Any
    parameters: dict[str, Any] = field(default_factory=dict)
    started_at: float = field(default_factory=time.time)
    """When :func:`glassbox.chapters.setup_run` made this run (seconds since the epoch): wall time starts here."""

    @property
    def simulated(self) -> bool:
        return self.data_dir is None

    def __str__(self) -> str:
        """What the chapter prints after set-up: the parameters of this run, then its configuration."""
        data = "simulated" if self.simulated else str(self.data_dir)
        threads = self.parameters.get("threads")
        return (f"chapter={self.chapter}  profile={self.profile}  device={self.device}  seed={self.seed}  "
                f"threads={threads}  data={data}\n{self.config}")

    def record(self) -> dict[str, Any]:
        """Parameters, versions, device and seed, for results files and store entries; also the fingerprint of
        the chapter's notebook (``book/<chapter>.ipynb``), the store entries this process loaded (hit) or
        computed (miss) so far, and the wall time since set-up."""
        record = run_record(self.parameters | {"chapter": self.chapter, "profile": self.profile,
                                               "config": self.config},
                            seed=self.seed, device=self.device)
        record["notebook_source"] = notebook_fingerprint(project_root() / "book" / f"{self.chapter}.ipynb")
        record["artifacts"] = [{"name": name, "key": key, "hit": hit} for name, key, hit in store.access_log()]
        record["wall_seconds"] = time.time() - self.started_at
        return record
