"""Every package builds a wheel; a wheel installed alone (with sixlab-shared) works and brings no other paper."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAPER_PACKAGES = ("dgm-eval", "direct-cms", "fusemix", "bnpo", "eb-ensembles")


@pytest.fixture(scope="module")
def wheels(uv, tmp_path_factory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("wheels")
    for name in ("sixlab-shared", *PAPER_PACKAGES):
        subprocess.run(
            [uv, "build", "--package", name, "--wheel", "--out-dir", str(out), "--quiet"],
            cwd=ROOT,
            check=True,
            timeout=300,
        )
    found = {}
    for wheel in out.glob("*.whl"):
        dist = wheel.name.split("-")[0].replace("_", "-")
        found[dist] = wheel
    return found


def test_every_package_builds_a_wheel(wheels):
    assert set(wheels) == {"sixlab-shared", *PAPER_PACKAGES}
    for name in PAPER_PACKAGES:
        assert re.match(rf"{name.replace('-', '_')}-\d+\.\d+\.\d+.*-py3-none-any\.whl", wheels[name].name)


def _install_alone(uv: str, wheels: dict[str, Path], name: str, tmp_path: Path) -> Path:
    venv = tmp_path / f"venv-{name}"
    subprocess.run([uv, "venv", "--quiet", "--python", "3.11", str(venv)], check=True, timeout=120)
    # Pin third-party versions to the lock so the install reuses uv's cache instead of resolving anew.
    constraints = tmp_path / "constraints.txt"
    exported = subprocess.run(
        [
            uv,
            "export",
            "--frozen",
            "--all-packages",
            "--no-hashes",
            "--no-emit-workspace",
            "--no-dev",
            "--all-extras",
            "--format",
            "requirements-txt",
        ],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout
    constraints.write_text(exported)
    subprocess.run(
        [
            uv,
            "pip",
            "install",
            "--quiet",
            "--python",
            str(venv / "bin" / "python"),
            "-c",
            str(constraints),
            str(wheels[name]),
            str(wheels["sixlab-shared"]),
        ],
        check=True,
        timeout=900,
    )
    return venv


def _check_alone(venv: Path, uv: str, name: str) -> None:
    help_out = subprocess.run([str(venv / "bin" / name), "--help"], capture_output=True, text=True, timeout=300)
    assert help_out.returncode == 0, help_out.stderr
    listed = subprocess.run(
        [uv, "pip", "list", "--python", str(venv / "bin" / "python")], capture_output=True, text=True, check=True
    ).stdout
    installed = {line.split()[0].lower() for line in listed.splitlines()[2:] if line.strip()}
    others = set(PAPER_PACKAGES) - {name}
    assert not installed & others, f"{name} brought other papers' packages: {sorted(installed & others)}"
    assert {name, "sixlab-shared"} <= installed


def test_bnpo_wheel_installs_alone_and_runs(uv, wheels, tmp_path):
    venv = _install_alone(uv, wheels, "bnpo", tmp_path)
    _check_alone(venv, uv, "bnpo")


@pytest.mark.slow
@pytest.mark.parametrize("name", [p for p in PAPER_PACKAGES if p != "bnpo"])
def test_every_wheel_installs_alone_and_runs(uv, wheels, tmp_path, name):
    venv = _install_alone(uv, wheels, name, tmp_path)
    _check_alone(venv, uv, name)


# One model load per package, through the libraries the package loads models with, in the user's environment: a
# broken torch/torchaudio pair shows up here (transformers imports torchaudio when it is installed and then fails
# to load any model), as it did for fusemix before its torch range was declared.
MODEL_LOAD = {
    "dgm-eval": (
        "from transformers import Dinov2Config, Dinov2Model; import tempfile; d = tempfile.mkdtemp(); "
        "Dinov2Model(Dinov2Config(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64, "
        "image_size=28, patch_size=14)).save_pretrained(d); Dinov2Model.from_pretrained(d)"
    ),
    "direct-cms": (
        "from diffusers import UNet2DModel; import tempfile; d = tempfile.mkdtemp(); "
        "UNet2DModel(sample_size=8, block_out_channels=(8, 16), norm_num_groups=4, layers_per_block=1, "
        "down_block_types=('DownBlock2D', 'DownBlock2D'), up_block_types=('UpBlock2D', 'UpBlock2D'))"
        ".save_pretrained(d); UNet2DModel.from_pretrained(d)"
    ),
    "fusemix": (
        "import torchaudio; from transformers import BertConfig, BertModel; import tempfile; d = tempfile.mkdtemp(); "
        "BertModel(BertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64))"
        ".save_pretrained(d); BertModel.from_pretrained(d)"
    ),
    "bnpo": (
        "import torch, tempfile, gymnasium; from sixlab_shared import save_checkpoint, load_checkpoint; "
        "p = tempfile.mkdtemp() + '/m.safetensors'; m = torch.nn.LSTM(4, 8); "
        "save_checkpoint(p, {'m': m.state_dict()}); "
        "m.load_state_dict(load_checkpoint(p)['m'])"
    ),
    "eb-ensembles": (
        "import torch, tempfile; from sixlab_shared import save_checkpoint, load_checkpoint; "
        "p = tempfile.mkdtemp() + '/m.safetensors'; m = torch.nn.Linear(4, 2); "
        "save_checkpoint(p, {'m': m.state_dict()}); "
        "m.load_state_dict(load_checkpoint(p)['m'])"
    ),
}


@pytest.mark.slow
@pytest.mark.parametrize("name", PAPER_PACKAGES)
def test_wheel_installs_as_a_user_does_without_our_lock(uv, wheels, tmp_path, name):
    """`pip install <wheel>` resolved from the index alone (no constraints from uv.lock): demo --fast and a model load.

    Downloads the newest releases the package's declared ranges admit (a CUDA torch is several GB): slow-marked.
    """
    venv = tmp_path / f"venv-{name}"
    subprocess.run([uv, "venv", "--quiet", "--python", "3.11", str(venv)], check=True, timeout=120)
    python = str(venv / "bin" / "python")
    subprocess.run(
        [uv, "pip", "install", "--quiet", "--python", python, str(wheels[name]), str(wheels["sixlab-shared"])],
        check=True,
        timeout=1800,
    )
    _check_alone(venv, uv, name)
    loaded = subprocess.run([python, "-c", MODEL_LOAD[name]], capture_output=True, text=True, timeout=600)
    assert loaded.returncode == 0, loaded.stderr[-3000:]
    demo = subprocess.run(
        [str(venv / "bin" / name), "demo", "--fast", "--threads", "1", "--out", str(tmp_path / "demo")],
        capture_output=True,
        text=True,
        timeout=1200,
        cwd=tmp_path,
    )
    assert demo.returncode == 0, demo.stderr[-3000:]
