"""What installs: pyproject.toml lists every package, calibrate/ and profiles/ install inside perfmodel.

``[tool.setuptools] packages`` is a list, not a search (a search would install ``calibrate/`` as a
top-level ``calibrate``), so a new package folder must be added to it; these tests say which.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")  # Python >= 3.11

ROOT = Path(__file__).resolve().parents[1]


def _setuptools() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]


def _package_folders(package_dir: dict[str, str]) -> dict[str, Path]:
    """Installed package name -> folder, for every folder with an ``__init__.py`` under a mapped root."""
    roots = {"perfmodel": ROOT / "perfmodel"} | {name: ROOT / d for name, d in package_dir.items() if name}
    out = {}
    for name, folder in roots.items():
        for init in folder.rglob("__init__.py"):
            rel = init.parent.relative_to(folder).parts
            out[".".join([name, *rel])] = init.parent
    return out


def test_every_package_folder_is_listed():
    st = _setuptools()
    assert st["package-dir"]["perfmodel.calibrate"] == "calibrate"
    assert st["package-dir"]["perfmodel.profiles"] == "profiles"
    found = set(_package_folders(st["package-dir"]))
    listed = set(st["packages"])
    assert found - listed == set(), "package folders missing from [tool.setuptools] packages"
    assert listed - found == set(), "[tool.setuptools] packages names folders that do not exist"
    assert not any(p == "calibrate" or p.startswith("calibrate.") for p in listed)


def test_nothing_imports_a_top_level_calibrate():
    """calibrate/ is ``perfmodel.calibrate`` once installed; run from the repository root a stray
    ``import calibrate`` would still work, so it is looked for in the source."""
    stray = []
    for folder in ("perfmodel", "calibrate", "tests", "tools"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
                names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                         else [node.module] if isinstance(node, ast.ImportFrom) and not node.level else [])
                if any(n and n.split(".")[0] == "calibrate" for n in names):
                    stray.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not stray, "imports of a top-level calibrate (use perfmodel.calibrate):\n" + "\n".join(stray)
