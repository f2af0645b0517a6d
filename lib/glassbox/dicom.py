"""Real CT data on disk: read low-/full-dose pairs (Mayo Grand Challenge, TCIA) and write them back.

The public loaders return the same mapping as the simulator (:func:`glassbox.ctdata.simulate_patients`)::

    {patient_id: (low_dose (S, H, W) float32 HU, full_dose (S, H, W) float32 HU)}

so one downstream path serves simulated and real data. Pairs are matched per patient by sorted slice
position.

Layouts we accept (``layout="auto"`` tries them in this order):

**Mayo / AAPM 2016 Low Dose CT Grand Challenge.** A *dose folder* is a folder named
``full_<t>`` or ``quarter_<t>`` (``<t>`` = ``1mm``, ``3mm``, ...; optional ``_sharp`` suffix for the
D45 kernel, chosen with ``sharp=True``; case-insensitive). The patient id is the name of the folder
next to it in the path:

- classic: ``<root>/L067/full_1mm/L067_FD_1_1.CT.0001.0001.<...>.IMA`` (patient = parent folder);
- AAPM Box re-release: ``<root>/1mm B30/full_1mm/L067/full_1mm/*.IMA`` (the inner dose folder, so again
  patient = its parent), or ``.../full_1mm/L067/*.IMA`` (the files sit in the patient folder, whose parent
  is the dose folder).

Point ``root`` at one reconstruction (e.g. the ``1mm B30`` folder) when several kernels of the same
thickness exist; two folders for the same patient, dose and thickness raise :class:`DicomError`.

**TCIA LDCT-and-Projection-data** (NBIA Data Retriever):
``<root>/LDCT-and-Projection-data/<PatientID>/<StudyDate-...>/<SeriesNo-SeriesDescription-UID>/1-NNN.dcm``.
Every folder holding DICOM files is a candidate series; the dose comes from its ``SeriesDescription``
(or, when that is empty, the folder name), compared case-insensitively with ``-``/``_`` read as spaces:
"low dose", "quarter dose" or "reduced dose" means low dose, "full dose" means full dose; anything
else (and anything mentioning "projection") is ignored. The patient id is ``PatientID``, else the
folder two levels up. GE cases in that collection have full-dose images only: pass
``on_unpaired="skip"`` to leave them out (with a warning) instead of failing.

DICOM files are those ending in ``.IMA``, ``.dcm`` or ``.dicom`` (any case); hidden files and other
files are ignored. Symbolic links to folders inside the tree are not followed.

Pixel values: HU = stored * RescaleSlope + RescaleIntercept (:func:`pydicom.pixels.apply_rescale`).
Padding -- pixels equal to ``PixelPaddingValue`` (up to ``PixelPaddingRangeLimit``) and, by the Mayo
convention of storing -2000 outside the scan field of view, every pixel at or below -2000 HU -- is set to
air, -1000 HU. Other values are left as they are (noise in air may read below -1000 HU); clamp to
-1000 HU yourself before a forward projection (attenuation must be >= 0).
"""
from __future__ import annotations

import hashlib
import os
import re
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.errors import InvalidDicomError
from pydicom.pixels import apply_rescale
from pydicom.uid import (CTImageStorage, ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian,
                         generate_uid)
from pydicom.valuerep import DSfloat

__all__ = [
    "AIR_HU", "PADDING_HU", "HU_MIN_STORABLE", "HU_MAX_STORABLE",
    "DicomError", "NotCTImageError", "CorruptDicomError", "MissingPairError", "MismatchError",
    "NoSeriesFoundError", "SeriesInfo",
    "read_slice", "read_series", "find_mayo", "find_tcia", "first_dicom_file",
    "load_mayo", "load_tcia", "load_pairs", "write_series", "write_mayo_tree",
]

AIR_HU = -1000.0
"""Value given to padding pixels (outside the scan field of view)."""
PADDING_HU = -2000.0
"""Pixels at or below this HU are padding by the Mayo convention (stored -2000), whatever the tags say."""
_WRITE_INTERCEPT = -1024
HU_MIN_STORABLE = _WRITE_INTERCEPT
"""Lowest HU :func:`write_series` can store (uint16 0 with intercept -1024); lower values are clipped."""
HU_MAX_STORABLE = 65535 + _WRITE_INTERCEPT
"""Highest HU :func:`write_series` can store (uint16 65535); higher values are clipped."""

DICOM_SUFFIXES = (".ima", ".dcm", ".dicom")
LAYOUTS = ("auto", "mayo", "tcia")
DOSE_LABELS = {"FD": "full", "QD": "quarter"}
_MAYO_DOSE_DIR = re.compile(r"^(full|quarter)_(\d+(?:\.\d+)?mm)(_sharp)?$", re.IGNORECASE)
_THICKNESS = re.compile(r"^\d+(?:\.\d+)?mm$")
_PATIENT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_TCIA_LOW = re.compile(r"\b(low|quarter|reduced) dose\b")
_TCIA_FULL = re.compile(r"\bfull dose\b")
_MAYO_SEARCHED = ("Mayo layout: folders named full_{t}{s} and quarter_{t}{s} holding .IMA/.dcm files, "
                  "inside a patient folder (<root>/L067/full_{t}{s}/) or holding patient folders "
                  "(<root>/full_{t}{s}/L067/)")
_TCIA_SEARCHED = ("TCIA layout: series folders of .dcm files whose SeriesDescription (or folder name) "
                  "says 'Full Dose' / 'Low Dose' (e.g. LDCT-and-Projection-data/L067/<study>/"
                  "1.000000-Full dose images-NNNNN/1-001.dcm)")

OnUnpaired = Literal["raise", "skip"]
Pairs = dict[str, tuple[np.ndarray, np.ndarray]]


class DicomError(ValueError):
    """A DICOM file or tree that cannot give the CT pairs asked for; the message names the file or folder."""


class NotCTImageError(DicomError):
    """Not a DICOM file, not a CT (Modality != 'CT'), or no single 2-D image in it."""


class CorruptDicomError(DicomError):
    """A DICOM file pydicom cannot parse or decode, e.g. truncated pixel data."""


class MissingPairError(DicomError):
    """A patient with a full-dose series and no low-dose series, or the other way round."""


class MismatchError(DicomError):
    """Slices that do not fit together: different shapes, slice counts, positions or pixel spacings."""


class NoSeriesFoundError(DicomError):
    """A folder or tree with no CT series in any layout we know; the message lists what was searched."""


@dataclass(frozen=True)
class SeriesInfo:
    """What :func:`read_series` learned besides the pixels.

    ``files`` and ``positions_mm`` are in the returned slice order (ascending z). ``positions_mm`` is
    ``None`` when the files carry no ``ImagePositionPatient`` and were sorted by ``InstanceNumber``.
    ``pixel_spacing_mm`` is DICOM ``PixelSpacing``: (row spacing, column spacing).
    """

    folder: Path
    files: tuple[Path, ...]
    positions_mm: tuple[float, ...] | None
    pixel_spacing_mm: tuple[float, float] | None
    slice_thickness_mm: float | None
    patient_id: str
    series_description: str
    sorted_by: Literal["ImagePositionPatient", "InstanceNumber"]

    @property
    def slice_spacing_mm(self) -> float | None:
        """Median distance between neighbouring slice positions (None without positions or with one slice)."""
        if self.positions_mm is None or len(self.positions_mm) < 2:
            return None
        return float(np.median(np.diff(np.asarray(self.positions_mm))))


# ----------------------------------------------------------------------------------------------- reading


def _read_dataset(path: Path, *, stop_before_pixels: bool = False) -> Dataset:
    """dcmread with errors that name the file; files without the 'DICM' preamble are retried with force."""
    try:
        ds = pydicom.dcmread(path, stop_before_pixels=stop_before_pixels)
    except InvalidDicomError:
        ds = None
    except Exception as exc:  # pydicom raises many kinds on a broken header
        raise CorruptDicomError(f"{path}: pydicom cannot parse this DICOM file "
                                f"({type(exc).__name__}: {exc})") from exc
    if ds is None:  # some Siemens .IMA files have no preamble
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ds = pydicom.dcmread(path, force=True, stop_before_pixels=stop_before_pixels)
            ok = "Modality" in ds and "SOPClassUID" in ds
        except Exception:
            ok = False
        if not ok:
            raise NotCTImageError(f"{path}: not a DICOM file (no 'DICM' marker and no DICOM header); "
                                  f"expected a CT image")
    elif "TransferSyntaxUID" not in ds.file_meta and "PixelData" not in ds and not stop_before_pixels:
        raise CorruptDicomError(f"{path}: the file meta information has no TransferSyntaxUID and there is "
                                f"no pixel data (the header is incomplete or the file was cut short)")
    if "TransferSyntaxUID" not in ds.file_meta and ds.original_encoding[0] is not None:
        implicit, little = ds.original_encoding  # name the encoding pydicom detected, for the decoder
        ds.file_meta.TransferSyntaxUID = (ImplicitVRLittleEndian if implicit else
                                          ExplicitVRLittleEndian if little else ExplicitVRBigEndian)
    return ds


def _check_ct_image(ds: Dataset, path: Path) -> None:
    modality = str(ds.get("Modality", "")).strip()
    if modality != "CT":
        raise NotCTImageError(f"{path}: Modality is {modality or 'missing'!r}, expected 'CT'")
    if "PixelData" not in ds:
        raise NotCTImageError(f"{path}: holds no pixel data (not an image, or the file was cut short); "
                              f"expected a CT image")
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    if frames != 1 or int(ds.get("SamplesPerPixel", 1)) != 1:
        raise NotCTImageError(f"{path}: holds {frames} frame(s) of {ds.get('SamplesPerPixel')} samples "
                              f"per pixel; expected one grey-scale 2-D slice")


def _padding_mask(raw: np.ndarray, ds: Dataset) -> np.ndarray:
    """Pixels whose stored value is PixelPaddingValue (or within its range limit)."""
    if "PixelPaddingValue" not in ds:
        return np.zeros(raw.shape, dtype=bool)
    value = int(ds.PixelPaddingValue)
    bits = int(ds.get("BitsAllocated", 16))
    if ds.get("PixelRepresentation") == 1 and value >= 2 ** (bits - 1):  # signed data, tag written as US
        value -= 2 ** bits
    limit = ds.get("PixelPaddingRangeLimit")
    if limit is None:
        return raw == value
    low, high = sorted((value, int(limit)))
    return (raw >= low) & (raw <= high)


def _hu_from_dataset(ds: Dataset, path: Path) -> np.ndarray:
    """Pixels of a CT dataset in HU (float32), padding set to air."""
    _check_ct_image(ds, path)
    try:
        raw = ds.pixel_array
    except ValueError as exc:
        raise CorruptDicomError(f"{path}: corrupt or truncated pixel data ({exc})") from exc
    except Exception as exc:
        syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", "unknown")
        raise DicomError(f"{path}: pydicom cannot decode the pixel data (transfer syntax {syntax}): "
                         f"{type(exc).__name__}: {exc}") from exc
    if raw.ndim != 2:
        raise NotCTImageError(f"{path}: pixel data has shape {raw.shape}; expected one 2-D slice")
    hu = np.asarray(apply_rescale(raw, ds), dtype=np.float64)
    padding = _padding_mask(raw, ds) | (hu <= PADDING_HU)
    hu[padding] = AIR_HU
    return hu.astype(np.float32)


def read_slice(path: str | os.PathLike) -> np.ndarray:
    """One CT slice in HU as float32 (H, W): rescale applied, padding set to -1000 HU (air)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"DICOM file {path} does not exist")
    return _hu_from_dataset(_read_dataset(path), path)


def _dicom_files(folder: Path) -> list[Path]:
    """DICOM files directly in ``folder`` (by suffix), hidden files skipped, sorted by name."""
    return sorted(p for p in folder.iterdir()
                  if p.suffix.lower() in DICOM_SUFFIXES and not p.name.startswith(".") and p.is_file())


def _existing_dir(folder: str | os.PathLike, what: str) -> Path:
    folder = Path(folder)
    if not folder.exists():
        raise FileNotFoundError(f"{what} {folder} does not exist")
    if not folder.is_dir():
        raise NotADirectoryError(f"{what} {folder} is not a folder")
    return folder


def _float_or_none(value) -> float | None:
    try:
        return None if value is None or value == "" else float(value)
    except (TypeError, ValueError):
        return None


def read_series(folder: str | os.PathLike) -> tuple[np.ndarray, SeriesInfo]:
    """All DICOM slices directly in ``folder`` as (S, H, W) float32 HU, sorted by ascending z.

    Sorted by ``ImagePositionPatient[2]`` when every file has it, else by ``InstanceNumber``.
    Raises :class:`MismatchError` when slices differ in shape or pixel spacing or share a position
    (two series mixed in one folder), naming the files.
    """
    folder = _existing_dir(folder, "DICOM series folder")
    files = _dicom_files(folder)
    if not files:
        raise NoSeriesFoundError(f"{folder} holds no DICOM files (looked for {', '.join(DICOM_SUFFIXES)})")
    slices: list[np.ndarray] = []
    datasets: list[Dataset] = []
    for path in files:
        ds = _read_dataset(path)
        slices.append(_hu_from_dataset(ds, path))
        del ds.PixelData  # keep the header only
        datasets.append(ds)

    if all("ImagePositionPatient" in ds and len(ds.ImagePositionPatient) == 3 for ds in datasets):
        sorted_by = "ImagePositionPatient"
        keys = [float(ds.ImagePositionPatient[2]) for ds in datasets]
    else:
        sorted_by = "InstanceNumber"
        for path, ds in zip(files, datasets):
            if ds.get("InstanceNumber") in (None, ""):
                raise DicomError(f"{path}: has neither ImagePositionPatient nor InstanceNumber, so the "
                                 f"slices in {folder} cannot be put in order")
        keys = [float(ds.InstanceNumber) for ds in datasets]
    order = sorted(range(len(files)), key=lambda i: (keys[i], files[i].name))
    for a, b in zip(order, order[1:]):
        if keys[a] == keys[b]:
            raise MismatchError(f"{files[a]} and {files[b]} have the same {sorted_by} ({keys[a]:g}); "
                                f"does {folder} mix two series?")

    first = order[0]
    shape = slices[first].shape
    spacing = datasets[first].get("PixelSpacing")
    spacing_mm = None if spacing is None else (float(spacing[0]), float(spacing[1]))
    for i in order:
        if slices[i].shape != shape:
            raise MismatchError(f"{files[i]}: slice of shape {slices[i].shape}, but {files[first].name} "
                                f"in the same folder has {shape}")
        other = datasets[i].get("PixelSpacing")
        other_mm = None if other is None else (float(other[0]), float(other[1]))
        if other_mm != spacing_mm and not (other_mm and spacing_mm and np.allclose(other_mm, spacing_mm)):
            raise MismatchError(f"{files[i]}: PixelSpacing {other_mm}, but {files[first].name} in the same "
                                f"folder has {spacing_mm}")

    header = datasets[first]
    info = SeriesInfo(
        folder=folder,
        files=tuple(files[i] for i in order),
        positions_mm=tuple(keys[i] for i in order) if sorted_by == "ImagePositionPatient" else None,
        pixel_spacing_mm=spacing_mm,
        slice_thickness_mm=_float_or_none(header.get("SliceThickness")),
        patient_id=str(header.get("PatientID", "")),
        series_description=str(header.get("SeriesDescription", "")),
        sorted_by=sorted_by,
    )
    return np.stack([slices[i] for i in order]), info


# ------------------------------------------------------------------------------------------ finding trees


def _dicom_dirs(root: Path) -> list[Path]:
    """Folders under ``root`` (included) that directly hold DICOM files; hidden folders skipped."""
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        if any(Path(f).suffix.lower() in DICOM_SUFFIXES and not f.startswith(".") for f in filenames):
            found.append(Path(dirpath))
    return found


def first_dicom_file(root: str | os.PathLike) -> Path | None:
    """The first DICOM file (by suffix) found in ``root`` or below it, hidden ones skipped; None if there is none.

    Stops at the first hit, so it is cheap on a large tree (used to refuse an empty ``data_dir`` early).
    """
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if Path(name).suffix.lower() in DICOM_SUFFIXES and not name.startswith("."):
                return Path(dirpath) / name
    return None


def _check_thickness(thickness: str) -> str:
    if not isinstance(thickness, str) or not _THICKNESS.match(thickness.lower()):
        raise ValueError(f"thickness must look like '1mm' or '3mm', got {thickness!r}")
    return thickness.lower()


def _check_on_unpaired(on_unpaired: str) -> None:
    if on_unpaired not in ("raise", "skip"):
        raise ValueError(f"on_unpaired must be 'raise' or 'skip', got {on_unpaired!r}")


def _pair_up(halves: dict[str, dict[str, Path]], low_name: str, on_unpaired: OnUnpaired,
             ) -> dict[str, tuple[Path, Path]]:
    """{patient: {'low'|'full': folder}} -> {patient: (low folder, full folder)}, sorted by patient."""
    pairs: dict[str, tuple[Path, Path]] = {}
    skipped = []
    for patient in sorted(halves):
        found = halves[patient]
        if "low" in found and "full" in found:
            pairs[patient] = (found["low"], found["full"])
            continue
        have, missing = ("full", low_name) if "full" in found else (low_name, "full")
        message = (f"patient {patient!r}: found the {have}-dose series {next(iter(found.values()))} but "
                   f"no {missing}-dose series to pair it with")
        if on_unpaired == "raise":
            raise MissingPairError(message + "; pass on_unpaired='skip' to leave such patients out")
        skipped.append(message)
    if skipped:
        warnings.warn("skipped unpaired patients:\n" + "\n".join(skipped), stacklevel=3)
    return pairs


def _mayo_dose_dirs(root: Path) -> list[tuple[Path, str, str, bool, str]]:
    """(folder, patient, 'full'|'quarter', sharp, thickness) for every Mayo dose folder with files."""
    found = []
    for folder in _dicom_dirs(root):
        match, patient = _MAYO_DOSE_DIR.match(folder.name), folder.parent.name
        if match is None:
            match, patient = _MAYO_DOSE_DIR.match(folder.parent.name), folder.name
        if match is not None:
            dose, thickness, sharp = match.group(1).lower(), match.group(2).lower(), bool(match.group(3))
            found.append((folder, patient, dose, sharp, thickness))
    return found


def _find_mayo(root: Path, thickness: str, sharp: bool, on_unpaired: OnUnpaired,
               ) -> tuple[dict[str, tuple[Path, Path]], list[str]]:
    """Mayo pairs for one thickness/kernel, plus the names of other dose folders seen (for messages)."""
    halves: dict[str, dict[str, Path]] = {}
    others = set()
    for folder, patient, dose, is_sharp, folder_thickness in _mayo_dose_dirs(root):
        if folder_thickness != thickness or is_sharp != sharp:
            others.add(f"{dose}_{folder_thickness}{'_sharp' if is_sharp else ''}")
            continue
        key = "full" if dose == "full" else "low"
        previous = halves.setdefault(patient, {}).get(key)
        if previous is not None:
            raise DicomError(f"patient {patient!r} has two {dose}_{thickness} folders, {previous} and "
                             f"{folder}; point root at one reconstruction (e.g. the '1mm B30' folder)")
        halves[patient][key] = folder
    return _pair_up(halves, "quarter", on_unpaired), sorted(others)


def _tcia_dose(description: str) -> Literal["low", "full"] | None:
    text = " ".join(re.sub(r"[-_]", " ", description.lower()).split())
    if "projection" in text:
        return None
    low, full = bool(_TCIA_LOW.search(text)), bool(_TCIA_FULL.search(text))
    if low == full:
        return None
    return "low" if low else "full"


def _find_tcia(root: Path, thickness: str | None, on_unpaired: OnUnpaired) -> dict[str, tuple[Path, Path]]:
    halves: dict[str, dict[str, Path]] = {}
    for folder in _dicom_dirs(root):
        files = _dicom_files(folder)
        if not files:
            continue
        header = _read_dataset(files[0], stop_before_pixels=True)
        dose = _tcia_dose(str(header.get("SeriesDescription", "")).strip() or folder.name)
        if dose is None:
            continue
        if thickness is not None:
            found_mm = _float_or_none(header.get("SliceThickness"))
            if found_mm is None or abs(found_mm - float(thickness[:-2])) > 0.01:
                continue
        patient = str(header.get("PatientID", "")).strip() or folder.parent.parent.name
        previous = halves.setdefault(patient, {}).get(dose)
        if previous is not None:
            raise DicomError(f"patient {patient!r} has two {dose}-dose image series, {previous} and {folder}; "
                             f"pass thickness='1mm' (or similar) or point root at one study")
        halves[patient][dose] = folder
    return _pair_up(halves, "low", on_unpaired)


def find_mayo(root: str | os.PathLike, thickness: str = "1mm", *, sharp: bool = False,
              on_unpaired: OnUnpaired = "raise") -> dict[str, tuple[Path, Path]]:
    """Mayo Grand Challenge series folders: {patient: (quarter-dose folder, full-dose folder)}."""
    root = _existing_dir(root, "Mayo data root")
    thickness = _check_thickness(thickness)
    _check_on_unpaired(on_unpaired)
    pairs, others = _find_mayo(root, thickness, sharp, on_unpaired)
    if not pairs:
        suffix = "_sharp" if sharp else ""
        seen = f"; found only these dose folders: {', '.join(others)}" if others else ""
        raise NoSeriesFoundError(f"no {thickness}{' sharp' if sharp else ''} Mayo pairs under {root}; searched "
                                 f"the {_MAYO_SEARCHED.format(t=thickness, s=suffix)}{seen}")
    return pairs


def find_tcia(root: str | os.PathLike, *, thickness: str | None = None,
              on_unpaired: OnUnpaired = "raise") -> dict[str, tuple[Path, Path]]:
    """TCIA LDCT-and-Projection-data image series: {patient: (low-dose folder, full-dose folder)}.

    ``thickness`` (e.g. ``"1mm"``) keeps only series with that ``SliceThickness``; None keeps all.
    """
    root = _existing_dir(root, "TCIA data root")
    thickness = None if thickness is None else _check_thickness(thickness)
    _check_on_unpaired(on_unpaired)
    pairs = _find_tcia(root, thickness, on_unpaired)
    if not pairs:
        raise NoSeriesFoundError(f"no low-/full-dose pairs under {root}; searched the {_TCIA_SEARCHED}")
    return pairs


# ------------------------------------------------------------------------------------------- loading


def _select(folders: dict[str, tuple[Path, Path]], patients: Iterable[str] | None, root: Path,
            ) -> dict[str, tuple[Path, Path]]:
    if patients is None:
        return folders
    if isinstance(patients, str):
        raise ValueError(f"patients must be a list of patient ids, got the string {patients!r}")
    wanted = list(patients)
    missing = [p for p in wanted if p not in folders]
    if missing:
        raise MissingPairError(f"patients {missing} have no low-/full-dose pair under {root}; "
                               f"found {sorted(folders)}")
    return {p: folders[p] for p in wanted}


def _load_pair(patient: str, low_dir: Path, full_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    """Read both halves and check they line up slice by slice."""
    low, low_info = read_series(low_dir)
    full, full_info = read_series(full_dir)
    if low.shape != full.shape:
        raise MismatchError(f"patient {patient!r}: {low_dir} holds {low.shape[0]} slices of "
                            f"{low.shape[1]}x{low.shape[2]} but {full_dir} holds {full.shape[0]} slices of "
                            f"{full.shape[1]}x{full.shape[2]}; the halves of a pair must match")
    if low_info.positions_mm is not None and full_info.positions_mm is not None:
        gap = np.abs(np.subtract(low_info.positions_mm, full_info.positions_mm))
        step = full_info.slice_spacing_mm or full_info.slice_thickness_mm or 1.0
        worst = int(np.argmax(gap))
        if gap[worst] > 0.5 * abs(step):
            raise MismatchError(f"patient {patient!r}: slice {worst} sits at z={low_info.positions_mm[worst]:g} "
                                f"mm in {low_info.files[worst]} but z={full_info.positions_mm[worst]:g} mm in "
                                f"{full_info.files[worst]}; the halves do not cover the same positions")
    return low, full


def _load(folders: dict[str, tuple[Path, Path]]) -> Pairs:
    return {patient: _load_pair(patient, low_dir, full_dir) for patient, (low_dir, full_dir) in folders.items()}


def load_mayo(root: str | os.PathLike, thickness: str = "1mm", *, sharp: bool = False,
              patients: Iterable[str] | None = None, on_unpaired: OnUnpaired = "raise") -> Pairs:
    """Mayo Grand Challenge pairs: {patient: (quarter dose, full dose)}, each (S, H, W) float32 HU."""
    folders = find_mayo(root, thickness, sharp=sharp, on_unpaired=on_unpaired)
    return _load(_select(folders, patients, Path(root)))


def load_tcia(root: str | os.PathLike, *, thickness: str | None = None,
              patients: Iterable[str] | None = None, on_unpaired: OnUnpaired = "raise") -> Pairs:
    """TCIA LDCT-and-Projection-data pairs: {patient: (low dose, full dose)}, each (S, H, W) float32 HU."""
    folders = find_tcia(root, thickness=thickness, on_unpaired=on_unpaired)
    return _load(_select(folders, patients, Path(root)))


def load_pairs(root: str | os.PathLike, layout: str = "auto", thickness: str | None = None, *,
               sharp: bool = False, patients: Iterable[str] | None = None,
               on_unpaired: OnUnpaired = "raise") -> Pairs:
    """Low-/full-dose pairs from a Mayo or TCIA tree: {patient: (low dose, full dose)}, float32 HU.

    ``layout="auto"`` uses the Mayo layout when it finds any Mayo pair, else the TCIA layout.
    ``thickness`` picks the Mayo folders (None means ``"1mm"``) and, for TCIA, filters by
    ``SliceThickness`` (None keeps every series).
    """
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    if layout == "mayo":
        return load_mayo(root, thickness or "1mm", sharp=sharp, patients=patients, on_unpaired=on_unpaired)
    if layout == "tcia":
        return load_tcia(root, thickness=thickness, patients=patients, on_unpaired=on_unpaired)
    root = _existing_dir(root, "CT data root")
    mayo_thickness = _check_thickness(thickness or "1mm")
    _check_on_unpaired(on_unpaired)
    folders, others = _find_mayo(root, mayo_thickness, sharp, on_unpaired)
    if not folders:
        folders = _find_tcia(root, None if thickness is None else mayo_thickness, on_unpaired)
    if not folders:
        suffix = "_sharp" if sharp else ""
        seen = f" (Mayo dose folders seen for other settings: {', '.join(others)})" if others else ""
        raise NoSeriesFoundError(
            f"no low-/full-dose CT pairs under {root}; searched the "
            f"{_MAYO_SEARCHED.format(t=mayo_thickness, s=suffix)}{seen}, and the {_TCIA_SEARCHED}")
    return _load(_select(folders, patients, root))


# ------------------------------------------------------------------------------------------- writing


def _ds(value: float) -> DSfloat:
    """A decimal string DICOM accepts (at most 16 characters)."""
    return DSfloat(float(value), auto_format=True)


def _check_patient_id(patient_id: str) -> str:
    if not isinstance(patient_id, str) or not _PATIENT_ID.match(patient_id):
        raise ValueError(f"patient_id must be 1-64 letters, digits, '_', '.' or '-' (it names files and "
                         f"folders), got {patient_id!r}")
    return patient_id


def _check_positive(name: str, value: float) -> float:
    value = float(value)
    if not np.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a positive number of millimetres, got {value!r}")
    return value


def _check_stack(name: str, slices_hu) -> np.ndarray:
    hu = np.asarray(slices_hu, dtype=np.float64)
    if hu.ndim != 3 or min(hu.shape) < 1:
        raise ValueError(f"{name} must be a non-empty (S, H, W) array of HU, got shape {hu.shape}")
    if not np.all(np.isfinite(hu)):
        raise ValueError(f"{name} holds NaN or infinite values; expected finite HU")
    return hu


def _quantise(hu: np.ndarray) -> np.ndarray:
    """HU -> stored uint16 with intercept -1024: rounded to integer HU, clipped to the uint16 range."""
    return np.clip(np.rint(hu) - _WRITE_INTERCEPT, 0, 65535).astype(np.uint16)


def _digest(*arrays: np.ndarray) -> str:
    sha = hashlib.sha256()
    for array in arrays:
        sha.update(str(array.shape).encode())
        sha.update(np.ascontiguousarray(array).tobytes())
    return sha.hexdigest()


def write_series(folder: str | os.PathLike, slices_hu, patient_id: str, dose_label: str,
                 pixel_mm: float, slice_mm: float, thickness: str = "1mm", *,
                 series_description: str | None = None, study_uid: str | None = None,
                 overwrite: bool = False) -> list[Path]:
    """Write an (S, H, W) HU stack as CT Image Storage files named like the Mayo data; return the paths.

    Files are ``<patient>_<FD|QD>_<t>_1.CT.0001.<NNNN>.IMA`` (Explicit VR Little Endian, uint16 with
    RescaleIntercept -1024 and slope 1). Slice k sits at z = k * ``slice_mm`` (``SliceThickness`` and
    ``SpacingBetweenSlices`` are ``slice_mm``; ``thickness`` only names the files), centred in x and y.

    Values are quantised to integer HU, so a write/read round trip is exact for integer HU and within
    0.5 HU otherwise. HU outside [-1024, 64511] (the uint16 range) are clipped to it -- values below
    -1024 HU (noise in air) come back as -1024.

    UIDs come from :func:`pydicom.uid.generate_uid` with entropy from the patient, dose, geometry and
    pixel content, so the same input writes byte-identical files. Existing DICOM files in ``folder``
    raise FileExistsError unless ``overwrite=True`` (which deletes them first).
    """
    hu = _check_stack("slices_hu", slices_hu)
    patient_id = _check_patient_id(patient_id)
    if dose_label not in DOSE_LABELS:
        raise ValueError(f"dose_label must be one of {tuple(DOSE_LABELS)}, got {dose_label!r}")
    pixel_mm = _check_positive("pixel_mm", pixel_mm)
    slice_mm = _check_positive("slice_mm", slice_mm)
    thickness = _check_thickness(thickness)
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise NotADirectoryError(f"output folder {folder} exists and is not a folder")
    folder.mkdir(parents=True, exist_ok=True)
    existing = _dicom_files(folder)
    if existing and not overwrite:
        raise FileExistsError(f"{folder} already holds {len(existing)} DICOM files (e.g. {existing[0].name}); "
                              f"pass overwrite=True to replace them")
    for path in existing:
        path.unlink()

    stored = _quantise(hu)
    n_slices, rows, columns = stored.shape
    content = _digest(stored)
    if series_description is None:
        series_description = "Full Dose Images" if dose_label == "FD" else "Quarter Dose Images"
    if study_uid is None:
        study_uid = generate_uid(entropy_srcs=["glassbox.dicom", "study", patient_id, content])
    series_uid = generate_uid(entropy_srcs=["glassbox.dicom", "series", study_uid, dose_label, thickness,
                                            repr(pixel_mm), repr(slice_mm), content])
    frame_uid = generate_uid(entropy_srcs=["glassbox.dicom", "frame", study_uid])
    x0, y0 = -(columns - 1) / 2 * pixel_mm, -(rows - 1) / 2 * pixel_mm
    t_label = thickness[:-2]

    written = []
    for k in range(n_slices):
        sop_uid = generate_uid(entropy_srcs=["glassbox.dicom", "instance", series_uid, str(k)])
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage
        meta.MediaStorageSOPInstanceUID = sop_uid
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID = CTImageStorage
        ds.SOPInstanceUID = sop_uid
        ds.StudyInstanceUID = study_uid
        ds.SeriesInstanceUID = series_uid
        ds.FrameOfReferenceUID = frame_uid
        ds.PatientName = patient_id
        ds.PatientID = patient_id
        ds.StudyID = "1"
        ds.Modality = "CT"
        ds.Manufacturer = "glassbox"
        ds.ImageType = ["DERIVED", "SECONDARY", "AXIAL"]
        ds.SeriesDescription = series_description
        ds.SeriesNumber = 1 if dose_label == "FD" else 2
        ds.InstanceNumber = k + 1
        z = k * slice_mm
        ds.ImagePositionPatient = [_ds(x0), _ds(y0), _ds(z)]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.SliceLocation = _ds(z)
        ds.PixelSpacing = [_ds(pixel_mm), _ds(pixel_mm)]
        ds.SliceThickness = _ds(slice_mm)
        ds.SpacingBetweenSlices = _ds(slice_mm)
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.Rows, ds.Columns = rows, columns
        ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 16, 15
        ds.PixelRepresentation = 0
        ds.RescaleIntercept = _WRITE_INTERCEPT
        ds.RescaleSlope = 1
        ds.RescaleType = "HU"
        ds.WindowCenter, ds.WindowWidth = 40, 400
        ds.PixelData = stored[k].tobytes()
        path = folder / f"{patient_id}_{dose_label}_{t_label}_1.CT.0001.{k + 1:04d}.IMA"
        ds.save_as(path, enforce_file_format=True)
        written.append(path)
    return written


def write_mayo_tree(root: str | os.PathLike, pairs: Mapping[str, tuple[np.ndarray, np.ndarray]],
                    pixel_mm: float, slice_mm: float = 1.0, thickness: str = "1mm", *,
                    overwrite: bool = False) -> dict[str, tuple[Path, Path]]:
    """Write {patient: (low, full)} HU stacks as ``<root>/<patient>/{quarter,full}_<t>/*.IMA``.

    Opens in any DICOM viewer and reads back with :func:`load_mayo` (exact for integer HU in
    [-1024, 64511]; see :func:`write_series` for rounding and clipping). Low dose goes to
    ``quarter_<t>`` whatever its dose fraction, as in the Mayo layout. Returns
    {patient: (quarter folder, full folder)}, like :func:`find_mayo`.
    """
    if not isinstance(pairs, Mapping) or not pairs:
        raise ValueError(f"pairs must be a non-empty mapping patient -> (low, full), got {type(pairs).__name__}")
    thickness = _check_thickness(thickness)
    checked = {}
    for patient, pair in pairs.items():
        _check_patient_id(patient)
        if not isinstance(pair, (tuple, list)) or len(pair) != 2:
            raise ValueError(f"pairs[{patient!r}] must be a (low, full) tuple")
        low = _check_stack(f"pairs[{patient!r}][0] (low dose)", pair[0])
        full = _check_stack(f"pairs[{patient!r}][1] (full dose)", pair[1])
        if low.shape != full.shape:
            raise ValueError(f"pairs[{patient!r}]: low dose has shape {low.shape} but full dose {full.shape}")
        checked[patient] = (low, full)
    root = Path(root)
    folders = {}
    for patient, (low, full) in checked.items():
        study_uid = generate_uid(entropy_srcs=["glassbox.dicom", "study", patient,
                                               _digest(_quantise(low), _quantise(full))])
        low_dir = root / patient / f"quarter_{thickness}"
        full_dir = root / patient / f"full_{thickness}"
        for folder, stack, label in ((full_dir, full, "FD"), (low_dir, low, "QD")):
            write_series(folder, stack, patient, label, pixel_mm, slice_mm, thickness,
                         study_uid=study_uid, overwrite=overwrite)
        folders[patient] = (low_dir, full_dir)
    return folders
