"""Write the student edition of every chapter with exercises: stubs and answer checks kept, solutions removed.

    python scripts/student_edition.py [--out _build/student] [chapter ...]

Each edition is ``<out>/<chapter>.ipynb`` (see :mod:`glassbox.report.student`); run it from ``<out>`` or copy
it into ``book/`` so that it finds the library. ``make student`` calls this script.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from glassbox.report.student import chapters_with_exercises, write_student_editions

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("chapters", nargs="*", help="chapters to convert (default: every chapter with exercises)")
    parser.add_argument("--out", type=Path, default=ROOT / "_build" / "student")
    args = parser.parse_args(argv)
    book = ROOT / "book"
    if args.chapters:
        missing = [c for c in args.chapters if not (book / f"{c}.ipynb").exists()]
        if missing:
            parser.error(f"no chapter notebook for {missing} in {book}")
        chapters = [book / f"{c}.ipynb" for c in args.chapters]
    else:
        chapters = chapters_with_exercises(book)
    for path in write_student_editions(book, args.out, chapters):
        print(f"student edition: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
