"""Simulated CT slices and random crops for training the tissue feature network.

:func:`simulated_ct` simulates abdominal phantoms with their tissue label maps and low-/full-dose
reconstructions; :func:`random_crops` cuts the same random crops out of several aligned stacks. The feature
network's training recipe (:mod:`glassbox.training.tissue_features`) builds its training set from them.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from glassbox.core import checks, dryrun
from glassbox.data import ct_physics, phantoms


def simulated_ct(n_images: int, size: int, dose: float, seed: int, n_slices: int = 5) -> dict[str, np.ndarray]:
    """One slice of each of ``n_images`` phantom patients: HU ``phantom``, tissue ``labels`` and the ``low``- and
    ``full``-dose FBP reconstructions in HU from the same simulated scan (all (n_images, size, size)).

    Patient ``i`` is phantom seed ``seed * 100_003 + i`` at slice ``i % n_slices``; the scan noise comes from ``seed``.
    """
    checks.integer(n_images, "n_images")
    if dryrun.active() and n_images > 1:  # a dry run simulates one image; the rest are copies (same shapes, memory)
        dryrun.note("simulated_ct")
        one = simulated_ct(1, size, dose, seed, n_slices)
        return {name: np.repeat(array, n_images, axis=0) for name, array in one.items()}
    slices = [phantoms.abdominal_phantom_with_labels(size, seed * 100_003 + i, slice_index=i % n_slices,
                                                      n_slices=n_slices) for i in range(n_images)]
    phantom = np.stack([s[0] for s in slices])
    low, full = ct_physics.simulate_paired(phantom, dose, seed=seed)
    return {"phantom": phantom, "labels": np.stack([s[1] for s in slices]).astype(np.int64), "low": low, "full": full}


def random_crops(arrays: Sequence[np.ndarray], crop: int, per_image: int, seed: int) -> list[np.ndarray]:
    """The same ``per_image`` random crop x crop windows of each image, cut from every array in ``arrays``.

    All arrays are (N, H, W) with equal N, H, W; returns arrays of shape (N * per_image, crop, crop),
    crops of image ``i`` at rows ``i * per_image ...``.
    """
    shape = arrays[0].shape
    if any(a.shape != shape for a in arrays) or len(shape) != 3:
        raise ValueError(f"arrays must all have the same (N, H, W) shape, got {[a.shape for a in arrays]}")
    if not 1 <= crop <= min(shape[1:]):
        raise ValueError(f"crop must be between 1 and {min(shape[1:])}, got {crop!r}")
    rng = np.random.default_rng(seed)
    corners = [(i, int(rng.integers(0, shape[1] - crop + 1)), int(rng.integers(0, shape[2] - crop + 1)))
               for i in range(shape[0]) for _ in range(per_image)]
    return [np.stack([a[i, r:r + crop, c:c + crop] for i, r, c in corners]) for a in arrays]
