"""VAEs of low-dose and full-dose images: their reconstruction errors across domains."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from glassbox.data import lowdose_ct
from glassbox.measure import invariance_spread as spread
from glassbox.models.vae import VAE
from glassbox.studies.invariances.config import FULL, LOW, WINDOW_HU, InvarianceConfig
from glassbox.studies.invariances.ct_data import ChapterData
from glassbox.training import vae_cinn

# --- VAEs --------------------------------------------------------------------------------------------------


def _vae_images(data: ChapterData, domain: str) -> Tensor:
    return data.sets["train"].low if domain == LOW else data.sets["train"].full


def _vae(data: ChapterData, config: InvarianceConfig, domain: str, seed: int, device: Any, progress: bool):
    return vae_cinn.pretrained_vae(_vae_images(data, domain), config.vae, data_key=data.key, seed=seed, device=device,
                                   progress=progress, domain="low dose" if domain == LOW else "full dose")


def domains(config: InvarianceConfig) -> tuple[str, ...]:
    """The image domains with a VAE: low dose, and full dose when the target domain is analysed."""
    return (LOW, FULL) if config.target_domain else (LOW,)


def train_vaes(data: ChapterData, config: InvarianceConfig, *, seed: int = 0, device: Any = "cpu",
               progress: bool = True) -> dict[str, VAE]:
    """The low-dose VAE (``"x"``) and, with ``target_domain``, the full-dose VAE (``"y"``), from the store."""
    return {d: _vae(data, config, d, seed, device, progress)[0] for d in domains(config)}


def vae_errors(vae: VAE, images: Tensor, batch_size: int = 256) -> dict[str, np.ndarray]:
    """Per image: RMSE (HU) of ``D(E(x))`` (posterior mean) against ``x``, in the window and unclipped."""
    device = next(vae.parameters()).device
    with torch.no_grad():
        recon = torch.cat([vae.reconstruct(c.to(device)).cpu() for c in images.split(batch_size)])
    unclipped = lowdose_ct.HU_SCALE * (recon.double() - images.double()).pow(2).flatten(1).mean(1).sqrt()
    return {"window": spread.rmse_hu(recon, images, WINDOW_HU).numpy(), "unclipped": unclipped.numpy()}


def vae_table(data: ChapterData, vaes: Mapping[str, VAE]) -> Any:
    """RMSE (HU) of each VAE on the held-out and the analysed test patches, beside the low-dose noise."""

    val_low, val_full = data.heldout
    rows = {}
    for domain, vae in vaes.items():
        held = vae_errors(vae, val_low if domain == LOW else val_full)
        test = vae_errors(vae, data.test_low if domain == LOW else data.test_full)
        name = "VAE of low-dose x" if domain == LOW else "VAE of full-dose y"
        rows[name] = {"RMSE window, held-out": held["window"].mean(), "RMSE unclipped, held-out": held["unclipped"].mean(),
                      "RMSE window, analysed test patches": test["window"].mean()}
    noise = spread.rmse_hu(val_low, val_full, WINDOW_HU).numpy()
    rows["x vs y (low-dose noise)"] = {"RMSE window, held-out": noise.mean(),
                                       "RMSE window, analysed test patches":
                                           spread.rmse_hu(data.test_low, data.test_full, WINDOW_HU).numpy().mean(),
                                       "RMSE unclipped, held-out": float(lowdose_ct.HU_SCALE * (val_low - val_full)
                                                                         .double().pow(2).flatten(1).mean(1).sqrt().mean())}
    return pd.DataFrame(rows).T
