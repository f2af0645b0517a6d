"""Where does the trial-to-trial difference come from? One U-Net denoiser, one source of randomness at a time.

Qu et al. find that fixing the seed -- in their words, initialising both trials "with the same set of
weights" -- does not make two trials' learned features more alike, and call it surprising. Same initial
weights leave the data order free, and on a GPU the kernels too. This module trains *pairs* of trials that
differ in exactly one source of randomness and measures how far apart they end up.

**Conditions** (:data:`CONDITIONS`): trial B of a pair differs from trial A only in

- ``identical`` -- nothing (the control; same seeds, trained a second time);
- ``ulp`` -- one initial convolution weight moved by one float32 ulp (:class:`UlpPerturbation`,
  ``torch.nextafter``), once, before training: the smallest possible difference of a starting point;
- ``kernel_noise`` -- every gradient element rounded one ulp up or down (or left) at random at *every* step
  (:class:`KernelNoise`): a CPU emulation of a non-deterministic kernel, which perturbs many sums by
  about a rounding error at every step;
- ``threads`` -- the number of CPU threads torch uses (a real, CPU-side source of non-determinism:
  the summation order of the kernels changes);
- ``data_order`` -- the data-order seed, same initial weights: **Qu's fixed seeding**;
- ``init`` -- the weight-initialisation seed, same data order;
- ``init_and_order`` -- both: **Qu's random seeding**;
- ``noise`` -- an extra condition, not one of Qu's (their trials shared one data set): the photon-noise
  draw of the simulated scans (same anatomy, same patch positions -- decided on the noise-free phantom;
  :func:`glassbox.training.unet_denoiser.resimulated_pairs`). The low-dose input is a binomial thinning of the
  full-dose scan, so a new draw renews the noise of input *and* target, as a new scan would;
- ``gpu_nondeterministic`` -- CUDA only: both trials with the same seeds, non-deterministic kernels
  allowed; on a CPU it is skipped and ``kernel_noise`` and ``threads`` stand in for it. ``threads`` is
  skipped on CUDA.

Pair ``k`` has its own base seeds, so pairs are independent replications; within a pair, trial A is
the same for every condition (trained once, through the store).

**Measurements.** Every trial is evaluated on the same test images of the chapter's data set:
PSNR to the full-dose target (:func:`glassbox.training.unet_denoiser.evaluate_denoiser`), its denoised test
slices, and the spatial mean of every channel of each named block (``Down*``, ``Bottleneck``,
``Up*``) on ``n_feature_images`` test crops -- the Qu chapters' convention (N x C per layer,
``unet_denoiser.layer_features``). A pair is compared by bit-identity of every parameter and buffer, the
relative weight distance, the RMS difference and PSNR between the two trials' outputs, and per layer by
debiased linear CKA and Hungarian-matched cosine, each with a permutation chance level (rows of B re-paired
at random). Along training, a forward pre-hook (installed through ``train_denoiser``'s ``init_perturbation``
hook, see :class:`TrainingProbe`) keeps the weights at steps 0, 1, 2, 4, ... and at epoch ends, and the same
measurements are repeated at each.

The chapter's surface: :data:`PROFILES`, :func:`run` -> :class:`RandomnessResult`, :func:`plan`, the tables
(:func:`condition_view`) and figures, :func:`checks`, :func:`claims`, :func:`numbers`, :func:`glue_values`.

The package, one job a module (this file re-exports their public names):

- ``conditions``: The sources of randomness the chapter varies one at a time: :data:`CONDITIONS`, the perturbations
  (:class:`UlpPerturbation`, :class:`KernelNoise`), the training probe and the :class:`TrialSpec` of one trial.
- ``config``: The randomness chapter's knobs: :class:`RandomnessConfig`, one per profile in :data:`PROFILES`.
- ``trials``: Trials of the randomness chapter: pairs that differ in one condition, trained and measured through the
  store, and :func:`plan`.
- ``analysis``: How far two trials end up apart: distances, per-layer and per-step frames, chance tests,
  correlations.
- ``figures``: The randomness chapter's figures.
- ``conclusions``: The randomness chapter's checks, claims, deviations from Qu et al., glued values and headline
  numbers.
- ``study``: The randomness chapter's entry point: :func:`run`, its :class:`RandomnessResult` and the tables the
  chapter shows.
"""
from __future__ import annotations

from glassbox.measure.stats import interval, spearman_bootstrap
from glassbox.studies.randomness.analysis import (
    chance_tests,
    condition_table,
    correlations,
    curve_frame,
    layer_frame,
    pair_frame,
    relative_distance,
    ulp_growth,
)
from glassbox.studies.randomness.conclusions import (
    ALPHA,
    CHAPTER,
    PAPER_VALUES,
    WEAK_CORRELATION,
    checks,
    claims,
    deviations,
    drift_table,
    glue_values,
    numbers,
)
from glassbox.studies.randomness.conditions import (
    CONDITIONS,
    CPU_ONLY,
    CUDA_ONLY,
    ROUNDING_LEVEL,
    SEED_LEVEL,
    SIMULATED_ONLY,
    SOURCE_FIELDS,
    KernelNoise,
    TrainingProbe,
    TrialSpec,
    UlpPerturbation,
    differing_fields,
    pick_ulp_weight,
    snapshot_steps,
)
from glassbox.studies.randomness.config import (
    PROFILES,
    RandomnessConfig,
    conditions_for,
)
from glassbox.studies.randomness.figures import (
    plot_correlation,
    plot_curves,
    plot_layers,
)
from glassbox.studies.randomness.study import (
    RandomnessResult,
    condition_view,
    design_table,
    gpu_table,
    run,
    ulp_example,
)
from glassbox.studies.randomness.trials import (
    TRIAL_ENTRY,
    EvaluationSet,
    Experiment,
    design,
    evaluation_set,
    plan,
    run_experiment,
    run_trial,
    trial_key,
    trial_pair,
)

__all__ = [
    "CONDITIONS",
    "CPU_ONLY",
    "CUDA_ONLY",
    "SOURCE_FIELDS",
    "SEED_LEVEL",
    "ROUNDING_LEVEL",
    "UlpPerturbation",
    "KernelNoise",
    "pick_ulp_weight",
    "TrainingProbe",
    "snapshot_steps",
    "TrialSpec",
    "trial_pair",
    "RandomnessConfig",
    "PROFILES",
    "conditions_for",
    "EvaluationSet",
    "evaluation_set",
    "differing_fields",
    "run_trial",
    "Experiment",
    "design",
    "trial_key",
    "run_experiment",
    "plan",
    "relative_distance",
    "pair_frame",
    "layer_frame",
    "curve_frame",
    "condition_table",
    "chance_tests",
    "interval",
    "spearman_bootstrap",
    "correlations",
    "ulp_growth",
    "plot_curves",
    "plot_layers",
    "plot_correlation",
    "RandomnessResult",
    "run",
    "design_table",
    "ulp_example",
    "condition_view",
    "gpu_table",
    "checks",
    "claims",
    "numbers",
    "glue_values",
    "drift_table",
    "SIMULATED_ONLY",
    "TRIAL_ENTRY",
    "ALPHA",
    "CHAPTER",
    "PAPER_VALUES",
    "WEAK_CORRELATION",
    "deviations",
]
