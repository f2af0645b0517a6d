"""Dry runs: every loop of a computation takes its first step and stops, so a configuration is tried in minutes.

``python -m glassbox.grid run <chapter> --profile paper --dry-run`` runs each task of a profile inside
:func:`dry_run`. Training loops wrap their epoch loop and their batch loop in :func:`steps`::

    for epoch in dryrun.steps(range(start + 1, epochs + 1), "denoiser"):
        for batch in dryrun.steps(loader, "denoiser"):
            ...

Outside a dry run :func:`steps` hands the iterable back untouched (no cost, no change to any number). In a
dry run it yields the first item only, so a loop builds its model, its optimiser and its first batch, takes one
optimisation step, runs the per-epoch code once (validation, checkpoint) and returns a model of the right
shapes: what a user wants to learn on a laptop before an hour on a GPU -- do the configuration, the shapes
and the memory fit? A loop that *builds data* which later code needs in full (a simulated data set) asks
:func:`active` and fills the rest with copies of its first item (same shapes, same memory, no physics).

A computation that depends on another task's result finds it (trained for one step) in the dry run's own
scratch store, which the grid creates and deletes: a dry run never writes into the real store.
:func:`dry_run` yields a :class:`DryRunLog` naming every loop that was cut short, so a task that ran to its
end without meeting a hook is visible (its loop lacks the hook).
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TypeVar

T = TypeVar("T")


@dataclass
class DryRunLog:
    """Where a dry run cut loops short: ``{loop name: number of times}``."""

    cut: dict[str, int] = field(default_factory=dict)

    def record(self, where: str) -> None:
        self.cut[where] = self.cut.get(where, 0) + 1


_log: DryRunLog | None = None


def active() -> bool:
    """True inside :func:`dry_run`."""
    return _log is not None


@contextmanager
def dry_run() -> Iterator[DryRunLog]:
    """Run the enclosed code as a dry run (loops wrapped in :func:`steps` take one step); not re-entrant."""
    global _log
    if _log is not None:
        raise RuntimeError("a dry run is already active in this process")
    _log = DryRunLog()
    try:
        yield _log
    finally:
        _log = None


def steps(iterable: Iterable[T], where: str) -> Iterable[T]:
    """``iterable`` itself; in a dry run, only its first item (``where`` names the loop in the log)."""
    if _log is None:
        return iterable
    return _first(iterable, where, _log)


def _first(iterable: Iterable[T], where: str, log: DryRunLog) -> Iterator[T]:
    for item in iterable:
        yield item
        log.record(where)
        return


def note(where: str) -> None:
    """Record in the dry run's log that the loop ``where`` was cut short by hand (see :func:`active`)."""
    if _log is not None:
        _log.record(where)
