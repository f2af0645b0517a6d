"""Cost of the ``invariances`` chapter on its ``quick`` profile (target: the chapter under 10 minutes on 2 CPU cores).

Every stored artifact of the chapter -- data, Chen's CNN, the perceptual autoencoder, WGAN-VGG, both VAEs and every
cINN -- is computed from scratch in a temporary store by running the tasks of
:func:`glassbox.studies.invariances.plan` in order, one row each; then the analysis the chapter runs on top
(:func:`~glassbox.studies.invariances.run` with everything stored: denoising comparison, noise spectra, sampling
and checks) is timed. The reference, measured in the same run, is one epoch of the plain denoiser (Chen's CNN, L2)
on the same patches: ``reference / ours`` says how many plain-denoiser epochs each part costs, which holds on a
loaded machine. Wall-clock and process CPU seconds are both reported (on a shared machine the wall clock is
inflated; CPU seconds are what an idle one-thread run would take).

``run(quick=True)`` (the runner's ``--quick``) times the ``smoke`` profile instead, to check the runner.
"""
from __future__ import annotations

import dataclasses
import time

from run import Row, temporary_store

TARGET_S = 600.0


def _timed(fn):
    wall, cpu = time.perf_counter(), time.process_time()
    value = fn()
    return value, time.perf_counter() - wall, time.process_time() - cpu


def run(quick: bool) -> list[Row]:
    from glassbox.chapters import setup_run
    from glassbox.studies import invariances
    from glassbox.training import ct_denoisers as dn

    profile = "smoke" if quick else "quick"
    setup = setup_run("invariances", profile=profile, device="cpu", seed=0)
    cfg, seed = setup.config, 0
    rows: list[Row] = []
    with temporary_store("bench-invariance-"):
        tasks = invariances.plan(cfg, seed=seed, device="cpu")
        stages: dict[str, tuple[float, float]] = {}
        for task in tasks:
            _, wall, cpu = _timed(task.run)
            stages[task.label] = (wall, cpu)
        data = invariances.prepare_data(cfg, seed=seed, progress=False)
        one_epoch = dataclasses.replace(cfg.chen, epochs=1)
        _, ref_wall, ref_cpu = _timed(lambda: dn.train_chen(data.sets["train"], one_epoch, seed=seed, progress=False))
        _, wall, cpu = _timed(lambda: invariances.run(cfg, seed=seed, progress=False))
        stages["analysis (everything stored)"] = (wall, cpu)
    total_wall = sum(w for w, _ in stages.values())
    total_cpu = sum(c for _, c in stages.values())
    note = f"{profile} profile, one thread; {len(data.sets['train'])} patches of {cfg.patch_size} px"
    rows.append(Row(name=f"invariances: whole chapter compute ({profile})", ours=total_wall, reference=ref_wall,
                    unit="s", target=f"< {TARGET_S:.0f} s" if not quick else "",
                    passed=(total_cpu < TARGET_S) if not quick else None,
                    note=note + f"; CPU {total_cpu:.0f} s, judged on CPU (reference: 1 Chen epoch, CPU {ref_cpu:.1f} s)"))
    for name, (wall, cpu) in stages.items():
        rows.append(Row(name=f"invariances: {name}", ours=wall, reference=ref_wall, unit="s", note=f"CPU {cpu:.1f} s"))
    return rows
