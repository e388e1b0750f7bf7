"""The wheel ships every package: pyproject's list matches the folders that are packages."""
from __future__ import annotations

import pathlib
import tomllib

ROOT = pathlib.Path(__file__).resolve().parent.parent
ROOTS = {"tfjit": "tfjit", "passes": "tfjit.passes", "backends": "tfjit.backends", "bench": "tfjit.bench"}


def test_pyproject_lists_every_package_and_every_package_has_an_init():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    found = set()
    for folder, package in ROOTS.items():
        assert config["package-dir"][package] == folder
        for path in (ROOT / folder).rglob("*.py"):
            parts = path.parent.relative_to(ROOT / folder).parts
            if "__pycache__" in parts or "results" in parts:
                continue
            assert (path.parent / "__init__.py").exists(), f"{path.parent} holds modules but no __init__.py"
            found.add(".".join([package, *parts]))
    assert set(config["packages"]) == found
