"""The k-space chapter's classifiers: their specs, building, training through the store, and :func:`plan`."""
from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import TensorDataset

from glassbox.core import dryrun
from glassbox.core.store import get_or_compute
from glassbox.core.tasks import Task
from glassbox.models.alexnet import SmallAlexNet
from glassbox.models.kspace_sampler import (
    FixedMaskSampler,
    KSpaceClassifier,
    KSpaceSampler,
    centre_mask,
    random_k_mask,
)
from glassbox.studies.kspace.cohorts import ExperimentData, _data_key, load_data
from glassbox.studies.kspace.config import KINDS, SIMULATED_ONLY, TRAIN_VENDORS, KSpaceConfig
from glassbox.training.loop import fit

# --------------------------------------------------------------------------------------------
# Models


@dataclass(frozen=True)
class ModelSpec:
    """One trained model: training vendor, mask kind, lines kept and training seed index."""

    vendor: str
    kind: str
    k: int
    repeat: int

    @property
    def label(self) -> str:
        return f"{self.vendor} {self.kind} k={self.k} seed {self.repeat}"


def model_specs(cfg: KSpaceConfig) -> list[ModelSpec]:
    """Every model of the chapter: per seed and vendor, full sampling, the learned mask at every rate and the
    centre and random masks at every baseline rate."""
    specs = []
    for repeat in range(cfg.n_seeds):
        for vendor in TRAIN_VENDORS:
            specs.append(ModelSpec(vendor, "full", cfg.size, repeat))
            specs += [ModelSpec(vendor, "learned", cfg.k(r), repeat) for r in cfg.rates]
            specs += [ModelSpec(vendor, kind, cfg.k(r), repeat) for kind in ("centre", "random")
                      for r in cfg.baseline_rates]
    return specs


def model_seeds(seed: int, spec: ModelSpec) -> dict[str, int]:
    """Independent seeds of one model (network init, data order, Gumbel noise, dropout, random mask,
    sampled-protocol draws, and the init and data order of the learned mask's final classifier), from
    ``SeedSequence(seed, vendor, kind, k, repeat)``."""
    entropy = [int(seed), TRAIN_VENDORS.index(spec.vendor), KINDS.index(spec.kind), int(spec.k), int(spec.repeat)]
    names = ("init", "data", "gumbel", "dropout", "mask", "eval", "classifier_init", "classifier_data")
    words = np.random.SeedSequence(entropy).generate_state(len(names), dtype=np.uint32)
    return {name: int(w) for name, w in zip(names, words)}


def _network(cfg: KSpaceConfig, seed: int) -> SmallAlexNet:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return SmallAlexNet(width=cfg.width, dropout=cfg.dropout)


def build_model(cfg: KSpaceConfig, spec: ModelSpec, seeds: Mapping[str, int]) -> KSpaceClassifier:
    """An untrained classifier; weights drawn from ``seeds['init']`` without touching the global RNG state."""
    if spec.kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {spec.kind!r}")
    if not 1 <= spec.k <= cfg.size:
        raise ValueError(f"k must be in [1, {cfg.size}], got {spec.k}")
    shape = (cfg.size, cfg.size)
    rate = spec.k / cfg.size
    if spec.kind == "learned":
        sampler: nn.Module = KSpaceSampler(shape, rate, mode="topk", temperature=cfg.temperature, seed=seeds["gumbel"])
    elif spec.kind == "centre":
        sampler = FixedMaskSampler(shape, centre_mask(cfg.size, rate), name="centre")
    elif spec.kind == "random":
        sampler = FixedMaskSampler(shape, random_k_mask(cfg.size, spec.k, seed=seeds["mask"]), name="random")
    else:
        sampler = FixedMaskSampler(shape, torch.ones(cfg.size), name="full")
    return KSpaceClassifier(sampler, _network(cfg, seeds["init"]))


def _bce(model: nn.Module, batch: Any) -> torch.Tensor:
    x, y = batch
    return nn.functional.binary_cross_entropy_with_logits(model(x), y)


@torch.no_grad()
def predict(model: KSpaceClassifier, images: np.ndarray, device: torch.device | str = "cpu",
            generator: torch.Generator | None = None, batch_size: int = 256) -> np.ndarray:
    """Logits of ``model`` in eval mode for (N, H, W) images: through its evaluation mask, or, with a
    ``generator``, through masks drawn as in training (one per image)."""
    model.eval().to(device)
    out = []
    for start in dryrun.steps(range(0, len(images), batch_size), "kspace predict"):
        x = torch.from_numpy(np.ascontiguousarray(images[start:start + batch_size, None], dtype=np.float32)).to(device)
        out.append((model(x) if generator is None else model.forward_sampled(x, generator)).float().cpu().numpy())
    scores = np.concatenate(out) if out else np.zeros(0, np.float32)
    return np.resize(scores, len(images)) if dryrun.active() else scores  # a dry run scores one batch


def train_model(cfg: KSpaceConfig, data: ExperimentData, spec: ModelSpec, seed: int = 0,
                device: torch.device | str = "cpu", progress: bool = False) -> dict[str, Any]:
    """Train one model on its vendor's training cohort and score it on every test set.

    Learned masks: the mask phase (``mask_epochs``: Gumbel top-k masks, network and logits trained end to
    end), the sampled-protocol scores of that network (``eval_draws`` drawn masks per test image, on the A
    and B test sets), then the mask frozen at its top-k and a fresh classifier trained on it for ``epochs``.
    Fixed masks: a classifier trained for ``epochs`` on the mask. Returns plain data for the store (spec,
    seeds, state_dict, history, ``scores`` per test set, ``sampled_scores`` (draws, N) for learned masks, the
    evaluation mask and what training used).
    """
    if spec.vendor not in TRAIN_VENDORS:
        raise ValueError(f"vendor must be one of {TRAIN_VENDORS}, got {spec.vendor!r}")
    seeds = model_seeds(seed, spec)
    model = build_model(cfg, spec, seeds)
    dataset = TensorDataset(*data.train[spec.vendor].tensors())
    learned = isinstance(model.sampler, KSpaceSampler)

    def optimizer(_params):
        groups = [{"params": list(model.net.parameters()), "lr": cfg.lr}]
        if learned and model.sampler.logits.requires_grad:
            groups.append({"params": [model.sampler.logits], "lr": cfg.logit_lr})
        return torch.optim.Adam(groups)

    common = dict(batch_size=cfg.batch_size, optimizer=optimizer, device=device, progress=progress)
    sampled: dict[str, np.ndarray] = {}
    record: dict[str, Any] = {"seen_in_training": True}
    cuda = [torch.device(device)] if torch.device(device).type == "cuda" else []
    with torch.random.fork_rng(devices=cuda):
        torch.manual_seed(seeds["dropout"])
        if learned:
            history = fit(model, dataset, _bce, epochs=cfg.mask_epochs, data_seed=seeds["data"],
                          desc=f"{spec.label} mask", **common).epochs
            sampler = model.sampler
            record = {"draw_count_range": list(sampler.draw_count_range), "n_train_masks": len(sampler.training_masks),
                      "seen_before_freeze": sampler.seen_in_training()}
            generator = torch.Generator().manual_seed(seeds["eval"])
            for name in TRAIN_VENDORS:
                draws = [predict(model, data.test[name].images, device, generator)
                         for _ in dryrun.steps(range(cfg.eval_draws), "kspace sampled draws")]
                sampled[name] = np.stack(draws * (cfg.eval_draws // len(draws)))  # a dry run: one draw, copied
            sampler.freeze()
            sampler.reset_record()
            model = KSpaceClassifier(sampler, _network(cfg, seeds["classifier_init"]))
            history += fit(model, dataset, _bce, epochs=cfg.epochs, data_seed=seeds["classifier_data"],
                           desc=spec.label, **common).epochs
            record["seen_in_training"] = sampler.seen_in_training()
            record["final_count_range"] = list(sampler.draw_count_range)
        else:
            history = fit(model, dataset, _bce, epochs=cfg.epochs, data_seed=seeds["data"], desc=spec.label,
                          **common).epochs
    scores = _score_test_sets(model, data, device)
    eval_units = model.sampler.mask().detach().cpu().reshape(cfg.size, -1).amax(dim=1).numpy()
    probabilities = (model.sampler.probabilities().detach().cpu().numpy() if learned else eval_units.copy())
    return {"spec": dataclasses.asdict(spec), "seeds": seeds, "history": history,
            "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
            "scores": scores, "sampled_scores": sampled, "eval_units": eval_units, "probabilities": probabilities,
            **record}


def _score_test_sets(model: KSpaceClassifier, data: ExperimentData, device: torch.device | str) -> dict[str, np.ndarray]:
    """Scores of ``model`` on every test set; a dry run scores the first and copies it to the others (every test set
    has the same shape)."""
    if not dryrun.active():
        return {name: predict(model, test.images, device) for name, test in data.test.items()}
    first, *rest = data.test
    scores = {first: predict(model, data.test[first].images, device)}
    for name in rest:
        dryrun.note("kspace test sets scored as copies")
        scores[name] = scores[first].copy()
    return scores


_DRY_RUN_MODELS: dict[str, dict[str, Any]] = {}
"""Models a dry run trained in this process, by :func:`_dry_run_shape`; only ever read in a dry run."""


def _dry_run_shape(cfg: KSpaceConfig, spec: ModelSpec, seed: int, device: torch.device | str) -> str:
    """What a model's shapes and memory depend on: the config and the mask kind (which code trains it), not the
    training vendor (both cohorts have the same shapes), the seed or the line count (a mask is a vector of
    ``size`` lines whatever ``k`` it keeps)."""
    return repr((cfg, int(seed), torch.device(device).type, spec.kind))


def _train_or_copy_in_dry_run(cfg: KSpaceConfig, data: Callable[[], ExperimentData], spec: ModelSpec, seed: int,
                              device: torch.device | str) -> dict[str, Any]:
    """In a dry run, the first model of each mask kind trains (one step per loop, :func:`_dry_run_shape`); a model
    that differs from one already tried only in its training vendor, seed or line count has the same shapes and
    memory and is a copy of it under its own spec and seeds (its mask keeps the tried model's lines), so that the
    paper profile's 180 models take a dry run of about a minute. Outside a dry run: :func:`train_model`."""
    if not dryrun.active():
        return train_model(cfg, data(), spec, seed, device)
    shape = _dry_run_shape(cfg, spec, seed, device)
    if shape not in _DRY_RUN_MODELS:
        _DRY_RUN_MODELS[shape] = train_model(cfg, data(), spec, seed, device)
        return _DRY_RUN_MODELS[shape]
    dryrun.note("kspace models copied (same shapes: other vendor, seed or k)")
    return {**_DRY_RUN_MODELS[shape], "spec": dataclasses.asdict(spec), "seeds": model_seeds(seed, spec)}


def _model_key(cfg: KSpaceConfig, spec: ModelSpec, seed: int, device: torch.device | str) -> dict[str, Any]:
    training = {name: getattr(cfg, name) for name in ("temperature", "width", "dropout", "mask_epochs", "epochs",
                                                        "batch_size", "lr", "logit_lr", "eval_draws")}
    return {"data": _data_key(cfg, seed), "training": training, "spec": dataclasses.asdict(spec),
            "device_type": torch.device(device).type}


def load_or_train(cfg: KSpaceConfig, spec: ModelSpec, seed: int, device: torch.device | str = "cpu",
                  data: ExperimentData | None = None, progress: bool = False) -> dict[str, Any]:
    """:func:`train_model` through the store (loads the data through the store when not given)."""
    def compute() -> dict[str, Any]:
        return _train_or_copy_in_dry_run(
            cfg, lambda: data if data is not None else load_data(cfg, seed, progress=False), spec, seed, device)

    return get_or_compute("kspace_model", _model_key(cfg, spec, seed, device), compute, seed=seed, device=device,
                          progress=progress)


def load_model(cfg: KSpaceConfig, entry: Mapping[str, Any]) -> KSpaceClassifier:
    """Rebuild a trained model (eval mode) from a :func:`train_model` result."""
    model = build_model(cfg, ModelSpec(**entry["spec"]), entry["seeds"])
    model.load_state_dict(entry["state_dict"])
    return model.eval()


def plan(config: KSpaceConfig, *, seed: int, device: torch.device | str = "cpu",
         data_dir: str | None = None) -> list[Task]:
    """Every store entry of the chapter: the simulated data, then each trained model (which loads the data)."""
    if data_dir is not None:
        raise ValueError(f"the kspace chapter runs on simulated data only: {SIMULATED_ONLY}")
    data = Task("kspace_data", _data_key(config, seed), run=partial(load_data, config, seed, False),
                label=f"kspace data (seed {seed})")
    models = [Task("kspace_model", _model_key(config, spec, seed, device),
                   run=partial(load_or_train, config, spec, seed, device), label=f"kspace model {spec.label}",
                   deps=(data.key,), gpu=True)
              for spec in model_specs(config)]
    return [data, *models]
