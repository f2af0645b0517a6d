"""The feature-space chapter: do two training runs of the same U-Net learn the same features? (Qu et al.)

On the models of :mod:`glassbox.training.unet_grid`: features per layer (:func:`feature_inputs`,
:func:`grid_features`), every similarity metric with its chance levels (:func:`compare_layers`,
:func:`similarity_long`), the paper's Table II / III layout (:func:`paper_table`), the kept dimension of SVCCA
against the paper's values (:func:`paper_k_table`), the clustering of the two trials' features with a
permuted-copy control (:func:`clustering_table`, :func:`permuted_copy`), the tests behind the verdicts
(:func:`layer_tests`, :func:`updown_test`, :func:`updown_joint_test`, :func:`signflip_test`) and
:func:`claims` / :func:`checks`. :func:`run` computes everything (:class:`FeatureResult`); :func:`plan` lists
the trainings it needs.

**Metric conventions** (:mod:`glassbox.measure.similarity` has the details): features of a layer are the
spatial mean of each channel over each test image (N x M, "reduction=mean"); ``svcca`` keeps the principal
components holding 99 % of the variance on each side (kx, ky kept), then the mean canonical correlation;
``pwcca`` is Morcos et al.'s projection-weighted CCA over all live channels; ``cosine`` is the paper's
per-sample cosine of channel-aligned vectors; ``matched_cosine`` the same after a Hungarian channel
matching; ``linear_cka`` / ``linear_cka_debiased`` are Kornblith et al.'s.

**Rows and N.** On ``paper`` a row is a whole test slice (the paper's N test images); on ``quick`` and
``smoke`` a non-overlapping crop of a test slice (disjoint pixels). N, the number of rows, is the N of every
chance level.

**Chance.** ``chance`` is the metric on re-paired samples (rows of trial 2 shuffled, ``chance_draws`` draws):
the value two unrelated representations with these very spectra would get; the p-value is the fraction of
draws at or above the observed value, (1 + #) / (1 + draws). For SVCCA (and CCA) ``chance_kept`` is the
chance level of independent Gaussian data at the kept dimensions (kx, ky) and N
(:func:`glassbox.measure.chance.chance_level`): SVCCA's floor depends on how many directions it keeps, not on
the layer's width.

**Claim 2's combination rule** (fixed before any number was computed in this module's tests): the paper reads
its claim off Tables II and III together, so one joint test decides it -- :func:`updown_joint_test`, whose
statistic is the sum over the tables of (mean over models of mean Up - mean Down) / (SD of the table's
values), with the same within-model relabelling of layers applied to every table. The single-table tests
are shown beside it.

The package, one job a module (this file re-exports their public names):

- ``config``: The feature-space chapter's constants: its profiles (the U-Net grid's), metrics, the paper's N and
  alpha.
- ``layer_similarity``: Features per layer of the U-Net grid's models and every similarity metric with its chance
  levels, in the paper's Table II / III layout.
- ``clustering``: Clustering of the two trials' features, with a permuted-copy control.
- ``significance``: The tests behind the feature-space verdicts: per-layer tests, the up/down relabelling tests, the
  sign-flip test.
- ``study``: The feature-space chapter's entry point: :func:`run`, its :class:`FeatureResult`, and :func:`plan`.
- ``conclusions``: The feature-space chapter's checks, claims, deviations from Qu et al., glued values and headline
  numbers.
- ``tables``: The feature-space chapter's tables: Tables II and III beside the paper's, and the clustering summary.
- ``figures``: The feature-space chapter's figures.
"""
from __future__ import annotations

from glassbox.studies.feature_space.clustering import (
    clustering_table,
    permuted_copy,
)
from glassbox.studies.feature_space.conclusions import (
    averages,
    checks,
    claims,
    deviations,
    glue_values,
    numbers,
)
from glassbox.studies.feature_space.config import (
    ALPHA,
    CHAPTER,
    LAYER_ORDER,
    METRICS,
    PAPER_N,
    PROFILES,
)
from glassbox.studies.feature_space.figures import (
    plot_cluster_heatmaps,
    plot_fig1,
    plot_fig4,
    plot_layer_profiles,
)
from glassbox.studies.feature_space.layer_similarity import (
    SVCCA_COLUMNS,
    compare_features,
    compare_layers,
    feature_inputs,
    floor_table,
    grid_features,
    paper_k_table,
    paper_table,
    similarity_long,
    tidy,
)
from glassbox.studies.feature_space.significance import (
    by_model,
    layer_tests,
    signflip_test,
    updown_joint_test,
    updown_test,
)
from glassbox.studies.feature_space.study import (
    FeatureResult,
    plan,
    run,
)
from glassbox.studies.feature_space.tables import (
    cluster_summary,
    side_by_side,
    table2,
    table3,
)

__all__ = [
    "ALPHA",
    "CHAPTER",
    "LAYER_ORDER",
    "METRICS",
    "PAPER_N",
    "PROFILES",
    "SVCCA_COLUMNS",
    "compare_features",
    "compare_layers",
    "feature_inputs",
    "floor_table",
    "grid_features",
    "paper_k_table",
    "paper_table",
    "similarity_long",
    "tidy",
    "clustering_table",
    "permuted_copy",
    "by_model",
    "layer_tests",
    "signflip_test",
    "updown_joint_test",
    "updown_test",
    "FeatureResult",
    "plan",
    "run",
    "averages",
    "checks",
    "claims",
    "deviations",
    "glue_values",
    "numbers",
    "cluster_summary",
    "side_by_side",
    "table2",
    "table3",
    "plot_cluster_heatmaps",
    "plot_fig1",
    "plot_fig4",
    "plot_layer_profiles",
]
