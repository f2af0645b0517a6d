"""The book's chapters: the one registry from chapter name to study module, and each chapter's set-up call.

Every chapter notebook starts with::

    from glassbox.chapters import setup_run
    run = setup_run("<chapter>", profile=profile, device=device, seed=seed, data_dir=data_dir)
    print(run)

:func:`setup_run` validates the parameters, seeds every generator, turns on deterministic algorithms, pins
the thread count (:data:`glassbox.core.repro.THREADS`) and returns a :class:`~glassbox.report.profiles.Run`
holding the chapter's typed configuration from its study module's ``PROFILES`` table.
This module sits above the studies (it is the only one that imports them all).
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from types import ModuleType
from typing import Any

from glassbox.core.repro import THREADS, pin_threads, resolve_device, seed_everything
from glassbox.core.store import access_log
from glassbox.report.profiles import PROFILE_NAMES, Run, resolve_data_dir, resolve_profile
from glassbox.studies import (
    data,
    feature_space,
    invariances,
    kspace,
    pixelwise,
    randomness,
    unet_training,
    verdicts,
)

CHAPTERS: dict[str, ModuleType] = {
    "data": data,
    "unet_training": unet_training,
    "feature_space": feature_space,
    "randomness": randomness,
    "invariances": invariances,
    "kspace": kspace,
    "pixelwise": pixelwise,
    "verdicts": verdicts,
}
"""Chapter name -> its study module (``glassbox.studies.<chapter>``), in the book's order."""

LEDGER_CHAPTER = "verdicts"
"""The chapter that gathers every other chapter's claims (it makes none itself and must run last)."""


def chapters_with_claims() -> list[str]:
    """The chapters whose study module defines ``claims``, in book order: each must save a claims ledger,
    and the Verdicts chapter fails on a missing or stale one."""
    return [name for name, module in CHAPTERS.items()
            if name != LEDGER_CHAPTER and callable(getattr(module, "claims", None))]


def chapters_without_claims() -> list[str]:
    """The chapters not converted to claims yet (their study module defines no ``claims``), in book order.
    The Verdicts chapter lists them as pending; the tests hold the list to a shrinking set."""
    return [name for name in CHAPTERS if name != LEDGER_CHAPTER and name not in chapters_with_claims()]


def profile_table(chapter: str) -> Mapping[str, Any]:
    """``{profile: config}`` of one chapter."""
    if chapter not in CHAPTERS:
        raise ValueError(f"unknown chapter {chapter!r}; known chapters: {sorted(CHAPTERS)}")
    table = CHAPTERS[chapter].PROFILES
    missing = [p for p in PROFILE_NAMES if p not in table]
    if missing:
        raise KeyError(f"glassbox.studies.{chapter}.PROFILES has no configuration for profile(s) {missing}")
    return table


def chapter_config(chapter: str, profile: str | None = None) -> Any:
    """The typed configuration of ``chapter`` on ``profile``."""
    return profile_table(chapter)[resolve_profile(profile)]


def setup_run(chapter: str, profile: str | None = None, device: str = "auto", seed: int = 0,
              data_dir: str | os.PathLike | None = None, deterministic: bool = True, threads: int = THREADS,
              **extra: Any) -> Run:
    """Validate a chapter's parameters, seed everything, pin the thread count and return the :class:`Run`.

    Fails at once, naming the parameter and the valid choices, for an unknown chapter or profile, an
    unavailable device, a seed outside ``[0, 2**32)``, a data folder that is missing or holds no DICOM files, or
    a data folder given to a chapter whose study module
    declares ``SIMULATED_ONLY`` (the reason).
    """
    config = chapter_config(chapter, profile)
    profile = resolve_profile(profile)
    torch_device = resolve_device(device)
    folder = resolve_data_dir(data_dir)
    simulated_only = getattr(CHAPTERS[chapter], "SIMULATED_ONLY", None)
    if folder is not None and simulated_only:
        raise ValueError(f"the {chapter} chapter runs on simulated data only: {simulated_only}; "
                         "call it with data_dir=None")
    seed_everything(seed, deterministic=deterministic)
    threads = pin_threads(threads)
    access_log(clear=True)  # the run's provenance lists the store entries from here on
    parameters = {"profile": profile, "device": device, "seed": seed, "threads": threads,
                  "data_dir": str(folder) if folder else None} | extra
    return Run(chapter=chapter, profile=profile, device=torch_device, seed=seed, data_dir=folder,
               config=config, parameters=parameters)
