"""Measure the margins of a chapter's quality checks over several seeds (issue 12: a threshold a build may break on
needs a margin measured over at least 3 seeds and both thread settings).

    python scripts/check_margins.py --profile quick --seeds 0 1 2 --out /tmp/margins.json unet_training feature_space

For each chapter and seed it runs the study's entry point and ``checks`` (through the store at ``$GLASSBOX_STORE``,
so chapters sharing trainings share them), and prints every quality check's value, threshold and distance to it.
The thread count is pinned by ``setup_run`` (one thread), so the environment's thread setting does not change the
numbers; compare two runs' results with ``scripts/compare_results.py`` to show it.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path


def distance(value: float | None, threshold: str) -> float | None:
    """How far ``value`` is inside its threshold (``> a``, ``< b`` or both); negative when it fails."""
    if value is None:
        return None
    margins = []
    for op, bound in re.findall(r"([<>])\s*(-?[0-9.eE+-]+)", threshold):
        margins.append(value - float(bound) if op == ">" else float(bound) - value)
    return min(margins) if margins else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("chapters", nargs="+")
    parser.add_argument("--profile", default="quick", choices=("smoke", "quick", "paper"))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)

    from glassbox.chapters import CHAPTERS, setup_run

    rows = []
    for seed in args.seeds:
        for chapter in args.chapters:
            run = setup_run(chapter, profile=args.profile, seed=seed)
            study = CHAPTERS[chapter]
            start = time.perf_counter()
            result = study.run(run.config, seed=seed, device=run.device, progress=False)
            for check in study.checks(result):
                if check.kind != "quality":
                    continue
                rows.append({"chapter": chapter, "seed": seed, "check": check.id, "value": check.value,
                             "threshold": check.threshold, "passed": check.passed,
                             "distance": distance(check.value, check.threshold)})
                print(json.dumps(rows[-1]), flush=True)
            print(f"{chapter} seed {seed}: {time.perf_counter() - start:.0f} s", flush=True)
            args.out.write_text(json.dumps(rows, indent=1))
    worst = {}
    for row in rows:
        key = (row["chapter"], row["check"])
        if row["distance"] is not None and (key not in worst or row["distance"] < worst[key]["distance"]):
            worst[key] = row
    print("\nsmallest distance to the threshold over the seeds:")
    for (chapter, check), row in worst.items():
        print(f"  {chapter:15s} {check:25s} {row['distance']:+.4g} (seed {row['seed']}, value {row['value']:.4g}, "
              f"threshold {row['threshold']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
