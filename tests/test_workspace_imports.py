"""No package imports another paper's package, or any module its pyproject does not declare.

uv cannot stop a member importing a dependency that another member brought into the shared environment; this scan
does. Module-level imports must come from the standard library, the package itself, or its declared dependencies.
Imports inside a function or a ``try`` block may also come from an optional extra (``direct-cms[eval]``).
"""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MEMBERS = {
    "sixlab-shared": ROOT / "shared",
    **{name: ROOT / "packages" / name for name in ("dgm-eval", "direct-cms", "fusemix", "bnpo", "eb-ensembles")},
}
PAPER_MODULES = {"dgm_eval", "direct_cms", "fusemix", "bnpo", "eb_ensembles"}


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirement_name(req: str) -> str:
    return _normalise(re.split(r"[\s<>=!~;\[]", req, maxsplit=1)[0])


def _imports(path: Path) -> list[tuple[str, bool]]:
    """(top-level module, guarded) for each absolute import; guarded = inside a function or a try block."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found: list[tuple[str, bool]] = []

    def visit(node: ast.AST, guarded: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inner = guarded or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Try)
            if isinstance(child, ast.Import):
                found.extend((alias.name.split(".")[0], guarded) for alias in child.names)
            elif isinstance(child, ast.ImportFrom) and child.level == 0 and child.module:
                found.append((child.module.split(".")[0], guarded))
            visit(child, inner)

    visit(tree, False)
    return found


@pytest.mark.parametrize("member", sorted(MEMBERS))
def test_imports_are_declared(member):
    folder = MEMBERS[member]
    project = tomllib.loads((folder / "pyproject.toml").read_text())["project"]
    own = member.replace("-", "_")
    required = {_requirement_name(r) for r in project.get("dependencies", [])}
    optional = {_requirement_name(r) for reqs in project.get("optional-dependencies", {}).values() for r in reqs}
    dists_of = dict(metadata.packages_distributions())
    # Workspace members are editable installs (a .pth file), which packages_distributions does not map.
    dists_of.update({name.replace("-", "_"): [name] for name in MEMBERS})
    problems = []
    for path in sorted((folder / "src").rglob("*.py")):
        for module, guarded in _imports(path):
            if module == own or module in sys.stdlib_module_names or module == "__future__":
                continue
            dists = {_normalise(d) for d in dists_of.get(module, [])}
            if not dists and guarded and _normalise(module) in optional:
                dists = {_normalise(module)}  # a declared extra that is not installed here (e.g. bitsandbytes)
            where = f"{path.relative_to(ROOT)} imports {module}"
            if module in PAPER_MODULES and not (guarded and dists & optional):
                problems.append(f"{where}: another paper's package (only allowed lazily, through an extra)")
            elif not dists:
                problems.append(f"{where}: no installed distribution provides it")
            elif not dists & required and not (guarded and dists & optional):
                problems.append(f"{where}: provided by {sorted(dists)}, not declared in {member}'s dependencies")
    assert not problems, "\n".join(problems)


def test_scan_catches_an_undeclared_import(tmp_path):
    bad = tmp_path / "mod.py"
    bad.write_text(
        "import numpy\ndef f():\n    import dgm_eval\ntry:\n    import scipy\nexcept ImportError:\n    pass\n"
    )
    assert _imports(bad) == [("numpy", False), ("dgm_eval", True), ("scipy", True)]
