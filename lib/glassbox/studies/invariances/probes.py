"""Probes: one conditional INN per (network, layer, domain), and how much the image can vary at a fixed feature."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from glassbox.data import lowdose_ct
from glassbox.measure import invariance_spread as spread
from glassbox.models.cinn import InvarianceINN
from glassbox.models.common import InvarianceError, n_layers, truncate
from glassbox.models.vae import VAE
from glassbox.studies.invariances.config import FULL, LOW, WINDOW_HU, InvarianceConfig
from glassbox.studies.invariances.ct_data import ChapterData
from glassbox.studies.invariances.denoisers import Denoisers
from glassbox.training import vae_cinn

# --- probes: one cINN each ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Probe:
    """One cINN: the representation it is conditioned on and the domain its VAE draws in.

    ``network`` is ``"Chen"``, ``"Yang"`` or ``"identity"`` (the synthetic injective map, ``layer`` 0: the
    condition is the image itself -- the method's floor); ``domain`` ``"x"`` (low-dose VAE) or ``"y"``
    (full-dose VAE: the invariances shown in the target domain).
    """

    network: str
    layer: int
    domain: str

    @property
    def label(self) -> str:
        name = "identity" if self.network == "identity" else f"{self.network} {self.layer}"
        return name if self.domain == LOW else f"{name} (target y)"

    @property
    def store_name(self) -> str:
        return self.network if self.domain == LOW else f"{self.network}->{FULL}"


def probes(config: InvarianceConfig) -> list[Probe]:
    """Floor, Chen's and Yang's analysed layers in the low-dose domain; with ``target_domain``, the full-dose
    floor and each network after its last layer (the output) in the full-dose domain."""
    out = [Probe("identity", 0, LOW)] + [Probe("Chen", k, LOW) for k in config.chen_layers] \
        + [Probe("Yang", k, LOW) for k in config.yang_layers]
    if config.target_domain:
        out += [Probe("identity", 0, FULL), Probe("Chen", 5, FULL), Probe("Yang", 15, FULL)]
    return out


def cinn_key(config: InvarianceConfig, key: Mapping[str, Any], probe: Probe) -> dict[str, Any]:
    """What a cINN's store entry depends on besides its own configuration: data, denoiser, feature net and VAE."""
    out: dict[str, Any] = {"data": dict(key), "vae": config.vae, "domain": probe.domain}
    if probe.network == "Chen":
        out["chen"] = config.chen
    elif probe.network == "Yang":
        out |= {"yang": config.yang, "perceptual": config.perceptual}
    return out


def _phi(probe: Probe, net: nn.Module | None) -> nn.Module:
    if probe.network == "identity":
        return nn.Identity()
    if net is None:
        raise InvarianceError(f"probe {probe.label} needs {probe.network}'s network")
    return truncate(net, probe.layer)


def _condition_images(data: ChapterData, probe: Probe, which: str = "train") -> tuple[Tensor, Tensor]:
    """(images Phi sees, images the VAE encodes) for a probe: the identity floor of the target domain sees y."""
    low, full = ((data.sets["train"].low, data.sets["train"].full) if which == "train" else
                 data.heldout if which == "heldout" else (data.test_low, data.test_full))
    seen = full if (probe.network == "identity" and probe.domain == FULL) else low
    return seen, (low if probe.domain == LOW else full)


def _cinn(data: ChapterData, config: InvarianceConfig, probe: Probe, net: nn.Module | None, vae: VAE, seed: int,
          device: Any, progress: bool) -> tuple[InvarianceINN, dict[str, Any]]:
    seen, encoded = _condition_images(data, probe)
    return vae_cinn.pretrained_invariance_inn(
        probe.store_name, None, probe.layer, vae, seen, config.cinn, key=cinn_key(config, data.key, probe), seed=seed,
        device=device, progress=progress, phi=_phi(probe, net), vae_images=None if probe.domain == LOW else encoded)


@dataclass
class ProbeResult:
    """Invariance samples of one probe on the analysed test patches, per image, with the trust checks."""

    probe: Probe
    spread_hu: np.ndarray          # (M,) mean pixel-wise std over samples, in the window
    flat_spread_hu: np.ndarray     # (M,) the same over homogeneous tissue only (NaN: none in the patch)
    structure_spread_hu: np.ndarray  # (M,) the same over the rest of the body: edges and anatomical detail
    std_maps: np.ndarray           # (M, p, p) HU
    shown: np.ndarray              # (n_shown_images, n_shown_samples, p, p) HU
    prior_spread_hu: float         # spread of decoded N(0, I) codes: a layer that kept nothing
    latent: dict[str, Any]         # v on held-out data (latent_statistics)
    inversion_error: float
    history: list[dict[str, float]]
    phi_similarity: np.ndarray | None = None        # (M,) Phi(sample) vs z
    phi_similarity_vae: np.ndarray | None = None    # Phi(D(E(x))) vs z
    phi_similarity_other: np.ndarray | None = None  # Phi(other test images) vs z
    f_rmse_hu: np.ndarray | None = None             # f(sample) vs f(x)
    f_rmse_vae_hu: np.ndarray | None = None
    f_rmse_other_hu: np.ndarray | None = None


def flat_region_mask(full: Tensor, max_range_hu: float = 40.0) -> Tensor:
    """Pixels inside the body where the (3x3-smoothed) full-dose image varies by less than ``max_range_hu``
    over a 7x7 neighbourhood: homogeneous tissue, where what varies is noise, not anatomy."""
    hu = lowdose_ct.denormalize(full.double())
    smooth = F.avg_pool2d(hu, 3, stride=1, padding=1, count_include_pad=False)
    local_range = F.max_pool2d(smooth, 7, stride=1, padding=3) + F.max_pool2d(-smooth, 7, stride=1, padding=3)
    return (local_range < max_range_hu) & (hu > -500.0)


def prior_spread(vae: VAE, n_samples: int, *, seed: int = 0) -> float:
    """Mean pixel-wise std (HU, window) of ``D(v)``, ``v ~ N(0, I)``: the spread if a layer kept no information."""
    device = next(vae.parameters()).device
    generator = torch.Generator().manual_seed(seed)
    images = spread.decode_samples(lambda v: v, vae.decode, vae.latent_dim, max(2, n_samples), generator, device)
    return float(spread.spread_map(images.cpu(), WINDOW_HU).mean())


def analyse_probe(probe: Probe, model: InvarianceINN, vae: VAE, net: nn.Module | None, low: Tensor, full: Tensor, *,
                  n_samples: int, n_shown_images: int, n_shown_samples: int, n_check_samples: int = 50,
                  seed: int = 0) -> dict[str, Any]:
    """Sample ``n_samples`` invariances for each analysed patch; for network probes in the low-dose domain also
    Rombach et al.'s checks on the first ``n_check_samples`` (Phi of a sample vs z, f of a sample vs f(x), against
    the VAE's own reconstruction and other test images). Returns the per-image arrays of :class:`ProbeResult`."""
    device = next(model.parameters()).device
    seen = full if (probe.network == "identity" and probe.domain == FULL) else low
    phi = _phi(probe, net).to(device)
    checked = probe.network != "identity" and probe.domain == LOW
    f = net.to(device) if checked else None
    generator = torch.Generator().manual_seed(seed)
    mask = flat_region_mask(full)[:, 0].numpy()
    body = (lowdose_ct.denormalize(full.double()) > -500.0)[:, 0].numpy()
    out: dict[str, list] = {k: [] for k in ("spread", "maps", "shown", "sim", "f")}
    with torch.no_grad():
        z = phi(seen.to(device))
        if checked:
            x = low.to(device)
            recon = vae.reconstruct(x)
            fx, centre = f(x), z.mean(dim=(0, 2, 3), keepdim=True)
        for i in range(low.shape[0]):
            h = model.embed(z[i:i + 1])
            samples = spread.decode_samples(lambda v, h=h: model.flow.inverse(v, h.expand(v.shape[0], -1)),
                                            vae.decode, vae.latent_dim, n_samples, generator, device)
            std = spread.spread_map(samples.cpu(), WINDOW_HU).numpy()
            out["maps"].append(std)
            if i < n_shown_images:
                out["shown"].append(lowdose_ct.denormalize(samples[:n_shown_samples, 0]).cpu().numpy())
            if checked:
                z_s = torch.cat([phi(c) for c in samples[:n_check_samples].split(64)])
                f_s = torch.cat([f(c) for c in samples[:n_check_samples].split(64)])
                out["sim"].append(float(spread.centred_cosine(z_s, z[i:i + 1], centre).mean()))
                out["f"].append(float(spread.rmse_hu(f_s.cpu(), fx[i:i + 1].cpu().expand_as(f_s), WINDOW_HU).mean()))
        maps = np.stack(out["maps"])
        result: dict[str, Any] = {"spread_hu": maps.mean(axis=(1, 2)), "flat_spread_hu": spread.masked_mean(maps, mask),
                                  "structure_spread_hu": spread.masked_mean(maps, body & ~mask),
                                  "std_maps": maps, "shown": np.stack(out["shown"])}
        if checked:
            m = low.shape[0]
            others = [[j for j in range(m) if j != i] for i in range(m)]
            result |= {
                "phi_similarity": np.array(out["sim"]),
                "phi_similarity_vae": spread.centred_cosine(phi(recon), z, centre).cpu().numpy(),
                "phi_similarity_other": np.array([float(spread.centred_cosine(z[o], z[i:i + 1], centre).mean())
                                                  for i, o in enumerate(others)]),
                "f_rmse_hu": np.array(out["f"]),
                "f_rmse_vae_hu": spread.rmse_hu(f(recon).cpu(), fx.cpu(), WINDOW_HU).numpy(),
                "f_rmse_other_hu": np.array([float(spread.rmse_hu(fx[o].cpu(), fx[i:i + 1].cpu().expand_as(fx[o]),
                                                                  WINDOW_HU).mean()) for i, o in enumerate(others)])}
        v = torch.randn((n_samples, vae.latent_dim), generator=generator).to(device)
        h = model.embed(z[:1]).expand(n_samples, -1)
        result["inversion_error"] = float((model.flow(model.flow.inverse(v, h), h)[0] - v).abs().max())
    return result


def study_probes(data: ChapterData, nets: Denoisers, vaes: Mapping[str, VAE], config: InvarianceConfig, *,
                 seed: int = 0, device: Any = "cpu", progress: bool = True) -> list[ProbeResult]:
    """Train (or load) the cINN of every probe, check ``v`` on held-out data and sample the analysed patches.

    The same ``v`` draws serve every probe (the generator restarts from ``seed`` for each), as in the slides."""
    results = []
    priors = {d: prior_spread(vae, config.n_samples, seed=seed + 1) for d, vae in vaes.items()}
    for probe in probes(config):
        vae, net = vaes[probe.domain], nets.by_name().get(probe.network)
        model, record = _cinn(data, config, probe, net, vae, seed, device, progress)
        seen, encoded = _condition_images(data, probe, "heldout")
        latent = vae_cinn.latent_statistics(model, _phi(probe, net).to(device), vae, seen[:config.n_heldout],
                                            seed=seed + 2, vae_images=encoded[:config.n_heldout])
        arrays = analyse_probe(probe, model, vae, net, data.test_low, data.test_full, n_samples=config.n_samples,
                               n_shown_images=config.n_shown_images, n_shown_samples=config.n_shown_samples,
                               n_check_samples=config.n_check_samples, seed=seed + 3)
        results.append(ProbeResult(probe=probe, prior_spread_hu=priors[probe.domain], latent=latent,
                                   history=record["history"], **arrays))
    return results


def _probe_id(probe: Probe) -> str:
    return f"{probe.network.lower()}{probe.layer}" + ("" if probe.domain == LOW else "_y")


def check_layers(net: nn.Module, layers: Sequence[int]) -> None:
    """Fail clearly when a layer number does not exist in ``net``."""
    total = n_layers(net)
    bad = [k for k in layers if not 1 <= k <= total]
    if bad:
        raise InvarianceError(f"layers {bad} do not exist in {type(net).__name__} (layers 1..{total})")
