"""Dependency floors exclude versions with known advisories (issue 15, finding 18)."""

from __future__ import annotations

import tomllib
from importlib.metadata import version
from pathlib import Path

from packaging.requirements import Requirement
from packaging.version import Version

#: Each runtime dependency with an advisory, and the first version that fixed it.
FIXED = {"aiohttp": Version("3.14.3")}  # its HTTP response parser advisory


def test_floors_exclude_versions_with_known_advisories() -> None:
    project = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
    requirements = {Requirement(r).name: Requirement(r) for r in project["project"]["dependencies"]}
    for name, fixed in FIXED.items():
        specifier = requirements[name].specifier
        before = Version(f"{fixed.major}.{fixed.minor}.{fixed.micro - 1}")
        assert not specifier.contains(before), f"{name} {specifier} allows {before}"
        assert specifier.contains(fixed)
        assert Version(version(name)) >= fixed  # and what is installed here
