"""The five CLIs share their common options: same names, same help text, same seed default (issue 12).

Read from each package's typer app (the command tree click builds), not from rendered help boxes, so the check does
not depend on terminal width. Rules:
- every verb has ``--config`` (TOML setting any of its options) with the shared help;
- every ``demo`` has ``--out``, ``--seed``, ``--device``, ``--threads``, ``--config`` and ``--fast``;
- wherever a verb has one of the shared options, it is spelled and explained exactly as ``sixlab_shared.cli`` does,
  and ``--seed`` defaults to 0. Two allowances: ``--out`` says what the verb writes there (a run folder, a dataset
  file), so only its spelling is checked; ``--fast`` starts with the shared text and may add what the smoke
  version runs.
"""

from __future__ import annotations

import importlib

import pytest
import typer

from sixlab_shared.cli import HELP

PAPER_PACKAGES = ("dgm-eval", "direct-cms", "fusemix", "bnpo", "eb-ensembles")
SHARED = {"--seed": "seed", "--device": "device", "--threads": "threads", "--config": "config"}
DEMO_NEEDS = ("--out", "--seed", "--device", "--threads", "--config", "--fast")


def _verbs(package: str) -> dict:
    app = importlib.import_module(f"{package.replace('-', '_')}.cli").app
    group = typer.main.get_command(app)
    return dict(group.commands)  # type: ignore[attr-defined]


def _options(command) -> dict[str, object]:
    found = {}
    for param in command.params:
        for opt in getattr(param, "opts", []):
            found[opt] = param
    return found


@pytest.mark.parametrize("package", PAPER_PACKAGES)
def test_shared_options_are_spelled_and_explained_alike(package):
    problems = []
    for verb, command in sorted(_verbs(package).items()):
        options = _options(command)
        if "--config" not in options:
            problems.append(f"{verb}: no --config")
        if verb == "demo":
            problems += [f"demo: no {opt}" for opt in DEMO_NEEDS if opt not in options]
        for opt, key in SHARED.items():
            param = options.get(opt)
            if param is not None and " ".join((param.help or "").split()) != HELP[key]:
                problems.append(f"{verb} {opt}: help {param.help!r} is not the shared {HELP[key]!r}")
        if "--fast" in options and not " ".join((options["--fast"].help or "").split()).startswith(HELP["fast"]):
            problems.append(f"{verb} --fast: help does not start with the shared {HELP['fast']!r}")
        seed = options.get("--seed")
        if seed is not None and seed.default != 0:
            problems.append(f"{verb} --seed: default {seed.default!r}, the shared default is 0")
        for legacy in ("-o", "--output"):
            if legacy in options:
                problems.append(f"{verb}: {legacy} (the shared spelling is --out)")
    assert not problems, f"{package}: " + "; ".join(problems)


@pytest.mark.parametrize("package", PAPER_PACKAGES)
def test_a_mistyped_option_is_one_line(package):
    """Click's usage box for an unparsable value becomes one line and exit 2 (sixlab_shared.cli.OneLineErrorGroup)."""
    from typer.testing import CliRunner

    app = importlib.import_module(f"{package.replace('-', '_')}.cli").app
    try:
        runner = CliRunner(mix_stderr=False)
    except TypeError:  # click >= 8.2 keeps stderr apart already
        runner = CliRunner()
    result = runner.invoke(app, ["demo", "--seed", "not-a-number"])
    lines = result.stderr.strip().splitlines()
    assert result.exit_code == 2, result.output
    assert len(lines) == 1 and lines[0].startswith("error: ") and "--seed" in lines[0], result.stderr
