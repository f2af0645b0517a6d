"""Training the two CT denoisers of the invariances chapter: Chen's CNN and Yang's WGAN-VGG.

- :func:`train_chen` trains :class:`glassbox.models.chen_cnn.ChenCNN` with the L2 loss;
- :func:`train_wgan_vgg` trains :class:`glassbox.models.wgan_vgg.YangGenerator` against
  :class:`~glassbox.models.wgan_vgg.WGANCritic`: the WGAN-GP critic loss (lambda 10) and the generator loss
  ``-E[D(G(x))] + lambda_1 L_perc`` (lambda_1 = 0.1), with ``n_critic`` critic steps per generator step,
  checkpointed every epoch and resumed exactly;
- :func:`pretrained_chen` / :func:`pretrained_wgan_vgg` go through the artifact store.

Final non-linearities are dropped, as in Table I of seed 004 (the data are normalised; here network
units are ``(HU + 1000) / 1000``, :mod:`glassbox.data.lowdose_ct`).

**Perceptual loss.** Yang et al. compare ImageNet VGG-19 features (conv5_4). Those weights cannot be
downloaded here, so the default feature network is :class:`glassbox.models.feature_nets.FeatureNet`, trained
on our simulated CT for another task (:mod:`glassbox.training.tissue_features`); its deepest layer
``relu3_2`` plays conv5_4's part. This is a *VGG-free WGAN-VGG variant*. A user-supplied VGG-19 weights
file (torchvision's ``vgg19-dcbb9e9d.pth``) is accepted by path (:func:`perceptual_features`).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import Dataset

from glassbox.core import checks, dryrun, repro
from glassbox.core.progress import Progress
from glassbox.core.store import clean_orphans, get_or_compute, write_atomically
from glassbox.core.training_settings import TrainingSettings
from glassbox.models import feature_nets
from glassbox.models.chen_cnn import ChenCNN
from glassbox.models.common import DenoiserError, freeze, init_model
from glassbox.models.feature_nets import PerceptualFeatures
from glassbox.models.wgan_vgg import WGANCritic, YangGenerator
from glassbox.training import tissue_features
from glassbox.training.loop import History, _set_aside, checkpoint_files, epoch_order, fit, paired_loss
from glassbox.training.losses import (
    perceptual_loss,
    wgan_critic_loss,
    wgan_generator_loss,
)

WGAN_CHECKPOINT_FORMAT = 2
"""Version 2: every critic step and every generator step draws its own batch (:func:`wgan_step_batches`)."""


def perceptual_features(kind: str = "ct", *, featurenet_config: Any = None, seed: int = 0,
                        device: str | torch.device = "cpu", layers: Sequence[str] | None = None,
                        vgg19_weights: str | os.PathLike | None = None, progress: bool = True) -> PerceptualFeatures:
    """The feature network phi of the perceptual loss.

    ``kind="ct"``: :class:`glassbox.models.feature_nets.FeatureNet` trained on simulated CT (tissue classes),
    through the artifact store; input HU/1000, default layer ``relu3_2``. ``kind="vgg19"``: torchvision's
    ImageNet VGG-19 from ``vgg19_weights`` (a file the user supplies; never downloaded), default layer
    ``conv5_4`` as Yang et al.; input the HU range [-1024, 3071] mapped to [0, 1], then ImageNet mean/std.
    """
    if kind == "ct":
        config = featurenet_config if featurenet_config is not None else tissue_features.FeatureNetConfig()
        net, _ = tissue_features.pretrained_feature_net(config, seed=seed, device=device,
                                                   layers=tuple(layers or ("relu3_2",)), progress=progress)
        # network units u = (HU + 1000)/1000  ->  HU/1000 = u - 1
        return PerceptualFeatures(net, offset=1.0, scale=1.0).to(device)
    if kind == "vgg19":
        net = feature_nets.VGG19Features(vgg19_weights, layers=tuple(layers or ("conv5_4",)))
        # u -> HU = 1000 u - 1000 -> (HU + 1024) / 4096 = (u - (-0.024)) * 1000 / 4096
        return PerceptualFeatures(net, offset=-0.024, scale=1000.0 / 4096.0, clamp=(0.0, 1.0)).to(device)
    raise DenoiserError(f"perceptual feature kind must be 'ct' or 'vgg19', got {kind!r}")


@dataclass(frozen=True, kw_only=True)
class ChenConfig(TrainingSettings):
    """Training of Chen et al.'s CNN: L2 loss, Adam (the paper used SGD on 33x33 patches).

    Paper-protocol values are ldct-benchmark's tuned ones: Adam lr 1.584e-4, batch 68.
    """

    error_type = DenoiserError

    last_kernel: int = 5
    epochs: int = 10  # defaults of TrainingSettings' fields for this training
    batch_size: int = 32
    lr: float = 1e-3

    def __post_init__(self) -> None:
        super().__post_init__()
        if isinstance(self.last_kernel, bool) or not isinstance(self.last_kernel, int) or self.last_kernel < 1 \
                or self.last_kernel % 2 == 0:
            raise DenoiserError(f"last_kernel must be an odd positive integer, got {self.last_kernel!r}")


@dataclass(frozen=True, kw_only=True)
class YangConfig(TrainingSettings):
    """Training of WGAN-VGG. Paper: Adam lr 1e-5, betas (0.5, 0.9), batch 128, n_critic 4, lambda 10, lambda_1 0.1.

    ``critic_width`` 64 is the paper's; ``perceptual`` picks the feature network (see
    :func:`perceptual_features`), ``vgg19_weights`` is the path of a user-supplied VGG-19 file.
    ``pretrain_epochs`` (not in the paper; 0 = off) first fits the generator with the L2 loss, as SRGAN
    (Ledig et al. 2017) initialises its generator from an MSE-trained one: a short CPU run then starts the
    adversarial game from a sensible denoiser instead of from noise. ``pretrain_lr`` is its Adam rate.
    """

    error_type = DenoiserError

    epochs: int = 10  # defaults of TrainingSettings' fields for this training
    batch_size: int = 32
    lr: float = 1e-5
    betas: tuple[float, float] = (0.5, 0.9)
    n_critic: int = 4
    gp_weight: float = 10.0
    perceptual_weight: float = 0.1
    critic_width: int = 64
    perceptual: str = "ct"
    perceptual_layers: tuple[str, ...] | None = None
    vgg19_weights: str | None = None
    pretrain_epochs: int = 0
    pretrain_batch_size: int = 16
    pretrain_lr: float = 1e-3

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("n_critic", "critic_width"):
            checks.integer(getattr(self, name), name, error=DenoiserError)
        checks.integer(self.pretrain_epochs, "pretrain_epochs", minimum=0, error=DenoiserError)
        checks.positive_number(self.pretrain_lr, "pretrain_lr", error=DenoiserError)
        checks.integer(self.pretrain_batch_size, "pretrain_batch_size", error=DenoiserError)
        checks.positive_number(self.gp_weight, "gp_weight", allow_zero=True, error=DenoiserError)
        checks.positive_number(self.perceptual_weight, "perceptual_weight", allow_zero=True, error=DenoiserError)
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            raise DenoiserError(f"betas must be two numbers in [0, 1), got {self.betas!r}")
        if self.perceptual not in ("ct", "vgg19"):
            raise DenoiserError(f"perceptual must be 'ct' or 'vgg19', got {self.perceptual!r}")
        if self.perceptual == "vgg19" and not self.vgg19_weights:
            raise DenoiserError("perceptual='vgg19' needs vgg19_weights, the path of an ImageNet VGG-19 weights "
                                "file (torchvision's vgg19-dcbb9e9d.pth); Glassbox never downloads weights")


def train_chen(train_set: Dataset, config: ChenConfig = ChenConfig(), *, seed: int = 0,
               device: str | torch.device = "cpu", val_fn: Callable[[nn.Module], Mapping[str, float]] | None = None,
               checkpoint_dir: Path | str | None = None, progress: bool = True) -> tuple[ChenCNN, History]:
    """Train :class:`ChenCNN` with the L2 loss on ``(low, full)`` batches through :func:`glassbox.training.loop.fit`."""
    model = init_model(lambda: ChenCNN(config.last_kernel), init_seed=seed)
    history = fit(model, train_set, paired_loss(F.mse_loss), epochs=config.epochs, batch_size=config.batch_size,
                  optimizer=lambda p: torch.optim.Adam(p, lr=config.lr), data_seed=seed, device=device,
                  val_fn=val_fn, checkpoint_dir=checkpoint_dir, desc="Chen CNN (L2)", progress=progress,
                  fingerprint=dataclasses.asdict(config))
    return model, history


def _atomic_save(obj: Any, path: Path) -> None:
    """``torch.save`` through a fsync'd temporary file renamed into place (mode 0o666 minus the umask)."""
    write_atomically(path, lambda handle: torch.save(obj, handle))


_WGAN_KEYS = {"format", "run", "epoch", "generator", "critic", "opt_g", "opt_c", "history"}


def read_wgan_checkpoint(path: Path) -> dict[str, Any]:
    """Load and validate one WGAN-VGG checkpoint; any problem raises (ValueError or the loader's error)."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict) or not _WGAN_KEYS <= set(state):
        raise ValueError(f"not a WGAN-VGG checkpoint (expected keys {sorted(_WGAN_KEYS)})")
    if state["format"] != WGAN_CHECKPOINT_FORMAT:
        raise ValueError(f"checkpoint format {state['format']!r}, expected {WGAN_CHECKPOINT_FORMAT}")
    named = int(Path(path).stem.split("_")[-1])
    if state["epoch"] != named:
        raise ValueError(f"file name says epoch {named} but the content says {state['epoch']}")
    wgan_epochs = [e for e in state["history"] if e.get("phase") == "wgan"]
    if len(wgan_epochs) != state["epoch"]:
        raise ValueError(f"history has {len(wgan_epochs)} WGAN epochs for epoch {state['epoch']}")
    return state


def _latest_wgan_state(folder: Path, run_id: str, epochs: int) -> dict[str, Any] | None:
    """The newest readable checkpoint of run ``run_id`` in ``folder``; unreadable ones are set aside (with a
    :class:`~glassbox.training.loop.CheckpointWarning`) and the next older one is tried, as :func:`glassbox.training.loop.fit`
    does. A readable checkpoint of another run, or one beyond ``epochs``, is an error."""
    for _, path in checkpoint_files(folder):
        try:
            state = read_wgan_checkpoint(path)
        except Exception as exc:  # noqa: BLE001 - any unreadable checkpoint: set aside, try the next
            _set_aside(path, exc)
            continue
        if state["run"] != run_id:
            raise DenoiserError(f"checkpoint {path} belongs to another WGAN-VGG run (configuration, seed "
                                "or data differ); use another checkpoint_dir or delete it")
        if state["epoch"] > epochs:
            raise DenoiserError(f"checkpoint {path} is at epoch {state['epoch']}, beyond epochs={epochs}")
        return state
    return None


def _epoch_generator(seed: int, epoch: int, stream: int) -> torch.Generator:
    """A CPU generator that is a pure function of (seed, epoch, stream): resuming redraws the same numbers."""
    state = np.random.SeedSequence([int(seed), int(epoch), int(stream)]).generate_state(1, dtype=np.uint64)[0]
    return torch.Generator().manual_seed(int(state >> np.uint64(1)))


def _batch(dataset: Dataset, indices: Tensor) -> tuple[Tensor, Tensor]:
    items = [dataset[int(i)] for i in indices]
    return torch.stack([a for a, _ in items]), torch.stack([b for _, b in items])


def wgan_steps_per_epoch(size: int, batch_size: int, n_critic: int) -> int:
    """Generator steps in one WGAN-VGG epoch: one pass of batches shared by ``n_critic`` critic steps and one
    generator step each, ``floor(batches per pass / (n_critic + 1))`` (at least 1)."""
    batches = -(-checks.integer(size, "size") // checks.integer(batch_size, "batch_size"))
    return max(1, batches // (checks.integer(n_critic, "n_critic") + 1))


def wgan_step_batches(step: int, size: int, batch_size: int, n_critic: int, seed: int) -> tuple[list[Tensor], Tensor]:
    """Sample indices of generator step ``step`` (0-based): ``n_critic`` critic batches and one generator batch.

    As in Algorithm 1 of the WGAN-GP paper (and Yang et al.'s code), every critic iteration and the generator
    iteration draw a fresh batch. The batches come in order from a stream of passes over the data, pass ``k``
    in the order :func:`glassbox.training.loop.epoch_order` ``(size, seed, k)``, cut into ``batch_size``
    batches (the last of a pass may be smaller): a pure function of its arguments, so a resumed run draws
    the same batches.
    """
    step = checks.integer(step, "step", minimum=0)
    per_pass = -(-checks.integer(size, "size") // checks.integer(batch_size, "batch_size"))
    group = checks.integer(n_critic, "n_critic") + 1
    batches = []
    for g in range(step * group, (step + 1) * group):
        order = epoch_order(size, seed, g // per_pass + 1)
        j = g % per_pass
        batches.append(order[j * batch_size:(j + 1) * batch_size])
    return batches[:-1], batches[-1]


def train_wgan_vgg(train_set: Dataset, features: Callable[[Tensor], Sequence[Tensor]],
                   config: YangConfig = YangConfig(), *, seed: int = 0, device: str | torch.device = "cpu",
                   checkpoint_dir: Path | str | None = None, progress: bool = True,
                   on_warmup_done: Callable[[YangGenerator], None] | None = None
                   ) -> tuple[YangGenerator, WGANCritic, History]:
    """Train Yang et al.'s generator and critic (WGAN-GP + perceptual loss) on ``(low, full)`` patch pairs.

    Per generator step: ``n_critic`` critic steps, each on a fresh batch, then one generator step on another
    fresh batch (:func:`wgan_step_batches`); an epoch is :func:`wgan_steps_per_epoch` generator steps, about
    one pass over the data. Batches and gradient-penalty mixing weights are pure functions of the seed and
    the step; with ``checkpoint_dir`` both networks and optimisers are saved after every epoch and a restarted
    call resumes where it stopped, ending with the same weights as an uninterrupted run. ``pretrain_epochs``
    warm-up epochs of the generator (if any) with the L2 loss run first, through
    :func:`glassbox.training.loop.fit`; ``on_warmup_done(generator)`` then sees the warmed-up generator (to keep
    a copy: the adversarial epochs' effect is measured against it).
    """
    repro.ensure_pinned_threads()
    size = len(train_set)  # type: ignore[arg-type]
    if size < 1:
        raise DenoiserError("train_set is empty")
    sample_low, sample_full = train_set[0]
    if sample_low.shape != sample_full.shape or sample_low.ndim != 3 or sample_low.shape[1] != sample_low.shape[2]:
        raise DenoiserError(f"train_set must yield (low, full) square (1, p, p) patches, got {tuple(sample_low.shape)}")
    device = torch.device(device)
    patch = int(sample_low.shape[-1])
    generator = init_model(YangGenerator, init_seed=seed)
    critic = init_model(lambda: WGANCritic(patch, config.critic_width), init_seed=seed + 1)
    history = History()
    if config.pretrain_epochs:
        pre = fit(generator, train_set, paired_loss(F.mse_loss), epochs=config.pretrain_epochs,
                  batch_size=config.pretrain_batch_size, optimizer=lambda p: torch.optim.Adam(p, lr=config.pretrain_lr),
                  data_seed=seed + 7, device=device, desc="WGAN-VGG generator warm-up (L2)", progress=progress,
                  checkpoint_dir=Path(checkpoint_dir) / "pretrain" if checkpoint_dir is not None else None,
                  fingerprint=dataclasses.asdict(config))
        history.epochs = [{"phase": "pretrain", **e} for e in pre.epochs]
    if on_warmup_done is not None:
        on_warmup_done(generator)
    generator.to(device).train()
    critic.to(device).train()
    opt_g = torch.optim.Adam(generator.parameters(), lr=config.lr, betas=tuple(config.betas))
    opt_c = torch.optim.Adam(critic.parameters(), lr=config.lr, betas=tuple(config.betas))
    identity = {k: v for k, v in dataclasses.asdict(config).items() if k != "epochs"}  # more epochs = same run
    run_id = hashlib.sha256(json.dumps({"config": identity, "seed": seed, "size": size, "patch": patch},
                                       sort_keys=True, default=str).encode()).hexdigest()[:16]
    start = 0
    folder = Path(checkpoint_dir) / "wgan" if checkpoint_dir is not None else None
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)
        clean_orphans(folder)  # temporary files of a run killed while writing a checkpoint
        state = _latest_wgan_state(folder, run_id, config.epochs)
        if state is not None:
            generator.load_state_dict(state["generator"])
            critic.load_state_dict(state["critic"])
            opt_g.load_state_dict(state["opt_g"])
            opt_c.load_state_dict(state["opt_c"])
            history.epochs = [dict(e) for e in state["history"]]
            start = int(state["epoch"])
    steps_per_epoch = wgan_steps_per_epoch(size, config.batch_size, config.n_critic)
    bar = Progress(config.epochs * steps_per_epoch, "WGAN-VGG (critic + generator)", unit="step",
                   initial=start * steps_per_epoch, epochs=config.epochs, enabled=progress)
    try:
        for epoch in dryrun.steps(range(start + 1, config.epochs + 1), "WGAN-VGG epochs"):
            began = time.perf_counter()
            gp_generator = _epoch_generator(seed, epoch, stream=1)
            sums = {"critic_loss": 0.0, "wasserstein": 0.0, "adversarial": 0.0, "perceptual": 0.0}
            for step in dryrun.steps(range((epoch - 1) * steps_per_epoch, epoch * steps_per_epoch), "WGAN-VGG steps"):
                critic_batches, generator_batch = wgan_step_batches(step, size, config.batch_size, config.n_critic,
                                                                    seed)
                for indices in critic_batches:
                    low, full = (t.to(device) for t in _batch(train_set, indices))
                    with torch.no_grad():
                        fake = generator(low)
                    critic_loss = wgan_critic_loss(critic, full, fake, gp_generator, gp_weight=config.gp_weight)
                    opt_c.zero_grad(set_to_none=True)
                    critic_loss.backward()
                    opt_c.step()
                low, full = (t.to(device) for t in _batch(train_set, generator_batch))
                fake = generator(low)
                adversarial = wgan_generator_loss(critic, fake)
                perceptual = perceptual_loss(fake, full, features)
                loss = adversarial + config.perceptual_weight * perceptual
                opt_g.zero_grad(set_to_none=True)
                loss.backward()
                opt_g.step()
                with torch.no_grad():
                    wasserstein = critic(full).mean() - critic(fake.detach()).mean()
                weight = 1.0 / steps_per_epoch
                for name, value in (("critic_loss", critic_loss), ("wasserstein", wasserstein),
                                    ("adversarial", adversarial), ("perceptual", perceptual)):
                    sums[name] += float(value.detach()) * weight
                bar.update(1)
            if not all(np.isfinite(v) for v in sums.values()):
                raise FloatingPointError(f"WGAN-VGG losses became non-finite in epoch {epoch}: {sums}; "
                                         "lower the learning rate")
            record = {"phase": "wgan", "epoch": epoch, **sums, "seconds": time.perf_counter() - began}
            history.epochs.append(record)
            bar.end_epoch(epoch, record)
            if folder is not None:
                _atomic_save({"format": WGAN_CHECKPOINT_FORMAT, "run": run_id, "epoch": epoch,
                              "generator": generator.state_dict(), "critic": critic.state_dict(),
                              "opt_g": opt_g.state_dict(), "opt_c": opt_c.state_dict(), "history": history.epochs},
                             folder / f"epoch_{epoch:04d}.pt")
                for old in sorted(folder.glob("epoch_*.pt"))[:-2]:
                    old.unlink(missing_ok=True)
    finally:
        bar.close()
    generator.eval()
    critic.eval()
    return generator, critic, history


def chen_entry(config: ChenConfig, *, data_key: Mapping[str, Any], seed: int = 0) -> tuple[str, dict[str, Any]]:
    """The store entry name and key of :func:`pretrained_chen` (what a study's ``plan()`` lists)."""
    return "chen-cnn", {"config": config, "data": dict(data_key), "seed": seed}


def pretrained_chen(train_set: Dataset, config: ChenConfig, *, data_key: Mapping[str, Any], seed: int = 0,
                    device: str | torch.device = "cpu", progress: bool = True) -> tuple[ChenCNN, dict[str, Any]]:
    """Chen's CNN for ``(config, data_key, seed)`` from the artifact store (trained on first use).

    ``data_key`` must identify ``train_set`` by content (e.g. :func:`glassbox.studies.invariances.data_key`: the data
    configuration, its seed and, for real data, the pixels' fingerprint -- never a folder path).
    Returns the frozen model on ``device`` and the stored record (``state_dict``, ``history``).
    """
    def compute() -> dict[str, Any]:
        model, history = train_chen(train_set, config, seed=seed, device=device, progress=progress)
        return {"state_dict": {k: v.cpu() for k, v in model.state_dict().items()}, "history": history.epochs}

    name, key = chen_entry(config, data_key=data_key, seed=seed)
    record = get_or_compute(name, key, compute, seed=seed, device=device, progress=progress)
    model = ChenCNN(config.last_kernel)
    model.load_state_dict(record["state_dict"])
    return freeze(model).to(device), record


def wgan_vgg_entry(config: YangConfig, *, data_key: Mapping[str, Any], featurenet_config: Any = None,
                   seed: int = 0) -> tuple[str, dict[str, Any]]:
    """The store entry name and key of :func:`pretrained_wgan_vgg` (what a study's ``plan()`` lists)."""
    return "wgan-vgg", {"config": config, "data": dict(data_key), "seed": seed, "featurenet": featurenet_config}


def pretrained_wgan_vgg(train_set: Dataset, config: YangConfig, *, data_key: Mapping[str, Any],
                        featurenet_config: Any = None, seed: int = 0, device: str | torch.device = "cpu",
                        progress: bool = True, features_factory: Callable[[], Any] | None = None
                        ) -> tuple[YangGenerator, dict[str, Any]]:
    """Yang's WGAN-VGG generator for ``(config, data_key, seed)`` from the artifact store (trained on first use).

    Returns the frozen generator on ``device`` and the stored record (``state_dict``, ``history`` and, after
    an L2 warm-up, ``warmup_state_dict``: the generator before its adversarial epochs). ``features_factory``
    (optional) builds the perceptual feature network instead of :func:`perceptual_features`; the caller must
    then pass in ``featurenet_config`` whatever identifies that network, since it is part of the store key.
    """
    def compute() -> dict[str, Any]:
        if features_factory is not None:
            features = features_factory()
        else:
            features = perceptual_features(config.perceptual, featurenet_config=featurenet_config, seed=seed,
                                           device=device, layers=config.perceptual_layers,
                                           vgg19_weights=config.vgg19_weights, progress=progress)
        warmup: dict[str, Tensor] = {}

        def keep_warmup(net: YangGenerator) -> None:
            warmup.update({k: v.detach().cpu().clone() for k, v in net.state_dict().items()})

        generator, _, history = train_wgan_vgg(train_set, features, config, seed=seed, device=device,
                                               progress=progress, on_warmup_done=keep_warmup)
        return {"state_dict": {k: v.cpu() for k, v in generator.state_dict().items()}, "history": history.epochs,
                "warmup_state_dict": warmup or None}

    name, key = wgan_vgg_entry(config, data_key=data_key, featurenet_config=featurenet_config, seed=seed)
    record = get_or_compute(name, key, compute, seed=seed, device=device, progress=progress)
    model = YangGenerator()
    model.load_state_dict(record["state_dict"])
    return freeze(model).to(device), record
