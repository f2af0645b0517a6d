"""A two-vendor, breast-MRI-like simulator with tumour labels: the stand-in for Duke-Breast-Cancer-MRI.

Lu (seed 003) trains tumour-present/absent classifiers on GE and Siemens slices of the Duke data,
which cannot be downloaded here. This module draws axial, fat-suppressed, T1-like breast slices
whose *anatomy* (breast outline, chest wall, fibroglandular tissue (FGT), tumour) comes from one
distribution and whose *appearance* depends on the vendor, in two separable parts:

- :class:`Contrast` (image domain): tissue intensities, residual fat after fat suppression, a
  gamma curve and a smooth multiplicative bias field (``exp`` of a cubic polynomial, the TorchIO
  ``RandomBiasField`` model after Van Leemput 1999). Pointwise and multiplicative changes spread
  over all of k-space, so **no k-space mask can remove them**.
- :class:`Acquisition` (k-space): matrix size (only the central ``k_keep`` fraction of k-space is
  acquired and zero-filled, which also gives Gibbs ringing), periodic phase-encode ghosts (every
  ``n``-th PE line scaled by ``1 - s``: ``n - 1`` ghosts of amplitude ``s / n``, TorchIO ``Ghosting``),
  and complex Gaussian k-space noise (magnitude images are then Rician). These sit at particular
  k-space frequencies, so a line mask *can* act on them.

Following Saha et al. 2017 (the seed's [5]: FGT features are more scanner-sensitive than tumour
features), vendors differ mainly in background/FGT appearance; the tumour is anatomy. Vendor
presets: :data:`VENDOR_A` ("GE-like"), :data:`VENDOR_B` ("Siemens-like", noisier, smaller matrix,
ghosts, stronger bias, imperfect fat suppression, gamma 1.3) and the **control**
:data:`VENDOR_B_CONTRAST_ONLY` (B's contrast and bias field with A's acquisition), whose shift a
k-space mask cannot undo. The numbers are design choices, not measurements (see
``research/kspace.md`` section 2 for sources of each effect).

Data layout mirrors the Duke tutorial: every patient contributes ``slices_per_patient`` slices,
half through the tumour (label 1) and half away from it (label 0), so classes are balanced within
every patient and therefore within every **patient-level** split (:func:`patient_split`).
Phase encoding runs along the rows (axis -2), the axis :mod:`glassbox.models.kspace_sampler` masks.

Randomness: anatomy and acquisition noise come from two streams of ``numpy.random.SeedSequence
(seed)``, so the same ``seed`` with two vendors gives the *same patients* scanned twice.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Literal

import numpy as np

__all__ = [
    "Contrast", "Acquisition", "Vendor", "AnatomyConfig", "MRIDataset",
    "VENDOR_A", "VENDOR_B", "VENDOR_B_CONTRAST_ONLY", "VENDORS",
    "simulate_vendor", "acquire", "patient_split", "vendor_separability", "with_acquisition",
]


# ----------------------------------------------------------------------------------------------
# Configuration


@dataclass(frozen=True)
class Contrast:
    """Image-domain appearance of one vendor (what a k-space mask cannot undo).

    Intensities are relative signals of a fat-suppressed T1-like slice before the gamma curve;
    ``fat`` is the residual fat signal (imperfect fat suppression), ``bias`` the largest
    coefficient magnitude of the cubic log-bias polynomial.
    """

    fgt: float = 0.55
    fat: float = 0.10
    muscle: float = 0.35
    body: float = 0.20
    gamma: float = 1.0
    bias: float = 0.2

    def __post_init__(self) -> None:
        for name in ("fgt", "fat", "muscle", "body"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"Contrast.{name} must be in [0, 1], got {getattr(self, name)!r}")
        if not self.gamma > 0:
            raise ValueError(f"Contrast.gamma must be positive, got {self.gamma!r}")
        if not 0 <= self.bias <= 2:
            raise ValueError(f"Contrast.bias must be in [0, 2], got {self.bias!r}")


@dataclass(frozen=True)
class Acquisition:
    """k-space physics of one vendor (what a phase-encode line mask can act on).

    ``k_keep``: acquired fraction of central k-space per axis (matrix size, e.g. 320/448 = 0.71);
    ``ghost_strength``: range of ``s`` for periodic PE ghosts, ``ghost_periods``: choices of ``n``;
    ``noise_sigma``: k-space noise standard deviation per real/imaginary component (= image-domain
    noise per component with the orthonormal FFT; the Rician ``sigma``).
    """

    noise_sigma: float = 0.02
    k_keep: float = 1.0
    ghost_strength: tuple[float, float] = (0.0, 0.05)
    ghost_periods: tuple[int, ...] = (2, 3, 4)

    def __post_init__(self) -> None:
        if not self.noise_sigma >= 0:
            raise ValueError(f"Acquisition.noise_sigma must be >= 0, got {self.noise_sigma!r}")
        if not 0 < self.k_keep <= 1:
            raise ValueError(f"Acquisition.k_keep must be in (0, 1], got {self.k_keep!r}")
        lo, hi = self.ghost_strength
        if not 0 <= lo <= hi <= 1:
            raise ValueError(f"Acquisition.ghost_strength must be 0 <= low <= high <= 1, got {self.ghost_strength!r}")
        if not self.ghost_periods or any(int(n) != n or n < 2 for n in self.ghost_periods):
            raise ValueError(f"Acquisition.ghost_periods must be integers >= 2, got {self.ghost_periods!r}")


@dataclass(frozen=True)
class Vendor:
    """A scanner: a name, its image-domain contrast and its k-space acquisition."""

    name: str
    contrast: Contrast = field(default_factory=Contrast)
    acquisition: Acquisition = field(default_factory=Acquisition)


VENDOR_A = Vendor("A (GE-like)", Contrast(fgt=0.55, fat=0.10, muscle=0.35, body=0.20, gamma=1.0, bias=0.2),
                  Acquisition(noise_sigma=0.02, k_keep=1.0, ghost_strength=(0.0, 0.05)))
VENDOR_B = Vendor("B (Siemens-like)", Contrast(fgt=0.50, fat=0.25, muscle=0.30, body=0.25, gamma=1.3, bias=0.4),
                  Acquisition(noise_sigma=0.04, k_keep=0.7, ghost_strength=(0.1, 0.4)))
VENDOR_B_CONTRAST_ONLY = Vendor("B contrast only (control)", VENDOR_B.contrast, VENDOR_A.acquisition)
VENDORS: dict[str, Vendor] = {"A": VENDOR_A, "B": VENDOR_B, "B_contrast": VENDOR_B_CONTRAST_ONLY}


@dataclass(frozen=True)
class AnatomyConfig:
    """Patient anatomy, shared by all vendors. Lengths are fractions of the image side.

    ``tumour_radius``: tumour radius range (0.03-0.08 of the side = 2-5 px at 64 px);
    ``tumour_contrast``: tumour signal above FGT, relative to the FGT signal;
    ``fgt_density``: fraction of the inner breast that is FGT; ``fgt_scale``: correlation length
    of the FGT texture.
    """

    size: int = 64
    slices_per_patient: int = 4
    tumour_radius: tuple[float, float] = (0.035, 0.075)
    tumour_contrast: tuple[float, float] = (0.25, 0.55)
    fgt_density: tuple[float, float] = (0.15, 0.55)
    fgt_scale: float = 0.05

    def __post_init__(self) -> None:
        if isinstance(self.size, bool) or not isinstance(self.size, (int, np.integer)) or self.size < 16:
            raise ValueError(f"AnatomyConfig.size must be an integer >= 16, got {self.size!r}")
        s = self.slices_per_patient
        if isinstance(s, bool) or not isinstance(s, (int, np.integer)) or s < 2 or s % 2:
            raise ValueError(f"AnatomyConfig.slices_per_patient must be an even integer >= 2 "
                             f"(half with tumour, half without), got {s!r}")
        for name, (lo, hi), top in (("tumour_radius", self.tumour_radius, 0.2),
                                    ("tumour_contrast", self.tumour_contrast, 5.0),
                                    ("fgt_density", self.fgt_density, 0.95)):
            if not 0 < lo <= hi <= top:
                raise ValueError(f"AnatomyConfig.{name} must satisfy 0 < low <= high <= {top}, got {(lo, hi)!r}")
        if not 0 < self.fgt_scale < 0.5:
            raise ValueError(f"AnatomyConfig.fgt_scale must be in (0, 0.5), got {self.fgt_scale!r}")


@dataclass
class MRIDataset:
    """Slices of one vendor: ``images`` (N, H, W) float32 scaled to ~[0, 1], ``labels`` (N,) 0/1,
    ``patients`` (N,) patient ids, ``tumour_masks`` (N, H, W) bool (empty for label 0)."""

    images: np.ndarray
    labels: np.ndarray
    patients: np.ndarray
    tumour_masks: np.ndarray
    vendor: str

    def __post_init__(self) -> None:
        n = len(self.images)
        if not (len(self.labels) == len(self.patients) == len(self.tumour_masks) == n):
            raise ValueError("MRIDataset: images, labels, patients and tumour_masks must have the same length")

    def __len__(self) -> int:
        return len(self.images)

    def subset(self, indices: np.ndarray) -> MRIDataset:
        """The slices at ``indices`` (e.g. one split of :func:`patient_split`)."""
        idx = np.asarray(indices)
        return MRIDataset(self.images[idx], self.labels[idx], self.patients[idx], self.tumour_masks[idx],
                          self.vendor)

    def tensors(self):
        """``(x, y)`` torch tensors: x (N, 1, H, W) float32, y (N,) float32 (for a TensorDataset)."""
        import torch

        return (torch.from_numpy(np.ascontiguousarray(self.images[:, None], dtype=np.float32)),
                torch.from_numpy(self.labels.astype(np.float32)))


# ----------------------------------------------------------------------------------------------
# Simulation

_CHUNK = 64  # patients per vectorised chunk (a constant: results do not depend on memory settings)


def _fft2c(x: np.ndarray) -> np.ndarray:
    return np.fft.fftshift(np.fft.fft2(np.fft.ifftshift(x, axes=(-2, -1)), norm="ortho"), axes=(-2, -1))


def _ifft2c(k: np.ndarray) -> np.ndarray:
    return np.fft.fftshift(np.fft.ifft2(np.fft.ifftshift(k, axes=(-2, -1)), norm="ortho"), axes=(-2, -1))


def _soft(level: np.ndarray, width: float) -> np.ndarray:
    """Partial-volume edge: ~1 inside (level > 0), ~0 outside, over ``width`` (in level units)."""
    return 0.5 * (1.0 + np.tanh(level / width))


def _random_fields(rng: np.random.Generator, count: int, size: int, scale: float) -> np.ndarray:
    """``count`` Gaussian random fields with Gaussian correlation length ``scale`` (fraction of side),
    each standardised to zero mean and unit variance."""
    white = rng.standard_normal((count, size, size))
    f = np.fft.fftfreq(size)
    radius2 = f[:, None] ** 2 + f[None, :] ** 2
    kernel = np.exp(-2 * (np.pi * scale * size) ** 2 * radius2)
    fields = np.fft.ifft2(np.fft.fft2(white) * kernel).real
    fields -= fields.mean(axis=(1, 2), keepdims=True)
    fields /= fields.std(axis=(1, 2), keepdims=True) + 1e-12
    return fields


def _draw_patients(rng: np.random.Generator, n: int, anatomy: AnatomyConfig) -> dict[str, np.ndarray]:
    """Per-patient anatomy parameters (vectorised)."""
    lo_r, hi_r = anatomy.tumour_radius
    lo_c, hi_c = anatomy.tumour_contrast
    lo_d, hi_d = anatomy.fgt_density
    return {
        "chest": rng.uniform(0.30, 0.45, n),          # chest-wall position (y, rows downward)
        "a": rng.uniform(0.75, 0.92, n),              # breast half-width
        "b": rng.uniform(0.95, 1.20, n),              # breast depth
        "muscle": rng.uniform(0.10, 0.18, n),         # pectoralis thickness
        "density": rng.uniform(lo_d, hi_d, n),
        "radius": rng.uniform(lo_r, hi_r, n) * 2.0,   # fractions of the side -> [-1, 1] coordinates
        "elong": rng.uniform(1.0, 1.6, n),
        "angle": rng.uniform(0, np.pi, n),
        "contrast": rng.uniform(lo_c, hi_c, n),
        "u_pos": rng.uniform(0, 1, n),                # tumour position inside the inner breast
        "v_pos": rng.uniform(0, 1, n),
        "bias_coef": rng.uniform(-1, 1, (n, 10)),     # scaled by the vendor's Contrast.bias
    }


def _monomials(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The 10 monomials x^i y^j with i + j <= 3 (order-3 bias polynomial)."""
    return np.stack([x ** i * y ** j for i in range(4) for j in range(4 - i)], axis=0)


def acquire(signal: np.ndarray, acquisition: Acquisition, rng: np.random.Generator) -> np.ndarray:
    """Scan real images ``signal`` (N, H, W) with ``acquisition``; returns magnitude images.

    k-space = centred orthonormal FFT; every ``n``-th phase-encode line (rows, unshifted index
    ``u % n == 0``, so DC included) is scaled by ``1 - s`` with ``n`` drawn from ``ghost_periods`` and
    ``s`` from ``ghost_strength`` per image; complex Gaussian noise of standard deviation
    ``noise_sigma`` per real and imaginary component (the Rician ``sigma``) is added; only the central
    ``round(k_keep * H)`` x ``round(k_keep * W)`` block is kept (zero-filled); the magnitude of the
    inverse FFT is returned (Rician statistics).
    """
    signal = np.asarray(signal, dtype=float)
    if signal.ndim != 3:
        raise ValueError(f"signal must be an (N, H, W) stack, got shape {signal.shape}")
    count, h, w = signal.shape
    kspace = _fft2c(signal)
    rows = (np.arange(h) - h // 2) % h                  # unshifted index of each centred row
    period = rng.choice(np.asarray(acquisition.ghost_periods), size=count)
    strength = rng.uniform(*acquisition.ghost_strength, size=count)
    ghost_rows = (rows[None, :] % period[:, None]) == 0
    kspace = kspace * (1 - strength[:, None] * ghost_rows)[:, :, None]
    noise = rng.standard_normal((2, count, h, w))
    kspace = kspace + acquisition.noise_sigma * (noise[0] + 1j * noise[1])
    keep = np.zeros((h, w), dtype=bool)
    kh, kw = int(round(acquisition.k_keep * h)), int(round(acquisition.k_keep * w))
    keep[h // 2 - kh // 2: h // 2 - kh // 2 + kh, w // 2 - kw // 2: w // 2 - kw // 2 + kw] = True
    return np.abs(_ifft2c(kspace * keep))


def _simulate_chunk(anat_rng: np.random.Generator, acq_rng: np.random.Generator, p: dict[str, np.ndarray],
                    vendor: Vendor, anatomy: AnatomyConfig) -> tuple[np.ndarray, np.ndarray]:
    """Images and tumour masks of the patients in ``p``: (P * S, H, W) each, slice order = patient-major,
    the first S/2 slices of each patient with tumour."""
    n_pat = len(p["chest"])
    s = anatomy.slices_per_patient
    n = anatomy.size
    half = s // 2
    c = (np.arange(n) + 0.5) / n * 2 - 1
    y, x = np.meshgrid(c, c, indexing="ij")  # y: rows (phase encode), x: columns (readout)
    px = 2.0 / n                              # one pixel in [-1, 1] coordinates

    def per_slice(v: np.ndarray) -> np.ndarray:
        return np.repeat(v, s)[:, None, None]

    # --- anatomy: the slice shape shrinks a little away from the patient's central slice
    jitter = anat_rng.uniform(0.93, 1.0, n_pat * s)[:, None, None]
    chest, a, b = per_slice(p["chest"]), per_slice(p["a"]) * jitter, per_slice(p["b"]) * jitter
    rho = np.sqrt((x / a) ** 2 + ((y - chest) / b) ** 2)
    above = _soft(chest - y, px)
    breast = _soft(1 - rho, px / np.minimum(a, b)) * above
    inner_rho = np.sqrt((x / (a - 0.12)) ** 2 + ((y - chest) / (b - 0.12)) ** 2)
    inner = _soft(1 - inner_rho, px / np.minimum(a, b)) * above
    muscle_end = chest + per_slice(p["muscle"])
    torso = _soft(0.97 - np.abs(x), px) * _soft(y - chest, px)
    muscle = torso * _soft(muscle_end - y, px)
    body = torso - muscle

    # FGT: a patient texture mixed with a slice texture (neighbouring slices look alike), thresholded
    # at the patient's density inside the inner breast, with a soft edge.
    base = _random_fields(anat_rng, n_pat, n, anatomy.fgt_scale)
    own = _random_fields(anat_rng, n_pat * s, n, anatomy.fgt_scale)
    texture = np.cos(0.6) * np.repeat(base, s, axis=0) + np.sin(0.6) * own
    inside = inner > 0.5
    density = per_slice(p["density"])[:, 0, 0]
    threshold = np.array([np.quantile(texture[i][inside[i]], 1 - density[i]) if inside[i].any() else np.inf
                          for i in range(len(texture))])[:, None, None]
    fgt = _soft(texture - threshold, 0.15) * inner
    body_texture = 1 + 0.15 * _random_fields(anat_rng, n_pat * s, n, 2 * anatomy.fgt_scale)

    # Tumour: an ellipsoid at a patient-fixed place in the inner breast; the slices through it
    # (the first S/2 of the patient) cut it at different heights, so the section radius varies.
    theta = np.pi + 0.2 + (np.pi - 0.4) * p["u_pos"]        # the half of the ellipse above the chest wall
    reach = 0.8 * np.sqrt(p["v_pos"])                     # uniform over the area
    ty = p["chest"] + (p["b"] - 0.12) * reach * np.sin(theta) - p["radius"]
    tx = (p["a"] - 0.12) * reach * np.cos(theta)
    heights = np.linspace(-0.6, 0.6, half) if half > 1 else np.zeros(1)
    section = np.concatenate([np.sqrt(1 - heights ** 2), np.zeros(s - half)])  # 0 = no tumour
    r_major = (per_slice(p["radius"]) * np.tile(section, n_pat)[:, None, None])
    r_minor = r_major / per_slice(p["elong"])
    cos_t, sin_t = np.cos(per_slice(p["angle"])), np.sin(per_slice(p["angle"]))
    dx, dy = x - per_slice(tx), y - per_slice(ty)
    u = (cos_t * dx + sin_t * dy) / np.maximum(r_major, 1e-9)
    v = (-sin_t * dx + cos_t * dy) / np.maximum(r_minor, 1e-9)
    tumour = np.where(r_major > 0, _soft(1 - np.sqrt(u ** 2 + v ** 2), 0.5 * px / np.maximum(r_minor, 1e-9)), 0.0)
    tumour *= breast

    # --- contrast (image domain)
    con = vendor.contrast
    fat = np.clip(breast - fgt, 0, None)
    tissue = fat * con.fat + fgt * con.fgt + muscle * con.muscle + body * con.body * body_texture
    tumour_signal = con.fgt * (1 + per_slice(p["contrast"]))
    signal = (1 - tumour) * tissue + tumour * tumour_signal
    signal = np.clip(signal, 0, None) ** con.gamma
    log_bias = np.einsum("pk,kij->pij", p["bias_coef"] * con.bias, _monomials(x, y))
    signal = signal * np.repeat(np.exp(log_bias), s, axis=0)

    image = acquire(signal, vendor.acquisition, acq_rng)

    # --- the same normalisation for every vendor: divide by the 99th percentile
    scale = np.percentile(image.reshape(len(image), -1), 99, axis=1)[:, None, None]
    image = image / np.maximum(scale, 1e-12)
    return image.astype(np.float32), tumour > 0.5


def simulate_vendor(n_patients: int, vendor: Vendor | str, seed: int,
                    anatomy: AnatomyConfig | None = None) -> MRIDataset:
    """``n_patients`` patients scanned on ``vendor`` (a :class:`Vendor` or a key of :data:`VENDORS`).

    Returns ``n_patients * slices_per_patient`` slices, half with tumour, patient ids
    ``0 .. n_patients - 1``. The same ``seed`` gives the same anatomy on every vendor.
    """
    if isinstance(n_patients, bool) or not isinstance(n_patients, (int, np.integer)) or n_patients < 1:
        raise ValueError(f"n_patients must be a positive integer, got {n_patients!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    if isinstance(vendor, str):
        if vendor not in VENDORS:
            raise ValueError(f"unknown vendor {vendor!r}; choose one of {sorted(VENDORS)} or pass a Vendor")
        vendor = VENDORS[vendor]
    if not isinstance(vendor, Vendor):
        raise TypeError(f"vendor must be a Vendor or one of {sorted(VENDORS)}, got {type(vendor).__name__}")
    anatomy = anatomy or AnatomyConfig()
    anatomy_seq, acquisition_seq = np.random.SeedSequence(int(seed)).spawn(2)
    anat_rng, acq_rng = np.random.default_rng(anatomy_seq), np.random.default_rng(acquisition_seq)
    params = _draw_patients(anat_rng, int(n_patients), anatomy)
    images, masks = [], []
    for start in range(0, n_patients, _CHUNK):
        chunk = {k: v[start:start + _CHUNK] for k, v in params.items()}
        img, msk = _simulate_chunk(anat_rng, acq_rng, chunk, vendor, anatomy)
        images.append(img)
        masks.append(msk)
    s = anatomy.slices_per_patient
    labels = np.tile(np.r_[np.ones(s // 2), np.zeros(s // 2)].astype(np.int64), n_patients)
    patients = np.repeat(np.arange(n_patients, dtype=np.int64), s)
    return MRIDataset(np.concatenate(images), labels, patients, np.concatenate(masks), vendor.name)


# ----------------------------------------------------------------------------------------------
# Splits and shift diagnostics


def patient_split(patients: np.ndarray, fractions: tuple[float, ...] = (0.6, 0.2, 0.2),
                  names: tuple[str, ...] = ("train", "val", "test"), seed: int = 0) -> dict[str, np.ndarray]:
    """Slice indices of each split, with every patient in exactly one split (no patient leaks).

    Patients are shuffled with ``seed`` and cut by ``fractions`` (which must sum to 1, each split
    getting at least one patient).
    """
    patients = np.asarray(patients)
    if patients.ndim != 1 or len(patients) == 0:
        raise ValueError(f"patients must be a non-empty 1-D array of ids, got shape {patients.shape}")
    if len(fractions) != len(names):
        raise ValueError(f"fractions {fractions!r} and names {names!r} must have the same length")
    fr = np.asarray(fractions, dtype=float)
    if np.any(fr <= 0) or not np.isclose(fr.sum(), 1.0):
        raise ValueError(f"fractions must be positive and sum to 1, got {fractions!r}")
    unique = np.unique(patients)
    if len(unique) < len(names):
        raise ValueError(f"{len(unique)} patients cannot fill {len(names)} splits")
    order = np.random.default_rng(seed).permutation(unique)
    cuts = np.round(np.cumsum(fr)[:-1] * len(unique)).astype(int)
    cuts = np.clip(cuts, np.arange(1, len(names)), len(unique) - np.arange(len(names) - 1, 0, -1))
    groups = np.split(order, cuts)
    return {name: np.flatnonzero(np.isin(patients, group)) for name, group in zip(names, groups)}


Features = Literal["spectrum", "histogram", "both"]


def _shift_features(images: np.ndarray, features: Features) -> np.ndarray:
    parts = []
    if features in ("spectrum", "both"):
        power = np.abs(_fft2c(images)) ** 2
        parts.append(np.log(power.mean(axis=-1) + 1e-8))           # per phase-encode line
    if features in ("histogram", "both"):
        edges = np.linspace(0, 1.2, 25)
        parts.append(np.stack([np.histogram(im, bins=edges)[0] / im.size for im in images]))
    return np.concatenate(parts, axis=1)


def vendor_separability(images_a: np.ndarray, images_b: np.ndarray, *, features: Features = "both",
                        seed: int = 0, folds: int = 5) -> float:
    """Cross-validated AUC of a logistic-regression *vendor* classifier: how big the shift is.

    ``features``: ``"spectrum"`` (log power per phase-encode line, what a line mask sees),
    ``"histogram"`` (intensity histogram, image-domain contrast) or ``"both"``. 0.5 = no shift.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if features not in ("spectrum", "histogram", "both"):
        raise ValueError(f"features must be 'spectrum', 'histogram' or 'both', got {features!r}")
    a, b = np.asarray(images_a), np.asarray(images_b)
    if a.ndim != 3 or b.ndim != 3 or a.shape[1:] != b.shape[1:]:
        raise ValueError(f"images_a and images_b must be (N, H, W) stacks of one size, got {a.shape} and {b.shape}")
    if min(len(a), len(b)) < folds:
        raise ValueError(f"need at least folds={folds} images per vendor, got {len(a)} and {len(b)}")
    x = np.concatenate([_shift_features(a, features), _shift_features(b, features)])
    y = np.r_[np.zeros(len(a)), np.ones(len(b))]
    model = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=2000))
    cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    score = cross_val_predict(model, x, y, cv=cv, method="decision_function")
    return float(roc_auc_score(y, score))


def with_acquisition(vendor: Vendor, **changes) -> Vendor:
    """A copy of ``vendor`` with some :class:`Acquisition` fields changed (for ablations)."""
    return replace(vendor, acquisition=replace(vendor.acquisition, **changes))
