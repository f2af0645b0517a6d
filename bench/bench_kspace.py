"""Benchmark of the k-space chapter: the exact-k layer's cost per training step, the cost of one model of
each kind, and the chapter's projected time on a profile (issue target on ``quick``: at most 10 minutes on
the 2-core machine, three training seeds).

Rows (ratios against a reference measured in the same process, so they hold on a busy machine):
- a training step of the top-k layer + SmallAlexNet against SmallAlexNet alone (the layer's overhead);
- the same for the paper's per-line (Bernoulli) layer;
- training and scoring one learned model (mask phase, sampled protocol, a classifier on the frozen
  mask) against one fully sampled model;
- the data simulation, and the chapter's projected time: data + every model of ``model_specs`` at the
  measured per-kind cost + the bootstrap tables, against the 600 s target (``quick`` only).
Threads: one, as the chapter (``setup_run`` pins it).
"""
from __future__ import annotations

import time

import torch

from glassbox.core import repro
from glassbox.models.alexnet import SmallAlexNet
from glassbox.models.kspace_sampler import KSpaceClassifier, KSpaceSampler
from glassbox.studies import kspace as kx
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


def _timed(fn):
    began = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - began


def run(quick: bool) -> list[Row]:
    repro.pin_threads(1)
    profile = "smoke" if quick else "quick"
    cfg = kx.PROFILES[profile]
    x = torch.rand(cfg.batch_size, 1, cfg.size, cfg.size, generator=torch.Generator().manual_seed(0))
    y = (torch.arange(cfg.batch_size) % 2).float()
    steps = 3 if quick else 20
    k = cfg.lowest_k
    plain = _step_seconds(SmallAlexNet(width=cfg.width), x, y, steps)
    rows = []
    for mode in ("topk", "bernoulli"):
        layered = KSpaceClassifier(KSpaceSampler(cfg.size, k / cfg.size, mode=mode, seed=0), SmallAlexNet(width=cfg.width))
        rows.append(Row(name=f"train step, {mode} layer (k={k}) + SmallAlexNet, batch {cfg.batch_size}, {cfg.size}^2",
                        ours=_step_seconds(layered, x, y, steps), reference=plain, unit="s/step",
                        note="reference: SmallAlexNet alone"))

    data, data_seconds = _timed(lambda: kx.simulate_data(cfg, seed=0))
    rows.append(Row(name=f"simulate the '{profile}' data (2 cohorts x 2 vendors + {len(kx.ABLATIONS)} ablation scans)",
                    ours=data_seconds, unit="s"))
    seconds = {}
    for kind, kk in (("full", cfg.size), ("learned", k), ("centre", k)):
        _, seconds[kind] = _timed(lambda kind=kind, kk=kk: kx.train_model(cfg, data, kx.ModelSpec("A", kind, kk, 0)))
    rows.append(Row(name=f"train + score one learned model (k={k}, {cfg.mask_epochs}+{cfg.epochs} epochs, "
                    f"{cfg.eval_draws} sampled draws)", ours=seconds["learned"], reference=seconds["full"], unit="s",
                    note=f"reference: one fully sampled model ({cfg.epochs} epochs)"))
    rows.append(Row(name=f"train + score one centre-mask model (k={k})", ours=seconds["centre"],
                    reference=seconds["full"], unit="s", note="reference: one fully sampled model"))

    specs = kx.model_specs(cfg)
    result = kx.make_result(cfg, 0, data, [_stand_in(cfg, data, spec) for spec in specs])
    _, table_seconds = _timed(lambda: (kx.claims(result), kx.numbers(result)))
    rows.append(Row(name=f"bootstrap tables and claims ({cfg.n_boot} resamples, {len(specs)} models)",
                    ours=table_seconds, unit="s", note="scores are random stand-ins; the cost does not depend on them"))
    per_kind = {s.kind: seconds["centre" if s.kind == "random" else s.kind] for s in specs}
    projected = data_seconds + table_seconds + sum(per_kind[s.kind] for s in specs)
    rows.append(Row(name=f"projected '{profile}' chapter: data + {len(specs)} models + tables", ours=projected, unit="s",
                    target="< 600 s" if not quick else "", passed=(projected < 600) if not quick else None,
                    note="one thread; per-kind model cost measured above"))
    return rows


def _stand_in(cfg: kx.KSpaceConfig, data: kx.ExperimentData, spec: kx.ModelSpec) -> dict:
    """A stored model's shape with random scores (for timing the tables without training)."""
    gen = torch.Generator().manual_seed(spec.k * 10 + spec.repeat)
    scores = {name: torch.randn(len(d), generator=gen).numpy() for name, d in data.test.items()}
    sampled = ({name: torch.randn(cfg.eval_draws, len(data.test[name]), generator=gen).numpy() for name in ("A", "B")}
               if spec.kind == "learned" else {})
    units = torch.zeros(cfg.size)
    units[: spec.k] = 1
    return {"spec": {"vendor": spec.vendor, "kind": spec.kind, "k": spec.k, "repeat": spec.repeat},
            "scores": scores, "sampled_scores": sampled, "eval_units": units.numpy(),
            "draw_count_range": [spec.k, spec.k], "final_count_range": [spec.k, spec.k], "seen_in_training": True,
            "seen_before_freeze": False,
            "n_train_masks": 1,
            # the mask table reads a learned model's log-odds from its sampler (random here, like the scores)
            "state_dict": {"sampler.logits": torch.randn(cfg.size, 2, generator=gen)} if spec.kind == "learned" else {}}
