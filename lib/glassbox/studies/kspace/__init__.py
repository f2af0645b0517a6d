"""Lu's experiment (seed 003), built so that it can tell a learned k-space mask from a built-in answer.

Lu trains a tumour classifier behind a learnable k-space sampling layer on one vendor's MRI and scores it on
both: ``S_{i,j}`` is the AUC of test set ``i`` on the model trained on vendor ``j``; ``S_{A,A}``, ``S_{B,B}``
are the paper's *robustness*, ``S_{B,A}``, ``S_{A,B}`` its *generalizability*. This module runs that
experiment on simulated vendors (:mod:`glassbox.data.mri`) with four safeguards:

- **one mask in training and evaluation.** The learned layer keeps exactly ``k`` phase-encode lines in every
  draw (Gumbel top-k with a straight-through relaxed top-k, :class:`~glassbox.models.kspace_sampler.
  KSpaceSampler` ``mode="topk"``), so the achieved rate is ``k / lines`` and never drifts. The mask phase
  (``mask_epochs``) trains the layer and a network end to end, as Lu does; the *sampled* protocol scores that
  network, averaging the AUC over ``eval_draws`` masks drawn as in training. Then the mask is frozen at its
  top-k lines and a fresh classifier is trained on it for ``epochs`` epochs, exactly as the fixed masks'
  classifiers: the *top-k* protocol scores it on the mask it was trained on. Both are reported.
- **baselines with the same k.** A centre (low-pass) mask and a random mask (fastMRI layout, exactly ``k``
  lines, a new draw per training seed), whose classifiers train for ``epochs`` epochs, as the learned mask's.
- **training variance in every interval.** ``n_seeds`` models per (vendor, mask, rate); every AUC is the mean
  over seeds, and its interval a percentile bootstrap that resamples training seeds and test *patients*
  together (:func:`glassbox.measure.roc.weighted_auc`; patients, not slices, are the independent units).
  Differences use the same resamples, so they are paired.
- **a vendor shift taken apart.** Vendor B differs from A in seven factors (contrast, bias field, coil
  profile, noise, readout and phase-encode resolution, ghosts). A's test patients are scanned again with
  each of B's factors alone, with the line factors together, the image factors together and all of them
  (:data:`ABLATIONS`); the classifier trained on A is scored on every scan. The ablation table says which
  factor makes the cross-vendor gap and whether a line mask shrinks it.

Surface (``book/CHAPTER_GUIDE.md``): :data:`PROFILES`, :data:`SIMULATED_ONLY`, :func:`run_study` (returns a
:class:`KSpaceResult`), the tables and figures below, :func:`claims`, :func:`checks` and :func:`plan`.
Every simulated data set and trained model goes through :func:`glassbox.core.store.get_or_compute`.

The package, one job a module (this file re-exports their public names):

- ``config``: The k-space chapter's knobs (:class:`KSpaceConfig`, one per profile in :data:`PROFILES`), its
  constants and the paper's numbers (Lu, Table 1).
- ``cohorts``: The simulated cohorts of the k-space chapter: both vendors' patients and the ablation scans, through
  the store.
- ``models``: The k-space chapter's classifiers: their specs, building, training through the store, and
  :func:`plan`.
- ``study``: The k-space chapter's entry point: :func:`run_study` and its :class:`KSpaceResult` (bootstrap
  estimates).
- ``tables``: The k-space chapter's tables: Table 1 beside the paper's, AUCs, baselines, the ablation and the masks.
- ``conclusions``: The k-space chapter's checks, claims, deviations from the paper and headline numbers.
- ``figures``: The k-space chapter's figures.
"""
from __future__ import annotations

from glassbox.studies.kspace.cohorts import (
    ExperimentData,
    cohort_seed,
    load_data,
    simulate_data,
)
from glassbox.studies.kspace.conclusions import (
    CALIBRATION_NOTE,
    MARGIN_NOTES,
    REFERENCE,
    SECTIONS,
    checks,
    claims,
    deviation_table,
    deviations,
    numbers,
)
from glassbox.studies.kspace.config import (
    ABLATIONS,
    CHAPTER,
    KINDS,
    PAPER_ROBUST_RATE,
    PAPER_TABLE1,
    PAPER_VENDOR_NAMES,
    PROFILES,
    PROTOCOLS,
    SIMULATED_ONLY,
    TRAIN_VENDORS,
    VENDOR_B_CHOICES,
    VENDOR_B_TEXT,
    KSpaceConfig,
)
from glassbox.studies.kspace.figures import (
    plot_ablation,
    plot_auc_vs_rate,
    plot_factors,
    plot_masks,
)
from glassbox.studies.kspace.models import (
    ModelSpec,
    build_model,
    load_model,
    load_or_train,
    model_seeds,
    model_specs,
    plan,
    predict,
    train_model,
)
from glassbox.studies.kspace.study import (
    Estimate,
    KSpaceResult,
    make_result,
    run_study,
)
from glassbox.studies.kspace.tables import (
    CHANCE_FLOOR,
    GUMBEL_SD,
    ablation_table,
    auc_table,
    baseline_table,
    gap,
    log_odds_sd,
    mask_table,
    paper_table,
    relative_gap,
    shift_table,
    table1,
)

__all__ = [
    "ABLATIONS",
    "CHAPTER",
    "KINDS",
    "KSpaceConfig",
    "PAPER_ROBUST_RATE",
    "PAPER_TABLE1",
    "PAPER_VENDOR_NAMES",
    "PROFILES",
    "PROTOCOLS",
    "SIMULATED_ONLY",
    "TRAIN_VENDORS",
    "VENDOR_B_CHOICES",
    "VENDOR_B_TEXT",
    "ExperimentData",
    "cohort_seed",
    "load_data",
    "simulate_data",
    "ModelSpec",
    "build_model",
    "load_model",
    "load_or_train",
    "model_seeds",
    "model_specs",
    "plan",
    "predict",
    "train_model",
    "Estimate",
    "KSpaceResult",
    "make_result",
    "run_study",
    "CHANCE_FLOOR",
    "GUMBEL_SD",
    "ablation_table",
    "auc_table",
    "baseline_table",
    "gap",
    "log_odds_sd",
    "mask_table",
    "paper_table",
    "relative_gap",
    "shift_table",
    "table1",
    "CALIBRATION_NOTE",
    "MARGIN_NOTES",
    "REFERENCE",
    "SECTIONS",
    "checks",
    "claims",
    "deviation_table",
    "deviations",
    "numbers",
    "plot_ablation",
    "plot_auc_vs_rate",
    "plot_factors",
    "plot_masks",
]
