"""The README's Python API snippet runs as written (with the Hub ids pointed at a tiny local SDXL pipeline)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_api_snippet_runs(tiny_sdxl_dir, tmp_path, monkeypatch):
    text = README.read_text(encoding="utf-8")
    section = text[text.index("## Python API") : text.index("## Reproducing the paper on a GPU")]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    code = code.replace('"stabilityai/stable-diffusion-xl-base-1.0"', repr(str(tiny_sdxl_dir)))
    code = code.replace('vae="madebyollin/sdxl-vae-fp16-fix"', "vae=None")
    code = code.replace("torch.randn(1, 4, 128, 128)", "torch.randn(1, 4, 8, 8)")
    assert "stabilityai" not in code and "madebyollin" not in code
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(code, str(README), "exec"), namespace)  # noqa: S102 - our own README
    assert (tmp_path / "lora" / "pytorch_lora_weights.safetensors").is_file()
    assert namespace["loss"].item() >= 0


@pytest.mark.parametrize("verb", ["train-teacher", "distill", "sample", "evaluate", "demo"])
def test_readme_names_every_verb(verb):
    assert f"direct-cms {verb}" in README.read_text(encoding="utf-8")
