"""Tasks: the expensive artifacts of a chapter (trainings, feature extractions, simulations) as data.

Every study module exposes ``plan(config, *, seed, device, data_dir=None) -> list[Task]``: one task per
artifact its chapter computes through :func:`glassbox.core.store.get_or_compute`. A task's :attr:`Task.run`
makes *the same* ``get_or_compute`` call the chapter makes (same entry name, same config), so after a grid
has run every task, executing the chapter finds every artifact in the store and trains nothing. The grid
(``python -m glassbox.grid``) orders tasks by :attr:`Task.deps`, skips those already stored, and runs the rest
side by side.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from glassbox.core.store import key_of


@dataclass(frozen=True)
class Task:
    """One store entry of a chapter and how to compute it.

    ``entry`` and ``config`` are the ``name`` and ``config`` of the ``get_or_compute`` call that ``run``
    makes; ``deps`` are the :attr:`key` values of tasks whose entries ``run`` loads; ``gpu`` says the task
    wants a GPU when one is available.
    """

    entry: str
    config: Any
    run: Callable[[], Any] = field(compare=False)
    label: str = ""
    deps: tuple[str, ...] = ()
    gpu: bool = False

    @property
    def key(self) -> str:
        """The store key of this task's entry (the same as ``get_or_compute`` computes)."""
        return key_of(self.entry, self.config)
