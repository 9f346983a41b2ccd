"""The workspace is laid out as DESIGN.md says: members, names, console scripts, shared as a workspace source."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAPER_PACKAGES = ("dgm-eval", "direct-cms", "fusemix", "bnpo", "eb-ensembles")


def read_pyproject(folder: Path) -> dict:
    return tomllib.loads((folder / "pyproject.toml").read_text())


def test_root_is_virtual_and_lists_the_members():
    root = read_pyproject(ROOT)
    assert "project" not in root, "the workspace root must stay virtual (no [project])"
    assert root["tool"]["uv"]["workspace"]["members"] == ["shared", "packages/*"]
    assert sorted(p.name for p in (ROOT / "packages").iterdir() if p.is_dir()) == sorted(PAPER_PACKAGES)


@pytest.mark.parametrize("name", PAPER_PACKAGES)
def test_package_metadata(name):
    meta = read_pyproject(ROOT / "packages" / name)
    project = meta["project"]
    module = name.replace("-", "_")
    assert project["name"] == name
    assert project["requires-python"] == ">=3.11"
    assert project["scripts"] == {name: f"{module}.cli:main"}
    assert meta["tool"]["uv"]["sources"]["sixlab-shared"] == {"workspace": True}
    deps = project["dependencies"]
    assert any(d.startswith("sixlab-shared") for d in deps)
    for dep in deps:  # lower bounds, never exact pins: the lock pins
        assert "==" not in dep, f"{name}: exact pin {dep!r}; declare a lower bound and let uv.lock pin"
    assert (ROOT / "packages" / name / "src" / module / "__init__.py").is_file()
    assert (ROOT / "packages" / name / "README.md").stat().st_size > 0


@pytest.mark.parametrize("name", PAPER_PACKAGES)
def test_every_cli_answers_help(name):
    exe = Path(sys.executable).parent / name
    assert exe.is_file(), f"console script {name} is not installed; run `uv sync --all-packages`"
    out = subprocess.run([str(exe), "--help"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "Usage" in out.stdout and name in out.stdout
    version = subprocess.run([str(exe), "--version"], capture_output=True, text=True, timeout=120)
    assert re.fullmatch(rf"{name} \d+\.\d+\.\d+\S*\n", version.stdout)


def _verbs(name: str) -> set[str]:
    exe = Path(sys.executable).parent / name
    out = subprocess.run([str(exe), "--help"], capture_output=True, text=True, timeout=120).stdout
    # typer lists commands in a box: "│ verb   description │"
    verbs = set()
    in_commands = False
    for line in out.splitlines():
        if "Commands" in line:
            in_commands = True
            continue
        if in_commands:
            match = re.match(r"^[│|]\s+([a-z][a-z0-9-]*)\s", line)
            if match:
                verbs.add(match.group(1))
    return verbs


@pytest.mark.parametrize("name", PAPER_PACKAGES)
def test_readme_commands_name_real_verbs(name):
    """Every `<cli> <verb>` in the package README's code blocks is a verb the CLI has (docs do not lie)."""
    readme = (ROOT / "packages" / name / "README.md").read_text()
    blocks = re.findall(r"```(?:bash|sh|console)?\n(.*?)```", readme, flags=re.S)
    mentioned = set()
    for block in blocks:
        for line in block.splitlines():
            line = line.strip().removeprefix("$ ")
            match = re.match(rf"^(?:uv run (?:--\S+ )*)?{re.escape(name)}\s+([a-z][a-z0-9-]*)", line)
            if match:
                mentioned.add(match.group(1))
    missing = mentioned - _verbs(name)
    assert not missing, f"{name}/README.md shows verbs the CLI does not have: {sorted(missing)}"
