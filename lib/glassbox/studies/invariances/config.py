"""The invariances chapter's knobs (:class:`InvarianceConfig`, one per profile in :data:`PROFILES`), its constants
and the papers' values."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from glassbox.core import checks as argcheck
from glassbox.data.lowdose_ct import DATA_PROFILES, CTDataConfig
from glassbox.models.chen_cnn import CHEN_LAYERS
from glassbox.models.common import InvarianceError
from glassbox.models.vae import check_patch
from glassbox.models.wgan_vgg import YANG_LAYERS
from glassbox.training.ct_denoisers import ChenConfig, YangConfig
from glassbox.training.tissue_features import FeatureAEConfig
from glassbox.training.vae_cinn import CINNConfig, VAEConfig

CHAPTER = "invariances"

WINDOW_HU = (40.0, 400.0)
"""The analysed window (level, width) in HU: abdomen, [-160, 240] HU. Every HU number of the chapter -- spreads,
reconstruction errors, PSNR and SSIM -- is computed on images clipped to it, as ldct-benchmark scores windowed
images; it is also the display window."""

DOSE = 0.1
"""Low-dose level: 10 % of the full dose. The TCIA "LDCT-and-Projection-data" collection (McCollough et al.
2020) that Eulig et al. use gives 10 % dose for its chest scans and 25 % for abdomen and head; on our 128 x 128
grid (3.1 mm pixels) quarter dose leaves so little noise that a briefly trained denoiser cannot beat its input,
so the abdominal phantoms are scanned at the chest protocol's 10 %. (The 2016 AAPM Grand Challenge data are
quarter dose.)"""

SPLIT = (0.7, 0.2, 0.1)
"""Train / validation / test fractions of the patients (Eulig et al.: "70%/20%/10% ... across all patients")."""


@dataclass(frozen=True)
class InvarianceConfig:
    """Every knob of the ``invariances`` chapter (one per profile in :data:`PROFILES`).

    ``data`` simulates the paired slices; patients are split :data:`SPLIT`; denoisers, VAEs and cINNs train on
    ``patches_per_patient`` patches of ``patch_size`` from every training patient (the same number from each:
    patient-weighted sampling). ``perceptual`` is the autoencoder behind WGAN-VGG's perceptual loss. The
    analysis uses ``n_test_patches`` test patches with ``n_samples`` invariance samples each (the first
    ``n_check_samples`` of them also pass through ``Phi`` and ``f`` for the trust checks); ``nps_roi`` is the
    side of the noise-power regions (pixels) and ``n_boot`` the bootstrap size of its intervals.
    """

    data: CTDataConfig = CTDataConfig(dose=DOSE, split_fractions=SPLIT)
    patch_size: int = 32
    patches_per_patient: int = 96
    chen: ChenConfig = ChenConfig()
    yang: YangConfig = YangConfig()
    perceptual: FeatureAEConfig = FeatureAEConfig()
    vae: VAEConfig = VAEConfig()
    cinn: CINNConfig = CINNConfig()
    chen_layers: tuple[int, ...] = CHEN_LAYERS
    yang_layers: tuple[int, ...] = YANG_LAYERS
    target_domain: bool = True
    n_test_patches: int = 16
    n_shown_images: int = 2
    n_samples: int = 250
    n_shown_samples: int = 5
    n_check_samples: int = 50
    n_heldout: int = 256
    nps_roi: int = 32
    n_boot: int = 2000

    def __post_init__(self) -> None:
        check_patch(self.patch_size)
        if self.patch_size > self.data.n:
            raise InvarianceError(f"patch_size ({self.patch_size}) must be at most the slice size data.n ({self.data.n})")
        for name in ("patches_per_patient", "n_test_patches", "n_shown_images", "n_samples", "n_shown_samples",
                     "n_check_samples", "n_heldout", "nps_roi", "n_boot"):
            argcheck.integer(getattr(self, name), name, error=InvarianceError)
        if self.n_samples < 2:
            raise InvarianceError(f"n_samples must be at least 2 (a standard deviation needs two), got {self.n_samples}")
        if self.n_shown_samples > self.n_samples or self.n_shown_images > self.n_test_patches:
            raise InvarianceError("n_shown_samples must be <= n_samples and n_shown_images <= n_test_patches")
        if self.n_test_patches < 3:
            raise InvarianceError("n_test_patches must be at least 3 (intervals over images, other-image references)")
        for name, limit in (("chen_layers", 5), ("yang_layers", 15)):
            layers = getattr(self, name)
            if not layers or any(isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= limit for k in layers) \
                    or list(layers) != sorted(set(layers)):
                raise InvarianceError(f"{name} must be increasing layer numbers in [1, {limit}], got {layers!r}")
        if self.nps_roi > self.data.n // 2:
            raise InvarianceError(f"nps_roi ({self.nps_roi}) must be at most half the slice size ({self.data.n})")


PROFILES: dict[str, InvarianceConfig] = {
    # seconds: tiny everything, a handful of samples
    "smoke": InvarianceConfig(
        data=CTDataConfig(n=64, n_patients=3, slices_per_patient=2, dose=DOSE, split_fractions=SPLIT),
        patch_size=32, patches_per_patient=16,
        chen=ChenConfig(epochs=1, batch_size=16, lr=1e-3),
        yang=YangConfig(epochs=1, batch_size=4, lr=1e-4, n_critic=1, critic_width=4, pretrain_epochs=1),
        perceptual=FeatureAEConfig(base=4, epochs=1, batch_size=16),
        vae=VAEConfig(latent_dim=8, width=4, n_res=0, epochs=1, batch_size=16),
        cinn=CINNConfig(hidden=16, emb_dim=8, embed_width=4, epochs=1, batch_size=16),
        n_test_patches=3, n_shown_images=1, n_samples=8, n_shown_samples=2, n_check_samples=8, n_heldout=8,
        nps_roi=16, n_boot=50),
    # minutes on one CPU thread: 30 patients of 8 slices at 128 x 128, 32 x 32 patches, short trainings. Measured
    # 2026-12-02 (loaded 2-core machine, 1 thread): with Chen 6, WGAN 12 and cINN 6 epochs the chapter took 558 s CPU
    # (19.5 min wall under load), over the 8-minute budget; epochs cut to 5 / 9 / 4 (about 140 s CPU less, estimated)
    "quick": InvarianceConfig(
        data=CTDataConfig(n=128, n_patients=30, slices_per_patient=8, dose=DOSE, split_fractions=SPLIT),
        patch_size=32, patches_per_patient=96,
        chen=ChenConfig(epochs=5, batch_size=8, lr=1e-3),
        yang=YangConfig(epochs=9, batch_size=16, lr=1e-4, n_critic=4, critic_width=16, pretrain_epochs=3,
                        pretrain_batch_size=8, pretrain_lr=1e-3),
        perceptual=FeatureAEConfig(base=16, epochs=4, batch_size=32),
        vae=VAEConfig(latent_dim=256, width=16, n_res=0, bottom=16, spatial=True, epochs=12, batch_size=32, lr=1e-3),
        cinn=CINNConfig(hidden=256, emb_dim=64, embed_width=16, epochs=4, batch_size=32, lr=5e-4),
        n_test_patches=16, n_shown_images=2, n_samples=250, n_shown_samples=5, n_heldout=256, nps_roi=32),
    # GPU: the paper's protocol where it is stated (patches 64, WGAN-VGG hyper-parameters, 4 blocks, 250 samples)
    "paper": InvarianceConfig(
        data=dataclasses.replace(DATA_PROFILES["paper"], dose=DOSE, split_fractions=SPLIT),
        patch_size=64, patches_per_patient=768,
        chen=ChenConfig(epochs=100, batch_size=68, lr=1.584e-4),
        yang=YangConfig(epochs=100, batch_size=128, lr=1e-5, n_critic=4, critic_width=64, pretrain_epochs=0),
        perceptual=FeatureAEConfig(base=32, epochs=30, batch_size=64, lr=1e-3),
        vae=VAEConfig(latent_dim=512, width=64, n_res=2, bottom=16, spatial=True, epochs=200, batch_size=64, lr=1e-4),
        cinn=CINNConfig(hidden=1024, hidden_depth=2, emb_dim=256, embed_width=64, epochs=200, batch_size=64,
                        lr=1e-4),
        n_test_patches=64, n_shown_images=2, n_samples=250, n_shown_samples=5, n_heldout=1024, nps_roi=64),
}


PAPER_VALUES: dict[str, Any] = {
    "protocol": {"cinn_blocks": 4, "invariance_samples": 250, "shown_samples": 5, "chen_layers": [1, 3, 5],
                 "yang_layers": [1, 7, 13], "patient_split": [0.7, 0.2, 0.1], "dose_chest": 0.10,
                 "dose_abdomen_head": 0.25},
    "yang_et_al_2018": {"wgan_gp_lambda": 10, "perceptual_lambda": 0.1, "n_critic": 4, "adam_lr": 1e-5,
                        "adam_betas": [0.5, 0.9], "batch_size": 128, "patch_size": 64},
    "reference_code_vae_logvar_clamp": [-30.0, 10.0],
    # the ICIFXCT paper reports no numbers for Fig. 1; for orientation only, ldct-benchmark's test values on real
    # Mayo abdomen slices (different data and noise): PSNR [dB], SSIM
    "ldct_benchmark_abdomen": {"low dose x": {"psnr": 29.12, "ssim": 0.856},
                               "Chen (L2)": {"psnr": 32.74, "ssim": 0.907},
                               "Yang (WGAN-VGG)": {"psnr": 30.91, "ssim": 0.893}},
}
"""What Eulig et al. (and, for WGAN-VGG's hyper-parameters, Yang et al.) state, stored beside our numbers."""


NETWORKS = ("Chen", "Yang")
LOW, FULL = "x", "y"
METHOD_NAMES = {"low": "low dose x", "Chen": "Chen (L2)", "Yang": "Yang (WGAN-VGG)",
                "warmup": "Yang before adversarial training", "full": "full dose y"}
