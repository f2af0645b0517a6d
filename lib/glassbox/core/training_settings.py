"""The three settings every training in the library has: ``epochs``, ``batch_size``, ``lr``.

:class:`TrainingSettings` declares them once, says what they mean and checks them once; each training
configuration (:class:`glassbox.training.loop.TrainConfig`, the U-Net denoiser's, Chen's and Yang's, the
VAE's and the cINN's, ...) inherits it and adds its own fields. It lives in ``core`` because configurations
of the ``models`` layer (:class:`glassbox.models.cinn.CINNConfig`) use it too.

How a subclass is written (the dataclass rules on inheritance):

- the fields are keyword-only (``kw_only=True``), so a subclass may put fields without defaults anywhere and a
  positional call can never hand a subclass's first field to ``epochs``;
- a subclass whose defaults differ re-states only the default (``epochs: int = 10``); the re-stated field keeps
  its place and its meaning, and is positional when the subclass is not ``kw_only`` (:class:`SegTraining
  <glassbox.training.segmentation.SegTraining>` is called as ``SegTraining(epochs, batch_size, lr)``);
- a subclass that makes a field required writes ``epochs: int = field()``: a bare annotation would keep the
  inherited default, which stays a class attribute;
- a subclass with its own ``__post_init__`` calls ``super().__post_init__()`` first;
- ``error_type`` (a class attribute, not a field) is the ``ValueError`` subclass raised for a bad value, so a
  configuration reports its settings in the same error as its other fields.

A store key (:func:`glassbox.core.store.key_of`) serialises a configuration by field name with sorted keys, so
where a field is declared does not change the key.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from glassbox.core import checks

__all__ = ["TrainingSettings"]


@dataclass(frozen=True, kw_only=True)
class TrainingSettings:
    """Base of every training configuration; the defaults are Qu et al.'s recipe (200 epochs, batch 8, lr 0.01).

    ``epochs``: passes over the training set (a positive integer); ``batch_size``: samples per optimiser step
    (a positive integer); ``lr``: the optimiser's (peak) learning rate (a positive, finite number).
    """

    error_type: ClassVar[type[ValueError]] = ValueError

    epochs: int = 200
    batch_size: int = 8
    lr: float = 0.01

    def __post_init__(self) -> None:
        checks.integer(self.epochs, "epochs", error=self.error_type)
        checks.integer(self.batch_size, "batch_size", error=self.error_type)
        checks.positive_number(self.lr, "lr", error=self.error_type)
