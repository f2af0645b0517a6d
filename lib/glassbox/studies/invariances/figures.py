"""The invariances chapter's figures."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import torch

from glassbox.data import lowdose_ct
from glassbox.measure import invariance_spread as spread
from glassbox.models.common import InvarianceError
from glassbox.models.vae import VAE
from glassbox.report.plotting import show_ct
from glassbox.studies.invariances.config import FULL, LOW, METHOD_NAMES, NETWORKS, WINDOW_HU
from glassbox.studies.invariances.ct_data import ChapterData
from glassbox.studies.invariances.denoisers import DenoisingComparison
from glassbox.studies.invariances.probes import ProbeResult
from glassbox.studies.invariances.study import InvarianceResult

# --- figures ---------------------------------------------------------------------------------------------------------


def plot_denoising(comparison: DenoisingComparison, n_images: int = 3) -> Any:
    """The paper's Fig. 1 layout: one row per test slice, one column per image (abdomen window); mean PSNR and
    SSIM against the full-dose slice in the titles."""


    names = [k for k in ("low", "Chen", "Yang", "full") if k in comparison.images]
    n_images = min(n_images, len(comparison.images["full"]))
    fig, axes = plt.subplots(n_images, len(names), figsize=(2.4 * len(names), 2.4 * n_images), squeeze=False)
    for c, name in enumerate(names):
        title = METHOD_NAMES[name]
        if name in comparison.per_slice:
            q = comparison.per_slice[name]
            title += f"\n{np.mean(q['psnr']):.1f} dB, SSIM {np.mean(q['ssim']):.3f}"
        for r in range(n_images):
            show_ct(axes[r, c], comparison.images[name][r], title if r == 0 else "", window=WINDOW_HU)
    fig.tight_layout()
    return fig


def plot_vae(data: ChapterData, vaes: Mapping[str, VAE], n_images: int = 4) -> Any:
    """Analysed test patches and their reconstructions ``D(E(.))`` by each VAE (abdomen window)."""


    k = min(n_images, data.test_low.shape[0])
    rows = [("x", data.test_low)] + ([("D(E(x))", vaes[LOW].reconstruct(data.test_low[:k]))] if LOW in vaes else [])
    if FULL in vaes:
        rows += [("y", data.test_full), ("D_y(E_y(y))", vaes[FULL].reconstruct(data.test_full[:k]))]
    fig, axes = plt.subplots(len(rows), k, figsize=(2.0 * k, 2.0 * len(rows)), squeeze=False)
    for r, (name, images) in enumerate(rows):
        with torch.no_grad():
            hu = lowdose_ct.denormalize(images[:k, 0].detach().cpu()).numpy()
        for c in range(k):
            show_ct(axes[r, c], hu[c], name if c == 0 else "", window=WINDOW_HU)
    fig.tight_layout()
    return fig


def plot_nps(comparison: DenoisingComparison, level: float = 0.95) -> Any:
    """Radial noise power spectra of the low-dose input, both outputs, the warm-up generator and the full-dose
    image (mean over test slices with a bootstrap band), and each one's NPS mean frequency with its interval."""

    if comparison.nps_frequencies is None:
        raise InvarianceError("no noise power spectra: they need a second scan of the test patients (simulated data)")
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6), gridspec_kw={"width_ratios": [1.6, 1]})
    rng = np.random.default_rng(0)
    colours = {"low": "0.6", "Chen": "C0", "Yang": "C3", "warmup": "C1", "full": "k"}
    names = [k for k in ("low", "Chen", "warmup", "Yang", "full") if k in comparison.nps_radial]
    for name in names:
        per = comparison.nps_radial[name]
        draws = np.stack([per[rng.integers(0, len(per), len(per))].mean(0) for _ in range(400)])
        lo, hi = np.quantile(draws, [(1 - level) / 2, (1 + level) / 2], axis=0)
        left.plot(comparison.nps_frequencies, per.mean(0), color=colours[name], label=METHOD_NAMES[name],
                  ls="--" if name == "warmup" else "-")
        left.fill_between(comparison.nps_frequencies, lo, hi, color=colours[name], alpha=0.2, lw=0)
    left.set(yscale="log", xlabel="spatial frequency (1/mm)", ylabel="NPS (HU² mm²)",
             title="noise power spectrum (difference of two scans)")
    left.legend(fontsize=8)
    for y, name in enumerate(names):
        boot = comparison.nps_bootstrap[name]
        lo, hi = np.quantile(boot, [(1 - level) / 2, (1 + level) / 2])
        mean = float(np.mean(comparison.nps_mean_frequency[name]))
        right.errorbar(mean, y, xerr=[[mean - lo], [hi - mean]], fmt="o", color=colours[name], capsize=3)
    right.set(yticks=range(len(names)), yticklabels=[METHOD_NAMES[n] for n in names], xlabel="NPS mean frequency (1/mm)",
              title=f"texture ({level:.0%} bootstrap over slices)")
    right.axvline(float(np.mean(comparison.nps_mean_frequency["full"])), color="k", lw=0.8, ls=":")
    fig.tight_layout()
    return fig


def plot_spreads(result: InvarianceResult, level: float = 0.95) -> Any:
    """Spread minus floor against the layer per network (interval over images), with the VAE's reconstruction
    RMSE on the same images and the no-information level for scale."""

    fig, axes = plt.subplots(1, len(NETWORKS), figsize=(9, 3.3), sharey=True)
    floor = result.floor(LOW)
    vae = float(result.vae_rmse(LOW).mean())
    for ax, network in zip(axes, NETWORKS):
        rows = [r for r in result.probes if r.probe.network == network and r.probe.domain == LOW]
        layers = [r.probe.layer for r in rows]
        stats = [spread.excess_over_floor(r.spread_hu, floor.spread_hu, level) for r in rows]
        means = np.array([s[0] for s in stats])
        ax.errorbar(layers, means, yerr=[means - [s[1] for s in stats], [s[2] for s in stats] - means], fmt="o-",
                    capsize=3, label="spread − floor")
        ax.axhline(0.0, color="k", lw=0.8)
        ax.axhline(vae, color="C2", ls="--", label="VAE RMSE (same patches)")
        ax.axhline(rows[0].prior_spread_hu - float(np.mean(floor.spread_hu)), color="gray", ls=":",
                   label="no information − floor")
        ax.set(xlabel="layer", xticks=layers, title=f"{network}'s network")
    axes[0].set_ylabel("HU (window)")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    return fig


def _figure_rows(title: str, header: Mapping[str, np.ndarray], rows: Sequence[ProbeResult], index: int,
                 std_max: float) -> Any:


    k = max(r.shown.shape[1] for r in rows)
    n_cols = max(k + 1, len(header))
    fig, axes = plt.subplots(len(rows) + 1, n_cols, figsize=(1.7 * n_cols, 1.75 * (len(rows) + 1)), squeeze=False)
    for ax in axes.ravel():
        ax.set_axis_off()
    for c, (name, image) in enumerate(header.items()):
        show_ct(axes[0, c], image, name, window=WINDOW_HU)
    handle = None
    for r, result in enumerate(rows, start=1):
        for c in range(result.shown.shape[1]):
            show_ct(axes[r, c], result.shown[index, c], f"sample {c + 1}" if r == 1 else "", window=WINDOW_HU)
        handle = axes[r, n_cols - 1].imshow(result.std_maps[index], cmap="inferno", vmin=0, vmax=std_max)
        axes[r, n_cols - 1].set_title("std over samples" if r == 1 else "", fontsize=9)
        axes[r, 0].text(-0.08, 0.5, result.probe.label, transform=axes[r, 0].transAxes, rotation=90, ha="right",
                        va="center", fontsize=8)
    if handle is not None:
        fig.colorbar(handle, ax=list(axes[1:, n_cols - 1]), fraction=0.08, pad=0.04, label="HU")
    fig.suptitle(title, fontsize=10)
    return fig


def invariance_figure(result: InvarianceResult, network: str, index: int) -> Any:
    """The paper's Fig. 2 layout for analysed patch ``index``: x, y, D(E(x)), f(x); then the floor and each
    analysed layer: shown samples and the pixel-wise standard deviation over all samples (HU, window)."""
    net, vae = result.nets.by_name()[network], result.vaes[LOW]
    x = result.data.test_low[index:index + 1]
    device = next(net.parameters()).device
    with torch.no_grad():
        header = {"x (low dose)": x, "y (full dose)": result.data.test_full[index:index + 1],
                  "D(E(x)) (VAE)": vae.reconstruct(x.to(device)).cpu(), "f(x)": net(x.to(device)).cpu()}
    header = {k: lowdose_ct.denormalize(v[0, 0]).numpy() for k, v in header.items()}
    rows = [result.floor(LOW)] + [r for r in result.probes if r.probe.network == network and r.probe.domain == LOW]
    std_max = max(float(r.std_maps[index].max()) for r in result.probes if r.probe.domain == LOW)
    return _figure_rows(f"{network}'s network, analysed patch {index + 1} ({result.config.n_samples} samples per row)",
                        header, rows, index, std_max)


def target_figure(result: InvarianceResult, index: int) -> Any:
    """Invariances in the target domain (the slides): full-dose samples given the output of each network, beside
    the full-dose floor (samples given y itself)."""
    vae = result.vaes[FULL]
    y = result.data.test_full[index:index + 1]
    x = result.data.test_low[index:index + 1]
    device = next(vae.parameters()).device
    with torch.no_grad():
        header = {"x (low dose)": x, "y (full dose)": y, "D_y(E_y(y))": vae.reconstruct(y.to(device)).cpu()}
        header |= {f"f(x), {n}": net(x.to(device)).cpu() for n, net in result.nets.by_name().items()}
    header = {k: lowdose_ct.denormalize(v[0, 0]).numpy() for k, v in header.items()}
    rows = [r for r in result.probes if r.probe.domain == FULL]
    std_max = max(float(r.std_maps[index].max()) for r in rows)
    return _figure_rows(f"target domain, analysed patch {index + 1}: full-dose images with the same output", header,
                        rows, index, std_max)
