"""Progress reports that suit who is watching: a bar for a person, a few plain lines for everyone else.

A progress bar helps only a person watching a run live. In a notebook executed by papermill or by the
book build, ``tqdm`` writes every refresh as its own stderr output and ``tqdm.auto`` leaves a widget
(and a text copy) that fills the rendered page. So every training loop and long loop of the library
reports through :class:`Progress` / :func:`track`, which pick one of three modes (:func:`mode`):

- ``"bar"``: a ``tqdm.auto`` bar (a widget in a live notebook, text in a terminal). Chosen in an
  interactive Jupyter session (the front end accepts input, ``allow_stdin``; papermill, nbclient and
  the book build never do) and in a Python process whose stderr is a terminal.
- ``"log"``: everywhere else (executed notebooks, the book build, CI logs, redirected scripts):
  at most one line on stdout per epoch, and only when ``interval`` seconds passed since the last one;
  at the end the final numbers as a small table. Nothing goes to stderr.
- ``"off"``: nothing (also what ``enabled=False``, the library's ``progress=False``, gives).

The environment variable ``GLASSBOX_PROGRESS`` (``bar``, ``log`` or ``off``) overrides the choice.
"""
from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, Literal, TextIO, TypeVar

from tqdm.auto import tqdm

Mode = Literal["bar", "log", "off"]
MODES: tuple[str, ...] = ("bar", "log", "off")
ENV = "GLASSBOX_PROGRESS"
LOG_INTERVAL = 30.0  # seconds between two log lines (the last epoch's numbers always come at the end)
T = TypeVar("T")

__all__ = ["ENV", "MODES", "Progress", "mode", "track"]


def _kernel() -> Any:
    """The running IPython kernel, or None outside one (plain Python, terminal IPython)."""
    ipython = sys.modules.get("IPython")
    if ipython is None:
        return None
    shell = ipython.get_ipython()
    return getattr(shell, "kernel", None)


def mode() -> Mode:
    """How progress is shown in this process now: ``"bar"``, ``"log"`` or ``"off"`` (see module doc)."""
    chosen = os.environ.get(ENV, "").strip().lower()
    if chosen:
        if chosen not in MODES:
            raise ValueError(f"environment variable {ENV} must be one of {', '.join(MODES)}; got {chosen!r}")
        return chosen  # type: ignore[return-value]
    kernel = _kernel()
    if kernel is not None:  # a front end that takes input() has a person at it; nbclient sends allow_stdin=False
        return "bar" if getattr(kernel, "_allow_stdin", False) else "log"
    stream = sys.stderr
    return "bar" if stream is not None and stream.isatty() else "log"


def _count(n: int, unit: str) -> str:
    """``3 patients``, ``1 model``."""
    if n == 1:
        return f"{n} {unit}"
    return f"{n} {unit}es" if unit.endswith(("s", "sh", "ch", "x")) else f"{n} {unit}s"


def _number(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _table(record: Mapping[str, Any]) -> str:
    """One-row text table, each column as wide as its name or value."""
    cells = {name: _number(value) for name, value in record.items()}
    widths = {name: max(len(name), len(cell)) for name, cell in cells.items()}
    header = "  ".join(name.rjust(widths[name]) for name in cells)
    row = "  ".join(cell.rjust(widths[name]) for name, cell in cells.items())
    return f"  {header}\n  {row}"


class Progress:
    """Progress over ``total`` steps (batches, items), shown as :func:`mode` says.

    ``update(n)`` after each step; for training, ``end_epoch(epoch, record)`` after each epoch
    (``epochs`` is then the number of epochs of the run); ``close()`` at the end (or use ``with``).
    ``initial`` steps count as done already (a resumed run). ``enabled=False`` shows nothing.
    """

    def __init__(self, total: int, desc: str, *, unit: str = "item", initial: int = 0, epochs: int | None = None,
                 enabled: bool = True, interval: float = LOG_INTERVAL, stream: TextIO | None = None) -> None:
        self.total, self.desc, self.unit, self.epochs = int(total), desc, unit, epochs
        self.done = self.initial = int(initial)
        self.mode: Mode = mode() if enabled else "off"
        self.interval = float(interval)
        self._stream = stream
        self._began = self._last_line = time.perf_counter()
        self._record: dict[str, Any] | None = None
        self._printed_record = False
        self._closed = False
        self._bar = None
        if self.mode == "bar":
            self._bar = tqdm(total=self.total, initial=self.initial, desc=desc, unit=unit, dynamic_ncols=True,
                             leave=True)

    def _print(self, text: str) -> None:
        print(text, file=self._stream or sys.stdout, flush=True)

    def _due(self) -> bool:
        now = time.perf_counter()
        if now - self._last_line < self.interval:
            return False
        self._last_line = now
        return True

    def update(self, n: int = 1) -> None:
        """``n`` more steps done. In log mode a loop without epochs gets a line at most every ``interval`` s."""
        self.done += n
        if self._bar is not None:
            self._bar.update(n)
        elif self.mode == "log" and self.epochs is None and self.done < self.total and self._due():
            elapsed = time.perf_counter() - self._began
            self._print(f"{self.desc}: {self.done}/{_count(self.total, self.unit)} ({elapsed:.0f} s)")

    def end_epoch(self, epoch: int, record: Mapping[str, Any]) -> None:
        """Epoch ``epoch`` finished with these numbers: the bar's postfix, or (log mode) at most one line."""
        self._record = {"epoch": epoch} | {k: v for k, v in record.items() if k != "epoch"}
        self._printed_record = False
        if self._bar is not None:
            self._bar.set_postfix({k: _number(v) for k, v in record.items() if k not in ("epoch", "seconds")},
                                  refresh=False)
        elif self.mode == "log" and epoch != self.epochs and self._due():
            numbers = "  ".join(f"{k} {_number(v)}" for k, v in record.items() if k != "epoch")
            self._print(f"{self.desc}: epoch {epoch}/{self.epochs}  {numbers}")
            self._printed_record = True

    def close(self) -> None:
        """End the report; in log mode print what was done and the final numbers as a table."""
        if self._closed:
            return
        self._closed = True
        if self._bar is not None:
            self._bar.close()
            return
        if self.mode != "log" or self.done == self.initial:
            return
        elapsed = time.perf_counter() - self._began
        ran = (_count(self.done - self.initial, self.unit) if self.epochs is None or self._record is None
               else f"epoch {self._record['epoch']}/{self.epochs}")
        self._print(f"{self.desc}: {ran} in {elapsed:.1f} s")
        if self._record is not None and not self._printed_record:
            self._print(_table(self._record))

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def track(items: Iterable[T], desc: str, *, total: int | None = None, unit: str = "item",
          enabled: bool = True) -> Iterator[T]:
    """Yield ``items`` while reporting progress through :class:`Progress` (``total`` defaults to ``len``)."""
    if total is None:
        total = len(items)  # type: ignore[arg-type]
    with Progress(total, desc, unit=unit, enabled=enabled) as progress:
        for item in items:
            yield item
            progress.update(1)
