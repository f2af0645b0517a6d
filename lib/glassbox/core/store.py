"""One get-or-compute store for expensive results (simulated data sets, trained models, features).

An entry is keyed by a stable hash of ``(name, config, glassbox source)``. Keying on the library's
source makes stale results impossible: change any line of ``lib/glassbox`` and every entry is
recomputed (the jupyter-cache, which does not see ``lib/``, is keyed the same way by
:mod:`glassbox.report.sphinx`). Keys that depend on real data hold a fingerprint of the data's content
(:func:`glassbox.data.lowdose_ct.pairs_fingerprint`), never a folder path.

Each entry is two files in ``<store>/<name>/``: ``<key>.pt`` (the value) and ``<key>.json`` (config,
run record and the SHA-256 of the ``.pt``). An entry whose payload is missing, truncated or does not
match its checksum is recomputed with a :class:`StoreWarning`.

**Loading never runs code.** Entries arrive from elsewhere (a copied ``artifacts/`` folder, a shared
``GLASSBOX_STORE``), and the checksum catches damage, not tampering. So a value may hold only tensors
and plain data -- ``None``, ``bool``, ``int``, ``float``, ``str``, ``bytes``, tensors, ``torch.Size``,
dtypes and devices, NumPy arrays and scalars of numeric, bool or string dtype, lists, tuples, dicts,
and dataclasses and enums defined in ``glassbox`` -- and is read with ``torch.load(weights_only=True)``,
whose unpickler builds tensors and plain containers and refuses every other class or function. NumPy
values, dataclasses and enums are written as tagged tuples of plain data (see :func:`encode_value`);
a dataclass is rebuilt field by field without calling its ``__init__``, and only when it is a
dataclass of a ``glassbox`` module. An entry that holds anything else is refused with
:class:`UnsafeEntryError` (it was not written by this store), not loaded and not silently recomputed.

**Many writers** (several processes, or machines sharing a filesystem) are safe:

- one lock per key (``filelock``; ``<store>/<name>/.<key>.lock``) is held while an entry is
  computed and written, so a second process asking for the same key waits and then loads it instead
  of computing it again;
- the payload is written to a temporary file in the same folder, flushed and ``fsync``'d, and hashed
  *before* it is renamed into place; the metadata (with that hash) follows the same way, then the
  folder is ``fsync``'d -- payload and checksum always come from one writer;
- files are created with mode ``0o666`` minus the umask (``0644`` with the usual umask), like any
  other file the user writes, so a shared store is readable by the group;
- temporary files left by a killed writer are deleted by the next write in their folder: at once when
  the writer ran on this machine and its process is gone, else once untouched for
  :data:`ORPHAN_AGE_S` seconds.
"""
from __future__ import annotations

import collections
import dataclasses
import hashlib
import importlib
import json
import math
import os
import pickle
import re
import secrets
import socket
import time
import warnings
from collections.abc import Callable, Mapping
from enum import Enum
from pathlib import Path
from typing import IO, Any, TypeVar

import numpy as np
import torch
from filelock import FileLock, Timeout

from glassbox.core import repro
from glassbox.core.paths import store_dir
from glassbox.core.repro import library_fingerprint, run_record

T = TypeVar("T")

FORMAT = "glassbox-store/2"
"""Written into every payload and its metadata; an entry of another format is refused."""
ORPHAN_AGE_S = 3600.0
"""A temporary file untouched this long is an orphan even when its writer's liveness cannot be checked."""
_TAG = "\x00glassbox-store:"  # first element of a tagged tuple; a user tuple starting like this is escaped
_NUMPY_KINDS = "biufcUS"  # bool, integers, floats, complex, str, bytes: fixed-size, no Python objects
_DTYPE = re.compile(r"^[<>|=]?[biufcUS]\d{1,4}$")
_QUALNAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
_TEMP = re.compile(r"^\..+\.(?P<host>[A-Za-z0-9_-]+)\.(?P<pid>\d+)\.[0-9a-f]+\.tmp$")
_PLAIN_KEYS = (str, int, float, bool, type(None), bytes)


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


class UnsafeEntryError(ValueError):
    """A store entry holds something other than tensors and plain data; it was refused, not loaded."""


# --- keys -------------------------------------------------------------------------------------------


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


# --- values: tensors and plain data only --------------------------------------------------------------

_STORABLE = ("tensors, torch.Size, dtypes, devices, NumPy arrays and scalars (numeric, bool or string dtype), "
             "None, bool, int, float, str, bytes, lists, tuples, dicts, and dataclasses and enums of glassbox")


def _glassbox_class(cls: type, where: str) -> str:
    """``module:qualname`` of a class the store may rebuild (defined at module level in glassbox)."""
    module, qualname = cls.__module__, cls.__qualname__
    if not (module == "glassbox" or module.startswith("glassbox.")) or not _QUALNAME.match(qualname):
        raise TypeError(f"{where}: cannot store a {module}.{qualname}; the store rebuilds only dataclasses and "
                        f"enums defined at module level in glassbox (it holds {_STORABLE})")
    return f"{module}:{qualname}"


def encode_value(value: Any, where: str = "value") -> Any:
    """``value`` as tensors and plain containers that ``torch.load(weights_only=True)`` reads back.

    NumPy arrays become ``(tag, dtype, shape, uint8 tensor of the bytes)``, NumPy scalars
    ``(tag, dtype, bytes)``, glassbox dataclasses ``(tag, "module:qualname", {field: value})`` and
    glassbox enums ``(tag, "module:qualname", value)``. Anything else raises TypeError naming where it sits.
    """
    kind = type(value)
    if kind in (type(None), bool, int, float, str, bytes, torch.Size, torch.dtype, torch.device):
        return value
    if kind in (torch.Tensor, torch.nn.Parameter):
        return value
    if kind is np.ndarray or isinstance(value, np.generic):
        dtype = value.dtype
        if dtype.kind not in _NUMPY_KINDS or dtype.fields is not None or not _DTYPE.match(dtype.str):
            raise TypeError(f"{where}: cannot store a NumPy value of dtype {dtype}; use a numeric, bool or "
                            "string dtype (object and structured arrays can hold code)")
        if isinstance(value, np.generic):
            return (_TAG + "numpy-scalar", dtype.str, value.tobytes())
        # a copy: an array may share memory with a tensor of the value (``t.numpy()``), and torch.save refuses
        # one storage seen as two dtypes
        flat = np.ascontiguousarray(value).reshape(-1).view(np.uint8).copy()
        return (_TAG + "ndarray", dtype.str, tuple(int(n) for n in value.shape), torch.from_numpy(flat))
    if isinstance(value, Enum):
        return (_TAG + "enum", _glassbox_class(kind, where), encode_value(value.value, f"{where}.value"))
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        name = _glassbox_class(kind, where)
        fields = [f.name for f in dataclasses.fields(value)]
        extra = sorted(set(getattr(value, "__dict__", {})) - set(fields))
        if extra:
            raise TypeError(f"{where}: the {kind.__name__} has attributes that are not fields ({extra}); "
                            "the store keeps only dataclass fields")
        return (_TAG + "dataclass", name, {f: encode_value(getattr(value, f), f"{where}.{f}") for f in fields})
    if kind in (dict, collections.OrderedDict):
        out = kind()
        for k, v in value.items():
            if not _plain_key(k):
                raise TypeError(f"{where}: cannot store the dict key {k!r} ({type(k).__name__}); "
                                "keys must be str, int, float, bool, None, bytes or tuples of them")
            out[k] = encode_value(v, f"{where}[{k!r}]")
        return out
    if kind is list:
        return [encode_value(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if kind is tuple:
        items = tuple(encode_value(v, f"{where}[{i}]") for i, v in enumerate(value))
        if items and isinstance(items[0], str) and items[0].startswith(_TAG):
            return (_TAG + "tuple", list(items))
        return items
    raise TypeError(f"{where}: cannot store a {kind.__module__}.{kind.__qualname__}; the store holds {_STORABLE} "
                    "(nothing that runs code when loaded)")


def _plain_key(key: Any) -> bool:
    if type(key) is tuple:
        return all(_plain_key(k) for k in key)
    return type(key) in _PLAIN_KEYS


def _rebuild_class(name: Any, where: str) -> type:
    """The glassbox class named ``module:qualname``, imported only from glassbox modules."""
    if not isinstance(name, str) or name.count(":") != 1:
        raise UnsafeEntryError(f"{where}: class name {name!r} is not 'module:qualname'")
    module_name, qualname = name.split(":")
    if not (module_name == "glassbox" or module_name.startswith("glassbox.")) \
            or not _QUALNAME.match(module_name) or not _QUALNAME.match(qualname):
        raise UnsafeEntryError(f"{where}: refusing to rebuild {name!r}: only classes of glassbox are rebuilt")
    try:
        obj: Any = importlib.import_module(module_name)
        for part in qualname.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as exc:
        raise UnsafeEntryError(f"{where}: class {name!r} does not exist in this glassbox ({exc})") from exc
    if not isinstance(obj, type) or obj.__module__ != module_name:
        raise UnsafeEntryError(f"{where}: {name!r} is not a class defined in {module_name}")
    return obj


def decode_value(value: Any, where: str = "value") -> Any:
    """Inverse of :func:`encode_value`; raises :class:`UnsafeEntryError` for anything it did not write."""
    kind = type(value)
    if kind in (type(None), bool, int, float, str, bytes, torch.Size, torch.dtype, torch.device,
                torch.Tensor, torch.nn.Parameter):
        return value
    if kind is list:
        return [decode_value(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if kind in (dict, collections.OrderedDict):
        out = kind()
        for k, v in value.items():
            if not _plain_key(k):
                raise UnsafeEntryError(f"{where}: dict key of type {type(k).__name__}")
            out[k] = decode_value(v, f"{where}[{k!r}]")
        return out
    if kind is not tuple:
        raise UnsafeEntryError(f"{where}: a {kind.__name__}, which the store never writes")
    if not (value and isinstance(value[0], str) and value[0].startswith(_TAG)):
        return tuple(decode_value(v, f"{where}[{i}]") for i, v in enumerate(value))
    tag, args = value[0][len(_TAG):], value[1:]
    if tag == "tuple" and len(args) == 1 and type(args[0]) is list:
        return tuple(decode_value(v, f"{where}[{i}]") for i, v in enumerate(args[0]))
    if tag in ("ndarray", "numpy-scalar"):
        dtype_str = args[0] if args else None
        if not isinstance(dtype_str, str) or not _DTYPE.match(dtype_str):
            raise UnsafeEntryError(f"{where}: NumPy dtype {dtype_str!r} is not a numeric, bool or string dtype")
        dtype = np.dtype(dtype_str)
        if tag == "numpy-scalar":
            if len(args) != 2 or type(args[1]) is not bytes or len(args[1]) != dtype.itemsize:
                raise UnsafeEntryError(f"{where}: malformed NumPy scalar")
            return np.frombuffer(args[1], dtype=dtype)[0]
        if len(args) != 3 or type(args[1]) is not tuple or type(args[2]) is not torch.Tensor \
                or args[2].dtype != torch.uint8 or not all(type(n) is int and n >= 0 for n in args[1]):
            raise UnsafeEntryError(f"{where}: malformed NumPy array")
        shape, data = args[1], args[2]
        if data.numel() != math.prod(shape) * dtype.itemsize:
            raise UnsafeEntryError(f"{where}: NumPy array of shape {shape} and dtype {dtype} with "
                                   f"{data.numel()} bytes")
        return data.numpy().view(dtype).reshape(shape)
    if tag == "enum" and len(args) == 2:
        cls = _rebuild_class(args[0], where)
        if not issubclass(cls, Enum):
            raise UnsafeEntryError(f"{where}: {args[0]!r} is not an enum")
        try:
            return cls(decode_value(args[1], f"{where}.value"))
        except ValueError as exc:
            raise UnsafeEntryError(f"{where}: {exc}") from exc
    if tag == "dataclass" and len(args) == 2 and type(args[1]) is dict:
        cls = _rebuild_class(args[0], where)
        if not dataclasses.is_dataclass(cls):
            raise UnsafeEntryError(f"{where}: {args[0]!r} is not a dataclass")
        fields = [f.name for f in dataclasses.fields(cls)]
        if sorted(args[1]) != sorted(fields):
            raise UnsafeEntryError(f"{where}: stored fields {sorted(args[1])} do not match "
                                   f"{args[0]}'s {sorted(fields)}")
        obj = cls.__new__(cls)  # like unpickling: no __init__ / __post_init__
        for field_name in fields:
            object.__setattr__(obj, field_name, decode_value(args[1][field_name], f"{where}.{field_name}"))
        return obj
    raise UnsafeEntryError(f"{where}: unknown or malformed tag {value[0]!r}")


# --- files ------------------------------------------------------------------------------------------


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "-", socket.gethostname())[:64] or "host"


def _temp_path(path: Path) -> Path:
    """A fresh temporary name next to ``path`` that says which host and process write it."""
    return path.with_name(f".{path.name}.{_host()}.{os.getpid()}.{secrets.token_hex(6)}.tmp")


def _fsync_folder(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some filesystems cannot sync a folder
        pass
    finally:
        os.close(fd)


def _write_temp(path: Path, write: Callable[[IO[bytes]], None]) -> Path:
    """Write a temporary file next to ``path`` (mode 0o666 minus the umask), flushed and fsync'd."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_path(path)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # the umask applies, as for open()
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp


def write_atomically(path: str | os.PathLike, write: Callable[[IO[bytes]], None]) -> Path:
    """Write ``path`` so that readers see the old file or the whole new one, never part of it.

    ``write(handle)`` fills a temporary file in the same folder; it is fsync'd, renamed over ``path``
    and the folder is fsync'd. The file gets mode ``0o666`` minus the umask, like any new file (not
    ``mkstemp``'s ``0o600``). Used for store entries, results files and training checkpoints.
    """
    path = Path(path)
    tmp = _write_temp(path, write)
    try:
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_folder(path.parent)
    return path


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return True  # exists but belongs to someone else (or cannot be asked): not ours to judge
    return True


def clean_orphans(folder: str | os.PathLike, *, max_age_s: float = ORPHAN_AGE_S) -> list[Path]:
    """Delete temporary files in ``folder`` whose writer is gone; return what was deleted.

    A temporary file is an orphan when its name says it was written on this host by a process that no
    longer exists, or (any host, any name) when it has not been touched for ``max_age_s`` seconds.
    """
    folder = Path(folder)
    removed = []
    if not folder.is_dir():
        return removed
    host, now = _host(), time.time()
    for path in folder.glob(".*.tmp"):
        match = _TEMP.match(path.name)
        try:
            dead = match is not None and match["host"] == host and not _pid_alive(int(match["pid"]))
            if dead or now - path.stat().st_mtime > max_age_s:
                path.unlink()
                removed.append(path)
        except FileNotFoundError:  # another writer cleaned it first
            continue
    return removed


# --- the store ---------------------------------------------------------------------------------------


class Store:
    """A folder of entries; see the module docstring for the layout and guarantees."""

    def __init__(self, root: Path | str | None = None):
        self.root = Path(root) if root is not None else store_dir()

    def paths(self, name: str, key: str) -> tuple[Path, Path]:
        if not name or "/" in name or "\\" in name or name.startswith("."):
            raise ValueError(f"store entry name must be a plain non-empty name, got {name!r}")
        if not key or not re.fullmatch(r"[A-Za-z0-9_-]+", key):
            raise ValueError(f"store key must be letters, digits, '_' or '-', got {key!r}")
        folder = self.root / name
        return folder / f"{key}.pt", folder / f"{key}.json"

    def lock(self, name: str, key: str) -> FileLock:
        """The inter-process lock of one entry (held while it is computed and written)."""
        payload, _ = self.paths(name, key)
        payload.parent.mkdir(parents=True, exist_ok=True)
        return FileLock(payload.with_name(f".{key}.lock"))  # created like other files: 0o666 minus the umask

    def _read(self, name: str, key: str) -> tuple[str, Any]:
        """("ok", value), ("absent", None) or ("damaged", reason); raises UnsafeEntryError."""
        payload, meta = self.paths(name, key)
        if not meta.exists():
            return "absent", None
        try:
            info = json.loads(meta.read_text())
            expected = info["sha256"]
            if not payload.exists():
                return "damaged", "payload file is missing"
            if _sha256(payload) != expected:
                return "damaged", "checksum mismatch (truncated or modified file)"
        except (OSError, ValueError, KeyError, TypeError) as exc:
            return "damaged", f"metadata unreadable: {type(exc).__name__}: {exc}"
        try:
            data = torch.load(payload, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as exc:
            lines = [line.strip() for line in str(exc).splitlines() if "nsupported" in line or "GLOBAL" in line]
            first_line = lines[0] if lines else "torch's weights-only unpickler refused it"
            raise UnsafeEntryError(
                f"store entry {payload} holds objects other than tensors and plain data, so loading it could "
                f"run code; refused ({first_line}). This store never writes such entries: it was made "
                f"elsewhere or tampered with. Delete {payload} and {meta.name} to recompute it.") from None
        except Exception as exc:  # noqa: BLE001 - a file torch cannot even open: damage
            return "damaged", f"torch cannot read it: {type(exc).__name__}: {exc}"
        if type(data) is not dict or data.get("format") != FORMAT or set(data) != {"format", "value"}:
            found = data.get("format") if type(data) is dict else type(data).__name__
            raise UnsafeEntryError(f"store entry {payload} is not a {FORMAT!r} entry (found {found!r}); refused. "
                                   f"Delete {payload} and {meta.name} to recompute it.")
        try:
            return "ok", decode_value(data["value"])
        except UnsafeEntryError as exc:
            raise UnsafeEntryError(f"store entry {payload}: {exc}; refused. Delete {payload} and {meta.name} "
                                   "to recompute it.") from None

    def load(self, name: str, key: str) -> tuple[bool, Any]:
        """(True, value) for a valid entry; (False, None) when absent or damaged (with a warning).

        Raises :class:`UnsafeEntryError` for an entry that holds more than tensors and plain data.
        """
        status, value = self._read(name, key)
        if status != "damaged":
            return (True, value) if status == "ok" else (False, None)
        with self.lock(name, key):  # maybe a writer was replacing it just now: look again under its lock
            return self._load_locked(name, key)

    def _load_locked(self, name: str, key: str) -> tuple[bool, Any]:
        """:meth:`load` for a caller that holds the entry's lock."""
        status, value = self._read(name, key)
        if status == "damaged":
            payload, _ = self.paths(name, key)
            warnings.warn(f"store entry {payload} is unreadable ({value}); recomputing it", StoreWarning,
                          stacklevel=4)
        return (True, value) if status == "ok" else (False, None)

    def _write(self, name: str, key: str, value: Any, record: Mapping[str, Any]) -> None:
        """Write one entry; the caller holds its lock."""
        payload, meta = self.paths(name, key)
        encoded = {"format": FORMAT, "value": encode_value(value)}  # fails before touching any file
        payload.parent.mkdir(parents=True, exist_ok=True)
        clean_orphans(payload.parent)
        tmp_payload = _write_temp(payload, lambda handle: torch.save(encoded, handle))
        tmp_meta = None
        try:
            info = dict(record) | {"name": name, "key": key, "format": FORMAT, "sha256": _sha256(tmp_payload)}
            text = json.dumps(info, indent=2, default=str).encode()
            tmp_meta = _write_temp(meta, lambda handle: handle.write(text))
            os.replace(tmp_payload, payload)
            os.replace(tmp_meta, meta)
        finally:
            tmp_payload.unlink(missing_ok=True)
            if tmp_meta is not None:
                tmp_meta.unlink(missing_ok=True)
        _fsync_folder(payload.parent)

    def save(self, name: str, key: str, value: Any, record: Mapping[str, Any]) -> None:
        """Write (or replace) one entry under its lock."""
        with self.lock(name, key):
            self._write(name, key, value, record)

    def get_or_compute(self, name: str, config: Mapping[str, Any] | Any, compute: Callable[[], T], *,
                       seed: int | None = None, device: Any = None, progress: bool = True) -> T:
        key = key_of(name, config)
        status, value = self._read(name, key)  # fast path: no lock for an entry that is there
        if status == "ok":
            _ACCESS_LOG.append((name, key, True))
            if progress:
                print(f"[store] {name}: loaded {key}")
            return value
        lock = self.lock(name, key)
        try:
            lock.acquire(timeout=0)
        except Timeout:
            if progress:
                print(f"[store] {name}: another process is computing {key}; waiting for it", flush=True)
            lock.acquire()
        try:
            found, value = self._load_locked(name, key)
            _ACCESS_LOG.append((name, key, found))
            if found:
                if progress:
                    print(f"[store] {name}: loaded {key}")
                return value
            if progress:
                print(f"[store] {name}: computing {key} ...", flush=True)
            value = compute()
            self._write(name, key, value, run_record(canonical(config), seed=seed, device=device))
            return value
        finally:
            lock.release()


def get_or_compute(name: str, config: Mapping[str, Any] | Any, compute: Callable[[], T], *,
                   root: Path | str | None = None, seed: int | None = None, device: Any = None,
                   progress: bool = True) -> T:
    """Return the stored value for ``(name, config)``, computing and storing it on a miss."""
    repro.ensure_pinned_threads()  # computed values must not depend on the machine's core count
    return Store(root).get_or_compute(name, config, compute, seed=seed, device=device, progress=progress)
