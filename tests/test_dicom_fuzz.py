"""Fuzzing glassbox.data.dicom with real files: truncations, byte flips, deleted and altered tags.

The property: every case ends in the image the file describes or a :class:`glassbox.data.dicom.DicomError` that
names the file -- never a bare exception (nor glassbox's last-resort "unexpected error"), never wrong HU.

"The image the file describes" is :func:`reference_hu`, a second decoder written here from the rules in
``glassbox.data.dicom``'s docstring: it decodes the pixel bytes with NumPy (not pydicom's pixel handling, not
glassbox) and returns None for a file that breaks a rule -- which glassbox must then refuse.

Seed files: pydicom's bundled real CT slices (``CT_small.dcm``, 128x128 signed; a 16x16 slice of its
DICOMDIR test set), ``CT_small`` re-encoded with negative stored values and as implicit VR, a slice and a
small Mayo tree written by glassbox's own writer.

Examples come from a hypothesis settings profile: ``dicom-fuzz-ci`` (the default: derandomised, so CI is
repeatable; 580 examples over the four fuzz tests) or ``dicom-fuzz-deep`` (``GLASSBOX_FUZZ=deep``: random
and 20 times as many, for a long hunt).
"""
from __future__ import annotations

import math
import os
import shutil
import warnings
from pathlib import Path

import numpy as np
import pydicom
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from pydicom.data import get_testdata_file
from pydicom.dataelem import RawDataElement
from pydicom.errors import InvalidDicomError
from pydicom.tag import Tag
from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

from glassbox.data import dicom
from glassbox.data.dicom import CorruptDicomError, DicomError, InvalidTagError, MismatchError, TruncatedDicomError

settings.register_profile("dicom-fuzz-ci", deadline=None, derandomize=True, database=None, print_blob=True,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.register_profile("dicom-fuzz-deep", deadline=None, derandomize=False, print_blob=True,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
PROFILE = f"dicom-fuzz-{os.environ.get('GLASSBOX_FUZZ', 'ci')}"
SCALE = 20 if PROFILE.endswith("deep") else 1


def fuzz(examples: int) -> settings:
    return settings(settings.get_profile(PROFILE), max_examples=examples * SCALE)


# --------------------------------------------------------------------------------------- the reference


def _raw(ds: pydicom.Dataset, keyword: str):
    """Value of a tag; None when absent or empty; raises ValueError when pydicom cannot convert it."""
    if keyword not in ds:
        return None
    value = ds[keyword].value
    return None if value is None or value == "" else value


def _finite_numbers(ds, keyword, count):
    value = _raw(ds, keyword)
    if value is None:
        return None
    values = list(value) if isinstance(value, (list, tuple, pydicom.multival.MultiValue)) else [value]
    numbers = [float(v) for v in values]  # ValueError for text
    if len(numbers) != count or not all(math.isfinite(v) for v in numbers):
        raise ValueError(f"{keyword}: {value!r}")
    return numbers


def _int_or(ds, keyword, default):
    numbers = _finite_numbers(ds, keyword, 1)
    if numbers is None:
        if default is None:
            raise ValueError(f"{keyword} missing")
        return default
    if numbers[0] != int(numbers[0]):
        raise ValueError(f"{keyword} not an integer")
    return int(numbers[0])


def reference_hu(path: Path) -> np.ndarray | None:
    """The HU (float32) a CT slice file describes by glassbox.data.dicom's documented rules; None if it breaks one."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom warns about the broken values we feed it
        return _reference_hu(path)


def _reference_hu(path: Path) -> np.ndarray | None:
    try:
        try:
            ds = pydicom.dcmread(path)
        except InvalidDicomError:
            ds = pydicom.dcmread(path, force=True)
            if "Modality" not in ds or "SOPClassUID" not in ds:
                return None
        for tag in list(ds.keys())[-1:]:  # the element pydicom read last is the one a cut would shorten
            element = ds.get_item(tag)
            if isinstance(element, RawDataElement) and element.value is not None \
                    and element.length != 0xFFFFFFFF and len(element.value) < element.length:
                return None
        syntax = ds.file_meta.get("TransferSyntaxUID")
        if syntax is None and ds.original_encoding[0] is not None:
            syntax = ExplicitVRLittleEndian if not ds.original_encoding[0] else ImplicitVRLittleEndian
        if str(_raw(ds, "Modality") or "").strip() != "CT" or "PixelData" not in ds:
            return None
        if _int_or(ds, "NumberOfFrames", 1) != 1 or _int_or(ds, "SamplesPerPixel", 1) != 1:
            return None
        if str(_raw(ds, "PhotometricInterpretation") or "").strip() not in ("MONOCHROME1", "MONOCHROME2"):
            return None
        rows, columns = _int_or(ds, "Rows", None), _int_or(ds, "Columns", None)
        allocated, stored = _int_or(ds, "BitsAllocated", None), _int_or(ds, "BitsStored", None)
        high, signed = _int_or(ds, "HighBit", None), _int_or(ds, "PixelRepresentation", None)
        if rows < 1 or columns < 1 or allocated != 16 or not 12 <= stored <= 16 or high != stored - 1 \
                or signed not in (0, 1):
            return None
        if syntax not in (ExplicitVRLittleEndian, ImplicitVRLittleEndian, ExplicitVRBigEndian):
            return None
        data = ds.PixelData
        if len(data) != rows * columns * 2:
            return None
        order = ">" if syntax == ExplicitVRBigEndian else "<"
        values = np.frombuffer(data, dtype=f"{order}{'i' if signed else 'u'}2").astype(np.int64)
        if (values.min() < -(2 ** (stored - 1)) or values.max() >= 2 ** (stored - 1)) if signed \
                else values.max() >= 2 ** stored:
            return None
        slope, intercept = _finite_numbers(ds, "RescaleSlope", 1), _finite_numbers(ds, "RescaleIntercept", 1)
        if slope is None or intercept is None or slope[0] <= 0:
            return None
        hu = values.reshape(rows, columns) * slope[0] + intercept[0]
        padding = hu <= -2000.0
        if _raw(ds, "PixelPaddingValue") is not None:
            pad = _int_or(ds, "PixelPaddingValue", None)
            if signed and pad >= 2**15:
                pad -= 2**16
            limit = _raw(ds, "PixelPaddingRangeLimit")
            low, high_pad = (pad, pad) if limit is None else sorted((pad, _int_or(ds, "PixelPaddingRangeLimit", None)))
            stored_values = values.reshape(rows, columns)
            padding |= (stored_values >= low) & (stored_values <= high_pad)
        kept = hu[~padding]
        if kept.size == 0 or not np.all(np.isfinite(kept)) or kept.max() > 32767:
            return None
        hu[padding] = -1000.0
        return hu.astype(np.float32)
    except Exception:  # noqa: BLE001 - anything the rules cannot read makes the file invalid
        return None


# --------------------------------------------------------------------------------------- seed files

TESTDATA = Path(get_testdata_file("CT_small.dcm")).parent
SEED_NAMES = ("CT_small", "CT_small negative stored values", "CT_small implicit VR", "DICOMDIR CT 16x16",
              "glassbox writer 16x16")


@pytest.fixture(scope="module")
def seeds(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("seeds")
    found = {"CT_small": TESTDATA / "CT_small.dcm",
             "DICOMDIR CT 16x16": TESTDATA / "dicomdirtests" / "77654033" / "CT2" / "17106"}
    ds = pydicom.dcmread(found["CT_small"])
    ds.PixelData = (ds.pixel_array.astype(np.int16) - 1024).tobytes()  # same HU, stored values now negative too
    ds.RescaleIntercept = 0
    found["CT_small negative stored values"] = folder / "negative.dcm"
    ds.save_as(found["CT_small negative stored values"], enforce_file_format=True)
    ds = pydicom.dcmread(found["CT_small"])
    ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
    found["CT_small implicit VR"] = folder / "implicit.dcm"
    ds.save_as(found["CT_small implicit VR"], enforce_file_format=True)
    rng = np.random.default_rng(20)
    stack = rng.integers(-1024, 3000, (1, 16, 16)).astype(np.float32)
    stack[0, 0, :4] = [-1024, -1000, 0, 31743]  # the writer's whole range
    found["glassbox writer 16x16"] = dicom.write_series(folder / "writer", stack, "P1", "FD", 0.7, 1.0)[0]
    for name, path in found.items():  # every seed is a valid slice that both decoders read alike
        reference = reference_hu(path)
        assert reference is not None, name
        np.testing.assert_array_equal(dicom.read_slice(path), reference)
    assert set(found) == set(SEED_NAMES)
    return found


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cases")


def check_outcome(path: Path, *, strict: bool, expect_corrupt: bool = False) -> str:
    """Read ``path`` with glassbox and compare with the reference; returns the outcome for statistics."""
    expected = reference_hu(path)
    try:
        got = dicom.read_slice(path)
    except DicomError as exc:
        message = str(exc)
        assert str(path) in message, f"the error does not name the file: {message}"
        assert "unexpected error" not in message, f"a case glassbox did not foresee: {message}"
        if strict:
            assert expected is None, f"a valid file was refused: {message}"
        if expect_corrupt:
            assert isinstance(exc, CorruptDicomError), f"reported as {type(exc).__name__}, not corrupt: {message}"
        event(f"outcome: {type(exc).__name__}")
        return type(exc).__name__
    assert expected is not None, "glassbox returned an image for a file that breaks the rules"
    assert got.dtype == np.float32 and got.shape == expected.shape
    np.testing.assert_array_equal(got, expected)  # never wrong HU
    event("outcome: image")
    return "image"


# --------------------------------------------------------------------------------------- mutations


def truncate(source: Path, target: Path, keep: int) -> None:
    target.write_bytes(source.read_bytes()[:keep])


def flip(source: Path, target: Path, flips: list[tuple[float, int]], header_only: bool) -> None:
    data = bytearray(source.read_bytes())
    header_end = _pixel_data_offset(source) if header_only else len(data)
    for where, mask in flips:
        data[int(where * header_end) % len(data)] ^= mask
    target.write_bytes(bytes(data))


def _pixel_data_offset(path: Path) -> int:
    return pydicom.dcmread(path).get_item(Tag(0x7FE00010)).value_tell


STRING_VALUES = {
    "RescaleSlope": ["1", "2", "0.5", "1e-3", " 1 ", "0", "-1", "", "abc", "nan", "inf", "-inf", "1e400", "1\\2"],
    "RescaleIntercept": ["-1024", "-1000", "0", "-3000", "100", "", "x", "nan", "1e400", "-1e9", "1e9", "1\\1"],
    "Modality": ["CT", "MR", "", "ct", "OT", "CT\\MR"],
    "PhotometricInterpretation": ["MONOCHROME2", "MONOCHROME1", "RGB", "", "YBR_FULL"],
    "NumberOfFrames": ["1", "2", "0", "", "x", "-1"],
    "PixelSpacing": ["0.5\\0.5", "0.7\\0.7", "0\\0", "-1\\1", "1", "a\\b", "", "nan\\1"],
    "ImagePositionPatient": ["0\\0\\5", "1\\2", "0\\0\\nan", "x\\y\\z", "", "0\\0\\0.3"],
    "InstanceNumber": ["1", "7", "x", "", "1.5"],
}
US_TAGS = ("Rows", "Columns", "BitsAllocated", "BitsStored", "HighBit", "PixelRepresentation", "SamplesPerPixel")
VRS = {"RescaleSlope": "DS", "RescaleIntercept": "DS", "Modality": "CS", "PhotometricInterpretation": "CS",
       "NumberOfFrames": "IS", "PixelSpacing": "DS", "ImagePositionPatient": "DS", "InstanceNumber": "IS"}
us_value = st.sampled_from([0, 1, 2, 8, 11, 12, 13, 15, 16, 17, 32, 127, 128, 129, 256, 65535]) | st.integers(0, 65535)
edit = st.one_of(
    st.sampled_from(sorted(STRING_VALUES)).flatmap(
        lambda k: st.tuples(st.just(k), st.none() | st.sampled_from(STRING_VALUES[k]))),
    st.tuples(st.sampled_from(US_TAGS), st.none() | st.lists(us_value, min_size=1, max_size=2)),
    st.tuples(st.just("PixelPaddingValue"), st.none() | st.sampled_from([-2000, 0, 43, 128, 1000, 2191, 40000])),
)


def apply_edits(source: Path, target: Path, edits) -> None:
    """Delete (value None) or overwrite tags with raw bytes, bypassing pydicom's checks as a broken writer would."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _apply_edits(source, target, edits)


def _apply_edits(source: Path, target: Path, edits) -> None:
    ds = pydicom.dcmread(source)
    implicit = ds.file_meta.TransferSyntaxUID == ImplicitVRLittleEndian
    source_signed = int(ds.PixelRepresentation) == 1  # before any edit changes it
    for keyword, value in edits:
        tag = Tag(pydicom.datadict.tag_for_keyword(keyword))
        if value is None:
            if tag in ds:
                del ds[tag]
            continue
        if keyword == "PixelPaddingValue":
            signed = source_signed and -32768 <= value < 32768
            vr, raw = ("SS", int(value).to_bytes(2, "little", signed=True)) if signed \
                else ("US", (int(value) % 65536).to_bytes(2, "little"))
        elif keyword in US_TAGS:
            vr, raw = "US", b"".join(int(v).to_bytes(2, "little") for v in value)
        else:
            vr, raw = VRS[keyword], value.encode()
            raw += b" " if len(raw) % 2 else b""
        ds._dict[tag] = RawDataElement(tag, None if implicit else vr, len(raw), raw, 0, implicit, True)
    ds.save_as(target, enforce_file_format=True)


# --------------------------------------------------------------------------------------- the fuzz tests


@fuzz(120)
@given(seed=st.sampled_from(SEED_NAMES), fraction=st.floats(0, 1, exclude_max=True))
def test_truncated_files_are_reported_as_truncated(seeds, work, seed, fraction):
    source = seeds[seed]
    keep = int(fraction * source.stat().st_size)
    target = work / "truncated.dcm"
    truncate(source, target, keep)
    outcome = check_outcome(target, strict=True)
    if keep >= 132:  # past the preamble and 'DICM' it is a DICOM file, cut short: say so, not "not a CT image"
        assert outcome in ("image", "TruncatedDicomError"), outcome


@fuzz(160)
@given(seed=st.sampled_from(SEED_NAMES), header_only=st.booleans(),
       flips=st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.integers(1, 255)), min_size=1, max_size=4))
def test_byte_flips_give_the_described_image_or_an_error_naming_the_file(seeds, work, seed, header_only, flips):
    target = work / "flipped.dcm"
    flip(seeds[seed], target, flips, header_only)
    check_outcome(target, strict=False)


@fuzz(200)
@given(seed=st.sampled_from(SEED_NAMES), edits=st.lists(edit, min_size=1, max_size=3))
def test_deleted_and_altered_tags_give_the_described_image_or_an_error_naming_the_file(seeds, work, seed, edits):
    target = work / "edited.dcm"
    apply_edits(seeds[seed], target, edits)
    check_outcome(target, strict=True)


@pytest.fixture(scope="module")
def pristine_tree(tmp_path_factory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("tree")
    rng = np.random.default_rng(3)
    pairs = {"L067": (rng.integers(-1024, 2000, (3, 16, 16)).astype(np.float32),
                      rng.integers(-1024, 2000, (3, 16, 16)).astype(np.float32))}
    dicom.write_mayo_tree(root / "mayo", pairs, pixel_mm=0.7)
    return root / "mayo", pairs


@fuzz(100)
@given(half=st.sampled_from(["quarter_1mm", "full_1mm"]), index=st.integers(0, 2),
       edits=st.lists(edit, min_size=1, max_size=2))
def test_a_tree_with_one_altered_file_loads_right_or_names_it(pristine_tree, work, half, index, edits):
    source_root, pairs = pristine_tree
    root = work / "tree"
    shutil.rmtree(root, ignore_errors=True)
    shutil.copytree(source_root, root)
    victim = sorted((root / "L067" / half).iterdir())[index]
    apply_edits(victim, victim, edits)
    expected_slice = reference_hu(victim)
    try:
        low, full = dicom.load_mayo(root)["L067"]
    except DicomError as exc:
        message = str(exc)
        assert "unexpected error" not in message, message
        named = str(victim) in message or victim.name in message
        assert named or (isinstance(exc, MismatchError) and str(victim.parent) in message), message
        event(f"outcome: {type(exc).__name__}")
        return
    assert expected_slice is not None, "a tree with a file that breaks the rules was loaded"
    expected = [pairs["L067"][0].copy(), pairs["L067"][1].copy()]
    expected[0 if half.startswith("quarter") else 1][index] = expected_slice
    np.testing.assert_array_equal(low, expected[0])
    np.testing.assert_array_equal(full, expected[1])
    event("outcome: pairs")


# --------------------------------------------------------------------------------------- named cases


@pytest.mark.parametrize("edits, error, match", [
    ([("RescaleSlope", None)], InvalidTagError, r"RescaleSlope \(0028,1053\) is missing"),
    ([("RescaleIntercept", None)], InvalidTagError, r"RescaleIntercept \(0028,1052\) is missing"),
    ([("RescaleSlope", "0")], InvalidTagError, r"RescaleSlope \(0028,1053\) is 0.0; expected a positive"),
    ([("RescaleSlope", "")], InvalidTagError, r"RescaleSlope \(0028,1053\) is missing or empty"),
    ([("RescaleSlope", "abc")], InvalidTagError, r"RescaleSlope \(0028,1053\) is 'abc'; expected a finite number"),
    ([("RescaleIntercept", "nan")], InvalidTagError, r"RescaleIntercept \(0028,1052\) is 'nan'"),
    ([("RescaleSlope", "1\\2")], InvalidTagError, r"RescaleSlope.*expected a finite number"),
    ([("PixelRepresentation", [0])], InvalidTagError, r"values up to 6\d{4} HU.*PixelRepresentation 0"),
    ([("BitsStored", [12]), ("HighBit", [11])], InvalidTagError, r"do not fit in BitsStored"),
    ([("Rows", [64])], InvalidTagError, r"pixel data holds 32768 bytes but Rows x Columns x 2 bytes"),
    ([("BitsAllocated", [8])], InvalidTagError, r"BitsAllocated \(0028,0100\) is 8"),
    ([("HighBit", [11])], InvalidTagError, r"HighBit \(0028,0102\) is 11; expected BitsStored - 1 = 15"),
    ([("Modality", "MR")], dicom.NotCTImageError, r"Modality is 'MR'"),
    ([("PhotometricInterpretation", "RGB")], InvalidTagError, r"PhotometricInterpretation.*'RGB'"),
    ([("RescaleIntercept", "1e9")], InvalidTagError, r"no CT measures more than 32767 HU"),
    ([("RescaleIntercept", "-1e9")], InvalidTagError, r"every pixel is padding"),
])
def test_lies_in_a_real_file_are_named(seeds, tmp_path, edits, error, match):
    """The issue's cases: a missing or zero slope read silently (wrong HU) or raised a bare TypeError."""
    source = seeds["CT_small negative stored values" if edits[0][0] == "PixelRepresentation" else "CT_small"]
    target = tmp_path / "lying.dcm"
    apply_edits(source, target, edits)
    with pytest.raises(error, match=rf"{target}: .*{match}"):
        dicom.read_slice(target)
    assert reference_hu(target) is None


@pytest.mark.parametrize("keep, match", [
    (160, "the file meta information has no TransferSyntaxUID"),
    (300, "holds no pixel data although its header says it is a CT image"),
    (1000, r"ends inside OtherPatientIDsSequence \(0010,1002\)"),
    (38206, r"ends inside PixelData \(7FE0,0010\), which declares 32768 bytes of which only 31906"),
])
def test_a_truncated_real_file_is_truncated_not_not_ct(seeds, tmp_path, keep, match):
    """Before: a file cut before its pixel data was reported as 'not a CT image'."""
    target = tmp_path / "cut.dcm"
    truncate(seeds["CT_small"], target, keep)
    with pytest.raises(TruncatedDicomError, match=rf"{target}: .*{match}"):
        dicom.read_slice(target)


@pytest.mark.parametrize("edits, match", [
    ([("ImagePositionPatient", "0\\0\\nan")], r"ImagePositionPatient \(0020,0032\) is '.*nan.*'; expected 3 finite"),
    ([("ImagePositionPatient", "x\\y\\z")], r"ImagePositionPatient \(0020,0032\).*expected 3 finite numbers"),
    ([("ImagePositionPatient", "1\\2")], r"ImagePositionPatient \(0020,0032\).*expected 3 finite numbers"),
    ([("PixelSpacing", "0\\0")], r"PixelSpacing \(0028,0030\).*expected two positive numbers"),
    ([("PixelSpacing", "a\\b")], r"PixelSpacing \(0028,0030\).*expected 2 finite numbers"),
    ([("PixelSpacing", "0.5\\0.5")], r"PixelSpacing \(0.5, 0.5\), but .* has \(0.7, 0.7\)"),
    # found by the deep fuzz: sorted by InstanceNumber, this slice moved to the end and the pairs slipped by one
    ([("ImagePositionPatient", None), ("InstanceNumber", "7")], r"has no ImagePositionPatient but .* has one"),
])
def test_lies_in_a_series_name_the_file(pristine_tree, tmp_path, edits, match):
    source_root, _ = pristine_tree
    root = tmp_path / "tree"
    shutil.copytree(source_root, root)
    victim = sorted((root / "L067" / "full_1mm").iterdir())[1]
    apply_edits(victim, victim, edits)
    with pytest.raises(DicomError, match=rf"{victim}.*{match}|{match}.*{victim.name}"):
        dicom.load_mayo(root)


def test_a_half_without_positions_cannot_be_paired_unchecked(pristine_tree, tmp_path):
    source_root, _ = pristine_tree
    root = tmp_path / "tree"
    shutil.copytree(source_root, root)
    for victim in (root / "L067" / "full_1mm").iterdir():
        apply_edits(victim, victim, [("ImagePositionPatient", None)])
    with pytest.raises(MismatchError, match=r"quarter_1mm have ImagePositionPatient but those in .*full_1mm do not"):
        dicom.load_mayo(root)
