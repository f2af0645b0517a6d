"""Compare two folders of ``results/<chapter>.json``: every number of ours must be equal.

    python scripts/compare_results.py RUN_A/results RUN_B/results [--rtol 0]

The run record (timestamps, thread count, library hash, argv) differs between runs by design and is not
compared, nor are wall-clock timings (any key containing ``seconds``: a measurement of the machine, not a
result); everything else under ``ours``, ``paper``, ``claims`` and ``checks`` is.
Exit status 1 lists every difference. Used for "same numbers before and after a refactor" and "same
numbers with 1 and 2 threads".
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

IGNORED_TOP_LEVEL = {"record", "provenance"}


def differences(a: Any, b: Any, where: str, rtol: float) -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for key in sorted(set(a) | set(b)):
            if "seconds" in str(key):
                continue
            if key not in a or key not in b:
                out.append(f"{where}.{key}: only in {'second' if key not in a else 'first'}")
            else:
                out += differences(a[key], b[key], f"{where}.{key}", rtol)
        return out
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return [f"{where}: lengths {len(a)} != {len(b)}"]
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in differences(x, y, f"{where}[{i}]", rtol)]
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        if a == b or (rtol > 0 and math.isclose(a, b, rel_tol=rtol, abs_tol=0.0)):
            return []
        return [f"{where}: {a!r} != {b!r}"]
    return [] if a == b else [f"{where}: {a!r} != {b!r}"]


def compare_folders(first: Path, second: Path, rtol: float = 0.0) -> list[str]:
    names_a = {p.name for p in first.glob("*.json")}
    names_b = {p.name for p in second.glob("*.json")}
    out = [f"{n}: missing in {second}" for n in sorted(names_a - names_b)]
    out += [f"{n}: missing in {first}" for n in sorted(names_b - names_a)]
    for name in sorted(names_a & names_b):
        a = json.loads((first / name).read_text())
        b = json.loads((second / name).read_text())
        for key in IGNORED_TOP_LEVEL:
            a.pop(key, None)
            b.pop(key, None)
        out += differences(a, b, name, rtol)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("first", type=Path)
    parser.add_argument("second", type=Path)
    parser.add_argument("--rtol", type=float, default=0.0, help="relative tolerance (default: exact)")
    args = parser.parse_args(argv)
    if not any(args.first.glob("*.json")):
        print(f"no results files in {args.first}", file=sys.stderr)
        return 2
    diffs = compare_folders(args.first, args.second, args.rtol)
    n = len(list(args.first.glob("*.json")))
    if diffs:
        print(f"{len(diffs)} differences:")
        print("\n".join(diffs[:200]))
        return 1
    print(f"identical: {n} results files")
    return 0


if __name__ == "__main__":
    sys.exit(main())
