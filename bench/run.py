"""Glassbox benchmarks: one runner, one table.

Each ``bench/bench_<topic>.py`` exposes ``run(quick: bool) -> list[Row]``. A row compares our code
against a reference measured *in the same run* (a ratio), so the table holds on a noisy machine.

    python bench/run.py            # all benchmarks
    python bench/run.py ct cka     # only topics whose name contains one of the words
    python bench/run.py --quick    # smaller sizes, for a smoke check of the runner itself
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent


@dataclass
class Row:
    """One line of the table: what was measured, against what, and whether it met its target."""

    name: str
    ours: float
    reference: float | None = None
    unit: str = "s"
    target: str = ""
    passed: bool | None = None
    note: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def ratio(self) -> float | None:
        if self.reference is None or self.ours == 0:
            return None
        return self.reference / self.ours


@contextmanager
def temporary_store(prefix: str = "bench-") -> Iterator[Path]:
    """Point ``GLASSBOX_STORE`` at an empty temporary folder, so a benchmark trains from scratch."""
    old = os.environ.get("GLASSBOX_STORE")
    with tempfile.TemporaryDirectory(prefix=prefix) as folder:
        os.environ["GLASSBOX_STORE"] = folder
        try:
            yield Path(folder)
        finally:
            if old is None:
                os.environ.pop("GLASSBOX_STORE", None)
            else:
                os.environ["GLASSBOX_STORE"] = old


def _load(path: Path):
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[path.stem] = module
    spec.loader.exec_module(module)
    return module


def _fmt(x: float | None) -> str:
    if x is None:
        return "-"
    if x == 0 or 1e-3 <= abs(x) < 1e5:
        return f"{x:.4g}"
    return f"{x:.3e}"


def print_table(rows: list[Row]) -> None:
    header = ["benchmark", "ours", "reference", "unit", "ref/ours", "target", "ok", "note"]
    lines = [[r.name, _fmt(r.ours), _fmt(r.reference), r.unit, _fmt(r.ratio), r.target,
              {True: "yes", False: "NO", None: "-"}[r.passed], r.note] for r in rows]
    widths = [max(len(str(c)) for c in col) for col in zip(header, *lines)]
    for line in [header, ["-" * w for w in widths], *lines]:
        print("  ".join(str(c).ljust(w) for c, w in zip(line, widths)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("topics", nargs="*", help="only benchmarks whose file name contains one of these")
    parser.add_argument("--quick", action="store_true", help="small sizes: checks the runner, not the targets")
    parser.add_argument("--json", type=Path, default=HERE.parent / ".bench" / "latest.json")
    args = parser.parse_args(argv)

    files = sorted(HERE.glob("bench_*.py"))
    if args.topics:
        files = [f for f in files if any(t in f.stem for t in args.topics)]
    rows: list[Row] = []
    for f in files:
        t0 = time.perf_counter()
        print(f">> {f.stem} ...", file=sys.stderr, flush=True)
        rows.extend(_load(f).run(quick=args.quick))
        print(f"   done in {time.perf_counter() - t0:.1f} s", file=sys.stderr, flush=True)
    print(f"\nGlassbox benchmarks on {platform.machine()} / {platform.python_version()}"
          f"{' (quick sizes)' if args.quick else ''}\n")
    print_table(rows)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps([asdict(r) | {"ratio": r.ratio} for r in rows], indent=2))
    return 1 if any(r.passed is False for r in rows) and not args.quick else 0


if __name__ == "__main__":
    sys.exit(main())
