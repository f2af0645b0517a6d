"""The shared base of training configurations: fields declared and checked once, inherited by every config."""
from __future__ import annotations

import dataclasses
import importlib
import inspect
import pkgutil

import pytest

import glassbox
from glassbox.core.store import key_of
from glassbox.core.training_settings import TrainingSettings
from glassbox.models.cinn import CINNConfig
from glassbox.models.common import DenoiserError, InvarianceError
from glassbox.models.feature_nets import FeatureNetError
from glassbox.studies.kspace import KSpaceConfig
from glassbox.training.ct_denoisers import ChenConfig, YangConfig
from glassbox.training.loop import TrainConfig
from glassbox.training.restoration import RegressorTraining, RestorationTrainingError
from glassbox.training.segmentation import SegmentationTrainingError, SegTraining
from glassbox.training.tissue_features import FeatureAEConfig, FeatureNetConfig
from glassbox.training.unet_denoiser import DenoiserConfig
from glassbox.training.vae_cinn import VAEConfig

SETTINGS = {"epochs", "batch_size", "lr"}
# config -> (its error, (epochs, batch_size, lr) defaults): the defaults are the numbers the book was run with
CONFIGS = {
    TrainConfig: (ValueError, None),
    DenoiserConfig: (ValueError, (200, 8, 0.01)),
    ChenConfig: (DenoiserError, (10, 32, 1e-3)),
    YangConfig: (DenoiserError, (10, 32, 1e-5)),
    RegressorTraining: (RestorationTrainingError, (10, 8, 1e-3)),
    SegTraining: (SegmentationTrainingError, (15, 16, 3e-3)),
    VAEConfig: (InvarianceError, (10, 64, 1e-3)),
    CINNConfig: (InvarianceError, (10, 64, 5e-4)),
    FeatureNetConfig: (FeatureNetError, (6, 16, 2e-3)),
    FeatureAEConfig: (FeatureNetError, (4, 32, 2e-3)),
    KSpaceConfig: (ValueError, (8, 64, 1e-3)),
}
# configs with these fields that do not inherit the base yet
PENDING: set[str] = set()


def _library_dataclasses() -> dict[str, type]:
    found = {}
    for info in pkgutil.walk_packages(glassbox.__path__, "glassbox."):
        module = importlib.import_module(info.name)
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if cls.__module__ == module.__name__ and dataclasses.is_dataclass(cls):
                found[f"{cls.__module__}.{cls.__qualname__}"] = cls
    return found


@pytest.mark.parametrize(("field", "bad"), [("epochs", 0), ("epochs", 2.0), ("epochs", True), ("batch_size", -1),
                                            ("batch_size", None), ("lr", 0.0), ("lr", float("inf")), ("lr", "0.1")])
def test_base_rejects_bad_settings_naming_the_field(field, bad):
    with pytest.raises(ValueError, match=rf"^{field} must be a positive"):
        TrainingSettings(**{field: bad})


def test_base_defaults_are_qu_et_al_and_keyword_only():
    assert TrainingSettings() == TrainingSettings(epochs=200, batch_size=8, lr=0.01)
    with pytest.raises(TypeError):
        TrainingSettings(200)  # keyword-only: a positional number never lands in the wrong field


@pytest.mark.parametrize("config", list(CONFIGS), ids=lambda c: c.__name__)
def test_every_training_config_inherits_the_settings_and_raises_its_own_error(config):
    error, defaults = CONFIGS[config]
    assert issubclass(config, TrainingSettings)
    assert SETTINGS <= {f.name for f in dataclasses.fields(config)}
    assert config.error_type is error
    made = config(epochs=3)
    if defaults is not None:
        assert (config().epochs, config().batch_size, config().lr) == defaults
    for field, bad in (("epochs", 0), ("batch_size", 1.5), ("lr", -1e-3)):
        with pytest.raises(error, match=rf"^{field} must be"):
            dataclasses.replace(made, **{field: bad})
    # equal configs are equal, hash equally and have one store key; another epochs count is another key
    assert made == config(epochs=3) and hash(made) == hash(config(epochs=3))
    assert key_of("x", made) == key_of("x", config(epochs=3)) != key_of("x", config(epochs=4))


def test_train_config_still_requires_epochs():
    with pytest.raises(TypeError, match="epochs"):
        TrainConfig()


def test_seg_training_stays_positional():
    assert SegTraining(1, 4) == SegTraining(epochs=1, batch_size=4, lr=3e-3, cosine=False)


def test_every_library_config_with_training_settings_inherits_the_base():
    """Found by walking the package, so a new config that declares the three fields again fails here."""
    found = _library_dataclasses()
    assert {f"{c.__module__}.{c.__qualname__}" for c in CONFIGS} <= set(found)
    declaring = {name for name, cls in found.items() if SETTINGS <= {f.name for f in dataclasses.fields(cls)}}
    outside = {name for name in declaring if not issubclass(found[name], TrainingSettings)}
    assert {name.rsplit(".", 1)[1] for name in outside} == PENDING, (
        "a config declares epochs, batch_size and lr without inheriting TrainingSettings (or a pending one now "
        f"does: remove it from PENDING): {sorted(outside)}")
    assert {name for name in declaring if found[name] is not TrainingSettings} - outside == \
        {f"{c.__module__}.{c.__qualname__}" for c in CONFIGS}
