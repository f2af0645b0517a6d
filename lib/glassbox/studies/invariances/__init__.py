"""The invariances chapter: what a CT denoiser ignores, after Eulig et al. (seeds 002 / 004).

Rombach et al.'s method (ECCV 2020) as adapted to CT: split the denoiser as ``f = Psi o Phi`` at a layer,
``z = Phi(x)``; a VAE gives a complete representation ``zbar = E(x)``; a conditional INN maps ``zbar`` to
``v ~ N(0, I)`` given ``z``; decoding ``D(t^-1(v | z))`` for fresh ``v`` gives images the layer cannot tell from
``x``. Every spread is measured against the method's own floor -- the spread it reports for maps that have no
invariance (the identity, and layer 1, a convolution from one channel to many) -- with an interval over test
images, next to the VAE's reconstruction error.

The chapter calls, in order: :func:`prepare_data`, :func:`train_denoisers`, :func:`compare_denoisers`
(quality and noise power spectra, the paper's Fig. 1), :func:`train_vaes` (low-dose VAE and, for the target
domain, a full-dose VAE), :func:`study_probes` (one cINN per probe, :func:`probes`), then builds an
:class:`InvarianceResult`; its tables, figures, :func:`claims` and :func:`checks` are functions of that.
:func:`run` does all of it in one call; :func:`plan` lists every model it trains as store tasks.

The package, one job a module (this file re-exports their public names):

- ``config``: The invariances chapter's knobs (:class:`InvarianceConfig`, one per profile in :data:`PROFILES`), its
  constants and the papers' values.
- ``ct_data``: The invariances chapter's CT data: simulated (or real) patients, their splits, rescans and test
  patches.
- ``denoisers``: The three CT denoisers (Chen's CNN, WGAN-VGG, the perceptual network) and how they compare on the
  test set.
- ``vaes``: VAEs of low-dose and full-dose images: their reconstruction errors across domains.
- ``probes``: Probes: one conditional INN per (network, layer, domain), and how much the image can vary at a fixed
  feature.
- ``study``: The invariances chapter's entry point: :func:`run`, its :class:`InvarianceResult` and the tables of its
  probes.
- ``conclusions``: The invariances chapter's checks, claims, deviations from the papers and headline numbers.
- ``figures``: The invariances chapter's figures.
- ``jobs``: The invariances chapter's :func:`plan`: every stored artifact as a task.
"""
from __future__ import annotations

from glassbox.studies.invariances.conclusions import (
    PAPER,
    SECTIONS,
    SLIDES,
    checks,
    claims,
    deviations,
    numbers,
)
from glassbox.studies.invariances.config import (
    CHAPTER,
    DOSE,
    FULL,
    LOW,
    METHOD_NAMES,
    NETWORKS,
    PAPER_VALUES,
    PROFILES,
    SPLIT,
    WINDOW_HU,
    InvarianceConfig,
)
from glassbox.studies.invariances.ct_data import (
    ChapterData,
    data_key,
    data_table,
    pick_test_patches,
    prepare_data,
)
from glassbox.studies.invariances.denoisers import (
    Denoisers,
    DenoisingComparison,
    compare_denoisers,
    denoise,
    denoising_table,
    train_denoisers,
    window_quality,
)
from glassbox.studies.invariances.figures import (
    invariance_figure,
    plot_denoising,
    plot_nps,
    plot_spreads,
    plot_vae,
    target_figure,
)
from glassbox.studies.invariances.jobs import (
    plan,
)
from glassbox.studies.invariances.probes import (
    Probe,
    ProbeResult,
    analyse_probe,
    check_layers,
    cinn_key,
    flat_region_mask,
    prior_spread,
    probes,
    study_probes,
)
from glassbox.studies.invariances.study import (
    InvarianceResult,
    consistency_table,
    latent_table,
    run,
    spread_table,
)
from glassbox.studies.invariances.vaes import (
    domains,
    train_vaes,
    vae_errors,
    vae_table,
)

__all__ = [
    "CHAPTER",
    "DOSE",
    "FULL",
    "InvarianceConfig",
    "LOW",
    "METHOD_NAMES",
    "NETWORKS",
    "PAPER_VALUES",
    "PROFILES",
    "SPLIT",
    "WINDOW_HU",
    "ChapterData",
    "data_key",
    "data_table",
    "pick_test_patches",
    "prepare_data",
    "Denoisers",
    "DenoisingComparison",
    "compare_denoisers",
    "denoise",
    "denoising_table",
    "train_denoisers",
    "window_quality",
    "domains",
    "train_vaes",
    "vae_errors",
    "vae_table",
    "Probe",
    "ProbeResult",
    "analyse_probe",
    "check_layers",
    "cinn_key",
    "flat_region_mask",
    "prior_spread",
    "probes",
    "study_probes",
    "InvarianceResult",
    "consistency_table",
    "latent_table",
    "run",
    "spread_table",
    "PAPER",
    "SECTIONS",
    "SLIDES",
    "checks",
    "claims",
    "deviations",
    "numbers",
    "invariance_figure",
    "plot_denoising",
    "plot_nps",
    "plot_spreads",
    "plot_vae",
    "target_figure",
    "plan",
]
