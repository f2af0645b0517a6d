"""glassbox.data.mri_sequences: two sequences of the same patients, with independent noise."""
import numpy as np
import pytest

from glassbox.data import mri, mri_sequences


@pytest.fixture(scope="module")
def scans():
    return mri_sequences.paired_sequences(3, seed=4, anatomy=mri.AnatomyConfig(size=32, slices_per_patient=2))


def test_both_sequences_show_the_same_patients(scans):
    assert scans.source.shape == scans.target.shape == (6, 32, 32)
    assert np.array_equal(scans.patients, np.repeat(np.arange(3), 2))
    outside = scans.source < 1e-4                      # air is dark in both
    assert np.quantile(scans.target[outside], 0.99) < 0.05
    assert not np.allclose(scans.source, scans.target)   # the contrasts differ


def test_fat_is_bright_without_fat_suppression(scans):
    inside = scans.source > 0.02
    # fat is the dark part of the breast in the fat-suppressed scan and bright in the other
    dark_in_source = inside & (scans.source < np.quantile(scans.source[inside], 0.2))
    assert scans.target[dark_in_source].mean() > scans.source[dark_in_source].mean() + 0.2


def test_rician_noise_is_independent_per_seed(scans):
    a = mri_sequences.add_rician_noise(scans.source, 0.05, seed=1)
    b = mri_sequences.add_rician_noise(scans.source, 0.05, seed=2)
    bright = scans.source > 0.3                        # where Rician noise is close to Gaussian
    assert abs(np.corrcoef((a - scans.source)[bright], (b - scans.source)[bright])[0, 1]) < 0.1
    assert np.std((a - scans.source)[bright]) == pytest.approx(0.05, rel=0.15)
    assert np.array_equal(mri_sequences.add_rician_noise(scans.source, 0.0, seed=1), scans.source.astype(np.float32))
    with pytest.raises(ValueError, match="sequence"):
        mri_sequences.paired_sequences(1, 0, source="T2")


def test_a_dry_run_scans_one_patient_and_copies_it_with_the_full_shapes(scans):
    from glassbox.core import dryrun

    with dryrun.dry_run() as log:
        dry = mri_sequences.paired_sequences(3, seed=4, anatomy=mri.AnatomyConfig(size=32, slices_per_patient=2))
    assert dry.source.shape == scans.source.shape and np.array_equal(dry.patients, scans.patients)
    assert np.array_equal(dry.target[4:], dry.target[:2]) and np.array_equal(dry.source[2:4], dry.source[:2])
    assert "paired_sequences" in log.cut
