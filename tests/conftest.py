"""Test-session set-up: artifacts and results go to temporary folders, never into the checkout."""
import os

import pytest


@pytest.fixture(autouse=True, scope="session")
def _isolated_outputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("glassbox")
    old = {k: os.environ.get(k) for k in ("GLASSBOX_STORE", "GLASSBOX_RESULTS", "MPLBACKEND")}
    os.environ["GLASSBOX_STORE"] = str(root / "artifacts")
    os.environ["GLASSBOX_RESULTS"] = str(root / "results")
    os.environ["MPLBACKEND"] = "Agg"
    yield root
    for key, value in old.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    """Unit tests use tiny tensors: one thread is as fast and immune to OpenMP spin-waiting on a busy
    2-core machine (measured 5-10x slower with two threads under load). Results are unchanged."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# --- the smoke book, built once per test session -------------------------------------------------------
# tests/test_book.py asserts that it built without a warning; tests/test_browser.py opens every page of it
# in Chromium and tests/test_pdf.py prints it. `pytest --book-html PATH` checks an existing build instead.

import re  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from pathlib import Path  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SMOKE_BUILD = ROOT / "_build" / "smoke"  # jupyter-book --path-output: html in _build/smoke/_build/html


def pytest_addoption(parser):
    parser.addoption("--book-html", default=None, metavar="PATH",
                     help="browser-check this built book (the folder holding index.html) instead of building the "
                          "smoke book")
    parser.addoption("--pdf", default=None, metavar="PATH",
                     help="check this PDF (e.g. _build/pdf/glassbox.pdf from `make pdf`) instead of printing the "
                          "smoke book")
    parser.addoption("--paper-dry-runs", action="store_true", default=False,
                     help="also run the paper_dry_run tests: each chapter's paper profile as a grid dry run on the "
                          "CPU (several minutes per chapter; `make test-paper-dry-run`)")


def pytest_collection_modifyitems(config, items):
    """Skip ``paper_dry_run`` tests unless asked for: together they take longer than CI's time allows."""
    if config.getoption("--paper-dry-runs"):
        return
    skip = pytest.mark.skip(reason="paper dry runs are opt-in: make test-paper-dry-run (or --paper-dry-runs)")
    for item in items:
        if "paper_dry_run" in item.keywords:
            item.add_marker(skip)


@dataclass
class BookBuild:
    """A built book: ``html`` holds index.html; ``returncode``/``log`` are None/'' for a build given by path."""

    html: Path
    returncode: int | None = None
    log: str = ""
    read_order: tuple[str, ...] = ()
    output: Path | None = None  # the --path-output folder (its _build holds html/ and .jupyter_cache/)
    config: Path | None = None


def smoke_env() -> dict[str, str]:
    """The environment of a smoke book build. Without MPLBACKEND: the notebooks' kernels must use their inline
    backend, or `plt.show()` leaves no figure in the pages (Agg, set for the unit tests, draws nothing there)."""
    env = dict(os.environ)
    env.pop("MPLBACKEND", None)
    env.update(GLASSBOX_PROFILE="smoke", PYTHONUNBUFFERED="1")
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    return env


def jupyter_book() -> str:
    jb = shutil.which("jupyter-book", path=str(Path(sys.executable).parent))
    if jb is None:
        pytest.fail("jupyter-book is not installed in this environment; run `make setup`")
    return jb


@pytest.fixture(scope="session")
def smoke_book(request, _isolated_outputs) -> BookBuild:
    """The whole book built on smoke with -W (every warning an error), into _build/smoke, once per session.

    Every page is rebuilt (--all) and the old HTML removed, so no page or warning is left over from an
    earlier session; the execution cache (keyed on notebook code, library source and profile) is kept."""
    given = request.config.getoption("--book-html")
    if given:
        html = Path(given).resolve()
        if not (html / "index.html").is_file():
            pytest.fail(f"--book-html {given}: no index.html there")
        return BookBuild(html=html)
    import yaml

    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    config["execute"]["timeout"] = 600  # smoke cells take seconds: a stuck kernel fails fast, not after an hour
    SMOKE_BUILD.mkdir(parents=True, exist_ok=True)
    config_path = SMOKE_BUILD / "_config.yml"
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))  # order matters: require.js first
    html = SMOKE_BUILD / "_build" / "html"
    shutil.rmtree(html, ignore_errors=True)
    proc = subprocess.run([jupyter_book(), "build", "book/", "-W", "--keep-going", "--all", "--path-output",
                           str(SMOKE_BUILD), "--config", str(config_path)],
                          cwd=ROOT, env=smoke_env(), capture_output=True, text=True)
    plain = re.sub(r"\x1b\[[0-9;]*m", "", proc.stdout)
    read = tuple(re.findall(r"reading sources\.\.\. \[\s*\d+%\] (\S+)", plain))
    return BookBuild(html=html, returncode=proc.returncode, log=proc.stdout[-6000:] + proc.stderr[-6000:],
                     output=SMOKE_BUILD, config=config_path, read_order=read)


@pytest.fixture(scope="session")
def _tiny_pairs_once():
    from glassbox.data import lowdose_ct

    return lowdose_ct.simulate_patients(32, 3, 2, seed=0)


@pytest.fixture
def tiny_pairs(_tiny_pairs_once):
    """Three simulated patients of two 32x32 slices (``{id: (low, full)}`` in HU), simulated once per session;
    each test gets its own copy, so a test that changes the arrays changes nobody else's."""
    return {pid: (low.copy(), full.copy()) for pid, (low, full) in _tiny_pairs_once.items()}
