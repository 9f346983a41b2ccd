"""One-line errors for users' files, file permissions, seeded blocks, thread limits, metrics rewinding."""

from __future__ import annotations

import json
import os
import random
import stat
import zipfile

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from threadpoolctl import threadpool_info

from sixlab_shared import (
    RunDir,
    UserError,
    atomic_write_json,
    load_checkpoint,
    load_npz,
    load_safetensors,
    require_file,
    require_output_file,
    save_checkpoint,
    seeded,
    set_threads,
)


def test_require_file_tells_a_folder_from_a_missing_file(tmp_path):
    with pytest.raises(UserError, match="is a folder; expected a file"):
        require_file(tmp_path, "dataset")
    with pytest.raises(UserError, match="does not exist"):
        require_file(tmp_path / "nope.npz", "dataset")
    (tmp_path / "x.npz").write_bytes(b"1")
    assert require_file(tmp_path / "x.npz") == tmp_path / "x.npz"


def test_require_output_file(tmp_path):
    with pytest.raises(UserError, match="is a folder"):
        require_output_file(tmp_path, overwrite=True)
    (tmp_path / "a.npz").write_bytes(b"1")
    with pytest.raises(UserError, match="--overwrite"):
        require_output_file(tmp_path / "a.npz", overwrite=False)
    assert require_output_file(tmp_path / "a.npz", overwrite=True).name == "a.npz"
    with pytest.raises(UserError, match="is a file, not a folder"):
        require_output_file(tmp_path / "a.npz" / "b.npz", overwrite=False)


def test_load_npz_reads_arrays_and_refuses_bad_files(tmp_path):
    good = tmp_path / "good.npz"
    np.savez(good, x=np.arange(3), y=np.eye(2))
    arrays = load_npz(good)
    assert list(arrays) == ["x", "y"] and np.array_equal(arrays["x"], np.arange(3))

    random_bytes = tmp_path / "random.npz"
    random_bytes.write_bytes(np.random.default_rng(0).bytes(4096))
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(good.read_bytes()[:100])
    pickled = tmp_path / "pickled.npz"
    np.savez(pickled, obj=np.array([{"a": 1}], dtype=object))
    not_npy = tmp_path / "zip.npz"
    with zipfile.ZipFile(not_npy, "w") as archive:
        archive.writestr("x.npy", b"not an array")
    for path, fragment in [
        (random_bytes, "is not a valid .npz archive"),
        (truncated, "is not a valid .npz archive"),
        (pickled, "holds Python objects"),
        (not_npy, "is not a valid .npz archive"),
        (tmp_path, "is a folder"),
    ]:
        with pytest.raises(UserError, match=fragment) as info:
            load_npz(path, "dataset")
        assert "\n" not in str(info.value)


def test_load_safetensors_refuses_corrupt_files(tmp_path):
    good = tmp_path / "w.safetensors"
    save_file({"w": torch.ones(2, 2)}, str(good))
    assert torch.equal(load_safetensors(good)["w"], torch.ones(2, 2))
    for name, data in [("trunc", good.read_bytes()[:40]), ("junk", b"\x00" * 7), ("text", b"hello world" * 9)]:
        bad = tmp_path / f"{name}.safetensors"
        bad.write_bytes(data)
        with pytest.raises(UserError, match="is not a readable safetensors file"):
            load_safetensors(bad, "checkpoint")
        with pytest.raises(UserError, match="could not be read as safetensors"):
            load_checkpoint(bad)


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_written_files_follow_the_umask(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        atomic_write_json(tmp_path / "a.json", {"x": 1})
        save_checkpoint(tmp_path / "c.safetensors", {"w": torch.ones(1)})
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a.json").stat().st_mode) == mode
    assert stat.S_IMODE((tmp_path / "c.safetensors").stat().st_mode) == mode


def test_replacing_a_file_keeps_its_mode(tmp_path):
    target = tmp_path / "a.json"
    target.write_text("{}")
    target.chmod(0o640)
    atomic_write_json(target, {"x": 2})
    assert stat.S_IMODE(target.stat().st_mode) == 0o640 and json.loads(target.read_text()) == {"x": 2}


def test_writing_onto_a_folder_is_a_user_error(tmp_path):
    (tmp_path / "summary.json").mkdir()
    with pytest.raises(UserError, match="is a folder; expected the path of a file"):
        atomic_write_json(tmp_path / "summary.json", {})


def test_seeded_block_repeats_and_leaves_outer_streams_alone():
    random.seed(1)
    np.random.seed(1)
    torch.manual_seed(1)
    expected = (random.random(), np.random.rand(), torch.rand(1).item())
    random.seed(1)
    np.random.seed(1)
    torch.manual_seed(1)
    with seeded(7):
        first = (random.random(), np.random.rand(), torch.rand(1).item())
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == expected
    with seeded(7):
        assert (random.random(), np.random.rand(), torch.rand(1).item()) == first
    with pytest.raises(ValueError, match="seed"):
        with seeded(-1):
            pass


def test_seeded_restores_after_an_exception():
    torch.manual_seed(3)
    state = torch.get_rng_state()
    with pytest.raises(RuntimeError):
        with seeded(0):
            torch.rand(5)
            raise RuntimeError("boom")
    assert torch.equal(torch.get_rng_state(), state)


def test_set_threads_limits_torch_and_blas(monkeypatch):
    before = torch.get_num_threads()
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        monkeypatch.setenv(var, os.environ.get(var, ""))  # restored after the test
    try:
        set_threads(1)
        assert torch.get_num_threads() == 1
        blas = [pool for pool in threadpool_info() if pool["user_api"] == "blas"]
        assert blas and all(pool["num_threads"] == 1 for pool in blas)
        assert os.environ["OMP_NUM_THREADS"] == "1"
        with pytest.raises(ValueError):
            set_threads(0)
    finally:
        torch.set_num_threads(before)


def test_rewind_metrics_drops_rows_after_the_checkpoint(tmp_path):
    run = RunDir(tmp_path / "run")
    for step in range(1, 6):
        run.log_metrics(step=step, loss=float(step))
    run.log_metrics(member=0, nll=1.0)  # a row without a step (written after training)
    with open(run.path / "metrics.jsonl", "a") as handle:
        handle.write('{"step": 6, "lo')  # torn by a crash
    assert run.rewind_metrics(3) == 3  # steps 4 and 5, and the torn line
    assert [r.get("step") for r in run.read_metrics()] == [1, 2, 3, None]
    assert run.rewind_metrics(3, drop_unstepped=True) == 1
    assert [r.get("step") for r in run.read_metrics()] == [1, 2, 3]


def test_run_messages_name_only_the_flags_the_command_has(tmp_path):
    RunDir(tmp_path / "run").write_config({"a": 1})
    with pytest.raises(UserError) as info:
        RunDir(tmp_path / "run", flags=("--overwrite",))
    assert "--overwrite" in str(info.value) and "--resume" not in str(info.value)
    with pytest.raises(UserError) as info:
        RunDir(tmp_path / "run")
    assert "--resume" in str(info.value) and "--overwrite" in str(info.value)


@pytest.mark.parametrize("content", [b"{not json", b"\xff\xfe\x00", b'{"seed": 0}', b"[1, 2]"])
def test_resuming_a_run_with_a_corrupt_config_is_one_line(tmp_path, content):
    run = RunDir(tmp_path / "run")
    run.write_config({"a": 1})
    (run.path / "config.json").write_bytes(content)
    with pytest.raises(UserError, match="corrupt") as info:
        RunDir(tmp_path / "run", resume=True)
    assert "\n" not in str(info.value)
