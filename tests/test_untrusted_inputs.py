"""Bad input a user can give outside DICOM files: seeds, data folders, changed data, damaged checkpoints, file modes.

Each test here failed before issue #20 was fixed (see the test's docstring for what happened then).
"""
from __future__ import annotations

import multiprocessing
import os

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from glassbox.chapters import setup_run
from glassbox.core import repro
from glassbox.data import dicom, lowdose_ct
from glassbox.models import common
from glassbox.studies import invariances as inv
from glassbox.training import ct_denoisers as dn
from glassbox.training import loop

# --- seeds -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [2**32, 2**63, 2**64, 2**70])
def test_seeds_beyond_32_bits_are_refused_by_setup_run(seed):
    """Before: 2**64 gave torch's bare 'Overflow' message; 2**63 passed and failed later inside training."""
    with pytest.raises(ValueError, match=r"seed must be a non-negative integer below 2\*\*32 = 4294967296"):
        setup_run("data", profile="smoke", device="cpu", seed=seed)
    with pytest.raises(ValueError, match=r"below 2\*\*32.*got " + str(seed)):
        repro.seed_everything(seed)


def test_the_largest_seed_works_with_every_seed_the_library_derives_from_it():
    seed = repro.SEED_LIMIT - 1
    run = setup_run("data", profile="smoke", device="cpu", seed=seed)
    common.init_model(lambda: nn.Linear(1, 1), run.seed + 7)  # the training loop takes seeds < 2**63
    torch.Generator().manual_seed(run.seed * 100_003 + 99)  # featurenet's phantom seeds, torch's < 2**64
    dn._epoch_generator(run.seed, 1, stream=1)


# --- data folders --------------------------------------------------------------------------------------


def test_a_data_dir_without_dicom_files_is_refused_at_setup(tmp_path):
    """Before: an empty folder passed setup_run and the chapter failed cells later."""
    (tmp_path / "L067" / "full_1mm").mkdir(parents=True)
    (tmp_path / "L067" / "notes.txt").write_text("no images here")
    (tmp_path / ".hidden.dcm").write_bytes(b"")  # hidden files do not count
    expected = rf"data_dir='{tmp_path}' holds no DICOM files \(\.ima, \.dcm, \.dicom\)"
    with pytest.raises(dicom.NoSeriesFoundError, match=expected):
        setup_run("data", profile="smoke", device="cpu", data_dir=tmp_path)
    dicom.write_series(tmp_path / "L067" / "full_1mm", np.zeros((1, 4, 4)), "L067", "FD", 1.0, 1.0)
    assert setup_run("data", profile="smoke", device="cpu", data_dir=tmp_path).data_dir == tmp_path


def _tree(root, value: float):
    pairs = {"L067": (np.full((2, 8, 8), value, np.float32), np.full((2, 8, 8), value + 10, np.float32))}
    dicom.write_mayo_tree(root, pairs, pixel_mm=1.0, overwrite=True)
    return dicom.load_pairs(root)


def test_store_keys_of_real_data_follow_the_content_not_the_folder(tmp_path):
    """Before: the key held the folder's path, so changed files were served stale models."""
    config = inv.PROFILES["smoke"]
    first = _tree(tmp_path / "data", 0.0)
    key = inv.data_key(config, 0, tmp_path / "data", pairs=first)
    changed = _tree(tmp_path / "data", 5.0)  # same folder, other pixels
    assert inv.data_key(config, 0, tmp_path / "data", pairs=changed) != key
    moved = _tree(tmp_path / "elsewhere", 0.0)  # same pixels, other folder
    assert inv.data_key(config, 0, tmp_path / "elsewhere", pairs=moved) == key
    assert str(tmp_path) not in repr(key)
    with pytest.raises(common.InvarianceError, match="pass pairs="):
        inv.data_key(config, 0, tmp_path / "data")


def test_one_fingerprint_function_for_every_key():
    pairs = {"a": (np.zeros((1, 2, 2)), np.ones((1, 2, 2)))}
    from glassbox.training import unet_denoiser
    assert unet_denoiser.pairs_fingerprint(pairs) == lowdose_ct.pairs_fingerprint(pairs)
    other = {"a": (np.zeros((1, 2, 2)), np.ones((1, 2, 2)) * 2)}
    assert lowdose_ct.pairs_fingerprint(other) != lowdose_ct.pairs_fingerprint(pairs)


# --- checkpoints -----------------------------------------------------------------------------------------


def _toy_pairs(n: int = 8, size: int = 32) -> TensorDataset:
    rng = np.random.default_rng(0)
    full = torch.tensor(1.0 + 0.1 * rng.normal(size=(n, 1, size, size)), dtype=torch.float32)
    return TensorDataset(full + 0.05 * torch.tensor(rng.normal(size=full.shape), dtype=torch.float32), full)


class _TinyFeatures(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3, padding=1)

    def forward(self, x):
        return [torch.relu(self.conv(x))]


def _wgan(tmp_path, epochs: int, **kwargs):
    torch.manual_seed(0)
    features = _TinyFeatures().requires_grad_(False)
    config = dn.YangConfig(epochs=epochs, batch_size=4, lr=1e-4, n_critic=1, critic_width=2)
    return dn.train_wgan_vgg(_toy_pairs(), features, config, seed=1, progress=False, **kwargs)


def _same_weights(a: nn.Module, b: nn.Module) -> bool:
    return all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))


@pytest.mark.parametrize("damage", ["truncated", "garbage", "wrong epoch"])
def test_wgan_vgg_resume_falls_back_to_the_previous_checkpoint(tmp_path, damage):
    """Before: a damaged newest WGAN-VGG checkpoint raised from torch.load; fit() already fell back."""
    straight, critic, _ = _wgan(tmp_path, epochs=2)
    folder = tmp_path / "run"
    _wgan(tmp_path, epochs=2, checkpoint_dir=folder)
    newest = folder / "wgan" / "epoch_0002.pt"
    if damage == "truncated":
        newest.write_bytes(newest.read_bytes()[: newest.stat().st_size // 2])
    elif damage == "garbage":
        newest.write_bytes(b"not a checkpoint")
    else:
        (folder / "wgan" / "epoch_0001.pt").replace(newest)  # epoch 1's content under epoch 2's name
        (folder / "wgan" / "epoch_0001.pt").write_bytes(newest.read_bytes())
    with pytest.warns(loop.CheckpointWarning, match="epoch_0002.pt"):
        resumed, resumed_critic, history = _wgan(tmp_path, epochs=2, checkpoint_dir=folder)
    assert _same_weights(resumed, straight) and _same_weights(resumed_critic, critic)
    assert [e["epoch"] for e in history.epochs] == [1, 2]
    assert (folder / "wgan" / "epoch_0002.pt.corrupt").exists()


def test_wgan_vgg_with_every_checkpoint_damaged_starts_over(tmp_path):
    straight, _, _ = _wgan(tmp_path, epochs=1)
    folder = tmp_path / "run" / "wgan"
    folder.mkdir(parents=True)
    (folder / "epoch_0001.pt").write_bytes(b"junk")
    with pytest.warns(loop.CheckpointWarning):
        resumed, _, _ = _wgan(tmp_path, epochs=1, checkpoint_dir=tmp_path / "run")
    assert _same_weights(resumed, straight)


def test_checkpoints_get_the_users_umask(tmp_path):
    """Before: checkpoints (like results and store entries) were created 0600 by mkstemp."""
    old = os.umask(0o022)
    try:
        _wgan(tmp_path, epochs=1, checkpoint_dir=tmp_path / "wgan-run")
        model = nn.Linear(2, 1)
        data = TensorDataset(torch.zeros(4, 2), torch.zeros(4, 1))
        loop.fit(model, data, loop.paired_loss(nn.functional.mse_loss), epochs=1, batch_size=2,
                  optimizer=lambda p: torch.optim.SGD(p, lr=0.1), data_seed=0, checkpoint_dir=tmp_path / "fit-run",
                  progress=False)
    finally:
        os.umask(old)
    written = list(tmp_path.rglob("epoch_*.pt"))
    assert len(written) == 2
    assert all(path.stat().st_mode & 0o777 == 0o644 for path in written)


def test_a_killed_checkpoint_writers_temporary_file_is_cleaned_on_resume(tmp_path):
    """Before: a run killed while writing a checkpoint left its temporary file behind for good."""
    from glassbox.core import store
    folder = tmp_path / "fit-run"
    folder.mkdir()
    dead = multiprocessing.get_context("spawn").Process(target=int)
    dead.start()
    dead.join()
    orphan = folder / f".epoch_0001.pt.{store._host()}.{dead.pid}.0abc.tmp"
    orphan.write_bytes(b"half a checkpoint")
    model = nn.Linear(2, 1)
    loop.fit(model, TensorDataset(torch.zeros(4, 2), torch.zeros(4, 1)), loop.paired_loss(nn.functional.mse_loss),
              epochs=1, batch_size=2, optimizer=lambda p: torch.optim.SGD(p, lr=0.1), data_seed=0,
              checkpoint_dir=folder, progress=False)
    assert not orphan.exists() and (folder / "epoch_0001.pt").exists()
