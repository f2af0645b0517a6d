"""Activations of named layers of any ``nn.Module``, streamed over a data loader, in three reductions.

A forward hook on each named layer (names as in ``model.named_modules()``) captures its output while the
loader is streamed through the model under ``torch.no_grad()`` and in eval mode (the modules' train/eval
flags are restored afterwards). A layer output of shape B x C x H x W (any number of spatial dims, or
none) is reduced per batch to rows of a matrix:

- ``flatten``   -- one row per sample, C*H*W columns (channel-major, as ``Tensor.flatten(1)``);
- ``mean``      -- one row per sample, C columns: the spatial mean ("GAP", Morcos et al. 2018);
- ``positions`` -- one row per sample *and* spatial position, C columns (Raghu et al.'s same-layer
  convention; google/svcca tutorial 002's "fold space into data points").

:func:`extract` keeps the rows (preallocated once, no concatenation copy). For ``positions`` at full
resolution that matrix is too big to keep (2604 x 512 x 512 x 64 floats is 175 GB), so
:func:`stream_cross_moments` accumulates only the float64 second moments of a pair of layers (two
trials, or two layers of one network), which give CKA, CCA, SVCCA, PWCCA and Procrustes exactly
(:class:`glassbox.measure.similarity.CrossMoments`). :func:`stream_minibatch_cka` gives minibatch CKA of
``flatten`` features without keeping them.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, Literal

import torch
from torch import nn

from glassbox.core.repro import resolve_device
from glassbox.measure.similarity import CrossMoments, MinibatchCKA, Similarity

Reduction = Literal["flatten", "mean", "positions"]
REDUCTIONS: tuple[str, ...] = ("flatten", "mean", "positions")
LayerPair = str | tuple[str, str]
_POSITION_ROWS = 1 << 18  # rows per chunk when streaming positions into the moments


class FeatureExtractionError(ValueError):
    """Bad input to feature extraction (unknown reduction, unusable batch or layer output)."""


class LayerNotFoundError(FeatureExtractionError, KeyError):
    """A requested layer name that the model does not have; the message lists the valid names."""

    def __str__(self) -> str:  # KeyError would print the repr of the message
        return str(self.args[0])


def layer_names(model: nn.Module) -> list[str]:
    """Names of every submodule, in ``named_modules`` order: the valid ``layers`` arguments."""
    return [name for name, _ in model.named_modules() if name]


def _check_reduction(reduction: str) -> None:
    if reduction not in REDUCTIONS:
        raise FeatureExtractionError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")


def reduce_activation(a: torch.Tensor, reduction: Reduction) -> torch.Tensor:
    """Rows of a B x C x ... layer output under ``reduction`` (``mean`` is computed in float64)."""
    _check_reduction(reduction)
    if a.ndim < 2:
        raise FeatureExtractionError(f"a layer output must be B x C x ..., got shape {tuple(a.shape)}")
    if a.ndim == 2:
        return a
    if reduction == "flatten":
        return a.reshape(a.shape[0], -1)
    if reduction == "mean":
        return a.mean(dim=tuple(range(2, a.ndim)), dtype=torch.float64)
    return a.movedim(1, -1).reshape(-1, a.shape[1])


def default_input(batch: Any) -> torch.Tensor:
    """The model input in a batch: the batch itself if it is a tensor, else its first element."""
    if isinstance(batch, torch.Tensor):
        return batch
    if isinstance(batch, (tuple, list)) and batch and isinstance(batch[0], torch.Tensor):
        return batch[0]
    raise FeatureExtractionError(f"cannot find the model input in a batch of type {type(batch).__name__}; "
                                 "pass input_fn=lambda batch: ... that returns the input tensor")


def _resolve_layers(model: nn.Module, names: Iterable[str], which: str = "model") -> dict[str, nn.Module]:
    modules = dict(model.named_modules())
    missing = [n for n in names if n not in modules]
    if missing:
        raise LayerNotFoundError(f"{which} has no layer(s) {missing}; valid names are {layer_names(model)}")
    return {n: modules[n] for n in names}


def _device_for(model: nn.Module, device: str | torch.device | None) -> torch.device:
    """``device`` (the model is moved there), else the device of the model's parameters."""
    if device is not None:
        dev = resolve_device(device)
        model.to(dev)
        return dev
    for p in model.parameters():
        return p.device
    return torch.device("cpu")


@contextmanager
def _capturing(model: nn.Module, layers: Sequence[str], which: str = "model") -> Iterator[dict[str, torch.Tensor]]:
    """Hooks that store each layer's latest output; eval mode inside, train flags restored after."""
    modules = _resolve_layers(model, layers, which)
    captured: dict[str, torch.Tensor] = {}
    flags = {m: m.training for m in model.modules()}

    def hook_for(name: str) -> Callable[..., None]:
        def hook(_module: nn.Module, _inputs: Any, output: Any) -> None:
            if not isinstance(output, torch.Tensor):
                raise FeatureExtractionError(f"layer {name!r} of the {which} returns {type(output).__name__}, "
                                             "not a tensor; hook a module that returns one")
            captured[name] = output.detach()
        return hook

    handles = [m.register_forward_hook(hook_for(n)) for n, m in modules.items()]
    model.eval()
    try:
        yield captured
    finally:
        for h in handles:
            h.remove()
        for m, flag in flags.items():
            m.training = flag


def _batches(loader: Iterable[Any], input_fn: Callable[[Any], torch.Tensor], device: torch.device,
             max_batches: int | None) -> Iterator[torch.Tensor]:
    for i, batch in enumerate(loader):
        if max_batches is not None and i >= max_batches:
            return
        yield input_fn(batch).to(device)


class _RowBuffer:
    """Rows appended batch by batch into one preallocated tensor (grown by doubling if needed)."""

    def __init__(self, capacity: int | None, dtype: torch.dtype):
        self.capacity, self.dtype = capacity, dtype
        self.data: torch.Tensor | None = None
        self.rows = 0

    def append(self, rows: torch.Tensor) -> None:
        rows = rows.to(device="cpu", dtype=self.dtype)
        if self.data is None:
            cap = max(self.capacity or 0, rows.shape[0])
            self.data = torch.empty((cap, *rows.shape[1:]), dtype=self.dtype)
        if self.data.shape[1:] != rows.shape[1:]:
            raise FeatureExtractionError(f"a layer's feature size changed between batches: "
                                         f"{tuple(self.data.shape[1:])} then {tuple(rows.shape[1:])}")
        end = self.rows + rows.shape[0]
        if end > self.data.shape[0]:
            grown = torch.empty((max(end, 2 * self.data.shape[0]), *rows.shape[1:]), dtype=self.dtype)
            grown[:self.rows] = self.data[:self.rows]
            self.data = grown
        self.data[self.rows:end] = rows
        self.rows = end

    def result(self) -> torch.Tensor:
        if self.data is None:
            raise FeatureExtractionError("the loader yielded no batch")
        return self.data if self.rows == self.data.shape[0] else self.data[:self.rows].clone()


def _expected_samples(loader: Iterable[Any], n_samples: int | None, max_batches: int | None) -> int | None:
    if n_samples is not None:
        return n_samples
    if max_batches is not None:
        return None
    try:  # a DataLoader's dataset; any other iterable grows its buffer as batches arrive
        return len(loader.dataset)  # type: ignore[attr-defined]
    except (AttributeError, TypeError):
        return None


def extract(model: nn.Module, loader: Iterable[Any], layers: str | Sequence[str], reduction: Reduction = "mean",
            *, device: str | torch.device | None = None, input_fn: Callable[[Any], torch.Tensor] = default_input,
            dtype: torch.dtype = torch.float32, n_samples: int | None = None,
            max_batches: int | None = None) -> dict[str, torch.Tensor]:
    """Reduced activations of ``layers`` over the whole loader, as CPU tensors ``{layer: rows x D}``.

    ``device`` None runs on the model's device (else the model is moved there). ``dtype`` is the storage
    type (float16 halves the memory of huge ``flatten`` features). ``n_samples`` (default: the size of
    ``loader.dataset``) sizes the preallocated output; ``max_batches`` stops early.
    """
    _check_reduction(reduction)
    names = [layers] if isinstance(layers, str) else list(layers)
    if not names:
        raise FeatureExtractionError("layers is empty; name at least one layer")
    if len(set(names)) != len(names):
        raise FeatureExtractionError(f"layers names a layer twice: {names}")
    dev = _device_for(model, device)
    expected = _expected_samples(loader, n_samples, max_batches)
    buffers: dict[str, _RowBuffer] = {}
    with _capturing(model, names) as captured, torch.no_grad():
        for inputs in _batches(loader, input_fn, dev, max_batches):
            captured.clear()
            model(inputs)
            for name in names:
                if name not in captured:
                    raise FeatureExtractionError(f"layer {name!r} was not called in the forward pass")
                out = captured[name]
                rows = reduce_activation(out, reduction)
                if name not in buffers:
                    per_sample = rows.shape[0] // out.shape[0]
                    buffers[name] = _RowBuffer(None if expected is None else expected * per_sample, dtype)
                buffers[name].append(rows)
            captured.clear()
    if not buffers:
        raise FeatureExtractionError("the loader yielded no batch")
    return {name: buffers[name].result() for name in names}


def _pair_keys(layers: LayerPair | Sequence[LayerPair]) -> dict[LayerPair, tuple[str, str]]:
    items = [layers] if isinstance(layers, (str, tuple)) else list(layers)
    if not items:
        raise FeatureExtractionError("layers is empty; name at least one layer (or a pair of layers)")
    keys: dict[LayerPair, tuple[str, str]] = {}
    for item in items:
        if isinstance(item, str):
            keys[item] = (item, item)
        elif isinstance(item, tuple) and len(item) == 2 and all(isinstance(s, str) for s in item):
            keys[item] = item
        else:
            raise FeatureExtractionError(f"a layer must be a name or a (name_in_x, name_in_y) pair, got {item!r}")
    return keys


def _paired_outputs(model_x: nn.Module, model_y: nn.Module, loader: Iterable[Any],
                    pairs: Mapping[LayerPair, tuple[str, str]], device: str | torch.device | None,
                    input_fn: Callable[[Any], torch.Tensor], max_batches: int | None
                    ) -> Iterator[dict[LayerPair, tuple[torch.Tensor, torch.Tensor]]]:
    """Per batch, the raw outputs of every (x layer, y layer) pair; one forward if the models are the same."""
    dev = _device_for(model_x, device)
    if model_y is not model_x:
        model_y.to(dev)
    names_x = sorted({p[0] for p in pairs.values()})
    names_y = sorted({p[1] for p in pairs.values()})
    same = model_y is model_x
    with _capturing(model_x, sorted(set(names_x) | (set(names_y) if same else set())), "model_x") as cap_x, \
            _capturing(model_y, names_y, "model_y") if not same else _nullcontext(cap_x) as cap_y, \
            torch.no_grad():
        for inputs in _batches(loader, input_fn, dev, max_batches):
            cap_x.clear()
            cap_y.clear()
            model_x(inputs)
            if not same:
                model_y(inputs)
            outputs = {}
            for key, (lx, ly) in pairs.items():
                if lx not in cap_x or ly not in cap_y:
                    raise FeatureExtractionError(f"layer pair {key!r} was not called in the forward pass")
                outputs[key] = (cap_x[lx], cap_y[ly])
            yield outputs
            cap_x.clear()
            cap_y.clear()


@contextmanager
def _nullcontext(value: Any) -> Iterator[Any]:
    yield value


def stream_cross_moments(model_x: nn.Module, model_y: nn.Module, loader: Iterable[Any],
                         layers: LayerPair | Sequence[LayerPair], reduction: Literal["positions", "mean"] = "positions",
                         *, device: str | torch.device | None = None,
                         input_fn: Callable[[Any], torch.Tensor] = default_input, max_batches: int | None = None,
                         fourth_moments: bool = True) -> dict[LayerPair, CrossMoments]:
    """Float64 cross moments of paired layers of two models (or one) over the loader, without keeping rows.

    ``layers``: a name (same in both models), a ``(name_in_x, name_in_y)`` pair, or a list of them; the
    result is keyed the same way. Call ``.linear_cka()``, ``.cca()``, ``.svcca()``, ``.pwcca()`` or
    ``.procrustes()`` on each value. ``positions`` needs equal spatial sizes in a pair.
    ``fourth_moments=False`` skips the terms only the debiased CKA needs.
    """
    if reduction not in ("positions", "mean"):
        raise FeatureExtractionError(f"streamed moments support 'positions' or 'mean', got {reduction!r}; for "
                                     "'flatten' use extract + glassbox.measure.similarity.linear_gram, or "
                                     "stream_minibatch_cka")
    pairs = _pair_keys(layers)
    moments: dict[LayerPair, CrossMoments] = {}
    for outputs in _paired_outputs(model_x, model_y, loader, pairs, device, input_fn, max_batches):
        for key, (ox, oy) in outputs.items():
            if reduction == "positions" and ox.shape[2:] != oy.shape[2:]:
                raise FeatureExtractionError(
                    f"'positions' pairs rows position by position, but layer pair {key!r} has spatial sizes "
                    f"{tuple(ox.shape[2:])} and {tuple(oy.shape[2:])}; use reduction='mean'")
            if key not in moments:
                moments[key] = CrossMoments(ox.shape[1], oy.shape[1], device=ox.device, reduction=reduction,
                                            fourth_moments=fourth_moments)
            per_chunk = max(1, _POSITION_ROWS // max(1, ox[0, 0].numel()))
            for start in range(0, ox.shape[0], per_chunk):  # a few samples at a time: bounded float64 chunks
                moments[key].update(reduce_activation(ox[start:start + per_chunk], reduction),
                                    reduce_activation(oy[start:start + per_chunk], reduction))
    if not moments:
        raise FeatureExtractionError("the loader yielded no batch")
    return moments


def stream_minibatch_cka(model_x: nn.Module, model_y: nn.Module, loader: Iterable[Any],
                         layers: LayerPair | Sequence[LayerPair], reduction: Reduction = "flatten", *,
                         device: str | torch.device | None = None,
                         input_fn: Callable[[Any], torch.Tensor] = default_input,
                         max_batches: int | None = None) -> dict[LayerPair, Similarity]:
    """Minibatch CKA (Nguyen et al. 2021) of paired layers, one loader batch per minibatch.

    A final batch of fewer than 4 samples is merged into the previous one, so no sample is dropped.
    ``positions`` is not offered: its rows within a batch are not independent samples.
    """
    if reduction not in ("flatten", "mean"):
        raise FeatureExtractionError(f"minibatch CKA supports 'flatten' or 'mean', got {reduction!r}")
    pairs = _pair_keys(layers)
    acc = {key: MinibatchCKA(reduction=reduction) for key in pairs}
    held: dict[LayerPair, tuple[torch.Tensor, torch.Tensor]] = {}
    for outputs in _paired_outputs(model_x, model_y, loader, pairs, device, input_fn, max_batches):
        for key, (ox, oy) in outputs.items():
            rx, ry = reduce_activation(ox, reduction), reduce_activation(oy, reduction)
            if key in held:  # one batch is held back so that a batch of < 4 samples can join its neighbour
                hx, hy = held.pop(key)
                if rx.shape[0] < 4 or hx.shape[0] < 4:
                    rx, ry = torch.cat([hx, rx]), torch.cat([hy, ry])
                else:
                    acc[key].update(hx, hy)
            held[key] = (rx, ry)
    for key, (rx, ry) in held.items():
        acc[key].update(rx, ry)
    return {key: a.result() for key, a in acc.items()}
