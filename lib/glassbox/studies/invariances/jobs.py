"""The invariances chapter's :func:`plan`: every stored artifact as a task."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from glassbox.core.tasks import Task
from glassbox.data import lowdose_ct
from glassbox.studies.invariances.config import LOW, InvarianceConfig
from glassbox.studies.invariances.ct_data import ChapterData, _rescan, _rescan_entry, data_key, prepare_data
from glassbox.studies.invariances.denoisers import _chen, _perceptual, _yang
from glassbox.studies.invariances.probes import Probe, _cinn, _probe_id, cinn_key, probes
from glassbox.studies.invariances.vaes import _vae, domains
from glassbox.training import ct_denoisers as dn
from glassbox.training import tissue_features, vae_cinn

# --- the plan: every stored artifact as a task ---------------------------------------------------------------------


_TASK_DATA: dict[str, Any] = {}
"""The last :class:`ChapterData` a plan task built in this process, with its key: the grid pickles every task's
function on its own, so a cache inside :class:`_Context` would be rebuilt by every task a worker runs."""


class _Context:
    """Lazily built inputs of the plan's tasks (the data), built once per process for one (config, seed, data)."""

    def __init__(self, config: InvarianceConfig, seed: int, data_dir: Any):
        self.config, self.seed, self.data_dir = config, seed, data_dir

    def data(self) -> ChapterData:
        key = (self.config, self.seed, None if self.data_dir is None else str(Path(self.data_dir).resolve()))
        if _TASK_DATA.get("key") != key:
            _TASK_DATA.clear()
            _TASK_DATA.update(key=key, data=prepare_data(self.config, seed=self.seed, data_dir=self.data_dir,
                                                         progress=False))
        return _TASK_DATA["data"]


def plan(config: InvarianceConfig, *, seed: int = 0, device: Any = "cpu", data_dir: str | Path | None = None
         ) -> list[Task]:
    """Every artifact the chapter computes through the store, as tasks in dependency order: the simulated data
    and second scan, Chen's CNN, the perceptual autoencoder, WGAN-VGG, the VAE(s) and one cINN per probe.

    Each task's ``run`` makes the very store call the chapter makes, so after all have run the chapter trains
    nothing."""
    ctx = _Context(config, seed, data_dir)
    key = data_key(config, seed) if data_dir is None else ctx.data().key  # real data: keyed by their content
    tasks: dict[str, Task] = {}

    def add(name: str, entry: tuple[str, Any], fn, deps: Sequence[str] = (), gpu: bool = True) -> None:
        tasks[name] = Task(entry=entry[0], config=entry[1], run=fn, label=name,
                           deps=tuple(tasks[d].key for d in deps if d in tasks), gpu=gpu)

    if data_dir is None:
        add("data", lowdose_ct.dataset_entry(config.data, seed),
            lambda: lowdose_ct.build_dataset(config.data, seed, progress=False), gpu=False)
        test_ids = lowdose_ct.split_patients(lowdose_ct.patient_ids(config.data.n_patients),
                                             config.data.split_fractions, seed)["test"]
        add("rescan", _rescan_entry(config, seed, test_ids), lambda: _rescan(config, seed, test_ids, False),
            ["data"], gpu=False)
    add("chen", dn.chen_entry(config.chen, data_key=key, seed=seed),
        lambda: _chen(ctx.data(), config, seed, device, False), ["data"])
    add("perceptual", tissue_features.feature_autoencoder_entry(config.perceptual, data_key=key, seed=seed),
        lambda: _perceptual(ctx.data(), config, seed, device, False), ["data"])
    add("yang", dn.wgan_vgg_entry(config.yang, data_key=key, featurenet_config=config.perceptual, seed=seed),
        lambda: _yang(ctx.data(), config, seed, device, False), ["data", "perceptual"])
    for domain in domains(config):
        add(f"vae_{domain}", vae_cinn.vae_entry(config.vae, data_key=key, seed=seed,
                                                domain="low dose" if domain == LOW else "full dose"),
            lambda d=domain: _vae(ctx.data(), config, d, seed, device, False), ["data"])
    for probe in probes(config):
        needs = ["data", f"vae_{probe.domain}"] + ([probe.network.lower()] if probe.network != "identity" else [])

        def fn(p: Probe = probe) -> Any:
            network = {"Chen": _chen, "Yang": _yang}.get(p.network)
            net = network(ctx.data(), config, seed, device, False)[0] if network else None
            vae = _vae(ctx.data(), config, p.domain, seed, device, False)[0]
            return _cinn(ctx.data(), config, p, net, vae, seed, device, False)

        add(f"cinn_{_probe_id(probe)}", vae_cinn.invariance_inn_entry(
            probe.store_name, probe.layer, config.cinn, key=cinn_key(config, key, probe), seed=seed), fn, needs)
    return list(tasks.values())
