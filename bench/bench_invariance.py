"""Training time of the ``invariances`` chapter on its ``quick`` profile (target: under 10 minutes on 2 CPU cores).

Everything the chapter trains -- Chen's CNN, WGAN-VGG (with its CT feature network), the VAE and the six
cINNs -- is trained from scratch in a temporary store. The reference, measured in the same run, is one
epoch of the plain denoiser (Chen's CNN, L2) on the same patches: the ratio ``reference / ours`` says how
many plain-denoiser epochs the whole analysis costs, which holds on a loaded machine. Wall-clock and
process CPU seconds are both reported (on a shared machine the wall clock is inflated).

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
    from glassbox.core.repro import seed_everything
    from glassbox.data import lowdose_ct
    from glassbox.studies import invariances
    from glassbox.training import ct_denoisers as dn
    from glassbox.training import vae_cinn

    profile = "smoke" if quick else "quick"
    cfg = invariances.PROFILES[profile]
    seed = 0
    seed_everything(seed)
    rows: list[Row] = []
    with temporary_store("bench-invariance-"):
        pairs, data_wall, _ = _timed(lambda: lowdose_ct.get_pairs(cfg.data, seed, progress=False))
        sets = invariances.chapter_datasets(pairs, cfg, seed)
        key = invariances.data_key(cfg, seed)
        one_epoch = dataclasses.replace(cfg.chen, epochs=1)
        _, ref_wall, ref_cpu = _timed(lambda: dn.train_chen(sets["train"], one_epoch, seed=seed, progress=False))
        stages: dict[str, tuple[float, float]] = {}

        def stage(name, fn):
            value, wall, cpu = _timed(fn)
            stages[name] = (wall, cpu)
            return value

        chen, _ = stage("Chen CNN", lambda: dn.pretrained_chen(sets["train"], cfg.chen, data_key=key, seed=seed,
                                                               progress=False))
        yang, _ = stage("WGAN-VGG + feature net", lambda: dn.pretrained_wgan_vgg(
            sets["train"], cfg.yang, data_key=key, featurenet_config=cfg.featurenet, seed=seed, progress=False))
        images = sets["train"].low
        vae, _ = stage("VAE", lambda: vae_cinn.pretrained_vae(images, cfg.vae, data_key=key, seed=seed, progress=False))
        cinn_key = invariances.cinn_key(cfg, key)

        def all_cinns() -> None:
            for network, net, layers in (("chen", chen, cfg.chen_layers), ("yang", yang, cfg.yang_layers)):
                for layer in layers:
                    vae_cinn.pretrained_invariance_inn(network, net, layer, vae, images, cfg.cinn, key=cinn_key,
                                                  seed=seed, progress=False)

        stage("6 cINNs", all_cinns)
    total_wall = sum(w for w, _ in stages.values())
    total_cpu = sum(c for _, c in stages.values())
    note = f"{profile} profile; {len(sets['train'])} patches of {cfg.patch_size} px; data simulation {data_wall:.0f} s"
    rows.append(Row(name=f"invariances: all training ({profile})", ours=total_wall, reference=ref_wall, unit="s",
                    target=f"< {TARGET_S:.0f} s" if not quick else "", passed=(total_wall < TARGET_S) if not quick else None,
                    note=note + f"; CPU {total_cpu:.0f} s (reference: 1 Chen epoch, CPU {ref_cpu:.0f} s)"))
    for name, (wall, cpu) in stages.items():
        rows.append(Row(name=f"invariances: {name}", ours=wall, reference=ref_wall, unit="s",
                        note=f"CPU {cpu:.0f} s"))
    return rows
