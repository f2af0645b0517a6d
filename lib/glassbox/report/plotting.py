"""Small plotting helpers shared by the chapters: CT display windows and image grids."""
from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np

# (level, width) in HU, the usual radiology display windows
WINDOWS: dict[str, tuple[float, float]] = {
    "abdomen": (40.0, 400.0),
    "liver": (60.0, 160.0),
    "bone": (400.0, 1800.0),
    "lung": (-600.0, 1500.0),
    "wide": (0.0, 2000.0),
}


def window_limits(window: str | tuple[float, float]) -> tuple[float, float]:
    """(vmin, vmax) of a named window or a (level, width) pair."""
    if isinstance(window, str):
        if window not in WINDOWS:
            raise ValueError(f"unknown window {window!r}; choose one of {sorted(WINDOWS)} or pass (level, width)")
        window = WINDOWS[window]
    level, width = window
    if width <= 0:
        raise ValueError(f"window width must be positive, got {width}")
    return level - width / 2, level + width / 2


def show_ct(ax: plt.Axes, image_hu: np.ndarray, title: str = "", window: str | tuple[float, float] = "abdomen"):
    """Draw one HU image in a display window, without axes."""
    vmin, vmax = window_limits(window)
    handle = ax.imshow(np.asarray(image_hu), cmap="gray", vmin=vmin, vmax=vmax, interpolation="nearest")
    ax.set_title(title, fontsize=9)
    ax.set_axis_off()
    return handle


def image_grid(images: Sequence[np.ndarray], titles: Sequence[str] | None = None, *, ncols: int | None = None,
               window: str | tuple[float, float] = "abdomen", size: float = 2.6, cmap: str | None = None,
               colorbar: bool = False) -> plt.Figure:
    """A grid of images; HU images use ``window`` unless ``cmap`` asks for a plain colour map."""
    images = list(images)
    if not images:
        raise ValueError("image_grid needs at least one image")
    titles = list(titles) if titles is not None else [""] * len(images)
    if len(titles) != len(images):
        raise ValueError(f"got {len(images)} images but {len(titles)} titles")
    ncols = ncols or len(images)
    nrows = int(np.ceil(len(images) / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols, size * nrows), squeeze=False)
    for ax, image, title in zip(axes.flat, images, titles):
        if cmap is None:
            handle = show_ct(ax, image, title, window)
        else:
            handle = ax.imshow(np.asarray(image), cmap=cmap, interpolation="nearest")
            ax.set_title(title, fontsize=9)
            ax.set_axis_off()
        if colorbar:
            fig.colorbar(handle, ax=ax, fraction=0.046, pad=0.04)
    for ax in list(axes.flat)[len(images):]:
        ax.set_axis_off()
    fig.tight_layout()
    return fig
