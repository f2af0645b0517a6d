"""Execute chapters with papermill into a results folder, one after another.

    python scripts/run_chapters.py --profile smoke --out /tmp/run1 [chapter ...]

Each chapter writes ``<out>/results/<chapter>.json``; executed notebooks land in ``<out>/notebooks/``.
The store is ``<out>/store`` unless ``--store`` names another one (e.g. a shared store of a grid run).
Used to compare runs (see ``scripts/compare_results.py``): before and after a refactor, or with 1 and 2
threads.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def toc_chapters() -> list[str]:
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    names = [chapter["file"] for part in toc.get("parts", []) for chapter in part.get("chapters", [])]
    return [n for n in names if (ROOT / "book" / f"{n}.ipynb").exists()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("chapters", nargs="*", help="chapters to run (default: every notebook in _toc.yml)")
    parser.add_argument("--profile", default="smoke", choices=("smoke", "quick", "paper"))
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--store", type=Path, default=None)
    args = parser.parse_args(argv)

    import papermill

    # the Verdicts chapter reads every other chapter's results: it runs last whatever order was asked for
    chapters = sorted(args.chapters or toc_chapters(), key=lambda name: name == "verdicts")
    out = args.out.resolve()
    (out / "notebooks").mkdir(parents=True, exist_ok=True)
    os.environ["GLASSBOX_RESULTS"] = str(out / "results")
    os.environ["GLASSBOX_STORE"] = str((args.store or out / "store").resolve())
    os.environ["GLASSBOX_PROFILE"] = args.profile
    os.environ.setdefault("MPLBACKEND", "Agg")
    for chapter in chapters:
        start = time.perf_counter()
        papermill.execute_notebook(str(ROOT / "book" / f"{chapter}.ipynb"), str(out / "notebooks" / f"{chapter}.ipynb"),
                                   parameters={"profile": args.profile}, kernel_name="python3",
                                   cwd=str(ROOT / "book"), progress_bar=False)
        print(f"{chapter}: {time.perf_counter() - start:.1f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
