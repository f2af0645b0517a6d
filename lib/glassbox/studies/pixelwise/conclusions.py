"""The pixel-wise chapter's checks, claims, deviations from the notes and headline numbers."""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch

from glassbox.measure.claims import (
    Check,
    Claim,
    Deviation,
    apply_checks,
    equivalence_rule,
    interval_rule,
    quality_check,
    require,
)
from glassbox.studies.pixelwise.config import CHAPTER, REFERENCE, SOURCE, PixelwiseConfig, interval_of
from glassbox.studies.pixelwise.restoration import PixelLossStudy
from glassbox.studies.pixelwise.study import PixelwiseResult


def checks(result: PixelwiseResult, config: PixelwiseConfig) -> list[Check]:
    """Invariants (raise when broken) and quality checks (shown; a failed one makes its claims inconclusive)."""

    arch = result.architectures.rows
    curve_full = result.curve.rows[result.curve.rows.volumes == max(config.curve_volumes)]
    low_psnr = result.restoration.table.loc["low dose", "PSNR [dB]"]
    pixel = result.pixel_losses.rows
    impute = result.imputation.rows
    copy_mae = float(impute[impute.method == "copy the source"]["MAE"].iloc[0])
    soft_sums = result.soft.example.soft.sum(1)
    record = result.restoration.feature_record
    return [
        require("metrics-match-skimage", "our MSE, NMSE, PSNR and SSIM equal scikit-image's to 1e-9",
                bool((result.reference_check["|difference|"] < 1e-9).all()),
                float(result.reference_check["|difference|"].max()), "< 1e-9"),
        require("gallery-equal-psnr", "the equal-MSE gallery has one PSNR (bisection tolerance)",
                float(np.ptp(result.gallery["PSNR [dB]"])) < 0.2, float(np.ptp(result.gallery["PSNR [dB]"])), "< 0.2 dB"),
        require("sigmoid-is-two-class-softmax", "sigmoid(a1 - a0) equals the two-class softmax, BCE equals CE",
                result.binary.identity_error < 1e-12, result.binary.identity_error, "< 1e-12"),
        require("soft-labels-are-distributions", "the raters' p(y = k) sum to 1 at every pixel",
                bool(torch.allclose(soft_sums, torch.ones_like(soft_sums))), float((soft_sums - 1).abs().max()),
                "0 up to rounding"),
        require("matched-sizes", "matched networks have parameter counts within 5 % of each other",
                _spread(arch[arch["size"] == "matched"].parameters) < 0.05,
                _spread(arch[arch["size"] == "matched"].parameters), "< 0.05 (max / min - 1)"),
        quality_check("loss-nets-learn-large", "every loss-section network segments the large structure "
                      "(held-out Dice of the large structure, lowest network)",
                      float(result.losses.table.dice_large.min()), above=0.7,
                      margin_note=_margin_note(result.losses.table.dice_large, 0.7)),
        quality_check("soft-nets-learn-large", "soft and majority networks segment the large structure (lowest)",
                      float(result.soft.rows.dice_large.min()), above=0.7,
                      margin_note=_margin_note(result.soft.rows.dice_large, 0.7)),
        quality_check("binary-nets-learn", "binary networks segment the large structure (lowest Dice)",
                      float(result.binary.rows.dice_large.min()), above=0.7,
                      margin_note=_margin_note(result.binary.rows.dice_large, 0.7)),
        quality_check("arch-nets-learn-large", "every architecture, size and seed segments the large structure "
                      "(lowest held-out Dice)", float(arch.dice_large.min()), above=0.7,
                      margin_note=_margin_note(arch.dice_large, 0.7)),
        quality_check("curve-full-learns", "the largest training set gives a working network (lowest Dice of the "
                      "large structure over seeds)", float(curve_full.dice_large.min()), above=0.7,
                      margin_note=_margin_note(curve_full.dice_large, 0.7)),
        quality_check("pixel-nets-train", "every L1 and L2 network lowered its training loss (largest ratio of the "
                      "last epoch's loss to the first's)",
                      float(pixel[pixel.loss != "noisy input"]["loss last / first epoch"].max()), below=0.9,
                      margin_note=_margin_note(pixel[pixel.loss != "noisy input"]["loss last / first epoch"], 0.9,
                                               "highest")),
        quality_check("featurenet-beats-chance", "the CT feature network labels tissue above the majority-class rate "
                      "(accuracy minus chance)", float(record["pixel_accuracy"] - record["chance"]), above=0.05),
        quality_check("mse-denoiser-helps", "the MSE denoiser raises PSNR over the low-dose input (dB)",
                      float(result.restoration.table.loc["mse", "PSNR [dB]"] - low_psnr), above=0.0),
        quality_check("imputation-learns", "the U-Net imputes better than copying the source (largest MAE ratio)",
                      float(impute[impute.method == "U-Net (L1)"]["MAE"].max() / copy_mae), below=1.0),
    ]


def _reference(source: str) -> str:
    """The notes' BibTeX key for a claim whose source is the notes; empty for the chapter's own claims."""
    return REFERENCE if source.startswith(SOURCE) else ""


def _spread(values: pd.Series) -> float:
    values = np.asarray(values, dtype=np.float64)
    return float(values.max() / values.min() - 1) if len(values) else 0.0


def _margin_note(values: Sequence[float], threshold: float, worst: str = "lowest") -> str:
    """The worst value of this run beside the threshold: how close the check came to failing."""
    values = np.asarray(values, dtype=np.float64)
    value = values.min() if worst == "lowest" else values.max()
    return f"{worst} of {len(values)} networks {value:.3f}; threshold {threshold:g}"


def _interval_claim(id: str, section: str, source: str, statement: str, test: str, values: Sequence[float], *,
                    above: float | None = None, below: float | None = None, unit: str = "", interval_kind: str,
                    depends_on: Sequence[str] = (), paper: float | str | None = None, note: str = "",
                    chance: float | None = None, what: str = "the difference") -> Claim:
    mean, lo, hi = interval_of(values)
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return Claim(id=id, chapter=CHAPTER, source=source, statement=statement, test=test, verdict="inconclusive",
                     rule="needs at least two values for an interval", ours=mean, unit=unit, section=section,
                     note=(note + " " if note else "") + "Only one value: no interval.", depends_on=tuple(depends_on),
                     paper=paper, chance=chance, reference=_reference(source))
    verdict, rule = interval_rule((lo, hi), above=above, below=below, what=what)
    return Claim(id=id, chapter=CHAPTER, source=source, statement=statement, test=test, verdict=verdict, rule=rule,
                 ours=mean, interval=(lo, hi), interval_kind=interval_kind, unit=unit, section=section, note=note,
                 depends_on=tuple(depends_on), paper=paper, reference=_reference(source), chance=chance)


def _equivalence_claim(id: str, section: str, source: str, statement: str, test: str, values: Sequence[float], *,
                       margin: float, interval_kind: str, depends_on: Sequence[str] = (), unit: str = "",
                       note: str = "", paper: float | str | None = None, what: str = "the difference",
                       centre: float = 0.0) -> Claim:
    """A claim that ``values`` equal ``centre`` within ``margin`` (ours and its interval are reported as they are)."""
    mean, lo, hi = interval_of(values)
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return Claim(id=id, chapter=CHAPTER, source=source, statement=statement, test=test, verdict="inconclusive",
                     rule="needs at least two values for an interval", ours=mean, unit=unit, section=section,
                     note="Only one value: no interval.", depends_on=tuple(depends_on), paper=paper,
                     reference=_reference(source))
    verdict, rule = equivalence_rule((lo - centre, hi - centre), margin, what=what)
    return Claim(id=id, chapter=CHAPTER, source=source, statement=statement, test=test, verdict=verdict, rule=rule,
                 ours=mean, interval=(lo, hi), interval_kind=interval_kind, unit=unit, section=section, note=note,
                 depends_on=tuple(depends_on), paper=paper, reference=_reference(source))


def claims(result: PixelwiseResult, config: PixelwiseConfig, checks_: Sequence[Check] = ()) -> list[Claim]:
    """The chapter's verdicts. Thresholds and margins are fields of :class:`PixelwiseConfig`, fixed in advance."""
    seeds = "95 % t interval over training seeds"
    slices = "95 % t interval over held-out CT slices (one network per loss)"
    k = result.shares.n_classes
    loss = result.losses
    small = loss.small_dice_per_image
    arch = result.architectures
    out = [
        _interval_claim(
            "ce-small-share", "pixelwise-loss-shares", f"{SOURCE}, challenge with the cross entropy",
            "L_Ω_small << L_Ω̄_small because |Ω_small| << |Ω̄_small|",
            f"the small structure's share of the cross-entropy in scenes of the training task, for a prediction "
            f"unsure at every boundary; '<<' read as below {config.ce_share_below:g}",
            result.shares.at_task_size("CE"), below=config.ce_share_below,
            interval_kind="95 % t interval over scenes", what="the share"),
        _interval_claim(
            "dice-share-size", "pixelwise-loss-shares", f"{SOURCE}, Sorensen-Dice coefficient",
            "each class DSC loss is equal in magnitude despite having different sizes",
            f"the small structure's share of the Dice loss in the same scenes is at least its equal part 1/K "
            f"(K = {k}), as it would be if its term did not shrink with its size", result.shares.at_task_size("Dice"),
            above=1 / k,
            interval_kind="95 % t interval over scenes", what="the share"),
        _interval_claim(
            "dice-loss-finds-small", "pixelwise-loss-training", f"{SOURCE}, Dice as the alternative to the cross entropy",
            "a Dice loss keeps small structures that the cross entropy lets drown",
            "held-out Dice of the small structure, Dice-loss network minus CE network (same weights at the start, "
            "same data order)", (small["dice"] - small["ce"]).ravel(), above=0.0,
            interval_kind="95 % t interval over held-out scenes" + (" (one training seed)" if config.loss_seeds == 1
                                                                     else f" and {config.loss_seeds} seeds"),
            depends_on=("loss-nets-learn-large",)),
        _interval_claim(
            "soft-labels-calibrate", "pixelwise-soft-labels", f"{SOURCE}, ambiguity in segmentation labels; CE with p(y = k)",
            "training on the raters' p(y = k) instead of one label per pixel gives probabilities that match the "
            "raters' disagreement", "calibration error against the raters on the pixels where they disagree, "
            "majority-vote network minus soft-target network", result.soft.paired("ece where raters disagree"),
            above=0.0, interval_kind=seeds, depends_on=("soft-nets-learn-large",)),
        _equivalence_claim(
            "soft-labels-keep-dice", "pixelwise-soft-labels", "this chapter",
            "soft targets cost no segmentation quality", "held-out Dice of the large structure against the "
            "majority vote, majority-vote network minus soft-target network", result.soft.paired("dice_large"),
            margin=config.soft_dice_margin, interval_kind=seeds, depends_on=("soft-nets-learn-large",)),
        _equivalence_claim(
            "binary-sigmoid-equals-softmax", "pixelwise-binary", f"{SOURCE}, binary segmentation (sigmoid output) and "
            "multi-class segmentation (softmax)",
            "for two classes, one sigmoid output with BCE is the softmax network with CE",
            "held-out Dice of the large structure, sigmoid + BCE minus softmax + CE (same architecture, seeds, data)",
            result.binary.paired("dice_large"), margin=config.binary_margin, interval_kind=seeds,
            depends_on=("binary-nets-learn",)),
    ]
    for name, label in (("fcn", "FCN"), ("unet-bilinear", "U-Net (bilinear up-sampling)"),
                        ("unet-transposed", "U-Net (transposed convolutions)")):
        if name in config.architectures and "naive" in config.architectures:
            out.append(_interval_claim(
                f"{name}-retains-detail", "pixelwise-matched-size", f"{SOURCE}, FCN and U-Net: 'skip connections can retain details'",
                f"{label} keeps detail the single up-sampling loses",
                f"boundary accuracy, {name} minus naive, at matched parameter counts",
                arch.paired("matched", name, "naive"), above=0.0, interval_kind=seeds,
                depends_on=("arch-nets-learn-large",)))
    if {"fcn", "unet-bilinear"} <= set(config.architectures):
        out.append(_interval_claim(
            "unet-beyond-fcn", "pixelwise-matched-size", "this chapter", "concatenated encoder features (U-Net) keep more detail than "
            "fused class scores (FCN)", "boundary accuracy, unet-bilinear minus fcn, at matched parameter counts",
            arch.paired("matched", "unet-bilinear", "fcn"), above=0.0, interval_kind=seeds,
            depends_on=("arch-nets-learn-large",)))
    if {"unet-bilinear", "unet-transposed"} <= set(config.architectures):
        out.append(_equivalence_claim(
            "up-modes-alike", "pixelwise-matched-size", f"{SOURCE}, U-Net up-sampling: bilinear + convolution OR transposed convolution",
            "the two up-sampling options are interchangeable", "boundary accuracy, bilinear minus transposed, at "
            "matched parameter counts", arch.paired("matched", "unet-bilinear", "unet-transposed"),
            margin=config.up_mode_margin, interval_kind=seeds, depends_on=("arch-nets-learn-large",)))
    out += [
        _equivalence_claim(
            "few-volumes-suffice", "pixelwise-labelled-data", f"{SOURCE}, dataset: how big a data set do we need?",
            "3 - 5 labelled volumes train a good U-Net for large structures",
            f"held-out Dice of the large structure with {config.notes_volumes} volumes minus with "
            f"{max(config.curve_volumes)} (equal optimiser steps)", result.curve.gap(config.notes_volumes),
            margin=config.curve_margin, interval_kind=seeds + " (each drawing its own volumes)",
            depends_on=("curve-full-learns",),
            note="Our volumes are synthetic 2-D stacks, not brain MRI; the test is whether the curve flattens by then."),
        _equivalence_claim(
            "few-volumes-small", "pixelwise-labelled-data", "this chapter", "the same few volumes suffice for the small structure",
            f"held-out Dice of the small structure with {config.notes_volumes} volumes minus with "
            f"{max(config.curve_volumes)}", result.curve.gap(config.notes_volumes, "dice_small"),
            margin=config.curve_margin, interval_kind=seeds + " (each drawing its own volumes)",
            depends_on=("curve-full-learns",)),
        _interval_claim(
            "psnr-ssim-disagree", "pixelwise-equal-mse", f"{SOURCE}, PSNR and SSIM",
            "SSIM (local luminance, contrast, structure) measures something other than the MSE behind PSNR",
            "SSIM range over five degradations of equal MSE (equal PSNR); deterministic, so the interval is a point",
            [float(np.ptp(result.gallery["SSIM"]))] * 2, above=0.1, interval_kind="no sampling: one image",
            what="the SSIM range"),
        _equivalence_claim(
            "l2-learns-mean", "pixelwise-l1-l2", f"{SOURCE}, MSE as a training loss",
            "minimising the MSE predicts the mean of the possible targets",
            f"slope of (output - clean) against (impulse value - clean) for the L2 network; the mean of the targets "
            f"has slope q = {config.impulse_fraction:g}", _slopes(result.pixel_losses, "l2"),
            margin=config.slope_margin, interval_kind=seeds, depends_on=("pixel-nets-train",),
            paper=config.impulse_fraction, what="the slope minus q", centre=config.impulse_fraction,
            note="The 'paper' value is the slope of the mean of the targets, not a number from the notes."),
        _equivalence_claim(
            "l1-learns-median", "pixelwise-l1-l2", f"{SOURCE}, MAE as a training loss",
            "minimising the MAE predicts the median of the possible targets",
            "the same slope for the L1 network; the median of the targets has slope 0",
            _slopes(result.pixel_losses, "l1"),
            margin=config.slope_margin, interval_kind=seeds, depends_on=("pixel-nets-train",), paper=0.0,
            what="the slope", note="The 'paper' value is the slope of the median of the targets."),
        _interval_claim(
            "mse-oversmooths", "pixelwise-perceptual-adversarial", f"{SOURCE}, advanced cost functions (motivation)",
            "an MSE-trained denoiser is smoother than the real image", "detail ratio of the MSE denoiser "
            "(fine-detail RMS relative to full dose, soft tissue)", result.restoration.per_slice["mse"]["detail ratio"],
            below=1.0, interval_kind=slices, depends_on=("mse-denoiser-helps",), what="the detail ratio"),
    ]
    for name, label in (("mse+perceptual", "perceptual"), ("mse+adversarial", "adversarial")):
        deps = ("mse-denoiser-helps", "featurenet-beats-chance") if label == "perceptual" else ("mse-denoiser-helps",)
        out += [
            _interval_claim(
                f"{label}-adds-texture", "pixelwise-perceptual-adversarial", f"{SOURCE}, advanced cost function ({label} loss)",
                f"a {label} term restores texture that the MSE smooths away",
                f"detail ratio, {name} minus mse", result.restoration.paired(name, "mse", "detail ratio"), above=0.0,
                interval_kind=slices, depends_on=deps),
            _interval_claim(
                f"{label}-costs-psnr", "pixelwise-perceptual-adversarial", "this chapter (the usual trade-off)",
                f"the {label} term costs PSNR", f"PSNR, {name} minus mse", result.restoration.paired(name, "mse",
                                                                                                  "PSNR [dB]"),
                below=0.0, unit="dB", interval_kind=slices, depends_on=deps),
        ]
    out.append(_interval_claim(
        "imputation-needs-context", "pixelwise-imputation", f"{SOURCE}, missing data in problems requiring multiple sequences",
        "a missing sequence can be imputed by pixel-wise prediction, better with context than pixel by pixel",
        "MAE against the clean target sequence, U-Net minus the best pixel-wise intensity map (held-out patients)",
        result.imputation.unet_minus("pixel-wise intensity map"), below=0.0, interval_kind=seeds,
        depends_on=("imputation-learns",)))
    return apply_checks(out, checks_) if checks_ else out


def _slopes(study: PixelLossStudy, loss: str) -> list[float]:
    return study.rows[study.rows.loss == loss]["slope"].tolist()


# ------------------------------------------------------------------------------------------------
# How this run departs from the notes

def deviations(config: PixelwiseConfig) -> list[Deviation]:
    """How this run's experiments depart from what the notes describe (data, networks, training, loss formulas)."""
    scenes = (f"synthetic scenes ({config.image_size} px; {config.repeat_image_size} px in the sections trained over "
              f"several seeds): a large ellipse and a small disk on a noisy background, {config.n_train} training "
              f"scenes; simulated low-dose CT ({config.ct_size} px, dose {config.dose:g}); simulated breast MRI")
    widths = sorted({config.width, config.soft_width, config.binary_width, config.curve_width})
    trainings = {"losses": config.seg_training, "soft labels": config.soft_training,
                 "binary": config.binary_training, "architectures": config.arch_training}
    lengths = ", ".join(f"{name} {t.epochs} epoch{'' if t.epochs == 1 else 's'}" for name, t in trainings.items())
    seeds = sorted({config.loss_seeds, config.soft_seeds, config.binary_seeds, config.arch_seeds, config.curve_seeds,
                    config.pixel_seeds, config.impute_seeds})
    return [
        Deviation("pixelwise.data", CHAPTER, REFERENCE, "data",
                  "medical images (brain MRI, CT, multi-sequence MRI); the notes name no data set", scenes,
                  "every answer is known by construction, and no medical data can be downloaded at build time"),
        Deviation("pixelwise.volumes", CHAPTER, REFERENCE, "labelled volumes",
                  "3 - 5 labelled 3-D brain MRI volumes (T1w MPRAGE) for large anatomical structures",
                  f"stacks of {config.volume_slices} 2-D slices of {config.repeat_image_size} px, one large and one "
                  f"small synthetic structure, {', '.join(map(str, config.curve_volumes))} training volumes, "
                  f"{config.curve_steps} optimiser steps each, a 2-D U-Net",
                  "no labelled brain MRI offline; a 3-D network on real volumes needs a GPU"),
        Deviation("pixelwise.networks", CHAPTER, REFERENCE, "network size",
                  "the binary network's 32, 128 and 256 channels (I -> 32 -> 128 -> 256 -> 128 -> 32 -> O)",
                  f"the notes' channel counts times {', '.join(f'{w:g}' for w in widths)}; architectures also at a "
                  f"matched parameter count", "the profile's compute budget (CPU on smoke and quick)"),
        Deviation("pixelwise.training", CHAPTER, REFERENCE, "training length and repeats",
                  "not specified (trained to convergence)",
                  f"{lengths}; {' to '.join(map(str, (seeds[0], seeds[-1]))) if len(seeds) > 1 else seeds[0]} "
                  f"training seeds per comparison", "the profile's compute budget; the quick profile's networks are "
                  "not converged"),
        Deviation("pixelwise.loss-formulas", CHAPTER, REFERENCE, "loss formulas",
                  "losses summed over pixels; the Dice ratios summed over classes, without smoothing",
                  "losses averaged over pixels; Dice loss 1 - mean over classes of DSC_k with smoothing 1; logits "
                  "in, the sigmoid or softmax inside the loss", "the same minimisers with a gradient that does not "
                  "grow with the image size, and a defined value for an empty class"),
        Deviation("pixelwise.imputation", CHAPTER, REFERENCE, "missing sequence",
                  "imputing a missing sequence of a real multi-sequence examination",
                  f"two simulated T1-like contrasts (with and without fat suppression) of the same simulated breast "
                  f"anatomy, {config.impute_patients} training and {config.impute_test_patients} test patients, "
                  f"Rician noise {config.impute_noise:g}", "no multi-sequence MRI offline; the clean target is known"),
    ]


def headline_numbers(result: PixelwiseResult) -> dict[str, Any]:
    """The numbers ``results/pixelwise.json`` keeps (tables as lists of records)."""
    return {
        "loss_share_vs_size": result.shares.by_radius, "loss_share_at_task_size": result.shares.task,
        "missed_structure": result.shares.missed,
        "segmentation_by_loss": result.losses.table, "first_epoch_small_dice": result.losses.first_reach,
        "small_probability_inside": result.losses.small_probability_inside,
        "soft_labels": result.soft.rows, "binary_network": result.binary.rows,
        "architectures": result.architectures.rows, "architectures_summary": result.architectures.summary(),
        "learning_curve": result.curve.summary(),
        "metrics_vs_skimage_max_abs_difference": float(result.reference_check["|difference|"].max()),
        "equal_mse_gallery": result.gallery, "psnr_ssim_disagreements": len(result.disagreements),
        "pixel_losses": result.pixel_losses.rows, "restoration": result.restoration.table.reset_index(names="method"),
        "featurenet_pixel_accuracy": float(result.restoration.feature_record["pixel_accuracy"]),
        "featurenet_chance": float(result.restoration.feature_record["chance"]),
        "imputation": result.imputation.rows,
    }
