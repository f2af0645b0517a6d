"""Tests for glassbox.data.dicom: tiny fake trees in the real Mayo and TCIA layouts, written with pydicom.

Fakes live in this file: a Mayo tree comes from the library's own writer (``write_mayo_tree``), a TCIA
tree from ``write_series`` into NBIA-style folders with NBIA file names (``1-NNN.dcm``) given in a
shuffled order. Reference HU values for real files come from pydicom itself (``apply_rescale``).
"""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import numpy as np
import pydicom
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydicom.data import get_testdata_file
from pydicom.filebase import DicomFileLike
from pydicom.filewriter import write_dataset
from pydicom.pixels import apply_rescale
from pydicom.uid import UID

from glassbox.data import dicom
from glassbox.data.dicom import (
    CorruptDicomError,
    DicomError,
    MismatchError,
    MissingPairError,
    NoSeriesFoundError,
    NotCTImageError,
    TruncatedDicomError,
)

PATIENTS = ("L067", "L096")
CT_SMALL = Path(get_testdata_file("CT_small.dcm"))
MR_SMALL = Path(get_testdata_file("MR_small.dcm"))


# --------------------------------------------------------------------------------------------- fakes


def random_pairs(rng: np.random.Generator, patients=PATIENTS, shape=(3, 16, 16), low=-1024, high=3071):
    """{patient: (low, full)} of random integer HU; the two halves differ (independent draws)."""
    return {p: (rng.integers(low, high + 1, shape).astype(np.float32),
                rng.integers(low, high + 1, shape).astype(np.float32)) for p in patients}


def shuffle_names(folder: Path, rng: np.random.Generator, name=lambda k: f"1-{k + 1:03d}.dcm") -> None:
    """Rename the DICOM files of ``folder`` to ``name(k)`` in a random order (so names do not follow z)."""
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".ima", ".dcm"))
    order = rng.permutation(len(files))
    if len(files) > 1 and np.all(order == np.arange(len(files))):
        order = np.roll(order, 1)
    temporary = [f.rename(f.with_name(f"tmp-{i}.part")) for i, f in enumerate(files)]
    for new_index, path in zip(order, temporary):
        path.rename(folder / name(int(new_index)))


def write_tcia_tree(root: Path, pairs, rng: np.random.Generator, pixel_mm=0.7, slice_mm=1.0) -> dict:
    """NBIA layout: LDCT-and-Projection-data/<pid>/<study>/<series>/1-NNN.dcm, names shuffled."""
    folders = {}
    for i, (patient, (low, full)) in enumerate(pairs.items()):
        study = root / "LDCT-and-Projection-data" / patient / f"08-23-2018-NA-NA-{75696 + i}"
        full_dir = study / f"1.000000-Full dose images-{67226 + i}"
        low_dir = study / f"1.000000-Low Dose Images-{7574 + i}"
        study_uid = pydicom.uid.generate_uid(entropy_srcs=["test", patient])
        for folder, stack, label, description in ((full_dir, full, "FD", "Full dose images"),
                                                  (low_dir, low, "QD", "Low Dose Images")):
            dicom.write_series(folder, stack, patient, label, pixel_mm, slice_mm,
                               series_description=description, study_uid=study_uid)
            shuffle_names(folder, rng)
        folders[patient] = (low_dir, full_dir)
    return folders


def ct_small_copy(path: Path, **changes) -> pydicom.Dataset:
    """CT_small.dcm with tags changed and a block of stored pixels overwritten (``block=value``)."""
    ds = pydicom.dcmread(CT_SMALL)
    block = changes.pop("block", None)
    for keyword, value in changes.items():
        if value is None:
            delattr(ds, keyword)
        elif isinstance(value, tuple):  # (VR, value)
            ds.add_new(keyword, *value)
        else:
            setattr(ds, keyword, value)
            if ds[keyword].VR == "US or SS":  # CT_small is signed (PixelRepresentation 1)
                ds[keyword].VR = "SS"
    if block is not None:
        pixels = ds.pixel_array.copy()
        pixels[:8, :8] = block
        ds.PixelData = pixels.tobytes()
    ds.save_as(path, enforce_file_format=True)
    return ds


@pytest.fixture
def mayo_tree(tmp_path):
    """(root, pairs) of a 2 patients x 3 slices x 16x16 Mayo tree, file names shuffled against z."""
    rng = np.random.default_rng(0)
    pairs = random_pairs(rng)
    folders = dicom.write_mayo_tree(tmp_path / "mayo", pairs, pixel_mm=0.66)
    for low_dir, full_dir in folders.values():
        for folder in (low_dir, full_dir):
            shuffle_names(folder, rng, name=lambda k, f=folder: f"{f.parent.name}_X_1_1.CT.0001.{k + 1:04d}.IMA")
    return tmp_path / "mayo", pairs


def assert_same_pairs(got, expected):
    assert list(got) == sorted(expected)
    for patient, (low, full) in expected.items():
        assert got[patient][0].dtype == np.float32 and got[patient][1].dtype == np.float32
        np.testing.assert_array_equal(got[patient][0], low)
        np.testing.assert_array_equal(got[patient][1], full)


# --------------------------------------------------------------------------------------- round trips


def test_mayo_tree_round_trip_is_exact_and_sorted_by_position(mayo_tree):
    root, pairs = mayo_tree
    assert_same_pairs(dicom.load_mayo(root), pairs)
    assert_same_pairs(dicom.load_pairs(root), pairs)
    assert_same_pairs(dicom.load_pairs(root, layout="mayo", thickness="1mm"), pairs)
    # the writer names the low half 'Quarter Dose Images', so the TCIA rule reads the same tree too
    assert_same_pairs(dicom.load_pairs(root, layout="tcia"), pairs)


def test_tcia_tree_round_trip_ignores_other_series(tmp_path):
    rng = np.random.default_rng(1)
    pairs = random_pairs(rng)
    folders = write_tcia_tree(tmp_path, pairs, rng)
    # series that the dose rule must skip: projections and an unrelated reconstruction
    study = folders["L067"][1].parent
    dicom.write_series(study / "2.000000-Full Dose Projections-1", pairs["L067"][1], "L067", "FD", 0.7, 1.0,
                       series_description="Full Dose Projections")
    dicom.write_series(study / "3.000000-Scout-2", pairs["L067"][1][:1], "L067", "FD", 0.7, 1.0,
                       series_description="Topogram 0.6 T20f")
    (study / "notes.txt").write_text("not a DICOM file, ignored by suffix")
    assert_same_pairs(dicom.load_tcia(tmp_path), pairs)
    assert_same_pairs(dicom.load_pairs(tmp_path), pairs)
    assert dicom.find_tcia(tmp_path) == folders
    assert_same_pairs(dicom.load_tcia(tmp_path, thickness="1mm"), pairs)
    with pytest.raises(NoSeriesFoundError, match="TCIA layout"):
        dicom.load_tcia(tmp_path, thickness="3mm")


@pytest.mark.parametrize("parts", [
    ("1mm B30", "{dose}_1mm", "{pid}", "{dose}_1mm"),  # AAPM Box: 1mm B30/full_1mm/L067/full_1mm/*.IMA
    ("1mm B30", "{dose}_1mm", "{pid}"),                # files directly in the patient folder
    ("Training_Image_Data", "{pid}", "{dose}_1mm"),    # classic, deeper root
])
def test_mayo_box_layouts_are_found(tmp_path, parts):
    rng = np.random.default_rng(2)
    pairs = random_pairs(rng, shape=(2, 8, 8))
    for pid, (low, full) in pairs.items():
        for dose, stack, label in (("quarter", low, "QD"), ("full", full, "FD")):
            folder = tmp_path.joinpath(*(p.format(dose=dose, pid=pid) for p in parts))
            dicom.write_series(folder, stack, pid, label, 0.7, 1.0)
    # a sharp-kernel copy of L067 beside it, in its own context folder, must not be mixed in
    sharp = tmp_path / "1mm D45" / "full_1mm_sharp" / "L067" / "full_1mm_sharp"
    dicom.write_series(sharp, pairs["L067"][1] + 7, "L067", "FD", 0.7, 1.0)
    dicom.write_series(sharp.parents[2] / "quarter_1mm_sharp" / "L067" / "quarter_1mm_sharp",
                       pairs["L067"][0] + 7, "L067", "QD", 0.7, 1.0)
    assert_same_pairs(dicom.load_mayo(tmp_path), pairs)
    sharp_pairs = dicom.load_mayo(tmp_path, sharp=True)
    np.testing.assert_array_equal(sharp_pairs["L067"][1], pairs["L067"][1] + 7)
    assert list(sharp_pairs) == ["L067"]


def test_read_series_sorts_shuffled_files_by_position_and_reports_metadata(tmp_path):
    rng = np.random.default_rng(3)
    stack = rng.integers(-1024, 2000, (5, 6, 7)).astype(np.float32)
    dicom.write_series(tmp_path, stack, "P1", "FD", pixel_mm=0.75, slice_mm=2.5)
    shuffle_names(tmp_path, rng)
    volume, info = dicom.read_series(tmp_path)
    np.testing.assert_array_equal(volume, stack)
    assert info.sorted_by == "ImagePositionPatient"
    np.testing.assert_allclose(info.positions_mm, 2.5 * np.arange(5))
    assert [pydicom.dcmread(f).InstanceNumber for f in info.files] == [1, 2, 3, 4, 5]
    assert info.pixel_spacing_mm == (0.75, 0.75)
    assert info.slice_thickness_mm == 2.5 and info.slice_spacing_mm == pytest.approx(2.5)
    assert info.patient_id == "P1" and info.series_description == "Full Dose Images"


def test_read_series_falls_back_to_instance_number(tmp_path):
    rng = np.random.default_rng(4)
    stack = rng.integers(-1024, 2000, (4, 5, 5)).astype(np.float32)
    for path in dicom.write_series(tmp_path, stack, "P1", "QD", 1.0, 1.0):
        ds = pydicom.dcmread(path)
        del ds.ImagePositionPatient
        ds.save_as(path, enforce_file_format=True)
    shuffle_names(tmp_path, rng)
    volume, info = dicom.read_series(tmp_path)
    np.testing.assert_array_equal(volume, stack)
    assert info.sorted_by == "InstanceNumber" and info.positions_mm is None


def test_ct_small_reads_to_pydicom_hu(tmp_path):
    ds = pydicom.dcmread(CT_SMALL)
    assert ds.Modality == "CT" and not np.any(ds.pixel_array == ds.PixelPaddingValue)
    expected = apply_rescale(ds.pixel_array, ds).astype(np.float32)
    got = dicom.read_slice(CT_SMALL)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, expected)
    shutil.copy(CT_SMALL, tmp_path / "a.dcm")
    volume, info = dicom.read_series(tmp_path)
    np.testing.assert_array_equal(volume[0], expected)
    assert info.pixel_spacing_mm == (0.661468, 0.661468) and info.slice_thickness_mm == 5.0


@pytest.mark.parametrize("changes", [
    dict(block=-2000),                                    # CT_small's own PixelPaddingValue (-2000)
    dict(block=-2000, PixelPaddingValue=None),            # no tag: the Mayo -2000 convention (HU -3024)
    dict(block=50, PixelPaddingValue=50),                 # padding at HU -974: only the tag can tell
    dict(block=50, PixelPaddingValue=40, PixelPaddingRangeLimit=60),
    dict(block=-500, PixelPaddingValue=("US", 65036)),     # signed data, tag written unsigned (-500)
], ids=["tag", "convention", "tag-only", "range", "tag-as-unsigned"])
def test_padding_is_set_to_air(tmp_path, changes):
    ds = ct_small_copy(tmp_path / "pad.dcm", **changes)
    expected = apply_rescale(ds.pixel_array, ds).astype(np.float32)
    expected[:8, :8] = dicom.AIR_HU
    np.testing.assert_array_equal(dicom.read_slice(tmp_path / "pad.dcm"), expected)


def test_file_without_preamble_or_file_meta_is_read(tmp_path):
    """Some Siemens .IMA files are a bare implicit-VR data set; pydicom reads them with force=True."""
    ds = pydicom.dcmread(CT_SMALL)
    path = tmp_path / "bare.IMA"
    with path.open("wb") as handle:
        out = DicomFileLike(handle)
        out.is_little_endian, out.is_implicit_VR = True, True
        write_dataset(out, pydicom.Dataset({element.tag: element for element in ds}))
    assert not path.read_bytes()[128:132] == b"DICM"
    np.testing.assert_array_equal(dicom.read_slice(path), apply_rescale(ds.pixel_array, ds).astype(np.float32))


def test_values_between_padding_and_air_are_kept(tmp_path):
    ds = ct_small_copy(tmp_path / "noise.dcm", block=-100, PixelPaddingValue=None)  # HU -1124: noisy air
    got = dicom.read_slice(tmp_path / "noise.dcm")
    assert np.all(got[:8, :8] == -1124.0)
    np.testing.assert_array_equal(got, apply_rescale(ds.pixel_array, ds).astype(np.float32))


# -------------------------------------------------------------------------------------------- writing


def test_write_rounds_to_integer_hu_and_clips_to_the_storable_range(tmp_path):
    rng = np.random.default_rng(5)
    stack = rng.uniform(-1000, 3000, (2, 6, 6))
    stack[0, 0, :3] = [-1500.0, 70000.0, -1024.4]
    dicom.write_series(tmp_path, stack, "P1", "FD", 0.5, 1.0)
    volume, _ = dicom.read_series(tmp_path)
    inside = np.ones(stack.shape, bool)
    inside[0, 0, :3] = False
    assert np.max(np.abs(volume[inside] - stack[inside])) <= 0.5
    np.testing.assert_array_equal(volume[inside], np.rint(stack[inside]))
    assert list(volume[0, 0, :3]) == [dicom.HU_MIN_STORABLE, dicom.HU_MAX_STORABLE, -1024.0]


def test_written_files_are_valid_ct_and_reproducible(tmp_path):
    pairs = random_pairs(np.random.default_rng(6), patients=("P1",), shape=(2, 4, 4))
    a = dicom.write_mayo_tree(tmp_path / "a", pairs, pixel_mm=0.8)
    b = dicom.write_mayo_tree(tmp_path / "b", pairs, pixel_mm=0.8)
    files_a = sorted(p for d in a["P1"] for p in d.iterdir())
    files_b = sorted(p for d in b["P1"] for p in d.iterdir())
    assert [p.name for p in files_a] == [p.name for p in files_b]
    assert all(x.read_bytes() == y.read_bytes() for x, y in zip(files_a, files_b))
    datasets = [pydicom.dcmread(p) for p in files_a]
    for ds in datasets:
        assert ds.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
        assert ds.SOPClassUID == pydicom.uid.CTImageStorage and ds.Modality == "CT"
        assert all(UID(u).is_valid for u in (ds.SOPInstanceUID, ds.SeriesInstanceUID, ds.StudyInstanceUID))
        assert ds.RescaleIntercept == -1024 and ds.RescaleSlope == 1 and ds.pixel_array.dtype == np.uint16
    assert len({ds.SOPInstanceUID for ds in datasets}) == len(datasets)
    assert len({ds.SeriesInstanceUID for ds in datasets}) == 2  # quarter and full
    assert len({ds.StudyInstanceUID for ds in datasets}) == 1  # one study per patient
    changed = {"P1": (pairs["P1"][0], pairs["P1"][1] + 1)}
    c = dicom.write_mayo_tree(tmp_path / "c", changed, pixel_mm=0.8)
    assert pydicom.dcmread(next(c["P1"][1].iterdir())).SOPInstanceUID not in {ds.SOPInstanceUID for ds in datasets}


def test_write_refuses_to_mix_with_existing_files(tmp_path):
    stack = np.zeros((2, 4, 4))
    dicom.write_series(tmp_path, stack, "P1", "FD", 1.0, 1.0)
    with pytest.raises(FileExistsError, match=str(tmp_path)):
        dicom.write_series(tmp_path, stack[:1], "P1", "FD", 1.0, 1.0)
    dicom.write_series(tmp_path, stack[:1] + 5, "P1", "FD", 1.0, 1.0, overwrite=True)
    volume, _ = dicom.read_series(tmp_path)
    np.testing.assert_array_equal(volume, stack[:1] + 5)


@pytest.mark.parametrize("kwargs, match", [
    (dict(dose_label="XD"), "dose_label"),
    (dict(patient_id="a/b"), "patient_id"),
    (dict(pixel_mm=0.0), "pixel_mm"),
    (dict(slices_hu=np.full((1, 2, 2), np.nan)), "NaN"),
    (dict(slices_hu=np.zeros((2, 2))), r"\(S, H, W\)"),
    (dict(thickness="1"), "thickness"),
])
def test_write_series_rejects_bad_input(tmp_path, kwargs, match):
    args = dict(folder=tmp_path, slices_hu=np.zeros((1, 2, 2)), patient_id="P1", dose_label="FD",
                pixel_mm=1.0, slice_mm=1.0) | kwargs
    with pytest.raises(ValueError, match=match):
        dicom.write_series(**args)


def test_write_mayo_tree_rejects_mismatched_halves(tmp_path):
    with pytest.raises(ValueError, match="'P1'.*shape"):
        dicom.write_mayo_tree(tmp_path, {"P1": (np.zeros((2, 4, 4)), np.zeros((3, 4, 4)))}, pixel_mm=1.0)


@settings(max_examples=6, deadline=None)
@given(shape=st.tuples(st.integers(1, 3), st.integers(1, 6), st.integers(1, 6)),
       n_patients=st.integers(1, 2), seed=st.integers(0, 2**32 - 1),
       slice_mm=st.sampled_from([0.8, 1.0, 3.0]))
def test_write_mayo_tree_load_mayo_round_trip(shape, n_patients, seed, slice_mm):
    pairs = random_pairs(np.random.default_rng(seed), patients=[f"S{i:03d}" for i in range(n_patients)],
                         shape=shape, low=dicom.HU_MIN_STORABLE, high=dicom.HU_MAX_STORABLE)
    with tempfile.TemporaryDirectory() as root:
        dicom.write_mayo_tree(root, pairs, pixel_mm=0.7, slice_mm=slice_mm, thickness="3mm")
        assert_same_pairs(dicom.load_mayo(root, thickness="3mm"), pairs)


# ---------------------------------------------------------------------------------------------- errors


def test_missing_half_names_the_patient_and_folder(mayo_tree):
    root, pairs = mayo_tree
    shutil.rmtree(root / "L096" / "quarter_1mm")
    with pytest.raises(MissingPairError, match=r"'L096'.*full_1mm.*quarter"):
        dicom.load_mayo(root)
    with pytest.warns(UserWarning, match="L096"):
        got = dicom.load_pairs(root, on_unpaired="skip")
    assert_same_pairs(got, {"L067": pairs["L067"]})


def test_missing_low_dose_series_in_tcia(tmp_path):
    rng = np.random.default_rng(7)
    folders = write_tcia_tree(tmp_path, random_pairs(rng), rng)
    shutil.rmtree(folders["L067"][0])
    with pytest.raises(MissingPairError, match=r"'L067'.*Full dose images"):
        dicom.load_tcia(tmp_path)


def test_mismatched_slice_counts_name_both_folders(mayo_tree):
    root, _ = mayo_tree
    next((root / "L067" / "quarter_1mm").iterdir()).unlink()
    with pytest.raises(MismatchError, match=r"'L067'.*quarter_1mm holds 2 slices.*full_1mm holds 3"):
        dicom.load_mayo(root)


def test_misaligned_positions_are_an_error(tmp_path):
    stack = np.zeros((3, 4, 4))
    dicom.write_series(tmp_path / "P1" / "full_1mm", stack, "P1", "FD", 1.0, slice_mm=1.0)
    dicom.write_series(tmp_path / "P1" / "quarter_1mm", stack, "P1", "QD", 1.0, slice_mm=2.0)
    with pytest.raises(MismatchError, match="same positions"):
        dicom.load_mayo(tmp_path)


def test_slice_of_another_shape_names_the_file(tmp_path):
    dicom.write_series(tmp_path, np.zeros((2, 4, 4)), "P1", "FD", 1.0, 1.0)
    odd = dicom.write_series(tmp_path / "odd", np.zeros((1, 5, 4)), "P1", "FD", 1.0, 1.0)[0]
    ds = pydicom.dcmread(odd)
    ds.ImagePositionPatient = [0, 0, 7]
    ds.save_as(tmp_path / "odd-slice.IMA", enforce_file_format=True)
    with pytest.raises(MismatchError, match="odd-slice.IMA"):
        dicom.read_series(tmp_path)


def test_duplicate_positions_are_an_error(tmp_path):
    first = dicom.write_series(tmp_path, np.zeros((2, 4, 4)), "P1", "FD", 1.0, 1.0)[0]
    shutil.copy(first, tmp_path / "copy.IMA")
    with pytest.raises(MismatchError, match="copy.IMA.*mix two series|mix two series"):
        dicom.read_series(tmp_path)


@pytest.mark.parametrize("intruder", ["mr", "text", "no-pixels"])
def test_non_ct_file_names_the_file(mayo_tree, intruder):
    root, _ = mayo_tree
    target = root / "L067" / "full_1mm" / "intruder.IMA"
    if intruder == "mr":
        shutil.copy(MR_SMALL, target)
        match = "intruder.IMA.*Modality is 'MR'"
    elif intruder == "text":
        target.write_text("patient notes\n" * 20)
        match = "intruder.IMA.*not a DICOM file"
    else:  # a CT header without pixels: cut short or written incomplete, not "not a CT image" (issue #20)
        ds = pydicom.dcmread(next((root / "L067" / "full_1mm").iterdir()))
        del ds.PixelData
        ds.save_as(target, enforce_file_format=True)
        match = "intruder.IMA.*no pixel data although its header says it is a CT image"
    error = TruncatedDicomError if intruder == "no-pixels" else NotCTImageError
    with pytest.raises(error, match=match):
        dicom.load_mayo(root)
    with pytest.raises(error, match="intruder.IMA"):
        dicom.read_slice(target)


def test_read_slice_rejects_mr():
    with pytest.raises(NotCTImageError, match="MR_small.dcm.*'MR'"):
        dicom.read_slice(MR_SMALL)


@pytest.mark.parametrize("cut", [100, 400], ids=["pixel-data", "most-of-pixel-data"])
def test_truncated_file_names_the_file(mayo_tree, cut):
    root, _ = mayo_tree
    victim = sorted((root / "L096" / "quarter_1mm").iterdir())[1]
    victim.write_bytes(victim.read_bytes()[:-cut])
    with pytest.raises(CorruptDicomError, match=victim.name.replace(".", r"\.")):
        dicom.load_mayo(root)
    with pytest.raises(CorruptDicomError, match="truncated"):
        dicom.read_slice(victim)


def test_file_cut_inside_the_header_is_an_error(tmp_path):
    path = dicom.write_series(tmp_path, np.zeros((1, 4, 4)), "P1", "FD", 1.0, 1.0)[0]
    path.write_bytes(path.read_bytes()[:150])
    with pytest.raises(DicomError, match=path.name.replace(".", r"\.")):
        dicom.read_slice(path)


def test_missing_root_is_file_not_found(tmp_path):
    missing = tmp_path / "no-such-folder"
    for load in (dicom.load_pairs, dicom.load_mayo, dicom.load_tcia, dicom.read_series):
        with pytest.raises(FileNotFoundError, match="no-such-folder"):
            load(missing)
    with pytest.raises(FileNotFoundError, match="nope.dcm"):
        dicom.read_slice(tmp_path / "nope.dcm")


def test_empty_tree_says_which_layouts_were_searched(tmp_path):
    (tmp_path / "L067" / "full_1mm").mkdir(parents=True)
    with pytest.raises(NoSeriesFoundError, match=r"Mayo layout.*TCIA layout"):
        dicom.load_pairs(tmp_path)
    with pytest.raises(NoSeriesFoundError, match="holds no DICOM files"):
        dicom.read_series(tmp_path / "L067" / "full_1mm")


def test_other_thickness_is_named_when_nothing_matches(mayo_tree):
    root, _ = mayo_tree
    with pytest.raises(NoSeriesFoundError, match="full_1mm"):
        dicom.load_mayo(root, thickness="3mm")


def test_bad_arguments(mayo_tree):
    root, _ = mayo_tree
    with pytest.raises(ValueError, match="layout"):
        dicom.load_pairs(root, layout="dicomdir")
    with pytest.raises(ValueError, match="thickness"):
        dicom.load_mayo(root, thickness="thin")
    with pytest.raises(MissingPairError, match="L999"):
        dicom.load_mayo(root, patients=["L999"])
    assert list(dicom.load_mayo(root, patients=["L096"])) == ["L096"]
    assert issubclass(NotCTImageError, DicomError) and issubclass(DicomError, ValueError)


@pytest.mark.parametrize("pixel_mm, slice_mm, named", [(0.0, 1.0, "pixel_mm"), (0.7, -1.0, "slice_mm"),
                                                        (float("nan"), 1.0, "pixel_mm"), (0.7, "1", "slice_mm")])
def test_write_series_refuses_a_spacing_that_is_not_a_positive_number(tmp_path, pixel_mm, slice_mm, named):
    with pytest.raises(ValueError, match=rf"{named} \(millimetres\) must be a positive number"):
        dicom.write_series(tmp_path, np.zeros((1, 8, 8)), "L001", "FD", pixel_mm, slice_mm)
    assert not any(tmp_path.iterdir())  # nothing written before the check
