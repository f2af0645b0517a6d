"""U-Net denoiser training (the Qu et al. chapters): the whole ``quick`` grid, and the loop's overhead.

Two measurements, each against a reference taken in the same run:

- **The 12 ``quick`` models** (U-Net-5/7/9 x random/fixed x 2 trials) trained from scratch in a temporary
  store, exactly as ``unet_training`` does (target: under 10 minutes on the 2-core machine). The
  reference is one epoch of one U-Net-9 on the same data, so ``ref/ours`` says what fraction of the grid
  one such epoch is, a number that holds on a loaded machine.
- **Throughput of** :func:`glassbox.training.loop.fit` against a bare PyTorch loop (``for x, y in loader:
  zero_grad, forward, L1 + L2, backward, step``) on the same model, data, batch size and optimizer
  (target: ``fit`` within 10 %, i.e. ``ref/ours >= 0.9``). Both run several times, interleaved, and the
  fastest of each counts, so background load hits both alike. ``fit`` runs with its progress bar off and
  without validation or checkpoints: the timed part is the loop itself.

``run(quick=True)`` (the runner's ``--quick``) uses the ``smoke`` profile: it checks the benchmark, not the
targets.
"""
from __future__ import annotations

import dataclasses
import time

import torch
from torch.utils.data import DataLoader

from run import Row, temporary_store

GRID_TARGET_S = 600.0
THROUGHPUT_TARGET = 0.9




def _bare_loop(model: torch.nn.Module, dataset, *, batch_size: int, lr: float, seed: int) -> None:
    """The plainest correct training epoch: what ``fit`` must not be much slower than."""
    generator = torch.Generator().manual_seed(seed)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=True, generator=generator)
    optimizer = torch.optim.RMSprop(model.parameters(), lr=lr)
    model.train()
    for inputs, targets in loader:
        optimizer.zero_grad(set_to_none=True)
        difference = model(inputs) - targets
        loss = difference.abs().mean() + difference.square().mean()
        loss.backward()
        optimizer.step()


def _throughput(recipe, data, *, repeats: int, seed: int) -> tuple[float, float, int]:
    """Fastest epoch of ``fit`` and of the bare loop (seconds) on the same model and batches."""
    from glassbox.training.loop import fit
    from glassbox.training.unet_denoiser import build_model

    train = recipe.train_config()
    ours, bare = [], []
    for repeat in range(repeats):
        for kind in ("bare", "ours") if repeat % 2 else ("ours", "bare"):
            model = build_model(recipe, init_seed=seed)
            start = time.perf_counter()
            if kind == "ours":
                fit(model, data.train, train.loss_fn(), epochs=1, batch_size=recipe.batch_size,
                    optimizer=train.optimizer(), data_seed=seed, progress=False)
                ours.append(time.perf_counter() - start)
            else:
                _bare_loop(model, data.train, batch_size=recipe.batch_size, lr=recipe.lr, seed=seed)
                bare.append(time.perf_counter() - start)
    return min(ours), min(bare), len(data.train)


def run(quick: bool) -> list[Row]:
    from glassbox.core.repro import seed_everything
    from glassbox.data import lowdose_ct
    from glassbox.training import unet_denoiser, unet_grid
    from glassbox.training.loop import trial_seeds

    profile = "smoke" if quick else "quick"
    cfg = unet_grid.PROFILES[profile]
    seed = 0
    seed_everything(seed)
    threads = torch.get_num_threads()
    rows: list[Row] = []
    with temporary_store("bench-training-"):
        pairs = lowdose_ct.get_pairs(cfg.data, seed, progress=False)
        recipe = unet_grid.denoiser_config(cfg, max(cfg.depths), seed)
        data = unet_denoiser.prepare_data(recipe, pairs)

        ours_s, bare_s, n = _throughput(recipe, data, repeats=2 if quick else 3, seed=seed)
        batches = -(-n // recipe.batch_size)
        rows.append(Row(name=f"training loop: fit vs bare loop, U-Net-{recipe.depth} ({profile})", ours=ours_s,
                        reference=bare_s, unit="s/epoch",
                        target="" if quick else f"ref/ours >= {THROUGHPUT_TARGET}",
                        passed=None if quick else bare_s / ours_s >= THROUGHPUT_TARGET,
                        note=f"{n} samples, {batches} batches of {recipe.batch_size}; "
                             f"{batches / ours_s:.1f} vs {batches / bare_s:.1f} batch/s; {threads} threads"))

        one_epoch = dataclasses.replace(recipe, epochs=1)
        start = time.perf_counter()
        unet_denoiser.train_denoiser(one_epoch, pairs, trial_seeds("random", 0, seed), data=data, progress=False)
        epoch_s = time.perf_counter() - start

        wall, cpu = time.perf_counter(), time.process_time()
        models = unet_grid.train_grid(cfg, pairs, seed=seed, progress=False)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    trainings = len({id(m.model) for m in models.values()}) - 2 * len(cfg.depths)  # trial 1 is one run for 3 modes
    rows.append(Row(name=f"U-Net grid: all {len(models)} {profile} trials ({trainings} trainings)", ours=wall,
                    reference=epoch_s, unit="s",
                    target="" if quick else f"< {GRID_TARGET_S:.0f} s",
                    passed=None if quick else wall < GRID_TARGET_S,
                    note=f"reference: 1 epoch of U-Net-{recipe.depth} with validation; {recipe.epochs} epochs each; "
                         f"CPU {cpu:.0f} s; {threads} threads"))
    return rows
