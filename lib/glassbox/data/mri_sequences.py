"""Two MRI sequences of the same patients, for imputing a missing one (ETH notes, Section 6, "Dataset").

"Missing data in problems requiring multiple sequences is very common. We may need to impute missing
data during training or testing." This module scans the simulated breast anatomy of
:mod:`glassbox.data.mri` with two contrasts through its public API (the same ``seed`` gives the same
patients on every :class:`~glassbox.data.mri.Vendor`):

- :data:`T1_FAT_SAT`, the fat-suppressed T1-like contrast of the k-space chapter (fat dark, FGT bright);
- :data:`T1_NO_FAT_SAT`, the same T1 weighting without fat suppression (fat bright, FGT darker).

Both are scanned without noise or ghosts, so the clean images are known; :func:`add_rician_noise`
then adds independent noise to each sequence (the simulator draws its noise from one stream per
``seed``, which would give two scans of one patient identical noise).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from glassbox.core import checks, dryrun
from glassbox.data import mri

T1_FAT_SAT = mri.Contrast(fgt=0.55, fat=0.10, muscle=0.35, body=0.20, gamma=1.0)
T1_NO_FAT_SAT = mri.Contrast(fgt=0.35, fat=0.90, muscle=0.30, body=0.60, gamma=1.0)
SEQUENCES: dict[str, mri.Contrast] = {"T1 fat-sat": T1_FAT_SAT, "T1 no fat-sat": T1_NO_FAT_SAT}
BIAS = 0.2
"""Strength of the per-patient bias field (the same field in both sequences: one patient, one coil)."""


def _clean_scanner(name: str) -> mri.Vendor:
    """A scanner with the sequence's contrast and no noise, ghosts, coil profile or matrix cut."""
    return mri.Vendor(name, SEQUENCES[name], bias=BIAS, coil=0.0, noise_sigma=0.0, readout_keep=1.0, phase_keep=1.0,
                      ghost_strength=(0.0, 0.0))


@dataclass(frozen=True)
class PairedSequences:
    """``source`` and ``target`` (N, H, W) clean images of the same slices, with ``patients`` (N,) ids
    and ``tumour_masks`` (N, H, W)."""

    source: np.ndarray
    target: np.ndarray
    patients: np.ndarray
    tumour_masks: np.ndarray

    def __len__(self) -> int:
        return len(self.source)


def paired_sequences(n_patients: int, seed: int, source: str = "T1 fat-sat", target: str = "T1 no fat-sat",
                     anatomy: mri.AnatomyConfig | None = None) -> PairedSequences:
    """``n_patients`` simulated patients scanned with two sequences (names from :data:`SEQUENCES`), noise-free."""
    for name in (source, target):
        if name not in SEQUENCES:
            raise ValueError(f"unknown sequence {name!r}; choose from {sorted(SEQUENCES)}")
    if dryrun.active() and n_patients > 1:  # a dry run simulates one patient; the rest are copies (same shapes)
        dryrun.note("paired_sequences")
        one = paired_sequences(1, seed, source, target, anatomy)
        tile = lambda a: np.concatenate([a] * n_patients)  # noqa: E731
        return PairedSequences(tile(one.source), tile(one.target), np.repeat(np.arange(n_patients, dtype=np.int64), len(one)),
                               tile(one.tumour_masks))
    scans = {name: mri.simulate_vendor(n_patients, _clean_scanner(name), seed, anatomy)
             for name in (source, target)}
    a, b = scans[source], scans[target]
    if not (np.array_equal(a.patients, b.patients) and np.array_equal(a.tumour_masks, b.tumour_masks)):
        raise AssertionError("the two sequences must show the same patients (same seed, same anatomy)")
    return PairedSequences(a.images, b.images, a.patients, a.tumour_masks)


def add_rician_noise(images: np.ndarray, sigma: float, seed: int) -> np.ndarray:
    """Magnitude of ``images`` plus complex Gaussian noise of ``sigma`` per component (Rician statistics)."""
    sigma = checks.positive_number(sigma, "sigma", allow_zero=True)
    rng = np.random.default_rng(checks.seed(seed))
    images = np.asarray(images, dtype=np.float64)
    noise = rng.standard_normal((2, *images.shape))
    return np.hypot(images + sigma * noise[0], sigma * noise[1]).astype(np.float32)  # |complex|, without complex
