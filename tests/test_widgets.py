"""glassbox.report.widgets: the static default figure, live redraws on control changes, and errors."""
import math

import ipywidgets
import matplotlib.pyplot as plt
import numpy as np
import pytest

from glassbox.data import degrade
from glassbox.measure import image_metrics
from glassbox.report import widgets


def _recording_draw(calls):
    def draw(strength: float, label: str) -> plt.Figure:
        calls.append((strength, label))
        figure, ax = plt.subplots()
        ax.set_title(f"{label} {strength:.2f}")
        return figure
    return draw


def test_static_figure_uses_the_defaults_and_controls_redraw_live():
    calls = []
    controls = {"strength": widgets.slider("s", 0.5, 0.0, 1.0, 0.1), "label": ipywidgets.Text(value="a")}
    result = widgets.interactive_figure(_recording_draw(calls), controls, display_now=False)
    assert calls == [(0.5, "a")]
    assert result.figure.axes[0].get_title() == "a 0.50"
    controls["strength"].value = 0.8                         # a reader moves the slider
    assert calls[-1] == (0.8, "a")
    controls["label"].value = "b"
    assert calls[-1] == (0.8, "b")
    assert result.values() == {"strength": 0.8, "label": "b"}
    assert result.box.children[-1] is result.output


def test_displaying_outside_a_kernel_works(capsys):
    widgets.interactive_figure(_recording_draw([]), {"strength": widgets.slider("s", 0.1, 0, 1, 0.1),
                                                     "label": ipywidgets.Text(value="x")})
    assert "Figure" in capsys.readouterr().out                 # plain-text fallback of the static figure


@pytest.mark.parametrize("call", [
    lambda: widgets.interactive_figure(lambda: plt.figure(), {}, display_now=False),
    lambda: widgets.interactive_figure(lambda x: plt.figure(), {"x": 3}, display_now=False),
    lambda: widgets.interactive_figure(lambda x: None, {"x": widgets.slider("x", 0, 0, 1, 0.1)}, display_now=False),
    lambda: widgets.slider("x", 2.0, 0.0, 1.0, 0.1),
])
def test_bad_wiring_raises(call):
    with pytest.raises(ValueError):
        call()


def _figure_text(figure: plt.Figure) -> str:
    return "\n".join(t.get_text() for ax in figure.axes for t in ax.texts)


def test_degradation_explorer_shows_the_metrics_of_its_default_degradation():
    rng = np.random.default_rng(0)
    reference = np.clip(np.cumsum(rng.standard_normal((40, 40)), axis=1) / 20 + 0.5, 0, 1)
    defaults = degrade.Degradation(noise=0.05, blur=1.0)
    explorer = widgets.degradation_explorer(reference, 1.0, defaults, seed=3, display_now=False)
    expected = image_metrics.restoration_metrics(degrade.degrade(reference, defaults, 3), reference, 1.0)
    text = _figure_text(explorer.figure)
    assert f"{expected['PSNR [dB]']:.4g}" in text and f"{expected['SSIM']:.4g}" in text
    for name in ("noise", "blur"):
        explorer.controls[name].value = 0.0
    redrawn = explorer.draw(**explorer.values())
    assert "inf" in _figure_text(redrawn)                    # no degradation left: PSNR is infinite
    assert math.isinf(image_metrics.psnr(degrade.degrade(reference, degrade.Degradation(), 3), reference, 1.0))
    plt.close("all")
