"""One get-or-compute store for expensive results (simulated data sets, trained models, features).

An entry is keyed by a stable hash of ``(name, config, glassbox source)``. Keying on the library's
source makes stale results impossible: change any line of ``lib/glassbox`` and every entry is
recomputed (the jupyter-cache, which does not see ``lib/``, is keyed the same way by
:mod:`glassbox.report.sphinx`).

Each entry is two files in ``<store>/<name>/``: ``<key>.pt`` (the value, via ``torch.save``) and
``<key>.json`` (config, run record and the SHA-256 of the ``.pt``). Both are written to a temporary
file and renamed into place, the ``.json`` last, so a killed run never leaves an entry that loads
as valid. An entry whose payload is missing, truncated or does not match its checksum is
recomputed with a warning.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import tempfile
import warnings
from collections.abc import Callable, Mapping
from enum import Enum
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch

from glassbox.core import repro
from glassbox.core.paths import store_dir
from glassbox.core.repro import library_fingerprint, run_record

T = TypeVar("T")


_ACCESS_LOG: list[tuple[str, str, bool]] = []
"""``(name, key, hit)`` of every :meth:`Store.get_or_compute` call of this process, in order (provenance)."""


def access_log(clear: bool = False) -> list[tuple[str, str, bool]]:
    """The entries this process asked the store for, ``(name, key, hit)``; ``clear`` empties the log."""
    entries = list(_ACCESS_LOG)
    if clear:
        _ACCESS_LOG.clear()
    return entries


class StoreWarning(UserWarning):
    """A store entry was unreadable and is being recomputed."""


def canonical(value: Any, where: str = "config") -> Any:
    """Turn a configuration into plain JSON types, so equal configs hash equally."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: canonical(getattr(value, f.name), f"{where}.{f.name}") for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise TypeError(f"{where}: keys must be strings, got {k!r}")
            out[k] = canonical(v, f"{where}.{k}")
        return out
    if isinstance(value, (list, tuple)):
        return [canonical(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, Enum):
        return canonical(value.value, where)
    if isinstance(value, (bool, type(None), str)):
        return value
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        value = float(value)
        if not math.isfinite(value):
            raise ValueError(f"{where}: non-finite number {value!r} cannot be part of a store key")
        return value
    if isinstance(value, Path):
        return value.as_posix()
    if isinstance(value, torch.device):
        return str(value)
    raise TypeError(f"{where}: cannot use a {type(value).__name__} in a store key; "
                    "use numbers, strings, lists, dicts or dataclasses of them")


def key_of(name: str, config: Mapping[str, Any] | Any) -> str:
    """The stable hash that names an entry."""
    text = json.dumps({"name": name, "config": canonical(config), "source": library_fingerprint()},
                      sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def _atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class Store:
    """A folder of entries; see the module docstring for the layout and guarantees."""

    def __init__(self, root: Path | str | None = None):
        self.root = Path(root) if root is not None else store_dir()

    def paths(self, name: str, key: str) -> tuple[Path, Path]:
        if not name or "/" in name or name.startswith("."):
            raise ValueError(f"store entry name must be a plain non-empty name, got {name!r}")
        folder = self.root / name
        return folder / f"{key}.pt", folder / f"{key}.json"

    def load(self, name: str, key: str) -> tuple[bool, Any]:
        """(True, value) for a valid entry; (False, None) when absent or damaged (with a warning)."""
        payload, meta = self.paths(name, key)
        if not meta.exists():
            return False, None
        try:
            info = json.loads(meta.read_text())
            if not payload.exists():
                raise OSError("payload file is missing")
            if _sha256(payload) != info["sha256"]:
                raise OSError("checksum mismatch (truncated or modified file)")
            return True, torch.load(payload, map_location="cpu", weights_only=False)
        except Exception as exc:  # noqa: BLE001 - any damage means: recompute
            warnings.warn(f"store entry {payload} is unreadable ({exc}); recomputing it", StoreWarning,
                          stacklevel=3)
            return False, None

    def save(self, name: str, key: str, value: Any, record: Mapping[str, Any]) -> None:
        payload, meta = self.paths(name, key)
        _atomic_write(payload, lambda tmp: torch.save(value, tmp))
        info = dict(record) | {"name": name, "key": key, "sha256": _sha256(payload)}
        _atomic_write(meta, lambda tmp: tmp.write_text(json.dumps(info, indent=2, default=str)))

    def get_or_compute(self, name: str, config: Mapping[str, Any] | Any, compute: Callable[[], T], *,
                       seed: int | None = None, device: Any = None, progress: bool = True) -> T:
        key = key_of(name, config)
        found, value = self.load(name, key)
        _ACCESS_LOG.append((name, key, found))
        if found:
            if progress:
                print(f"[store] {name}: loaded {key}")
            return value
        if progress:
            print(f"[store] {name}: computing {key} ...", flush=True)
        value = compute()
        self.save(name, key, value, run_record(canonical(config), seed=seed, device=device))
        return value


def get_or_compute(name: str, config: Mapping[str, Any] | Any, compute: Callable[[], T], *,
                   root: Path | str | None = None, seed: int | None = None, device: Any = None,
                   progress: bool = True) -> T:
    """Return the stored value for ``(name, config)``, computing and storing it on a miss."""
    repro.ensure_pinned_threads()  # computed values must not depend on the machine's core count
    return Store(root).get_or_compute(name, config, compute, seed=seed, device=device, progress=progress)
