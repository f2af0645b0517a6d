"""The data chapter: the simulated low-dose CT data set every CT chapter shares, and the physics it must obey.

The chapter's configuration holds the CT data configuration of :mod:`glassbox.data.lowdose_ct`
(:data:`~glassbox.data.lowdose_ct.DATA_PROFILES`, the same tables the other CT studies start from) and the
size of its noise-versus-dose experiment. Surface (see ``book/CHAPTER_GUIDE.md``):

- :func:`noise_law` -- noise SD in a water cylinder at five doses, one value per seed, with per-seed fits;
- :func:`reconstruction_error`, :func:`water_centre_hu`, :func:`dicom_round_trip`, :func:`split_table`;
- :func:`claims` (the noise law against photon statistics), :func:`checks` (invariants of the simulator and
  the loaders, one quality check of its calibration), :func:`deviations` (from the data of the papers the CT
  chapters follow) and :func:`plan` (the data set as a store task).
"""
from __future__ import annotations

import math
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from scipy import ndimage

from glassbox.core.tasks import Task
from glassbox.data import ct_physics, dicom, lowdose_ct, phantoms
from glassbox.data.lowdose_ct import DATA_PROFILES, CTDataConfig
from glassbox.measure.claims import Check, Claim, Deviation, equivalence_rule, quality_check, require
from glassbox.measure.stats import interval

CHAPTER = "data"
DOSES: tuple[float, ...] = (1.0, 0.5, 0.25, 0.125, 0.0625)
"""Dose fractions of the noise experiment: full dose down to 1/16, each half the one before."""
QUARTER = 0.25


@dataclass(frozen=True)
class DataChapterConfig:
    """The shared CT data set of a profile and the size of the chapter's noise experiment."""

    data: CTDataConfig
    noise_seeds: int
    doses: tuple[float, ...] = DOSES
    roi_diameter_mm: float = 150.0

    def __post_init__(self) -> None:
        if isinstance(self.noise_seeds, bool) or not isinstance(self.noise_seeds, int) or self.noise_seeds < 3:
            raise ValueError(f"noise_seeds must be an integer >= 3 (an interval over seeds), got {self.noise_seeds!r}")
        if 1.0 not in self.doses or QUARTER not in self.doses:
            raise ValueError(f"doses must include full dose 1.0 and quarter dose {QUARTER}, got {self.doses!r}")


PROFILES: dict[str, DataChapterConfig] = {
    "smoke": DataChapterConfig(DATA_PROFILES["smoke"], noise_seeds=6),
    "quick": DataChapterConfig(DATA_PROFILES["quick"], noise_seeds=10),
    "paper": DataChapterConfig(DATA_PROFILES["paper"], noise_seeds=20),
}


# --- noise against dose ---------------------------------------------------------------------------


@dataclass(frozen=True)
class NoiseLaw:
    """Noise SD (HU) in the centre of a 300 mm water cylinder, and what follows from it.

    ``sd[dose, seed]`` comes from independent scans at each dose (``ct_physics.noise_vs_dose``); each seed gives
    its own least-squares slope of ``log SD`` against ``log dose``. ``paired_ratios[seed]`` is the SD of the
    low-dose image over the SD of the full-dose image *of the same scan* at the data set's dose
    (``ct_physics.simulate_paired``, binomial thinning of the full-dose counts: the code path the data set is
    made by). Intervals are Student-t intervals of the mean over seeds (the doses of one seed share random
    numbers, so its points are not independent; seeds are).
    """

    doses: np.ndarray
    sd: np.ndarray
    slopes: np.ndarray
    paired_dose: float
    paired_ratios: np.ndarray
    level: float = 0.95

    @property
    def slope(self) -> tuple[float, float, float]:
        """(mean, low, high) of the per-seed slopes."""
        return interval(self.slopes, self.level)

    @property
    def ratio(self) -> tuple[float, float, float]:
        """(mean, low, high) of the per-seed low-to-full noise ratios of paired scans."""
        return interval(self.paired_ratios, self.level)

    @property
    def sd_full(self) -> float:
        return float(self.sd[list(self.doses).index(1.0)].mean())

    @property
    def sd_quarter(self) -> float:
        return float(self.sd[list(self.doses).index(QUARTER)].mean())


def _roi(n: int, diameter_mm: float) -> np.ndarray:
    offsets = (np.arange(n) - n // 2) * phantoms.pixel_mm(n)
    return np.hypot(offsets[:, None], offsets[None, :]) <= diameter_mm / 2


def noise_law(config: DataChapterConfig, seed: int) -> NoiseLaw:
    """Measure noise against dose on ``config.noise_seeds`` seeds starting at ``seed``."""
    data = config.data
    doses = np.asarray(config.doses, dtype=float)
    seeds = list(range(seed, seed + config.noise_seeds))
    measured = ct_physics.noise_vs_dose(data.n, doses, seeds=seeds, n_angles=data.n_angles, i0=data.i0,
                                        roi_diameter_mm=config.roi_diameter_mm)
    sd = measured["sd"]
    slopes = np.array([np.polyfit(np.log(doses), np.log(sd[:, j]), 1)[0] for j in range(sd.shape[1])])
    water = ct_physics.water_cylinder(data.n)
    clean = ct_physics.reconstruct(water, data.n_angles)
    roi = _roi(data.n, config.roi_diameter_mm)
    low, full = ct_physics.simulate_paired(np.repeat(water[None], len(seeds), axis=0), data.dose,
                                           np.random.default_rng(seeds), n_angles=data.n_angles, i0=data.i0)
    paired = np.array([(lo - clean)[roi].std() / (fu - clean)[roi].std() for lo, fu in zip(low, full)])
    return NoiseLaw(doses=doses, sd=sd, slopes=slopes, paired_dose=float(data.dose), paired_ratios=paired)


def noise_table(law: NoiseLaw) -> pd.DataFrame:
    """Per dose: mean and spread of the measured SD, and the law's prediction from the full-dose mean."""
    return pd.DataFrame({"dose": law.doses, "SD mean (HU)": law.sd.mean(1), "SD std over seeds (HU)": law.sd.std(1),
                         "1/sqrt(dose) law (HU)": law.sd_full / np.sqrt(law.doses)})


def noise_figure(law: NoiseLaw) -> plt.Figure:
    """Log-log plot of SD against dose, one point per seed, with the 1/sqrt(dose) line through full dose."""
    mean, lo, hi = law.slope
    fig, ax = plt.subplots(figsize=(4.8, 3.6))
    n_seeds = law.sd.shape[1]
    ax.loglog(np.repeat(law.doses, n_seeds), law.sd.ravel(), "o", alpha=0.4, label="measured (one point per seed)")
    ax.loglog(law.doses, law.sd_full / np.sqrt(law.doses), "k--", label=r"$1/\sqrt{d}$ law")
    ax.set(xlabel="dose fraction d", ylabel="noise SD in water (HU)",
           title=f"slope {mean:.3f}, 95% interval [{lo:.3f}, {hi:.3f}]")
    ax.legend()
    fig.tight_layout()
    return fig


def margins(tolerance: float, dose: float = QUARTER) -> tuple[float, float]:
    """(slope margin, ratio margin) that allow the noise at ``dose`` a relative error of ``tolerance``.

    A slope of ``-1/2 + m`` changes the noise at dose ``d`` by a factor ``d**-m``, so
    ``m = log(1 + t) / log(1 / d)``; the ratio's margin is ``t / sqrt(d)`` (``2 t`` at quarter dose).
    """
    if not 0 < tolerance < 1:
        raise ValueError(f"tolerance must be a fraction in (0, 1), got {tolerance!r}")
    if not 0 < dose < 1:
        raise ValueError(f"dose must be a fraction in (0, 1), got {dose!r}")
    return math.log1p(tolerance) / math.log(1.0 / dose), tolerance / math.sqrt(dose)


def claims(law: NoiseLaw, tolerance: float) -> list[Claim]:
    """The noise law of photon counting, tested on the simulator: slope -1/2, and the data set's low-dose images
    having ``1/sqrt(dose)`` times the full-dose noise (twice at quarter dose).

    ``tolerance`` is the relative error of the low-dose noise the chapter accepts (stated in the chapter);
    both claims use the equivalence rule with the margins of :func:`margins`.
    """
    slope_margin, ratio_margin = margins(tolerance, law.paired_dose)
    n_seeds = len(law.slopes)
    kind = f"{law.level:.0%} t interval over {n_seeds} seeds"
    slope, slope_lo, slope_hi = law.slope
    verdict, rule = equivalence_rule((slope_lo + 0.5, slope_hi + 0.5), slope_margin, what="slope + 0.5")
    noise_slope = Claim(
        id="data.noise-slope", chapter=CHAPTER, source="Photon statistics (Poisson counts)",
        statement="Image noise SD scales as dose^(-1/2): slope -1/2 of log SD against log dose.",
        test=(f"each seed's least-squares slope of log noise SD against log dose ({len(law.doses)} doses, "
              "independent scans of a water cylinder, noiseless reconstruction subtracted), mean over seeds"),
        verdict=verdict, rule=rule, ours=slope, interval=(slope_lo, slope_hi), interval_kind=kind, paper=-0.5,
        section="data-noise-law",
        note=f"Margin ±{slope_margin:.3g}: noise at dose {law.paired_dose:g} within {tolerance:.0%} of the law's.")
    expected = 1.0 / math.sqrt(law.paired_dose)
    ratio, ratio_lo, ratio_hi = law.ratio
    verdict, rule = equivalence_rule((ratio_lo - expected, ratio_hi - expected), ratio_margin,
                                     what=f"ratio - {expected:.3g}")
    paired = Claim(
        id="data.low-dose-noise", chapter=CHAPTER, source="Photon statistics; Grand Challenge noise insertion",
        statement=(f"The data set's low-dose images (dose {law.paired_dose:g}) have 1/sqrt(dose) = {expected:.3g} "
                   "times the noise SD of the full-dose images of the same scans."),
        test=("each seed's SD of the low-dose image over the SD of the full-dose image of the same simulated scan "
              "(binomial thinning of the full-dose counts, as the data set is made), mean over seeds"),
        verdict=verdict, rule=rule, ours=ratio, interval=(ratio_lo, ratio_hi), interval_kind=kind, paper=expected,
        section="data-noise-law",
        note=f"Margin ±{ratio_margin:.3g}: {tolerance:.0%} of the law's ratio.")
    return [noise_slope, paired]


# --- reconstruction, loaders, splits --------------------------------------------------------------


def water_centre_hu(n: int, n_angles: int | None = None) -> float:
    """Mean HU of the central 4 x 4 pixels of a noiseless FBP of the 300 mm water cylinder (water is 0 HU)."""
    image = ct_physics.reconstruct(ct_physics.water_cylinder(n), n_angles=n_angles)
    c = n // 2
    return float(image[c - 2:c + 2, c - 2:c + 2].mean())


def reconstruction_error(phantom: np.ndarray, clean: np.ndarray, edge_hu: float = 100.0,
                         band_px: int = 2) -> dict[str, float]:
    """Where the noiseless reconstruction differs from the phantom: RMSE overall, and the share of the squared
    error within ``band_px`` pixels of an edge (a jump of more than ``edge_hu`` between neighbouring pixels)."""
    phantom = np.asarray(phantom, dtype=np.float64)
    error2 = (np.asarray(clean, dtype=np.float64) - phantom) ** 2
    jumps = np.zeros(phantom.shape, dtype=bool)
    jumps[:-1] |= np.abs(np.diff(phantom, axis=0)) > edge_hu
    jumps[:, :-1] |= np.abs(np.diff(phantom, axis=1)) > edge_hu
    band = ndimage.binary_dilation(jumps, iterations=band_px)
    return {"rmse_hu": float(np.sqrt(error2.mean())), "edge_error_share": float(error2[band].sum() / error2.sum()),
            "edge_pixel_share": float(band.mean())}


def noise_anatomy_correlation(low: np.ndarray, full: np.ndarray, phantom: np.ndarray) -> float:
    """Pearson correlation, over the body (phantom above -500 HU), of the dose difference with the anatomy."""
    body = np.asarray(phantom) > -500
    return float(np.corrcoef((np.asarray(low) - np.asarray(full))[body], np.asarray(phantom)[body])[0, 1])


def split_table(pairs: Mapping[str, tuple[np.ndarray, np.ndarray]], splits: Mapping[str, Sequence[str]]
                ) -> pd.DataFrame:
    """Patients and slices per split, with the first few patient ids."""
    return pd.DataFrame([{"split": name, "patients": len(ids), "slices": sum(pairs[i][0].shape[0] for i in ids),
                          "first ids": ", ".join(ids[:4])} for name, ids in splits.items()])


def dicom_round_trip(pairs: Mapping[str, tuple[np.ndarray, np.ndarray]], n: int) -> tuple[float, list[str]]:
    """Write the first patient as a Mayo DICOM tree, read it back: (largest HU difference, first file names).

    DICOM stores integer HU, so the difference of a float image is its rounding, at most 0.5 HU (values below
    -1024 HU are clamped, as the Mayo data are).
    """
    pid = next(iter(pairs))
    first = {pid: pairs[pid]}
    with tempfile.TemporaryDirectory() as folder:
        dicom.write_mayo_tree(folder, first, pixel_mm=phantoms.pixel_mm(n))
        layout = sorted(str(p.relative_to(folder)) for p in Path(folder).rglob("*.IMA"))[:2]
        back = dicom.load_mayo(folder)
    error = max(float(np.abs(back[pid][k] - np.clip(first[pid][k], -1024, None)).max()) for k in (0, 1))
    return error, layout


def checks(law: NoiseLaw, *, water_centre: float, real_hu: np.ndarray, pydicom_hu: np.ndarray,
           splits: Mapping[str, Sequence[str]], patients: Sequence[str], dicom_error: float | None) -> list[Check]:
    """Invariants (a failure raises and stops the build) and the quality check of the noise calibration.

    - ``noise-finite``: every measured SD is finite and positive;
    - ``water-centre``: the noiseless water cylinder reconstructs to 0 HU within 5 HU in its centre (the FBP
      of a uniform disc is exact up to discretisation; measured SD of the reconstruction 0.06 HU at 128);
    - ``dicom-hu``: :func:`glassbox.data.dicom.read_slice` gives exactly pydicom's rescaled HU;
    - ``splits-partition``: every patient is in exactly one split;
    - ``dicom-round-trip``: writing and reading a Mayo tree changes no value by more than the 0.5 HU of
      integer storage (simulated data only);
    - ``full-dose-noise`` (quality): the full-dose noise is in the 10-15 HU the incident flux is calibrated
      for (``ct_physics.default_i0``; measured 11.37-11.77 HU on smoke and quick, seeds 0-2, 1 and 2 threads).
    """
    assigned = [p for ids in splits.values() for p in ids]
    out = [
        require("noise-finite", "every measured noise SD is finite and positive",
                bool(np.all(np.isfinite(law.sd)) and np.all(law.sd > 0))),
        require("water-centre", "noiseless water reconstructs to 0 HU (within 5 HU) in the centre",
                abs(water_centre) < 5.0, value=water_centre, threshold="|HU| < 5"),
        require("dicom-hu", "read_slice reproduces pydicom's rescaled HU exactly",
                bool(np.array_equal(real_hu, np.asarray(pydicom_hu, dtype=np.float32)))),
        require("splits-partition", "every patient is in exactly one split",
                sorted(assigned) == sorted(patients)),
    ]
    if dicom_error is not None:
        out.append(require("dicom-round-trip", "a Mayo DICOM round trip changes no value by more than 0.5 HU",
                           dicom_error <= 0.5, value=dicom_error, threshold="<= 0.5 HU"))
    out.append(quality_check("full-dose-noise", "full-dose noise in water is in the calibrated 10-15 HU range",
                             law.sd_full, above=10.0, below=15.0,
                             margin_note=("calibrated to ~11.5 HU; measured 11.37-11.77 HU on smoke and quick, "
                                          "seeds 0-2, 1 and 2 threads")))
    return out


# --- deviations and plan --------------------------------------------------------------------------


def deviations(config: DataChapterConfig, *, simulated: bool = True) -> list[Deviation]:
    """How the data of this run depart from the data of the papers the CT chapters follow."""
    if not simulated:
        return []
    data = config.data
    n_angles = data.n_angles or ct_physics.default_n_angles(data.n)
    split = lowdose_ct.split_patients(lowdose_ct.patient_ids(data.n_patients), data.split_fractions)
    sizes = "/".join(str(len(split[s])) for s in lowdose_ct.SPLITS)
    ours_data = (f"simulated abdominal phantoms: {data.n_patients} patients x {data.slices_per_patient} slices, "
                 f"split {sizes} patients (train/validation/test)")
    ours_image = f"{data.n} x {data.n} pixels of {phantoms.pixel_mm(data.n):.2f} mm"
    ours_dose = (f"2-D parallel beam, {n_angles} views; dose {data.dose:g} by Poisson thinning of the full-dose "
                 "counts; no electronic noise, bowtie, beam hardening or scatter; the same grid simulates and "
                 "reconstructs (the inverse crime)")
    why_data = "the Grand Challenge and TCIA data need a licence and no download is possible at build time"
    why_dose = "the book studies denoisers, not reconstruction; a simulator makes noise exactly controllable"
    out = []
    for ref, paper_data, paper_dose in (
        ("qu2023beware", "2016 Low Dose CT Grand Challenge: abdominal scans of 50 patients, 14,760 slices "
                         "(9,130/3,026/2,604 train/validation/test)",
         "quarter dose by projection-domain noise insertion into real scans"),
        ("eulig2022invariances", "LDCT and Projection data: 150 scans (50 head, 50 chest, 50 abdomen), "
                                 "70/20/10 % patient split",
         "simulated 25 % dose (10 % for chest) by noise insertion into real projections"),
    ):
        prefix = f"data.{ref}"
        out += [
            Deviation(f"{prefix}.data", CHAPTER, ref, "data", paper_data, ours_data, why_data),
            Deviation(f"{prefix}.image", CHAPTER, ref, "image size", "512 x 512 slices, about 0.7 mm pixels",
                      ours_image, "the profile's compute budget (smoke: seconds on a CPU; paper: a GPU)"),
            Deviation(f"{prefix}.dose", CHAPTER, ref, "low-dose simulation", paper_dose, ours_dose, why_dose),
        ]
    return out


def plan(config: DataChapterConfig, *, seed: int, device: Any = None, data_dir: Any = None) -> list[Task]:
    """The chapter's one expensive artifact: the simulated data set (none with real data, which is read as it is).

    The task makes the chapter's own call, :func:`glassbox.data.lowdose_ct.get_pairs` with simulated data,
    i.e. :func:`~glassbox.data.lowdose_ct.build_dataset` through the store (its key from
    :func:`~glassbox.data.lowdose_ct.dataset_entry`). ``device`` is not used (the simulation runs on the CPU).
    """
    if not isinstance(config, DataChapterConfig):
        raise ValueError(f"config must be a DataChapterConfig (a PROFILES entry), got {type(config).__name__}")
    if data_dir is not None:
        return []
    data = config.data
    entry, key_config = lowdose_ct.dataset_entry(data, seed)
    label = (f"simulated CT data: {data.n_patients} patients x {data.slices_per_patient} slices of "
             f"{data.n}x{data.n}, seed {seed}")
    return [Task(entry=entry, config=key_config, label=label,
                 run=partial(lowdose_ct.build_dataset, data, seed, progress=False))]
