"""Experiments of the teaching chapter on pixel-wise prediction (ETH 227-0391-00, Section 6).

The chapter ``book/pixelwise.ipynb`` calls these functions; its knobs are :class:`PixelwiseConfig`
with one entry per profile in :data:`PROFILES`. One section of the notes, one function here:

- Segmentation losses: :func:`loss_shares` (how much of each loss a small structure owns, and what
  each loss says when it is missed) and :func:`loss_study` (one network trained with each loss).
- Uncertain labels: :func:`soft_label_study` (training on the raters' p(y = k) against their majority
  vote, scored for calibration).
- Architectures: :func:`binary_study` (the notes' binary network, sigmoid + BCE, against a two-class
  softmax), :func:`architecture_study` (naive, FCN and U-Nets, as built and at matched parameter
  counts, over several seeds) and :func:`architecture_overview` (receptive fields, 2-D and 3-D sizes).
- Labelled data: :func:`learning_curve` (Dice against the number of labelled training volumes).
- Restoration metrics: :func:`ct_examples`, :func:`equal_mse_gallery`, :func:`degradation_table`,
  :func:`rank_disagreements` and :func:`convention_table`.
- Restoration losses: :func:`pixel_loss_study` (L1 against L2 on targets with impulse noise: median
  against mean) and :func:`restoration_study` (MSE, MSE + perceptual, MSE + adversarial).
- Missing sequences: :func:`imputation_study` (a U-Net and a pixel-wise intensity map impute a
  missing MRI sequence).

Every trained network comes from the artifact store through a :class:`Job` (``glassbox.core.store``);
:func:`plan` lists them all, so a grid can train them before the chapter runs. :func:`claims` and
:func:`checks` turn the results into the chapter's verdicts; the ``check_*`` functions test a student's
answer to each exercise on fresh inputs; the ``plot_*`` functions at the end draw the chapter's figures.

The package, one job a module (this file re-exports their public names):

- ``config``: The pixel-wise chapter's knobs: :class:`PixelwiseConfig`, one per profile in :data:`PROFILES`, and its
  constants.
- ``jobs``: Data specifications and jobs of the pixel-wise chapter: every trained network comes from the store
  through a :class:`Job`; :func:`plan` lists them all so a grid can train them before the chapter runs.
- ``segmentation``: Sections 1-3 of the notes: segmentation losses, uncertain labels, architectures and labelled
  data.
- ``metrics``: Section 4 of the notes: restoration metrics on CT (windows, equal-MSE galleries, rank disagreements,
  conventions).
- ``restoration``: Sections 5-6 of the notes: L1 against L2, perceptual and adversarial losses on CT, imputing a
  missing sequence.
- ``study``: The pixel-wise chapter's entry point: :func:`run` and its :class:`PixelwiseResult`.
- ``conclusions``: The pixel-wise chapter's checks, claims, deviations from the notes and headline numbers.
- ``exercises``: Exercise answer checks: each tests a student's function on fresh inputs and says what is wrong.
- ``figures``: The pixel-wise chapter's figures.
"""
from __future__ import annotations

from glassbox.studies.pixelwise.conclusions import (
    checks,
    claims,
    deviations,
    headline_numbers,
)
from glassbox.studies.pixelwise.config import (
    ABDOMEN_WINDOW,
    CHAPTER,
    PROFILES,
    REFERENCE,
    RESTORATION_LOSSES,
    SIMULATED_ONLY,
    SOURCE,
    PixelwiseConfig,
    PixelwiseError,
    interval_of,
    replicate_seed,
)
from glassbox.studies.pixelwise.exercises import (
    check_per_layer_perceptual,
    check_ssim_friendly_degradation,
    check_transposed_upsample,
    check_weighted_cross_entropy,
)
from glassbox.studies.pixelwise.figures import (
    LOSS_LABELS,
    plot_architectures,
    plot_gallery,
    plot_imputation,
    plot_learning_curve,
    plot_pixel_losses,
    plot_predictions,
    plot_raters,
    plot_reliability,
    plot_restorations,
    plot_scenes,
    plot_share_vs_size,
    plot_training_curves,
)
from glassbox.studies.pixelwise.jobs import (
    CTCropsData,
    FeatureNetJob,
    Job,
    PixelLossData,
    RatedData,
    RegressorJob,
    RestorerJob,
    ScenesData,
    SegmenterJob,
    SequencesData,
    VolumesData,
    architecture_jobs,
    binary_jobs,
    curve_jobs,
    featurenet_job,
    fetch,
    imputation_jobs,
    loss_jobs,
    matched_widths,
    pixel_loss_data,
    pixel_loss_jobs,
    plan,
    rated_data,
    restoration_crops,
    restoration_crops_data,
    restorer_jobs,
    scenes_data,
    sequences_data,
    soft_label_jobs,
    volumes_data,
)
from glassbox.studies.pixelwise.metrics import (
    TYPICAL_DEGRADATIONS,
    convention_table,
    ct_examples,
    degradation_table,
    equal_mse_gallery,
    metric_reference_check,
    rank_disagreements,
    window,
)
from glassbox.studies.pixelwise.restoration import (
    ImputationStudy,
    PixelLossStudy,
    RestorationStudy,
    apply_intensity_map,
    bias_slope,
    denoise,
    fit_intensity_map,
    high_frequency_ratio,
    imputation_study,
    per_slice_scores,
    pixel_loss_study,
    restoration_scores,
    restoration_study,
)
from glassbox.studies.pixelwise.segmentation import (
    ArchitectureStudy,
    BinaryStudy,
    LearningCurve,
    LossShares,
    LossStudy,
    SoftLabelStudy,
    architecture_overview,
    architecture_study,
    binary_study,
    blurred_prediction_logits,
    exercise_prediction,
    learning_curve,
    loss_shares,
    loss_study,
    missed_structure_table,
    results_table,
    segmentation_data,
    share_at_task_size,
    share_per_scene,
    share_vs_size,
    sigmoid_softmax_gap,
    soft_label_study,
)
from glassbox.studies.pixelwise.study import (
    PixelwiseResult,
    run,
)

__all__ = [
    "ABDOMEN_WINDOW",
    "CHAPTER",
    "PROFILES",
    "PixelwiseConfig",
    "PixelwiseError",
    "REFERENCE",
    "RESTORATION_LOSSES",
    "SIMULATED_ONLY",
    "SOURCE",
    "interval_of",
    "replicate_seed",
    "CTCropsData",
    "FeatureNetJob",
    "Job",
    "PixelLossData",
    "RatedData",
    "RegressorJob",
    "RestorerJob",
    "ScenesData",
    "SegmenterJob",
    "SequencesData",
    "VolumesData",
    "architecture_jobs",
    "binary_jobs",
    "curve_jobs",
    "featurenet_job",
    "fetch",
    "imputation_jobs",
    "loss_jobs",
    "matched_widths",
    "pixel_loss_data",
    "pixel_loss_jobs",
    "plan",
    "rated_data",
    "restoration_crops",
    "restoration_crops_data",
    "restorer_jobs",
    "scenes_data",
    "sequences_data",
    "soft_label_jobs",
    "volumes_data",
    "ArchitectureStudy",
    "BinaryStudy",
    "LearningCurve",
    "LossShares",
    "LossStudy",
    "SoftLabelStudy",
    "architecture_overview",
    "architecture_study",
    "binary_study",
    "blurred_prediction_logits",
    "exercise_prediction",
    "learning_curve",
    "loss_shares",
    "loss_study",
    "missed_structure_table",
    "results_table",
    "segmentation_data",
    "share_at_task_size",
    "share_per_scene",
    "share_vs_size",
    "sigmoid_softmax_gap",
    "soft_label_study",
    "TYPICAL_DEGRADATIONS",
    "convention_table",
    "ct_examples",
    "degradation_table",
    "equal_mse_gallery",
    "metric_reference_check",
    "rank_disagreements",
    "window",
    "ImputationStudy",
    "PixelLossStudy",
    "RestorationStudy",
    "apply_intensity_map",
    "bias_slope",
    "denoise",
    "fit_intensity_map",
    "high_frequency_ratio",
    "imputation_study",
    "per_slice_scores",
    "pixel_loss_study",
    "restoration_scores",
    "restoration_study",
    "PixelwiseResult",
    "run",
    "checks",
    "claims",
    "deviations",
    "headline_numbers",
    "check_per_layer_perceptual",
    "check_ssim_friendly_degradation",
    "check_transposed_upsample",
    "check_weighted_cross_entropy",
    "LOSS_LABELS",
    "plot_architectures",
    "plot_gallery",
    "plot_imputation",
    "plot_learning_curve",
    "plot_pixel_losses",
    "plot_predictions",
    "plot_raters",
    "plot_reliability",
    "plot_restorations",
    "plot_scenes",
    "plot_share_vs_size",
    "plot_training_curves",
]
