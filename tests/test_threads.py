"""Numbers do not depend on the machine's core count: every run pins its thread count.

Two fresh processes, one started with ``OMP_NUM_THREADS=1`` and one with ``OMP_NUM_THREADS=2`` (torch's
default follows it), train the same small U-Net through ``setup_run`` + ``fit`` and must end with
bit-identical weights. As a control, the same training with the pin lifted (threads set to the process
default) differs, so the test can fail.
"""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent("""
    import hashlib, sys, torch
    from torch.utils.data import TensorDataset
    from glassbox.chapters import setup_run
    from glassbox.core import repro
    from glassbox.models.unet import UNet
    from glassbox.models.common import init_model
    from glassbox.training.loop import fit, paired_loss
    run = setup_run("data", profile="smoke", device="cpu", seed=3)
    if sys.argv[1] == "unpinned":
        repro.pin_threads(int(sys.argv[2]))
    g = torch.Generator().manual_seed(0)
    x = torch.randn(8, 1, 32, 32, generator=g)
    y = x + 0.1 * torch.randn(8, 1, 32, 32, generator=g)
    model = init_model(lambda: UNet(depth=5, width=0.25), init_seed=1)
    fit(model, TensorDataset(x, y), paired_loss(), epochs=1, batch_size=4, data_seed=2, progress=False,
        optimizer=lambda params: torch.optim.Adam(params, lr=1e-3))
    digest = hashlib.sha256(b"".join(p.detach().numpy().tobytes() for p in model.parameters())).hexdigest()
    print(torch.get_num_threads(), digest)
""")


def _train(threads: int, mode: str = "pinned") -> tuple[int, str]:
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    proc = subprocess.run([sys.executable, "-c", SCRIPT, mode, str(threads)], env=env, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    count, digest = proc.stdout.split()[-2:]
    return int(count), digest


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="needs two cores to run with two threads")
def test_weights_do_not_depend_on_the_machines_thread_count():
    one = _train(1)
    two = _train(2)
    assert one[0] == two[0] == 1, "setup_run must pin one thread"
    assert one[1] == two[1], "same seed and code gave different weights with OMP_NUM_THREADS=1 and 2"
    # control: without the pin the thread count changes the floating-point order, and the weights
    unpinned = _train(2, mode="unpinned")
    assert unpinned[0] == 2
    assert unpinned[1] != one[1], "the control should differ; if not, this test cannot detect a missing pin"
