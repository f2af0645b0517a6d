"""Benchmark of the k-space chapter: layer overhead per training step and the time to train the
``quick`` profile's models (issue target: under 8 minutes on the 2-core machine)."""
from __future__ import annotations

import os
import time

import torch

from glassbox.models.alexnet import SmallAlexNet
from glassbox.models.kspace_sampler import KSpaceSampler
from glassbox.studies.kspace import PROFILES, run_experiment
from run import Row


def _step_seconds(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int) -> float:
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.train()
    for i in range(steps + 2):
        if i == 2:
            began = time.perf_counter()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return (time.perf_counter() - began) / steps


def run(quick: bool) -> list[Row]:
    # the 2-core target machine; OMP_NUM_THREADS overrides (1 is far faster on an oversubscribed host)
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", 2)))
    cfg = PROFILES["smoke" if quick else "quick"]
    x = torch.rand(cfg.batch_size, 1, cfg.size, cfg.size, generator=torch.Generator().manual_seed(0))
    y = (torch.arange(cfg.batch_size) % 2).float()
    torch.manual_seed(0)
    net = SmallAlexNet(width=cfg.width)
    with_layer = torch.nn.Sequential(KSpaceSampler(cfg.size, 0.3, seed=0), SmallAlexNet(width=cfg.width))
    steps = 3 if quick else 20
    plain = _step_seconds(net, x, y, steps)
    layered = _step_seconds(with_layer, x, y, steps)
    rows = [Row(name=f"train step, k-layer + SmallAlexNet (batch {cfg.batch_size}, {cfg.size}^2)", ours=layered,
                reference=plain, unit="s/step", note="reference: SmallAlexNet alone")]

    began = time.perf_counter()
    experiment = run_experiment(cfg, seed=0, use_store=False, progress=False)
    seconds = time.perf_counter() - began
    profile = "smoke" if quick else "quick"
    rows.append(Row(name=f"train all {len(experiment['models'])} models of the '{profile}' profile", ours=seconds,
                    unit="s", target="< 480 s" if not quick else "", passed=(seconds < 480) if not quick else None,
                    note="data simulation + training + scoring, no store"))
    return rows
