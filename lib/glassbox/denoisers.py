"""The two CT denoisers whose invariances the ``invariances`` chapter reconstructs.

- :class:`ChenCNN`, Chen et al. (ISBI 2017): conv 9x9/64, ReLU, conv 3x3/32, ReLU, conv k x k/1, trained
  with L2. Seed 004's Table I lists the last kernel as 3x3; the journal version ("CNN-10") and the
  authors' benchmark code (ldct-benchmark) use 5x5, so ``last_kernel`` is a parameter with default 5.
- :class:`YangGenerator`, Yang et al. (IEEE TMI 2018, WGAN-VGG): eight 3x3 convolutions, seven with 32
  filters + ReLU and a last one with 1 filter; :class:`WGANCritic` is their critic (six 3x3 convolutions
  of widths w, w, 2w, 2w, 4w, 4w with stride 1/2 alternating, LeakyReLU, FC 1024, FC 1).
  :func:`train_wgan_vgg` minimises the WGAN-GP critic loss (lambda 10) and the generator loss
  ``-E[D(G(x))] + lambda_1 L_perc`` (lambda_1 = 0.1), with ``n_critic`` critic steps per generator step.

Final non-linearities are dropped, as in Table I of seed 004 (the data are normalised; here network
units are ``(HU + 1000) / 1000``, :mod:`glassbox.ctdata`).

**Perceptual loss.** Yang et al. compare ImageNet VGG-19 features (conv5_4). Those weights cannot be
downloaded here, so the default feature network is :class:`glassbox.featurenet.FeatureNet`, trained on our
simulated CT for another task (tissue classification); its deepest layer ``relu3_2`` plays conv5_4's part.
This is a *VGG-free WGAN-VGG variant*. A user-supplied VGG-19 weights file (torchvision's
``vgg19-dcbb9e9d.pth``) is accepted by path (:func:`perceptual_features`).

**Layers** are counted as in Table I of seed 004: every convolution and every ReLU is one layer, so
``net.layers[:k]`` is the representation after layer ``k`` (:func:`truncate`). Chen's layers 1, 3, 5 are
his three convolutions (5 is the output); Yang's layers 1, 7, 13 are his convolutions 1, 4 and 7.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import tempfile
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
from glassbox import checks
from glassbox.progress import Progress
from glassbox.losses import perceptual_loss, wgan_critic_loss, wgan_generator_loss
from glassbox.train import History, epoch_order, fit, init_model, paired_loss

CHEN_LAYERS: tuple[int, ...] = (1, 3, 5)
YANG_LAYERS: tuple[int, ...] = (1, 7, 13)
WGAN_CHECKPOINT_FORMAT = 1


class DenoiserError(ValueError):
    """A denoiser got a bad configuration, layer index or training input."""


# --- architectures ------------------------------------------------------------------------------

class ChenCNN(nn.Module):
    """Chen et al.'s 3-layer CNN; ``layers`` holds conv, ReLU, conv, ReLU, conv ('same' padding)."""

    def __init__(self, last_kernel: int = 5):
        super().__init__()
        if isinstance(last_kernel, bool) or not isinstance(last_kernel, int) or last_kernel < 1 or last_kernel % 2 == 0:
            raise DenoiserError(f"last_kernel must be an odd positive integer (3 in seed 004's table, 5 in "
                                f"ldct-benchmark), got {last_kernel!r}")
        self.last_kernel = last_kernel
        self.layers = nn.Sequential(nn.Conv2d(1, 64, 9, padding=4), nn.ReLU(),
                                    nn.Conv2d(64, 32, 3, padding=1), nn.ReLU(),
                                    nn.Conv2d(32, 1, last_kernel, padding=last_kernel // 2))

    def forward(self, x: Tensor) -> Tensor:
        _check_images(x, "ChenCNN input")
        return self.layers(x)


class YangGenerator(nn.Module):
    """Yang et al.'s WGAN-VGG generator: 7 x (conv 3x3/32 + ReLU), conv 3x3/1; 15 layers in ``layers``."""

    def __init__(self, width: int = 32, n_convs: int = 8):
        super().__init__()
        width, n_convs = checks.integer(width, "width", error=DenoiserError), checks.integer(n_convs, "n_convs", error=DenoiserError)
        if n_convs < 2:
            raise DenoiserError(f"n_convs must be at least 2, got {n_convs}")
        modules: list[nn.Module] = []
        channels = 1
        for _ in range(n_convs - 1):
            modules += [nn.Conv2d(channels, width, 3, padding=1), nn.ReLU()]
            channels = width
        modules.append(nn.Conv2d(channels, 1, 3, padding=1))
        self.layers = nn.Sequential(*modules)

    def forward(self, x: Tensor) -> Tensor:
        _check_images(x, "YangGenerator input")
        return self.layers(x)


class WGANCritic(nn.Module):
    """Yang et al.'s critic: six 3x3 convs (w, w/s2, 2w, 2w/s2, 4w, 4w/s2; no padding) + LeakyReLU, FC 1024, FC 1.

    ``width`` 64 and LeakyReLU slope 0.2 are the paper's (TF reimplementation); no sigmoid (Wasserstein).
    """

    def __init__(self, patch_size: int, width: int = 64, fc: int = 1024, slope: float = 0.2):
        super().__init__()
        patch_size, width, fc = (checks.integer(v, n, error=DenoiserError) for v, n in ((patch_size, "patch_size"), (width, "width"),
                                                                   (fc, "fc")))
        modules: list[nn.Module] = []
        channels, size = 1, patch_size
        for k, (factor, stride) in enumerate([(1, 1), (1, 2), (2, 1), (2, 2), (4, 1), (4, 2)]):
            modules += [nn.Conv2d(channels, width * factor, 3, stride=stride), nn.LeakyReLU(slope)]
            channels, size = width * factor, (size - 3) // stride + 1
            if size < 1:
                raise DenoiserError(f"patch_size {patch_size} is too small for the critic's six unpadded "
                                    f"convolutions (nothing left after conv {k + 1}); use at least 29")
        self.patch_size = patch_size
        self.features = nn.Sequential(*modules)
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(channels * size * size, fc), nn.LeakyReLU(slope),
                                  nn.Linear(fc, 1))

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim != 4 or x.shape[1:] != (1, self.patch_size, self.patch_size):
            raise DenoiserError(f"WGANCritic expects (N, 1, {self.patch_size}, {self.patch_size}) patches, "
                                f"got {tuple(x.shape)}")
        return self.head(self.features(x)).squeeze(1)


def _check_images(x: Any, name: str) -> None:
    if not isinstance(x, Tensor) or x.ndim != 4 or x.shape[1] != 1:
        shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise DenoiserError(f"{name} must be a (N, 1, H, W) tensor, got {shape}")


def n_layers(net: nn.Module) -> int:
    """Number of layers (convolutions and ReLUs) of a denoiser with a ``layers`` Sequential."""
    layers = getattr(net, "layers", None)
    if not isinstance(layers, nn.Sequential):
        raise DenoiserError(f"{type(net).__name__} has no `layers` Sequential; expected ChenCNN or YangGenerator")
    return len(layers)


def truncate(net: nn.Module, layer: int) -> nn.Sequential:
    """Phi: the denoiser up to and including ``layer`` (1-based, conv and ReLU counted separately).

    Shares the weights of ``net``; ``truncate(net, n_layers(net))`` is the whole network f.
    """
    total = n_layers(net)
    if isinstance(layer, bool) or not isinstance(layer, (int, np.integer)) or not 1 <= layer <= total:
        raise DenoiserError(f"layer must be an integer in [1, {total}] for {type(net).__name__}, got {layer!r}")
    return nn.Sequential(*list(net.layers)[:int(layer)])


def freeze(net: nn.Module) -> nn.Module:
    """Eval mode and no parameter gradients (a denoiser under analysis stays fixed)."""
    net.eval()
    for parameter in net.parameters():
        parameter.requires_grad_(False)
    return net


# --- perceptual features --------------------------------------------------------------------------

class PerceptualFeatures(nn.Module):
    """A frozen feature network fed with network units ``(HU + 1000) / 1000`` through a fixed input map."""

    def __init__(self, network: nn.Module, offset: float, scale: float, clamp: tuple[float, float] | None = None):
        super().__init__()
        self.network = network
        self.offset, self.scale, self.clamp = float(offset), float(scale), clamp
        for parameter in self.network.parameters():
            parameter.requires_grad_(False)
        self.network.eval()

    def forward(self, x: Tensor) -> list[Tensor]:
        x = (x - self.offset) * self.scale
        if self.clamp is not None:
            x = x.clamp(*self.clamp)
        return list(self.network(x))

    def train(self, mode: bool = True) -> PerceptualFeatures:
        super().train(mode)
        self.network.eval()  # the feature network never leaves eval mode
        return self


def perceptual_features(kind: str = "ct", *, featurenet_config: Any = None, seed: int = 0,
                        device: str | torch.device = "cpu", layers: Sequence[str] | None = None,
                        vgg19_weights: str | os.PathLike | None = None, progress: bool = True) -> PerceptualFeatures:
    """The feature network phi of the perceptual loss.

    ``kind="ct"``: :class:`glassbox.featurenet.FeatureNet` trained on simulated CT (tissue classes),
    through the artifact store; input HU/1000, default layer ``relu3_2``. ``kind="vgg19"``: torchvision's
    ImageNet VGG-19 from ``vgg19_weights`` (a file the user supplies; never downloaded), default layer
    ``conv5_4`` as Yang et al.; input the HU range [-1024, 3071] mapped to [0, 1], then ImageNet mean/std.
    """
    from glassbox import featurenet

    if kind == "ct":
        config = featurenet_config if featurenet_config is not None else featurenet.FeatureNetConfig()
        net, _ = featurenet.pretrained_feature_net(config, seed=seed, device=device,
                                                   layers=tuple(layers or ("relu3_2",)), progress=progress)
        # network units u = (HU + 1000)/1000  ->  HU/1000 = u - 1
        return PerceptualFeatures(net, offset=1.0, scale=1.0).to(device)
    if kind == "vgg19":
        net = featurenet.VGG19Features(vgg19_weights, layers=tuple(layers or ("conv5_4",)))
        # u -> HU = 1000 u - 1000 -> (HU + 1024) / 4096 = (u - (-0.024)) * 1000 / 4096
        return PerceptualFeatures(net, offset=-0.024, scale=1000.0 / 4096.0, clamp=(0.0, 1.0)).to(device)
    raise DenoiserError(f"perceptual feature kind must be 'ct' or 'vgg19', got {kind!r}")


# --- configurations --------------------------------------------------------------------------------

@dataclass(frozen=True)
class ChenConfig:
    """Training of Chen et al.'s CNN: L2 loss, Adam (the paper used SGD on 33x33 patches).

    Paper-protocol values are ldct-benchmark's tuned ones: Adam lr 1.584e-4, batch 68.
    """

    last_kernel: int = 5
    epochs: int = 10
    batch_size: int = 32
    lr: float = 1e-3

    def __post_init__(self) -> None:
        if isinstance(self.last_kernel, bool) or not isinstance(self.last_kernel, int) or self.last_kernel < 1 \
                or self.last_kernel % 2 == 0:
            raise DenoiserError(f"last_kernel must be an odd positive integer, got {self.last_kernel!r}")
        checks.integer(self.epochs, "epochs", error=DenoiserError)
        checks.integer(self.batch_size, "batch_size", error=DenoiserError)
        checks.positive_number(self.lr, "lr", error=DenoiserError)


@dataclass(frozen=True)
class YangConfig:
    """Training of WGAN-VGG. Paper: Adam lr 1e-5, betas (0.5, 0.9), batch 128, n_critic 4, lambda 10, lambda_1 0.1.

    ``critic_width`` 64 is the paper's; ``perceptual`` picks the feature network (see
    :func:`perceptual_features`), ``vgg19_weights`` is the path of a user-supplied VGG-19 file.
    ``pretrain_epochs`` (not in the paper; 0 = off) first fits the generator with the L2 loss, as SRGAN
    (Ledig et al. 2017) initialises its generator from an MSE-trained one: a short CPU run then starts the
    adversarial game from a sensible denoiser instead of from noise. ``pretrain_lr`` is its Adam rate.
    """

    epochs: int = 10
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
        for name in ("epochs", "batch_size", "n_critic", "critic_width"):
            checks.integer(getattr(self, name), name, error=DenoiserError)
        if isinstance(self.pretrain_epochs, bool) or not isinstance(self.pretrain_epochs, int) or self.pretrain_epochs < 0:
            raise DenoiserError(f"pretrain_epochs must be a non-negative integer, got {self.pretrain_epochs!r}")
        checks.positive_number(self.lr, "lr", error=DenoiserError)
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


# --- training ----------------------------------------------------------------------------------------

def train_chen(train_set: Dataset, config: ChenConfig = ChenConfig(), *, seed: int = 0,
               device: str | torch.device = "cpu", val_fn: Callable[[nn.Module], Mapping[str, float]] | None = None,
               checkpoint_dir: Path | str | None = None, progress: bool = True) -> tuple[ChenCNN, History]:
    """Train :class:`ChenCNN` with the L2 loss on ``(low, full)`` batches through :func:`glassbox.train.fit`."""
    model = init_model(lambda: ChenCNN(config.last_kernel), init_seed=seed)
    history = fit(model, train_set, paired_loss(F.mse_loss), epochs=config.epochs, batch_size=config.batch_size,
                  optimizer=lambda p: torch.optim.Adam(p, lr=config.lr), data_seed=seed, device=device,
                  val_fn=val_fn, checkpoint_dir=checkpoint_dir, desc="Chen CNN (L2)", progress=progress,
                  fingerprint=dataclasses.asdict(config))
    return model, history


def _atomic_save(obj: Any, path: Path) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save(obj, handle)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _epoch_generator(seed: int, epoch: int, stream: int) -> torch.Generator:
    """A CPU generator that is a pure function of (seed, epoch, stream): resuming redraws the same numbers."""
    state = np.random.SeedSequence([int(seed), int(epoch), int(stream)]).generate_state(1, dtype=np.uint64)[0]
    return torch.Generator().manual_seed(int(state >> np.uint64(1)))


def _batches(dataset: Dataset, order: Tensor, batch_size: int) -> list[tuple[Tensor, Tensor]]:
    out = []
    for start in range(0, len(order), batch_size):
        items = [dataset[int(i)] for i in order[start:start + batch_size]]
        out.append((torch.stack([a for a, _ in items]), torch.stack([b for _, b in items])))
    return out


def train_wgan_vgg(train_set: Dataset, features: Callable[[Tensor], Sequence[Tensor]],
                   config: YangConfig = YangConfig(), *, seed: int = 0, device: str | torch.device = "cpu",
                   checkpoint_dir: Path | str | None = None, progress: bool = True
                   ) -> tuple[YangGenerator, WGANCritic, History]:
    """Train Yang et al.'s generator and critic (WGAN-GP + perceptual loss) on ``(low, full)`` patch pairs.

    Per batch: ``n_critic`` critic steps (on that batch), then one generator step. Data order and
    gradient-penalty mixing weights are pure functions of ``(seed, epoch)``; with ``checkpoint_dir`` both
    networks and optimisers are saved after every epoch and a restarted call resumes where it stopped,
    ending with the same weights as an uninterrupted run. ``pretrain_epochs`` warm-up epochs of the generator
    (if any) with the L2 loss run first, through :func:`glassbox.train.fit`.
    """
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
        found = sorted(folder.glob("epoch_*.pt"))
        if found:
            state = torch.load(found[-1], map_location="cpu", weights_only=True)
            if state.get("format") != WGAN_CHECKPOINT_FORMAT or state.get("run") != run_id:
                raise DenoiserError(f"checkpoint {found[-1]} belongs to another WGAN-VGG run (configuration, seed "
                                    "or data differ); use another checkpoint_dir or delete it")
            if state["epoch"] > config.epochs:
                raise DenoiserError(f"checkpoint {found[-1]} is at epoch {state['epoch']}, beyond epochs="
                                    f"{config.epochs}")
            generator.load_state_dict(state["generator"])
            critic.load_state_dict(state["critic"])
            opt_g.load_state_dict(state["opt_g"])
            opt_c.load_state_dict(state["opt_c"])
            history.epochs = [dict(e) for e in state["history"]]
            start = int(state["epoch"])
    batches_per_epoch = -(-size // config.batch_size)
    bar = Progress(config.epochs * batches_per_epoch, "WGAN-VGG (critic + generator)", unit="batch",
                   initial=start * batches_per_epoch, epochs=config.epochs, enabled=progress)
    try:
        for epoch in range(start + 1, config.epochs + 1):
            began = time.perf_counter()
            gp_generator = _epoch_generator(seed, epoch, stream=1)
            sums = {"critic_loss": 0.0, "wasserstein": 0.0, "adversarial": 0.0, "perceptual": 0.0}
            for low, full in _batches(train_set, epoch_order(size, seed, epoch), config.batch_size):
                low, full = low.to(device), full.to(device)
                for _ in range(config.n_critic):
                    with torch.no_grad():
                        fake = generator(low)
                    critic_loss = wgan_critic_loss(critic, full, fake, gp_generator, gp_weight=config.gp_weight)
                    opt_c.zero_grad(set_to_none=True)
                    critic_loss.backward()
                    opt_c.step()
                fake = generator(low)
                adversarial = wgan_generator_loss(critic, fake)
                perceptual = perceptual_loss(fake, full, features)
                loss = adversarial + config.perceptual_weight * perceptual
                opt_g.zero_grad(set_to_none=True)
                loss.backward()
                opt_g.step()
                with torch.no_grad():
                    wasserstein = critic(full).mean() - critic(fake.detach()).mean()
                weight = low.shape[0] / size
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


# --- through the artifact store -------------------------------------------------------------------------

def pretrained_chen(train_set: Dataset, config: ChenConfig, *, data_key: Mapping[str, Any], seed: int = 0,
                    device: str | torch.device = "cpu", progress: bool = True) -> tuple[ChenCNN, dict[str, Any]]:
    """Chen's CNN for ``(config, data_key, seed)`` from the artifact store (trained on first use).

    ``data_key`` must identify ``train_set`` (e.g. the data configuration, its seed and data folder).
    Returns the frozen model on ``device`` and the stored record (``state_dict``, ``history``).
    """
    from glassbox.store import get_or_compute

    def compute() -> dict[str, Any]:
        model, history = train_chen(train_set, config, seed=seed, device=device, progress=progress)
        return {"state_dict": {k: v.cpu() for k, v in model.state_dict().items()}, "history": history.epochs}

    record = get_or_compute("chen-cnn", {"config": config, "data": dict(data_key), "seed": seed}, compute,
                            seed=seed, device=device, progress=progress)
    model = ChenCNN(config.last_kernel)
    model.load_state_dict(record["state_dict"])
    return freeze(model).to(device), record


def pretrained_wgan_vgg(train_set: Dataset, config: YangConfig, *, data_key: Mapping[str, Any],
                        featurenet_config: Any = None, seed: int = 0, device: str | torch.device = "cpu",
                        progress: bool = True) -> tuple[YangGenerator, dict[str, Any]]:
    """Yang's WGAN-VGG generator for ``(config, data_key, seed)`` from the artifact store (trained on first use).

    Returns the frozen generator on ``device`` and the stored record (``state_dict``, ``history``).
    """
    from glassbox.store import get_or_compute

    def compute() -> dict[str, Any]:
        features = perceptual_features(config.perceptual, featurenet_config=featurenet_config, seed=seed,
                                       device=device, layers=config.perceptual_layers,
                                       vgg19_weights=config.vgg19_weights, progress=progress)
        generator, _, history = train_wgan_vgg(train_set, features, config, seed=seed, device=device,
                                               progress=progress)
        return {"state_dict": {k: v.cpu() for k, v in generator.state_dict().items()}, "history": history.epochs}

    key = {"config": config, "data": dict(data_key), "seed": seed, "featurenet": featurenet_config}
    record = get_or_compute("wgan-vgg", key, compute, seed=seed, device=device, progress=progress)
    model = YangGenerator()
    model.load_state_dict(record["state_dict"])
    return freeze(model).to(device), record
