"""The invariances chapter's checks, claims, deviations from the papers and headline numbers."""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from glassbox.measure import invariance_spread as spread
from glassbox.measure.claims import Check, Claim, Deviation, apply_checks, interval_rule, quality_check, require
from glassbox.measure.stats import interval
from glassbox.models.common import InvarianceError
from glassbox.studies.invariances.config import CHAPTER, FULL, LOW, METHOD_NAMES, NETWORKS, InvarianceConfig
from glassbox.studies.invariances.ct_data import data_table
from glassbox.studies.invariances.denoisers import DenoisingComparison, denoising_table
from glassbox.studies.invariances.probes import ProbeResult, _probe_id
from glassbox.studies.invariances.study import InvarianceResult, consistency_table, latent_table, spread_table
from glassbox.studies.invariances.vaes import domains, vae_table


def _deepest(result: InvarianceResult, network: str) -> ProbeResult:
    layers = result.config.chen_layers if network == "Chen" else result.config.yang_layers
    return result.probe(network, max(layers))


def _first(result: InvarianceResult, network: str) -> ProbeResult:
    layers = result.config.chen_layers if network == "Chen" else result.config.yang_layers
    return result.probe(network, min(layers))


def _texture_interval(comparison: DenoisingComparison, level: float) -> dict[str, tuple[float, float, float]]:
    """Bootstrap (over test slices) intervals of the NPS statistics the texture claims and checks use."""
    boot, q = comparison.nps_bootstrap, [(1 - level) / 2, (1 + level) / 2]

    def summary(draws: np.ndarray, point: float) -> tuple[float, float, float]:
        lo, hi = np.quantile(draws, q)
        return float(point), float(lo), float(hi)

    point = {k: float(np.mean(v)) for k, v in comparison.nps_mean_frequency.items()}
    out = {"chen_minus_full": summary(boot["Chen"] - boot["full"], point["Chen"] - point["full"]),
           "closer": summary(np.abs(boot["Chen"] - boot["full"]) - np.abs(boot["Yang"] - boot["full"]),
                             abs(point["Chen"] - point["full"]) - abs(point["Yang"] - point["full"]))}
    if "warmup" in boot:
        out["adversarial_change"] = summary(boot["Yang"] - boot["warmup"], point["Yang"] - point["warmup"])
    return out


def checks(result: InvarianceResult, *, vae_rmse_hu: float = 40.0, v_max_abs_mean: float = 1.0,
           v_var: tuple[float, float] = (0.5, 1.5), floor_margin: float = 0.25, inversion: float = 1e-3,
           level: float = 0.95) -> list[Check]:
    """The chapter's invariants (raise when broken) and quality checks (shown; failed ones make the claims that
    depend on them inconclusive). Thresholds are the arguments, stated in the chapter."""
    cfg, data = result.config, result.data
    out: list[Check] = []
    arrays = [a for r in result.probes for a in (r.spread_hu, r.std_maps, r.latent["mean"], r.latent["var"])]
    out.append(require("finite", "every spread, std map and statistic of v is finite",
                       all(np.isfinite(np.asarray(a)).all() for a in arrays)))
    worst = max(r.inversion_error for r in result.probes)
    out.append(require("inversion", f"every cINN inverts: max |t(t^-1(v)) - v| < {inversion:g}", worst < inversion,
                       worst, f"< {inversion:g}"))
    shape = (cfg.n_test_patches, cfg.patch_size, cfg.patch_size)
    out.append(require("shapes", f"std maps are {shape} per probe", all(r.std_maps.shape == shape for r in result.probes)))
    ids = [set(v) for v in data.splits.values()]
    disjoint = all(not (a & b) for i, a in enumerate(ids) for b in ids[i + 1:])
    out.append(require("patient_split", "train, validation and test patients are disjoint", disjoint))
    counts = np.bincount(data.sets["train"].patient_of.numpy())
    out.append(require("patient_weighted", "every training patient gives the same number of patches",
                       bool((counts == cfg.patches_per_patient).all())))
    for domain in domains(cfg):
        value = float(result.vae_rmse(domain).mean())
        out.append(quality_check(f"vae_{domain}_rmse", f"VAE of {'low' if domain == LOW else 'full'}-dose images "
                                 "reconstructs the analysed patches (RMSE, HU, window)", value, below=vae_rmse_hu,
                                 margin_note="threshold from issue 17 (quick: 40 HU)"))
    for r in result.probes:
        pid = _probe_id(r.probe)
        out.append(quality_check(f"v_mean_{pid}", f"{r.probe.label}: largest |mean| of v over held-out patches",
                                 r.latent["max_abs_mean"], below=v_max_abs_mean))
        out.append(quality_check(f"v_var_{pid}", f"{r.probe.label}: mean variance of v over held-out patches",
                                 r.latent["mean_var"], above=v_var[0], below=v_var[1]))
        if r.phi_similarity is not None:
            low = interval(r.phi_similarity - r.phi_similarity_other, level)[1]
            out.append(quality_check(f"phi_{pid}", f"{r.probe.label}: Φ(sample) is closer to z than Φ(other test "
                                     "image) is (lower end of the interval over images)", low, above=0.0))
            high = interval(r.f_rmse_hu - r.f_rmse_other_hu, level)[2]
            out.append(quality_check(f"f_{pid}", f"{r.probe.label}: f(sample) is closer to f(x) than f(other test "
                                     "image) is (upper end of the interval of the RMSE difference, HU)", high,
                                     below=0.0))
    floor = result.floor(LOW)
    for network in NETWORKS:
        first = _first(result, network)
        _, lo, hi = spread.excess_over_floor(first.spread_hu, floor.spread_hu, level)
        level_hu = float(np.mean(floor.spread_hu))
        value = max(abs(lo), abs(hi)) / level_hu if np.isfinite(lo) and level_hu > 0 else math.nan
        out.append(quality_check(f"floor_{network.lower()}", f"{network} layer {first.probe.layer} (injective) sits on "
                                 "the floor: largest |end| of its interval of spread minus floor, relative to the floor",
                                 value, below=floor_margin))
    comparison = result.comparison
    if comparison.nps_bootstrap:
        full_sd = float(np.mean(comparison.nps_noise_sd["full"]))
        ratio = result.nets.perceptual_record["heldout_rmse_hu"] / full_sd
        out.append(quality_check("perceptual_keeps_texture", "the perceptual autoencoder redraws held-out full-dose "
                                 "patches to below their noise SD (RMSE / full-dose noise SD)", ratio, below=1.0))
        texture = _texture_interval(comparison, level)
        if "adversarial_change" in texture:
            _, lo, hi = texture["adversarial_change"]
            out.append(quality_check("adversarial_changed_texture", "WGAN training moved the NPS mean frequency of "
                                     "Yang's output away from its L2 warm-up (distance of the interval from 0, 1/mm)",
                                     max(lo, -hi), above=0.0))
    return out


SECTIONS = {"denoisers": "invariances-denoisers", "texture": "invariances-texture",
            "spreads": "invariances-spreads", "target": "invariances-target", "findings": "invariances-findings"}
"""MyST labels of the chapter's sections that test claims (``Claim.section``; the notebook carries ``(label)=``)."""
PAPER, SLIDES = "eulig2022invariances", "eulig2022slides"
"""BibTeX keys of the two seeds (``Claim.reference``, ``Deviation.reference``)."""


def _claim(cid: str, source: str, statement: str, test: str, estimate: tuple[float, float, float], *, what: str,
           section: str, reference: str = PAPER, above=None, below=None, unit: str = "", kind: str = "",
           depends: Sequence[str] = (), chance: float | None = None, note: str = "") -> Claim:
    point, lo, hi = estimate
    common = dict(id=cid, chapter=CHAPTER, source=source, statement=statement, test=test, unit=unit, note=note,
                  depends_on=tuple(depends), chance=chance, section=SECTIONS[section], reference=reference)
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return Claim(**common, verdict="inconclusive", rule="no interval (too few finite values)",
                     ours=point if np.isfinite(point) else None)
    verdict, rule = interval_rule((lo, hi), above=above, below=below, what=what)
    return Claim(**common, verdict=verdict, rule=rule, ours=point, interval=(lo, hi), interval_kind=kind)


def claims(result: InvarianceResult, check_list: Sequence[Check], *, level: float = 0.95) -> list[Claim]:
    """The chapter's claims, each tested by a rule of :mod:`glassbox.measure.claims` on an interval (95% t over
    test slices or analysed patches, or a bootstrap over test slices), then :func:`apply_checks`."""
    cfg, per_slice, out = result.config, result.comparison.per_slice, []
    images = f"{level:.0%} t-interval over {cfg.n_test_patches} analysed test patches"
    fig1 = "Eulig et al. 2022, Sec. IV-A (Fig. 1)"
    for network in NETWORKS:
        gain = interval(per_slice[network]["psnr"] - per_slice["low"]["psnr"], level)
        out.append(_claim(f"{network.lower()}_denoises", fig1, f"{network} et al.'s network, retrained, denoises "
                          "(the paper: its results are similar to those reported in the original paper)",
                          "PSNR gain over the low-dose input on "
                          "the test slices (dB, window)", gain, what="the gain", section="denoisers", above=0.0, unit="dB",
                          kind=f"{level:.0%} t-interval over test slices",
                          note="Our data are not the original papers', so we test only that the network denoises; "
                          "how close its numbers come to the original paper's is not testable here."))
    checked = {c.id for c in check_list}
    if result.comparison.nps_bootstrap:
        texture = _texture_interval(result.comparison, level)
        kind = f"{level:.0%} bootstrap over test slices"
        out.append(_claim("chen_smooth", fig1, "due to the L2 loss the results of Chen et al. appear smooth",
                          "NPS mean frequency of Chen's output minus that of the full-dose image (1/mm)",
                          texture["chen_minus_full"], what="the difference", section="texture", below=0.0, unit="1/mm", kind=kind))
        out.append(_claim("yang_texture", fig1, "Yang et al.'s results have noise structures very similar to those "
                          "of the high-dose images", "|NPS mean frequency of Chen − full dose| minus |Yang − full "
                          "dose| (1/mm): positive when Yang's noise texture is the closer one", texture["closer"],
                          what="the difference", section="texture", above=0.0, unit="1/mm", kind=kind,
                          depends=[c for c in ("adversarial_changed_texture", "perceptual_keeps_texture")
                                   if c in checked]))
    floor = result.floor(LOW)
    base = [c for c in ("vae_x_rmse", "v_mean_identity0", "v_var_identity0") if c in checked]
    for network in NETWORKS:
        deep, first = _deepest(result, network), _first(result, network)
        deps = base + [f"{k}_{_probe_id(p.probe)}" for p in (deep, first) for k in ("v_mean", "v_var", "phi")]
        out.append(_claim(f"{network.lower()}_invariant", "Eulig et al. 2022, Sec. V", f"the representations of "
                          f"{network} et al.'s network at different layers are invariant to anatomical features",
                          f"spread minus floor at layer {deep.probe.layer}, the deepest analysed, over the body outside "
                          "homogeneous tissue: edges and anatomical detail (HU, window)",
                          spread.excess_over_floor(deep.structure_spread_hu, floor.structure_spread_hu, level),
                          what="spread minus floor", section="spreads", above=0.0, unit="HU", kind=images,
                          depends=deps + [f"floor_{network.lower()}"]))
        out.append(_claim(f"{network.lower()}_depth", "expected: a deeper layer is a function of a shallower one, so "
                          "it can only keep less (data-processing inequality)",
                          f"the invariance spread of {network} et al.'s network grows with depth",
                          f"spread at layer {deep.probe.layer} minus spread at layer {first.probe.layer} (HU)",
                          spread.excess_over_floor(deep.spread_hu, first.spread_hu, level), what="the difference",
                          section="spreads", reference="", above=0.0, unit="HU",
                          kind=images, depends=deps))
    chen = np.mean([result.probe("Chen", k).flat_spread_hu for k in cfg.chen_layers], axis=0)
    yang = np.mean([result.probe("Yang", k).flat_spread_hu for k in cfg.yang_layers], axis=0)
    keep = np.isfinite(chen) & np.isfinite(yang)
    deps = base + [f"{k}_{_probe_id(result.probe(n, layer).probe)}" for n, layers in
                   (("Chen", cfg.chen_layers), ("Yang", cfg.yang_layers)) for layer in layers for k in ("v_mean", "v_var")]
    out.append(_claim("chen_homogeneous", "Eulig et al. 2022, Sec. IV-B", "higher overall variance of the invariances "
                      "in homogeneous regions for Chen et al.'s network than for Yang et al.'s",
                      "spread over homogeneous tissue, mean over the analysed layers, Chen minus Yang (HU)",
                      interval(chen[keep] - yang[keep], level), what="the difference", section="spreads", above=0.0,
                      unit="HU",
                      kind=f"{level:.0%} t-interval over the analysed patches with homogeneous tissue", depends=deps))
    if cfg.target_domain:
        floor_y = result.floor(FULL)
        for network, layer in (("Chen", 5), ("Yang", 15)):
            probe = result.probe(network, layer, FULL)
            deps = [c for c in ("vae_y_rmse",) if c in checked] + [f"{k}_{_probe_id(p.probe)}" for p in (probe, floor_y)
                                                                    for k in ("v_mean", "v_var")]
            out.append(_claim(f"{network.lower()}_target", "Eulig et al., slides (seed 002), target domain",
                              f"after the last layer of {network}'s network, many full-dose images give the same "
                              "output: invariances in the target domain", "spread of full-dose samples given f(x), "
                              "minus the full-dose floor (HU)",
                              spread.excess_over_floor(probe.spread_hu, floor_y.spread_hu, level),
                              what="spread minus floor", section="target", reference=SLIDES,
                              above=0.0, unit="HU", kind=images, depends=deps))
    return apply_checks(out, check_list)


def deviations(config: InvarianceConfig, *, simulated: bool = True) -> list[Deviation]:
    """How this profile departs from Eulig et al.'s protocol (paper and slides): data and dose, patch size, VAE,
    perceptual network, training length, cINN size, analysis size and the target-domain VAE."""
    if not isinstance(config, InvarianceConfig):
        raise InvarianceError(f"config must be an InvarianceConfig (a PROFILES entry), got {type(config).__name__}")
    d, v, c, y = config.data, config.vae, config.cinn, config.yang
    budget = "the profile's compute budget (smoke: seconds, quick: minutes on one CPU thread; paper: a GPU)"
    latent = (f"{v.latent_dim // (v.bottom * v.bottom)} x {v.bottom} x {v.bottom} map" if v.spatial
              else f"{v.latent_dim}-dimensional vector")
    out = []
    if simulated:
        out.append(("data", "data and dose", "TCIA LDCT-and-Projection data: 150 patients (head, chest, abdomen), "
                    "simulated 25 % dose for head and abdomen, 10 % for chest",
                    f"simulated abdominal phantoms: {d.n_patients} patients x {d.slices_per_patient} slices of "
                    f"{d.n} x {d.n} pixels, {d.dose:.0%} dose",
                    "the TCIA data need a licence and no download is possible at build time; at 25 % dose our "
                    "phantoms carry too little noise for a briefly trained denoiser to beat its input"))
    out += [
        ("patches", "patch size", "128 x 128 patches for the invariance analysis; Yang et al.'s 64 x 64 for "
         "WGAN-VGG", f"{config.patch_size} x {config.patch_size} patches, {config.patches_per_patient} per "
         "training patient, for every network", budget),
        ("vae", "VAE", "ResNet-101 encoder, BigGAN decoder, adversarial and perceptual terms",
         f"convolutional VAE (width {v.width}, {v.n_res} residual blocks per resolution) with a {latent} latent, "
         f"negative ELBO only, {v.epochs} epochs", budget + "; ImageNet weights cannot be downloaded"),
        ("perceptual", "perceptual loss of WGAN-VGG", "ImageNet VGG-19 features (conv5_4), as Yang et al.",
         f"relu3_2 of a small VGG-shaped autoencoder of full-dose patches (base width {config.perceptual.base}, "
         f"{config.perceptual.epochs} epochs), after Li et al.'s self-supervised perceptual network",
         "VGG-19 weights cannot be downloaded here; a CT autoencoder keeps the noise texture the loss must see"),
        ("training", "training length", "the original papers' hyper-parameters (Yang et al.: Adam 1e-5, batch 128, "
         "about 100 epochs, n_critic 4)", f"Chen: {config.chen.epochs} epochs; Yang: {y.pretrain_epochs} L2 warm-up "
         f"epochs, then {y.epochs} WGAN epochs at Adam {y.lr:g}, batch {y.batch_size}, n_critic {y.n_critic}; "
         f"VAE {v.epochs} and each cINN {c.epochs} epochs", budget),
        ("cinn", "cINN", "4 blocks (coupling, ActNorm, shuffling) with a shallow condition network H",
         f"{c.n_blocks} blocks, subnet width {c.hidden} (depth {c.hidden_depth}), H to {c.emb_dim} numbers",
         budget),
        ("analysis", "invariance samples", "250 invariance samples per analysed image",
         f"{config.n_samples} samples on each of {config.n_test_patches} test patches (the trust checks on the "
         f"first {min(config.n_check_samples, config.n_samples)})", budget),
    ]
    deviations_ = [Deviation(f"{CHAPTER}.{PAPER}.{aspect_id}", CHAPTER, PAPER, aspect, paper, ours, reason)
                   for aspect_id, aspect, paper, ours, reason in out]
    deviations_.append(Deviation(f"{CHAPTER}.{SLIDES}.target", CHAPTER, SLIDES, "target-domain VAE",
                                 "a second VAE of high-dose images, suggested to show invariances in the target "
                                 "domain", "a full-dose VAE of the same architecture, trained the same way"
                                 if config.target_domain else "not run on this profile",
                                 "as suggested" if config.target_domain else budget))
    return deviations_


def numbers(result: InvarianceResult) -> dict[str, Any]:
    """The headline numbers saved to ``results/invariances.json``."""
    comparison = result.comparison
    out: dict[str, Any] = {
        "data": data_table(result.data), "denoising": denoising_table(comparison),
        "vae": vae_table(result.data, result.vaes), "spreads": spread_table(result),
        "consistency": consistency_table(result), "latent": latent_table(result),
        "vae_rmse_window_hu": {d: float(result.vae_rmse(d).mean()) for d in result.vaes},
        "perceptual_ae_heldout_rmse_hu": result.nets.perceptual_record["heldout_rmse_hu"],
        "n_samples": result.config.n_samples, "n_test_patches": result.config.n_test_patches,
        "patch_size": result.config.patch_size, "dose": result.config.data.dose,
        "split": {k: len(v) for k, v in result.data.splits.items()},
    }
    if comparison.nps_frequencies is not None:
        out["nps"] = {"frequencies_per_mm": comparison.nps_frequencies,
                      "radial_mean": {METHOD_NAMES[k]: v.mean(0) for k, v in comparison.nps_radial.items()},
                      "mean_frequency": {METHOD_NAMES[k]: float(np.mean(v)) for k, v in
                                         comparison.nps_mean_frequency.items()},
                      "noise_sd_hu": {METHOD_NAMES[k]: float(np.mean(v)) for k, v in comparison.nps_noise_sd.items()},
                      "n_rois": comparison.n_rois}
    return out
