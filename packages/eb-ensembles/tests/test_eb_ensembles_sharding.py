"""Members sharded across two CPU processes (accelerate's PartialState over gloo), killed, resumed, gathered."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap

import torch

from eb_ensembles.models import mlp_factory
from eb_ensembles.training.config import TrainConfig
from eb_ensembles.training.train import train_ensemble

WORKER = textwrap.dedent(
    """
    import os, sys, torch
    from eb_ensembles.models import mlp_factory
    from eb_ensembles.training.config import TrainConfig
    from eb_ensembles.training.train import train_ensemble
    folder, kill_epoch = sys.argv[1], int(sys.argv[2])
    g = torch.Generator().manual_seed(123)
    x = torch.randn(240, 5, generator=g, dtype=torch.float64)
    y = (x[:, 0] > 0).long() + (x[:, 1] > 0.5).long()
    def hook(members, epoch):
        if epoch == kill_epoch:
            os._exit(3)  # killed after the checkpoint of this epoch
    config = TrainConfig(members=5, epochs=3, batch_size=64, dtype="float64", seed=4, checkpoint_every=1, shard=True)
    ens = train_ensemble(mlp_factory(5, 3, (8,)), x, y, config, checkpoint_dir=folder, resume=True, on_epoch_end=hook)
    torch.save(ens.member_probs(x), os.path.join(folder, "probs_rank%s.pt" % os.environ["RANK"]))
    """
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _launch(script, folder, kill_epoch: int) -> list[int]:
    port = _free_port()
    procs = []
    for rank in (0, 1):
        env = {**os.environ, "RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": "2"}
        env |= {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "OMP_NUM_THREADS": "1"}
        procs.append(subprocess.Popen([sys.executable, str(script), str(folder), str(kill_epoch)], env=env))
    return [p.wait(timeout=180) for p in procs]


def test_two_processes_train_their_members_resume_after_a_kill_and_gather(tmp_path):
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    folder = tmp_path / "run"
    folder.mkdir()
    assert _launch(script, folder, kill_epoch=1) == [3, 3]
    partials = sorted(p.name for p in folder.glob("partial_*"))
    assert partials == ["partial_vmap_rank0.safetensors", "partial_vmap_rank1.safetensors"]  # one per process
    assert not (folder / "members").exists()
    assert _launch(script, folder, kill_epoch=99) == [0, 0]
    assert len(list((folder / "members").glob("member_*.safetensors"))) == 5
    assert not list(folder.glob("partial_*"))
    # both processes gathered all five members, with the numbers of one process training all of them unkilled
    g = torch.Generator().manual_seed(123)
    x = torch.randn(240, 5, generator=g, dtype=torch.float64)
    y = (x[:, 0] > 0).long() + (x[:, 1] > 0.5).long()
    config = TrainConfig(members=5, epochs=3, batch_size=64, dtype="float64", seed=4)
    reference = train_ensemble(mlp_factory(5, 3, (8,)), x, y, config).member_probs(x)
    for rank in (0, 1):
        probs = torch.load(folder / f"probs_rank{rank}.pt")
        torch.testing.assert_close(probs, reference, atol=1e-10, rtol=0)
