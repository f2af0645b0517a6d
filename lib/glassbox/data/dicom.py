"""Real CT data on disk: read low-/full-dose pairs (Mayo Grand Challenge, TCIA) and write them back.

The public loaders return the same mapping as the simulator (:func:`glassbox.data.lowdose_ct.simulate_patients`)::

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

Pixel values: HU = stored * RescaleSlope + RescaleIntercept. Padding -- pixels equal to
``PixelPaddingValue`` (up to ``PixelPaddingRangeLimit``) and, by the Mayo convention of storing -2000
outside the scan field of view, every pixel at or below -2000 HU -- is set to air, -1000 HU. Other values
are left as they are (noise in air may read below -1000 HU); clamp to -1000 HU yourself before a forward
projection (attenuation must be >= 0).

**Files that lie are refused, never read into wrong HU.** A file must be one complete, consistent CT
slice, else a :class:`DicomError` subclass names the file and what is wrong:

- :class:`TruncatedDicomError`: the file ends inside a data element, or before its pixel data;
- :class:`InvalidTagError`: ``RescaleSlope`` / ``RescaleIntercept`` missing, empty, not one finite
  number, or a slope <= 0; pixel tags against the CT Image Module (BitsAllocated 16, BitsStored 12-16,
  HighBit = BitsStored - 1, PixelRepresentation 0/1, MONOCHROME1/2); pixel data whose length is not
  Rows x Columns x 2 bytes or whose values use more bits than BitsStored; HU above
  :data:`HU_MAX_PLAUSIBLE` or non-finite; every pixel padding; an ``ImagePositionPatient``,
  ``InstanceNumber`` or ``PixelSpacing`` that is present but not finite numbers (spacing > 0);
- :class:`NotCTImageError`: not DICOM, Modality not 'CT', several frames or colour samples;
- :class:`MismatchError`: slices of a series or pair that do not fit together.

``tests/test_dicom_fuzz.py`` checks this with truncations, byte flips and altered tags of real files.
"""
from __future__ import annotations

import hashlib
import math
import os
import re
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pydicom
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.errors import InvalidDicomError
from pydicom.multival import MultiValue
from pydicom.uid import (
    CTImageStorage,
    EnhancedCTImageStorage,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    LegacyConvertedEnhancedCTImageStorage,
    generate_uid,
)
from pydicom.valuerep import DSfloat

from glassbox.core import checks

__all__ = [
    "AIR_HU", "PADDING_HU", "HU_MAX_PLAUSIBLE", "HU_MIN_STORABLE", "HU_MAX_STORABLE",
    "DicomError", "NotCTImageError", "CorruptDicomError", "TruncatedDicomError", "InvalidTagError",
    "MissingPairError", "MismatchError", "NoSeriesFoundError", "SeriesInfo",
    "read_slice", "read_series", "find_mayo", "find_tcia", "first_dicom_file",
    "load_mayo", "load_tcia", "load_pairs", "write_series", "write_mayo_tree",
]

AIR_HU = -1000.0
"""Value given to padding pixels (outside the scan field of view)."""
PADDING_HU = -2000.0
"""Pixels at or below this HU are padding by the Mayo convention (stored -2000), whatever the tags say."""
HU_MAX_PLAUSIBLE = 32767.0
"""More HU than any CT measures (the largest signed 16-bit value; extended-scale CT stops near 30 000 HU).
A file whose pixels read above it has wrong rescale or pixel-representation tags and is refused."""
_WRITE_INTERCEPT = -1024
HU_MIN_STORABLE = _WRITE_INTERCEPT
"""Lowest HU :func:`write_series` can store (stored 0 with intercept -1024); lower values are clipped."""
HU_MAX_STORABLE = 32767 + _WRITE_INTERCEPT
"""Highest HU :func:`write_series` stores (stored 32767): stored values never set the sign bit, so the file
reads the same whether a reader takes them as signed or unsigned. Higher values are clipped."""

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
    """A DICOM file or tree that cannot give the CT pairs asked for; the message names the file or folder.

    Subclasses say what is wrong: :class:`NotCTImageError` (not a CT image at all),
    :class:`CorruptDicomError` (a CT file that cannot be read correctly; :class:`TruncatedDicomError` when it
    ends too early, :class:`InvalidTagError` for a missing, malformed or inconsistent tag),
    :class:`MismatchError` (slices of a series or pair that do not fit together),
    :class:`MissingPairError` and :class:`NoSeriesFoundError` (trees without the series asked for).
    """


class NotCTImageError(DicomError):
    """Not a DICOM file, not a CT (Modality != 'CT'), or no single 2-D grey-scale image in it."""


class CorruptDicomError(DicomError):
    """A file that says it is a CT image but cannot be read as one (broken header, undecodable pixel data)."""


class TruncatedDicomError(CorruptDicomError):
    """A CT file that ends too early: inside a data element, or before or inside its pixel data."""


class InvalidTagError(CorruptDicomError):
    """A tag the HU depend on is missing, not a number, out of range or inconsistent with the pixel data.

    The message names the file, the tag and the value found. Reading on would give wrong HU, so we stop.
    """


class MissingPairError(DicomError):
    """A patient with a full-dose series and no low-dose series, or the other way round."""


class MismatchError(DicomError):
    """An inconsistent series or pair: slices that differ in shape, slice count, position or pixel spacing."""


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

_CT_STORAGE = {CTImageStorage, EnhancedCTImageStorage, LegacyConvertedEnhancedCTImageStorage}
_NATIVE_SYNTAXES = {ImplicitVRLittleEndian, ExplicitVRLittleEndian, ExplicitVRBigEndian}
_UNDEFINED_LENGTH = 0xFFFFFFFF


def _tag_name(keyword: str) -> str:
    tag = pydicom.datadict.tag_for_keyword(keyword)
    return keyword if tag is None else f"{keyword} {pydicom.tag.Tag(tag)}"


def _raw_value(ds: Dataset, keyword: str, path: Path) -> Any:
    """The value of a tag, None when absent or empty; a value pydicom cannot even convert is an InvalidTagError."""
    if keyword not in ds:
        return None
    try:
        value = ds[keyword].value
    except Exception as exc:  # noqa: BLE001 - pydicom raises many kinds on a malformed value
        raise InvalidTagError(f"{path}: {_tag_name(keyword)} cannot be read ({type(exc).__name__}: {exc})") from exc
    return None if value is None or value == "" else value


def _numbers(ds: Dataset, keyword: str, path: Path, count: int) -> tuple[float, ...] | None:
    """``count`` finite numbers from a tag (None when absent or empty); anything else is an InvalidTagError."""
    value = _raw_value(ds, keyword, path)
    if value is None:
        return None
    values = list(value) if isinstance(value, (list, tuple, MultiValue)) else [value]
    try:
        numbers = tuple(float(v) for v in values)
    except (TypeError, ValueError):
        numbers = ()
    if len(values) != count or len(numbers) != count or not all(math.isfinite(v) for v in numbers):
        expected = "a finite number" if count == 1 else f"{count} finite numbers"
        raise InvalidTagError(f"{path}: {_tag_name(keyword)} is {str(value)!r}; expected {expected}")
    return numbers


def _number(ds: Dataset, keyword: str, path: Path, *, required: str | None = None) -> float | None:
    """One finite number from a tag; absent is None, or an InvalidTagError saying ``required`` (why it is needed)."""
    found = _numbers(ds, keyword, path, 1)
    if found is None and required is not None:
        raise InvalidTagError(f"{path}: {_tag_name(keyword)} is missing or empty; {required}")
    return None if found is None else found[0]


def _integer(ds: Dataset, keyword: str, path: Path, *, default: int | None = None) -> int:
    """One integer tag; absent or empty gives ``default`` (an InvalidTagError when there is none)."""
    value = _number(ds, keyword, path, required=None if default is not None else "the pixel data cannot be "
                                                                                   "interpreted without it")
    if value is None:
        return int(default)  # type: ignore[arg-type]
    if value != int(value):
        raise InvalidTagError(f"{path}: {_tag_name(keyword)} is {value!r}; expected an integer")
    return int(value)


def _truncation(ds: Dataset, path: Path) -> None:
    """TruncatedDicomError when the file ended inside a data element (pydicom keeps what it could read)."""
    size = path.stat().st_size
    for tag in reversed(list(ds.keys())):  # the cut element, if any, is the last one read
        element = ds.get_item(tag)
        if isinstance(element, RawDataElement) and element.value is not None \
                and element.length != _UNDEFINED_LENGTH and len(element.value) < element.length:
            name = pydicom.datadict.keyword_for_tag(tag) or str(pydicom.tag.Tag(tag))
            raise TruncatedDicomError(f"{path}: the file ends inside {name} {pydicom.tag.Tag(tag)}, which declares "
                                      f"{element.length} bytes of which only {len(element.value)} are there "
                                      f"({size} bytes in all): the file was cut short (or a length field is "
                                      f"corrupt)")
        break


class _EndWatch:
    """A binary file that notes when a read came back short, i.e. pydicom reached the end of the file."""

    def __init__(self, handle: Any):
        self._handle = handle
        self.reached_end = False
        self.name = getattr(handle, "name", "")

    def read(self, size: int = -1) -> bytes:
        data = self._handle.read(size)
        if size is not None and size > 0 and len(data) < size:
            self.reached_end = True
        return data

    def seek(self, *args: Any) -> int:
        return self._handle.seek(*args)

    def tell(self) -> int:
        return self._handle.tell()


def _read_dataset(path: Path, *, stop_before_pixels: bool = False) -> Dataset:
    """dcmread with errors that name the file; files without the 'DICM' preamble are retried with force."""
    with open(path, "rb") as handle:
        watched = _EndWatch(handle)
        try:
            ds = pydicom.dcmread(watched, stop_before_pixels=stop_before_pixels)
        except InvalidDicomError:
            ds = None
        except Exception as exc:  # pydicom raises many kinds on a broken header
            if watched.reached_end:  # it failed where the file ends: cut inside an element
                raise TruncatedDicomError(f"{path}: the file ends inside a data element of its header "
                                          f"({path.stat().st_size} bytes; pydicom: {type(exc).__name__}): "
                                          f"the file was cut short (or a length field is corrupt)") from exc
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
        raise TruncatedDicomError(f"{path}: the file meta information has no TransferSyntaxUID and there is "
                                  f"no pixel data (the header is incomplete or the file was cut short)")
    if not stop_before_pixels:
        _truncation(ds, path)
    if "TransferSyntaxUID" not in ds.file_meta and ds.original_encoding[0] is not None:
        implicit, little = ds.original_encoding  # name the encoding pydicom detected, for the decoder
        ds.file_meta.TransferSyntaxUID = (ImplicitVRLittleEndian if implicit else
                                          ExplicitVRLittleEndian if little else ExplicitVRBigEndian)
    return ds


def _claims_ct(ds: Dataset) -> bool:
    """The file meta or the data set name a CT storage SOP class."""
    classes = {str(getattr(ds, "file_meta", Dataset()).get("MediaStorageSOPClassUID", "")),
               str(ds.get("SOPClassUID", ""))}
    return bool(classes & {str(uid) for uid in _CT_STORAGE})


def _check_ct_image(ds: Dataset, path: Path) -> tuple[int, int]:
    """Check that ``ds`` is one complete grey-scale CT slice whose pixel description is consistent; (rows, columns).

    The CT Image Module (DICOM PS3.3 C.8.2.1) fixes BitsAllocated = 16, BitsStored 12-16, HighBit =
    BitsStored - 1, one sample per pixel, MONOCHROME1/2; a file that says otherwise lies about its pixels.
    """
    modality = str(_raw_value(ds, "Modality", path) or "").strip()
    if modality and modality != "CT":
        raise NotCTImageError(f"{path}: Modality is {modality!r}, expected 'CT'")
    if "PixelData" not in ds:
        if modality == "CT" or _claims_ct(ds):
            raise TruncatedDicomError(f"{path}: holds no pixel data although its header says it is a CT image: the "
                                      f"file was cut short before its pixel data or written incomplete")
        raise NotCTImageError(f"{path}: holds no pixel data and no Modality (not an image); expected a CT image")
    if not modality:
        raise NotCTImageError(f"{path}: Modality is missing, expected 'CT'")
    frames = _integer(ds, "NumberOfFrames", path, default=1)
    samples = _integer(ds, "SamplesPerPixel", path, default=1)
    if frames != 1 or samples != 1:
        raise NotCTImageError(f"{path}: holds {frames} frame(s) of {samples} samples per pixel; expected one "
                              f"grey-scale 2-D slice")
    photometric = str(_raw_value(ds, "PhotometricInterpretation", path) or "").strip()
    if photometric not in ("MONOCHROME1", "MONOCHROME2"):
        raise InvalidTagError(f"{path}: {_tag_name('PhotometricInterpretation')} is {photometric or 'missing'!r}; a "
                              f"CT slice is 'MONOCHROME2' (or 'MONOCHROME1')")
    rows, columns = _integer(ds, "Rows", path), _integer(ds, "Columns", path)
    allocated, stored = _integer(ds, "BitsAllocated", path), _integer(ds, "BitsStored", path)
    high_bit, representation = _integer(ds, "HighBit", path), _integer(ds, "PixelRepresentation", path)
    for keyword, value, ok, expected in (
            ("Rows", rows, rows >= 1, "at least 1"), ("Columns", columns, columns >= 1, "at least 1"),
            ("BitsAllocated", allocated, allocated == 16, "16 (the CT Image Module fixes it)"),
            ("BitsStored", stored, 12 <= stored <= 16, "12 to 16 (the CT Image Module's range)"),
            ("HighBit", high_bit, high_bit == stored - 1, f"BitsStored - 1 = {stored - 1}"),
            ("PixelRepresentation", representation, representation in (0, 1), "0 (unsigned) or 1 (signed)")):
        if not ok:
            raise InvalidTagError(f"{path}: {_tag_name(keyword)} is {value}; expected {expected}")
    return rows, columns


def _stored_values(ds: Dataset, path: Path, rows: int, columns: int) -> np.ndarray:
    """The stored pixel values (rows, columns): decoded here for uncompressed data, checked against the tags."""
    syntax = _raw_value(ds.file_meta, "TransferSyntaxUID", path)
    if not isinstance(syntax, str):
        raise InvalidTagError(f"{path}: {_tag_name('TransferSyntaxUID')} is {str(syntax)!r}; expected one UID")
    if syntax not in _NATIVE_SYNTAXES:
        try:
            raw = ds.pixel_array
        except Exception as exc:  # noqa: BLE001 - the decoders raise many kinds
            raise CorruptDicomError(f"{path}: pydicom cannot decode the pixel data (transfer syntax {syntax}): "
                                    f"{type(exc).__name__}: {exc}") from exc
        if raw.shape != (rows, columns):
            raise InvalidTagError(f"{path}: pixel data of shape {raw.shape}; Rows x Columns say ({rows}, {columns})")
        return raw
    stored, signed = int(ds.BitsStored), int(ds.PixelRepresentation) == 1
    length, expected_length = len(ds.PixelData), rows * columns * 2
    if length != expected_length:
        raise InvalidTagError(f"{path}: the pixel data holds {length} bytes but Rows x Columns x 2 bytes = "
                              f"{rows} x {columns} x 2 = {expected_length}: Rows or Columns do not describe it")
    order = ">" if syntax == ExplicitVRBigEndian else "<"
    raw = np.frombuffer(ds.PixelData, dtype=f"{order}{'i' if signed else 'u'}2").reshape(rows, columns)
    low, high = (-(2 ** (stored - 1)), 2 ** (stored - 1) - 1) if signed else (0, 2**stored - 1)
    if raw.min() < low or raw.max() > high:
        raise InvalidTagError(f"{path}: stored values from {int(raw.min())} to {int(raw.max())} do not fit in "
                              f"{_tag_name('BitsStored')} = {stored} bits ({'signed' if signed else 'unsigned'}); "
                              f"the tag or the pixel data is wrong")
    return raw.astype(np.int32)


def _rescale(ds: Dataset, path: Path) -> tuple[float, float]:
    """(RescaleSlope, RescaleIntercept): both required (CT Image Module, type 1), numeric, slope > 0."""
    why = "a CT image must say how stored values map to HU (HU = stored x RescaleSlope + RescaleIntercept)"
    slope = _number(ds, "RescaleSlope", path, required=why)
    intercept = _number(ds, "RescaleIntercept", path, required=why)
    if slope <= 0:
        raise InvalidTagError(f"{path}: {_tag_name('RescaleSlope')} is {slope!r}; expected a positive number "
                              f"(with slope {slope:g} every HU would be wrong)")
    return slope, intercept  # type: ignore[return-value]


def _padding_mask(raw: np.ndarray, ds: Dataset, path: Path) -> np.ndarray:
    """Pixels whose stored value is PixelPaddingValue (or within its range limit)."""
    if _raw_value(ds, "PixelPaddingValue", path) is None:
        return np.zeros(raw.shape, dtype=bool)
    value = _integer(ds, "PixelPaddingValue", path)
    bits = _integer(ds, "BitsAllocated", path)
    if _integer(ds, "PixelRepresentation", path) == 1 and value >= 2 ** (bits - 1):  # signed data, tag written as US
        value -= 2 ** bits
    if _raw_value(ds, "PixelPaddingRangeLimit", path) is None:
        return raw == value
    low, high = sorted((value, _integer(ds, "PixelPaddingRangeLimit", path)))
    return (raw >= low) & (raw <= high)


def _hu_from_dataset(ds: Dataset, path: Path) -> np.ndarray:
    """Pixels of a CT dataset in HU (float32), padding set to air; every way the file can lie is an error."""
    rows, columns = _check_ct_image(ds, path)
    slope, intercept = _rescale(ds, path)
    raw = _stored_values(ds, path, rows, columns)
    hu = raw.astype(np.float64) * slope + intercept
    padding = _padding_mask(raw, ds, path) | (hu <= PADDING_HU)
    real = hu[~padding]
    if real.size == 0:
        raise InvalidTagError(f"{path}: every pixel is padding (PixelPaddingValue, or at most {PADDING_HU:g} HU with "
                              f"RescaleSlope {slope:g} and RescaleIntercept {intercept:g}); no image is left")
    if not np.all(np.isfinite(real)) or real.max() > HU_MAX_PLAUSIBLE:
        raise InvalidTagError(f"{path}: values up to {real.max():g} HU (RescaleSlope {slope:g}, RescaleIntercept "
                              f"{intercept:g}, PixelRepresentation {ds.PixelRepresentation}); no CT measures more "
                              f"than {HU_MAX_PLAUSIBLE:g} HU, so these tags are wrong")
    hu[padding] = AIR_HU
    return hu.astype(np.float32)


def _read_ct(path: Path) -> tuple[np.ndarray, Dataset]:
    """(HU slice, header without pixels) of one file; any failure is a DicomError naming the file."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pydicom warns about odd values; our errors say what matters
            ds = _read_dataset(path)
            hu = _hu_from_dataset(ds, path)
    except DicomError:
        raise
    except Exception as exc:  # noqa: BLE001 - a last net: no bare exception escapes for a bad file
        raise CorruptDicomError(f"{path}: unexpected error while reading this file "
                                f"({type(exc).__name__}: {exc}); it is probably corrupt") from exc
    del ds.PixelData  # keep the header only
    return hu, ds


def _read_header(path: Path) -> Dataset:
    """The header of one file (no pixels); any failure is a DicomError naming the file."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return _read_dataset(path, stop_before_pixels=True)
    except DicomError:
        raise
    except Exception as exc:  # noqa: BLE001 - a last net, as in _read_ct
        raise CorruptDicomError(f"{path}: unexpected error while reading this file's header "
                                f"({type(exc).__name__}: {exc}); it is probably corrupt") from exc


def _text(ds: Dataset, keyword: str, path: Path) -> str:
    """A text tag, stripped; '' when absent or empty."""
    value = _raw_value(ds, keyword, path)
    return "" if value is None else str(value).strip()


def read_slice(path: str | os.PathLike) -> np.ndarray:
    """One CT slice in HU as float32 (H, W): rescale applied, padding set to -1000 HU (air).

    Raises a :class:`DicomError` subclass naming the file for anything that is not one complete, consistent
    CT slice (see :func:`_check_ct_image` and the module docstring for the rules).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"DICOM file {path} does not exist")
    return _read_ct(path)[0]


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
        number = None if value is None or value == "" else float(value)
    except (TypeError, ValueError):
        return None
    return number if number is not None and math.isfinite(number) else None


def _pixel_spacing(ds: Dataset, path: Path) -> tuple[float, float] | None:
    spacing = _numbers(ds, "PixelSpacing", path, 2)
    if spacing is not None and min(spacing) <= 0:
        raise InvalidTagError(f"{path}: {_tag_name('PixelSpacing')} is {spacing}; expected two positive numbers")
    return spacing  # type: ignore[return-value]


def read_series(folder: str | os.PathLike) -> tuple[np.ndarray, SeriesInfo]:
    """All DICOM slices directly in ``folder`` as (S, H, W) float32 HU, sorted by ascending z.

    Sorted by ``ImagePositionPatient[2]`` when every file has it, else (when none has it) by ``InstanceNumber``;
    a folder where some files have positions and others not is a :class:`MismatchError`. A position,
    instance number or pixel spacing that is present but not numbers is an :class:`InvalidTagError`.
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
        hu, ds = _read_ct(path)
        slices.append(hu)
        datasets.append(ds)

    positions = [_numbers(ds, "ImagePositionPatient", path, 3) for path, ds in zip(files, datasets)]
    has_position = [p is not None for p in positions]
    if any(has_position) and not all(has_position):  # sorting the others by InstanceNumber would misplace them
        lacking, having = files[has_position.index(False)], files[has_position.index(True)]
        raise MismatchError(f"{lacking}: has no ImagePositionPatient but {having.name} in the same folder has one; "
                            f"the slices of {folder} cannot be put in order (a damaged file, or two series mixed)")
    if all(has_position):
        sorted_by = "ImagePositionPatient"
        keys = [p[2] for p in positions]  # type: ignore[index]
    else:
        sorted_by = "InstanceNumber"
        keys = []
        for path, ds in zip(files, datasets):
            number = _number(ds, "InstanceNumber", path)
            if number is None:
                raise InvalidTagError(f"{path}: has neither ImagePositionPatient nor InstanceNumber, so the "
                                      f"slices in {folder} cannot be put in order")
            keys.append(number)
    order = sorted(range(len(files)), key=lambda i: (keys[i], files[i].name))
    for a, b in zip(order, order[1:]):
        if keys[a] == keys[b]:
            raise MismatchError(f"{files[a]} and {files[b]} have the same {sorted_by} ({keys[a]:g}); "
                                f"does {folder} mix two series?")

    first = order[0]
    shape = slices[first].shape
    spacing_mm = _pixel_spacing(datasets[first], files[first])
    for i in order:
        if slices[i].shape != shape:
            raise MismatchError(f"{files[i]}: slice of shape {slices[i].shape}, but {files[first].name} "
                                f"in the same folder has {shape}")
        other_mm = _pixel_spacing(datasets[i], files[i])
        if other_mm != spacing_mm and not (other_mm and spacing_mm and np.allclose(other_mm, spacing_mm)):
            raise MismatchError(f"{files[i]}: PixelSpacing {other_mm}, but {files[first].name} in the same "
                                f"folder has {spacing_mm}")

    header, header_path = datasets[first], files[first]
    info = SeriesInfo(
        folder=folder,
        files=tuple(files[i] for i in order),
        positions_mm=tuple(keys[i] for i in order) if sorted_by == "ImagePositionPatient" else None,
        pixel_spacing_mm=spacing_mm,
        slice_thickness_mm=_float_or_none(_raw_value(header, "SliceThickness", header_path)),
        patient_id=_text(header, "PatientID", header_path),
        series_description=_text(header, "SeriesDescription", header_path),
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
        header = _read_header(files[0])
        dose = _tcia_dose(_text(header, "SeriesDescription", files[0]) or folder.name)
        if dose is None:
            continue
        if thickness is not None:
            found_mm = _float_or_none(_raw_value(header, "SliceThickness", files[0]))
            if found_mm is None or abs(found_mm - float(thickness[:-2])) > 0.01:
                continue
        patient = _text(header, "PatientID", files[0]) or folder.parent.parent.name
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
    if (low_info.positions_mm is None) != (full_info.positions_mm is None):
        with_positions, without = (low_dir, full_dir) if low_info.positions_mm is not None else (full_dir, low_dir)
        raise MismatchError(f"patient {patient!r}: the slices in {with_positions} have ImagePositionPatient but "
                            f"those in {without} do not, so the halves cannot be checked to line up")
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


def _check_stack(name: str, slices_hu) -> np.ndarray:
    hu = np.asarray(slices_hu, dtype=np.float64)
    if hu.ndim != 3 or min(hu.shape) < 1:
        raise ValueError(f"{name} must be a non-empty (S, H, W) array of HU, got shape {hu.shape}")
    if not np.all(np.isfinite(hu)):
        raise ValueError(f"{name} holds NaN or infinite values; expected finite HU")
    return hu


def _quantise(hu: np.ndarray) -> np.ndarray:
    """HU -> stored uint16 with intercept -1024: rounded to integer HU, clipped to [0, 32767] (no sign bit)."""
    return np.clip(np.rint(hu) - _WRITE_INTERCEPT, 0, HU_MAX_STORABLE - _WRITE_INTERCEPT).astype(np.uint16)


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
    0.5 HU otherwise. HU outside [-1024, 31743] (:data:`HU_MIN_STORABLE`, :data:`HU_MAX_STORABLE`) are clipped
    to it -- values below -1024 HU (noise in air) come back as -1024.

    UIDs come from :func:`pydicom.uid.generate_uid` with entropy from the patient, dose, geometry and
    pixel content, so the same input writes byte-identical files. Existing DICOM files in ``folder``
    raise FileExistsError unless ``overwrite=True`` (which deletes them first).
    """
    hu = _check_stack("slices_hu", slices_hu)
    patient_id = _check_patient_id(patient_id)
    if dose_label not in DOSE_LABELS:
        raise ValueError(f"dose_label must be one of {tuple(DOSE_LABELS)}, got {dose_label!r}")
    pixel_mm = checks.positive_number(pixel_mm, "pixel_mm (millimetres)")
    slice_mm = checks.positive_number(slice_mm, "slice_mm (millimetres)")
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
        study_uid = generate_uid(entropy_srcs=["glassbox.data.dicom", "study", patient_id, content])
    series_uid = generate_uid(entropy_srcs=["glassbox.data.dicom", "series", study_uid, dose_label, thickness,
                                            repr(pixel_mm), repr(slice_mm), content])
    frame_uid = generate_uid(entropy_srcs=["glassbox.data.dicom", "frame", study_uid])
    x0, y0 = -(columns - 1) / 2 * pixel_mm, -(rows - 1) / 2 * pixel_mm
    t_label = thickness[:-2]

    written = []
    for k in range(n_slices):
        sop_uid = generate_uid(entropy_srcs=["glassbox.data.dicom", "instance", series_uid, str(k)])
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
    [-1024, 31743]; see :func:`write_series` for rounding and clipping). Low dose goes to
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
        study_uid = generate_uid(entropy_srcs=["glassbox.data.dicom", "study", patient,
                                               _digest(_quantise(low), _quantise(full))])
        low_dir = root / patient / f"quarter_{thickness}"
        full_dir = root / patient / f"full_{thickness}"
        for folder, stack, label in ((full_dir, full, "FD"), (low_dir, low, "QD")):
            write_series(folder, stack, patient, label, pixel_mm, slice_mm, thickness,
                         study_uid=study_uid, overwrite=overwrite)
        folders[patient] = (low_dir, full_dir)
    return folders
