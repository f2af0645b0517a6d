"""Execute the book's chapters side by side into Jupyter Book's execution cache, before ``jupyter-book build``.

Jupyter Book 1 executes the notebooks of a build one after another while Sphinx reads them, so on a
machine with several cores the chapters (minutes each on ``quick``, even when the grid has trained every
model) leave all but one core idle. This step executes every cacheable chapter in parallel (one process
per core, jupyter-cache's ``local-parallel`` executor, the notebook's folder as working directory, as
MyST-NB runs them) into the very cache folder the build then reads: :func:`glassbox.report.sphinx.cache_folder`
for this library source and profile. The build finds each chapter by the hash of its code cells (the
same function as MyST-NB's match) and executes nothing but the chapters that force execution (Verdicts,
which reads the others' results files, so it runs last, in the build).

A chapter that fails here is not cached: the build then executes it again and fails with its traceback,
as it would without this step. ``make book`` runs it between the grid and the build::

    python -m glassbox.report.prebuild --path-output .     # the folder given to jupyter-book --path-output
"""
from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import nbformat
import yaml
from jupyter_cache import get_cache
from jupyter_cache.executors import load_executor

from glassbox.core.paths import project_root
from glassbox.core.repro import library_fingerprint
from glassbox.report.profiles import default_profile
from glassbox.report.sphinx import cache_folder

DEFAULT_TIMEOUT_S = 30  # Jupyter Book 1's per-cell limit (seconds) when _config.yml sets no execute.timeout


def _book_file(book: Path, name: str) -> Path:
    """The book's ``name`` (``_toc.yml``, ``_config.yml``): beside the source folder, as ours, or inside it."""
    path = book.parent / name if (book.parent / name).is_file() else book / name
    if not path.is_file():
        raise FileNotFoundError(f"no {name} beside or inside {book}")
    return path


def execution_timeout(book: Path) -> int:
    """The per-cell time limit the build uses (``execute.timeout`` of ``_config.yml``), so both steps agree."""
    config = yaml.safe_load(_book_file(book, "_config.yml").read_text()) or {}
    return int((config.get("execute") or {}).get("timeout", DEFAULT_TIMEOUT_S))


def toc_notebooks(book: Path) -> list[Path]:
    """The ``.ipynb`` files the book's table of contents names, in its order."""
    data = yaml.safe_load(_book_file(book, "_toc.yml").read_text())
    chapters = list(data.get("chapters", [])) + [c for part in data.get("parts", []) for c in part.get("chapters", [])]
    names = [data["root"]] + [c["file"] for c in chapters if "file" in c]
    return [book / f"{name}.ipynb" for name in names if (book / f"{name}.ipynb").is_file()]


def forces_execution(notebook: nbformat.NotebookNode) -> bool:
    """True when the notebook's metadata sets ``mystnb.execution_mode`` to something other than the cache."""
    mode = notebook.metadata.get("mystnb", {}).get("execution_mode")
    return mode not in (None, "cache")


def prebuild(book: Path, path_output: Path) -> dict[str, str]:
    """Execute the cacheable chapters of ``book`` in parallel (one process per core) into the build's execution cache.

    Returns ``{notebook name: "cached" | "executed" | "failed: <error>"}``.
    """
    outdir = Path(path_output).resolve() / "_build" / "html"  # what jupyter-book build --path-output gives Sphinx
    folder = cache_folder(outdir, default_profile(), library_fingerprint())
    folder.parent.mkdir(parents=True, exist_ok=True)
    cache = get_cache(str(folder))
    book = Path(book).resolve()
    sources = {path: nbformat.read(path, as_version=4) for path in toc_notebooks(book)}
    notebooks = {path: nb for path, nb in sources.items() if not forces_execution(nb)}
    status: dict[str, str] = {}
    todo = []
    for path, notebook in notebooks.items():
        try:
            cache.match_cache_notebook(notebook)
            status[path.stem] = "cached"
        except KeyError:
            todo.append(str(cache.add_nb_to_project(str(path)).uri))
    if todo:
        print(f"executing {len(todo)} chapters side by side into {folder}", flush=True)
        load_executor("local-parallel", cache).run_and_cache(filter_uris=todo, timeout=execution_timeout(book),
                                                             allow_errors=False)
    for path, notebook in notebooks.items():
        if path.stem in status:
            continue
        try:
            cache.match_cache_notebook(notebook)
            status[path.stem] = "executed"
        except KeyError:
            record = cache.get_project_record(str(path))
            error = (record.traceback or "no traceback").strip().splitlines()[-1:] if record else ["not staged"]
            status[path.stem] = f"failed: {error[0] if error else ''}"
    return status


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("book", nargs="?", default=str(project_root() / "book"), help="the book's source folder")
    parser.add_argument("--path-output", default=".", help="the folder given to jupyter-book build --path-output")
    args = parser.parse_args(argv)
    status = prebuild(Path(args.book), Path(args.path_output))
    for name, state in status.items():
        print(f"{name:16s} {state}")
    # a failed chapter is executed (and reported) again by the build; this step itself does not fail it
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
