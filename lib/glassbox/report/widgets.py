"""Interactive figures that also leave a static figure behind (the Neuromatch pattern).

A built Jupyter Book has no Python kernel: an ipywidgets slider there shows its saved value but
cannot redraw anything. So :func:`interactive_figure` always does two things:

1. draws the figure with the controls' default values and displays it as an ordinary output, which
   the rendered book, papermill runs and CI keep;
2. displays the controls with an ``Output`` area below them that redraws the figure whenever a
   control changes, for readers who run the notebook live.

:func:`degradation_explorer` is the restoration chapter's instance: sliders for noise, blur, shift,
contrast and brightness, and a figure with the degraded image, its error, the local SSIM map and
all metrics of :mod:`glassbox.measure.image_metrics`.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from typing import Any

import ipywidgets
import matplotlib.pyplot as plt
import numpy as np
from IPython.display import display
from matplotlib.figure import Figure

from glassbox.data import degrade
from glassbox.measure import image_metrics

LIVE_NOTE = "Move a slider to redraw here; the figure above shows the default values."


class WidgetError(ValueError):
    """A control or draw function that cannot be wired into an interactive figure."""


def _display(obj: Any) -> None:
    display(obj)


def slider(description: str, value: float, low: float, high: float, step: float):
    """A float slider that reports only on release (each redraw can take a moment)."""
    if not low <= value <= high:
        raise WidgetError(f"slider {description!r}: value {value} is outside [{low}, {high}]")
    return ipywidgets.FloatSlider(value=value, min=low, max=high, step=step, description=description,
                                  continuous_update=False, readout_format=".3g",
                                  style={"description_width": "initial"})


@dataclass
class InteractiveFigure:
    """The static default figure, the controls, and the live output area (see :func:`interactive_figure`)."""

    draw: Callable[..., Figure]
    controls: dict[str, Any]
    figure: Figure
    output: Any
    box: Any

    def values(self) -> dict[str, Any]:
        return {name: control.value for name, control in self.controls.items()}

    def redraw(self, *_: Any) -> Figure:
        """Draw with the controls' current values into the live output area and return the figure."""
        figure = self.draw(**self.values())
        self.output.clear_output(wait=True)
        with self.output:
            _display(figure)
        plt.close(figure)
        return figure


def interactive_figure(draw: Callable[..., Figure], controls: Mapping[str, Any], *,
                       display_now: bool = True, columns: int = 3) -> InteractiveFigure:
    """Display ``draw(**defaults)`` as a static figure, then the controls with a live redraw area.

    ``controls`` maps ``draw``'s keyword names to ipywidgets value widgets (e.g. :func:`slider`);
    their current values are the defaults. ``display_now=False`` builds everything without
    displaying (for tests or custom layouts).
    """
    if not controls:
        raise WidgetError("controls must name at least one widget")
    for name, control in controls.items():
        if not hasattr(control, "value") or not hasattr(control, "observe"):
            raise WidgetError(f"control {name!r} must be an ipywidgets value widget, got {type(control).__name__}")
    figure = draw(**{name: control.value for name, control in controls.items()})
    if not isinstance(figure, Figure):
        raise WidgetError(f"draw must return a matplotlib Figure, got {type(figure).__name__}")
    output = ipywidgets.Output()
    with output:
        print(LIVE_NOTE)
    rows = [ipywidgets.HBox(list(controls.values())[i:i + columns]) for i in range(0, len(controls), columns)]
    box = ipywidgets.VBox([*rows, output])
    result = InteractiveFigure(draw=draw, controls=dict(controls), figure=figure, output=output, box=box)
    for control in controls.values():
        control.observe(result.redraw, names="value")
    if display_now:
        _display(figure)
        _display(box)
    plt.close(figure)
    return result


# --- the restoration-metrics explorer ------------------------------------------------------------

def draw_degradation(reference: np.ndarray, degradation: degrade.Degradation, data_range: float = 1.0,
                     seed: int = 0, title: str | None = None) -> Figure:
    """Reference, degraded image, absolute error, local SSIM map, and every metric in one figure."""
    degraded = degrade.degrade(reference, degradation, seed)
    table = image_metrics.restoration_metrics(degraded, reference, data_range)
    local = image_metrics.ssim_map(degraded, reference, data_range)
    figure, axes = plt.subplots(1, 5, figsize=(15, 3.4), gridspec_kw={"width_ratios": [1, 1, 1, 1, 0.9]})
    low, high = float(reference.min()), float(reference.min()) + data_range
    panels = [(reference, "reference", "gray", (low, high)), (degraded, "degraded", "gray", (low, high)),
              (np.abs(degraded - reference), "|error|", "magma", (0, 0.25 * data_range)),
              (local, "local SSIM", "viridis", (0, 1))]
    for ax, (image, name, cmap, (vmin, vmax)) in zip(axes, panels):
        shown = ax.imshow(image, cmap=cmap, vmin=vmin, vmax=vmax)
        ax.set_title(name)
        ax.axis("off")
        if name in ("|error|", "local SSIM"):
            figure.colorbar(shown, ax=ax, fraction=0.046, pad=0.02)
    axes[-1].axis("off")
    text = "\n".join(f"{name:<14}{value:>9.4g}" for name, value in table.items())
    axes[-1].text(0.0, 0.5, text, family="monospace", fontsize=10, va="center")
    settings = ", ".join(f"{f.name} {getattr(degradation, f.name):.3g}" for f in fields(degradation))
    figure.suptitle(title or settings, fontsize=10)
    figure.tight_layout()
    return figure


def degradation_explorer(reference: np.ndarray, data_range: float = 1.0,
                         defaults: degrade.Degradation = degrade.Degradation(noise=0.05, blur=1.0),
                         seed: int = 0, display_now: bool = True) -> InteractiveFigure:
    """Sliders for each :class:`glassbox.data.degrade.Degradation` field over the figure of :func:`draw_degradation`."""
    span = float(data_range)
    controls = {
        "noise": slider("noise σ", defaults.noise, 0.0, 0.3 * span, 0.005 * span),
        "blur": slider("blur σ [px]", defaults.blur, 0.0, 5.0, 0.1),
        "shift": slider("shift [px]", defaults.shift, 0.0, 5.0, 0.1),
        "gain": slider("contrast gain", defaults.gain, 0.0, 2.0, 0.05),
        "offset": slider("brightness", defaults.offset, -0.3 * span, 0.3 * span, 0.01 * span),
    }

    def draw(**values: float) -> Figure:
        return draw_degradation(reference, degrade.Degradation(**values), data_range, seed)

    return interactive_figure(draw, controls, display_now=display_now)
