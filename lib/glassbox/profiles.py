"""Profiles: what ``smoke``, ``quick`` and ``paper`` mean for every chapter, in one place.

- ``smoke``: seconds; the tests run every chapter and build the whole book on it.
- ``quick``: the default book build; minutes on a 2-core laptop CPU.
- ``paper``: the papers' protocols; meant for a GPU through papermill.

A chapter's parameters cell names ``profile``, ``device``, ``seed`` and ``data_dir``; its first code
call is :func:`setup_run`, which validates them, seeds everything and returns a :class:`Run` with the
chapter's typed configuration. The book's default profile comes from ``GLASSBOX_PROFILE``
(unset = ``quick``).
"""
from __future__ import annotations

import importlib
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from glassbox.repro import resolve_device, run_record, seed_everything

PROFILES = ("smoke", "quick", "paper")
ENV_VAR = "GLASSBOX_PROFILE"


def default_profile() -> str:
    """The profile named by ``GLASSBOX_PROFILE``, or ``quick`` when it is unset."""
    value = os.environ.get(ENV_VAR, "").strip() or "quick"
    if value not in PROFILES:
        raise ValueError(f"environment variable {ENV_VAR}={value!r} is not a profile; choose one of {PROFILES}")
    return value


def resolve_profile(profile: str | None) -> str:
    """``None`` means the book's default profile; anything else must be a known profile name."""
    if profile is None:
        return default_profile()
    if profile not in PROFILES:
        raise ValueError(f"profile must be one of {PROFILES} (or None for ${ENV_VAR}), got {profile!r}")
    return profile


def resolve_data_dir(data_dir: str | os.PathLike | None) -> Path | None:
    """``None`` means simulated data; a given folder must exist and hold DICOM files somewhere below it."""
    if data_dir is None or data_dir == "":
        return None
    path = Path(data_dir).expanduser()
    if not path.is_dir():
        raise FileNotFoundError(f"data_dir={str(data_dir)!r} does not exist or is not a folder; "
                                "pass the root of a Mayo or TCIA DICOM tree, or None for simulated data")
    from glassbox.dicom import DICOM_SUFFIXES, NoSeriesFoundError, first_dicom_file

    if first_dicom_file(path) is None:
        raise NoSeriesFoundError(f"data_dir={str(data_dir)!r} holds no DICOM files ({', '.join(DICOM_SUFFIXES)}) "
                                 "in it or any folder below it; pass the root of a Mayo or TCIA DICOM tree, or "
                                 "None for simulated data")
    return path


# --- the per-chapter tables -------------------------------------------------------------------
# Each chapter's module holds a ``PROFILES = {"smoke": Config(...), "quick": ..., "paper": ...}`` table
# of its own frozen config dataclass, next to the code that reads it; this registry says where each
# table lives and is the one list of chapters. Tables are imported lazily to keep this module light.
CHAPTERS: dict[str, str] = {
    "data": "glassbox.ctdata:PROFILES",
    "pixelwise": "glassbox.pixelwise:PROFILES",
    "kspace": "glassbox.kspace_experiment:PROFILES",
    "invariances": "glassbox.invariance:PROFILES",
    "unet_training": "glassbox.qu:PROFILES",
    "feature_space": "glassbox.qu:PROFILES",
    "randomness": "glassbox.randomness:PROFILES",
}


def profile_table(chapter: str) -> Mapping[str, Any]:
    """``{profile: config}`` of one chapter."""
    if chapter not in CHAPTERS:
        raise ValueError(f"unknown chapter {chapter!r}; known chapters: {sorted(CHAPTERS)}")
    module_name, attribute = CHAPTERS[chapter].split(":")
    table = getattr(importlib.import_module(module_name), attribute)
    missing = [p for p in PROFILES if p not in table]
    if missing:
        raise KeyError(f"{CHAPTERS[chapter]} has no configuration for profile(s) {missing}")
    return table


def chapter_config(chapter: str, profile: str | None = None) -> Any:
    """The typed configuration of ``chapter`` on ``profile``."""
    return profile_table(chapter)[resolve_profile(profile)]


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

    @property
    def simulated(self) -> bool:
        return self.data_dir is None

    def record(self) -> dict[str, Any]:
        """Parameters, versions, device and seed, for results files and store entries."""
        return run_record(self.parameters | {"chapter": self.chapter, "profile": self.profile,
                                             "config": self.config},
                          seed=self.seed, device=self.device)


def setup_run(chapter: str, profile: str | None = None, device: str = "auto", seed: int = 0,
              data_dir: str | os.PathLike | None = None, deterministic: bool = True,
              **extra: Any) -> Run:
    """Validate a chapter's parameters, seed everything and return the :class:`Run`.

    Fails at once, naming the parameter and the valid choices, for an unknown profile, an
    unavailable device, a seed outside ``[0, 2**32)``, or a data folder that is missing or holds no DICOM files.
    """
    profile = resolve_profile(profile)
    torch_device = resolve_device(device)
    folder = resolve_data_dir(data_dir)
    seed_everything(seed, deterministic=deterministic)
    config = chapter_config(chapter, profile)
    parameters = {"profile": profile, "device": device, "seed": seed,
                  "data_dir": str(folder) if folder else None} | extra
    return Run(chapter=chapter, profile=profile, device=torch_device, seed=seed, data_dir=folder,
               config=config, parameters=parameters)
