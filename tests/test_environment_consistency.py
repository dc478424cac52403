"""environment.yml (conda) and pyproject.toml must agree.

pyproject.toml is the single source of truth. environment.yml lists the same
packages with the same version bounds (from conda-forge where it has them, the
rest in its pip section) and installs the project with ``-e .[extras]``.
"""

from __future__ import annotations

import copy
import re
import sys
from pathlib import Path

import pytest
import yaml

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    tomllib = pytest.importorskip("tomli")

ROOT = Path(__file__).resolve().parents[1]

# The extras environment.yml installs the project with.
ENV_EXTRAS = ("notebooks", "tests")
# environment.yml entries that are not Python dependencies of the project.
ENV_ONLY = {"python", "pip"}
# conda-forge names that stand for a different PyPI name.
CONDA_ALIASES = {"tensorflow": "tensorflow-cpu", "matplotlib-base": "matplotlib"}

_REQ = re.compile(r"^\s*(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[(?P<extras>[^\]]*)\])?\s*(?P<spec>[^;]*)")
_EDITABLE = re.compile(r"^-e\s+\.(?:\[(?P<extras>[^\]]*)\])?\s*$")


def normalize(name: str) -> str:
    """PEP 503 normalisation: case-insensitive, runs of ``-``, ``_``, ``.`` are one ``-``."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _extras(text: str | None) -> frozenset[str]:
    return frozenset(normalize(e) for e in (text or "").split(",") if e.strip())


def parse_requirement(text: str) -> tuple[str, frozenset[str], str]:
    """``'Name[a,b] >=1.0; marker'`` -> ``('name', {'a', 'b'}, '>=1.0')``.

    Works for PEP 508 strings and for simple conda match specs (``numpy >=2.0``);
    a conda ``=1.2`` pin reads as ``==1.2``.
    """
    match = _REQ.match(text)
    if match is None:
        raise ValueError(f"cannot parse requirement {text!r}")
    extras = _extras(match["extras"])
    spec = re.sub(r"\s+", "", match["spec"])
    spec = ",".join(sorted(s for s in spec.split(",") if s))
    if re.fullmatch(r"=[^=].*", spec):
        spec = "=" + spec
    return normalize(match["name"]), extras, spec


def environment_packages(env: dict) -> tuple[dict[str, str], frozenset[str] | None, list[str]]:
    """Packages environment.yml installs: ``{name: spec}``, the extras of its
    ``-e .[...]`` line (None if there is none) and problems found while reading."""
    packages: dict[str, str] = {}
    editable: frozenset[str] | None = None
    problems: list[str] = []

    def add(name: str, spec: str, where: str) -> None:
        if name in packages:
            problems.append(f"environment.yml lists {name!r} twice (again in {where})")
        packages[name] = spec

    for entry in env.get("dependencies") or []:
        if isinstance(entry, dict):
            for item in entry.get("pip") or []:
                found = _EDITABLE.match(item.strip())
                if found:
                    editable = _extras(found["extras"])
                    continue
                name, _, spec = parse_requirement(item)
                add(name, spec, "the pip section")
        else:
            # conda match spec, possibly channel-qualified: conda-forge::numpy>=2
            name, _, spec = parse_requirement(str(entry).split("::")[-1])
            add(CONDA_ALIASES.get(name, name), spec, "the conda section")
    return packages, editable, problems


def compare(pyproject: dict, env: dict) -> list[str]:
    """Every way the two files disagree, as readable lines; empty when they agree."""
    project = pyproject["project"]
    optional = project.get("optional-dependencies", {})
    packages, editable, problems = environment_packages(env)

    wanted: dict[str, str] = {}  # what environment.yml must install
    for group in ["dependencies", *ENV_EXTRAS]:
        if group == "dependencies":
            requirements = project.get("dependencies", [])
        elif group in optional:
            requirements = optional[group]
        else:
            problems.append(f"pyproject.toml has no optional-dependencies group {group!r}")
            continue
        for requirement in requirements:
            name, _, spec = parse_requirement(requirement)
            if name in wanted and wanted[name] != spec:
                problems.append(f"pyproject.toml gives {name!r} two different bounds: {wanted[name]!r} and {spec!r}")
            wanted[name] = spec

    for name, spec in sorted(wanted.items()):
        if name not in packages:
            problems.append(f"{name!r} is a dependency in pyproject.toml but not in environment.yml")
        elif packages[name] != spec:
            problems.append(
                f"{name!r}: environment.yml asks for {packages[name] or 'any version'!r}, "
                f"pyproject.toml for {spec or 'any version'!r}"
            )

    known = set(wanted)
    for group in optional.values():
        known.update(parse_requirement(r)[0] for r in group)
    for name in sorted(set(packages) - known - ENV_ONLY):
        problems.append(f"environment.yml lists {name!r}, which pyproject.toml does not know")

    if editable is None:
        problems.append("environment.yml does not install the project with '-e .[...]'")
    else:
        missing = {normalize(e) for e in ENV_EXTRAS} - editable
        if missing:
            problems.append(f"environment.yml's '-e .[...]' lacks the extras {sorted(missing)}")

    python = packages.get("python")
    requires = re.sub(r"\s+", "", project.get("requires-python", ""))
    lower_env = re.search(r">=([0-9.]+)", python or "")
    lower_project = re.search(r">=([0-9.]+)", requires)
    if python is None:
        problems.append("environment.yml does not list python")
    elif (lower_env and lower_env[1]) != (lower_project and lower_project[1]):
        problems.append(
            f"python lower bound: environment.yml says {python!r}, pyproject.toml requires-python {requires!r}"
        )
    return problems


@pytest.fixture(scope="module")
def pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def environment() -> dict:
    return yaml.safe_load((ROOT / "environment.yml").read_text(encoding="utf-8"))


def test_environment_yml_matches_pyproject(pyproject, environment):
    assert compare(pyproject, environment) == []


def test_environment_yml_basics(environment):
    assert environment["name"] == "acktr_lab"
    assert environment["channels"] == ["conda-forge"]
    # the pip section comes last, so conda has installed everything it can first
    assert isinstance(environment["dependencies"][-1], dict)


def test_parse_requirement():
    assert parse_requirement("gymnasium[classic-control]>=1.1") == (
        "gymnasium",
        frozenset({"classic-control"}),
        ">=1.1",
    )
    assert parse_requirement("Pytest_Timeout >= 2.3, <3 ; python_version >= '3.10'") == (
        "pytest-timeout",
        frozenset(),
        "<3,>=2.3",
    )
    assert parse_requirement("numpy=2.1") == ("numpy", frozenset(), "==2.1")
    assert parse_requirement("pip") == ("pip", frozenset(), "")


def test_comparison_catches_a_dependency_missing_from_environment_yml(pyproject, environment):
    changed = copy.deepcopy(pyproject)
    changed["project"]["dependencies"].append("scipy>=1.13")
    changed["project"]["optional-dependencies"]["tests"].append("Hypothesis>=6")
    problems = compare(changed, environment)
    assert any("'scipy'" in p and "not in environment.yml" in p for p in problems), problems
    assert any("'hypothesis'" in p and "not in environment.yml" in p for p in problems), problems


def test_comparison_catches_a_changed_bound(pyproject, environment):
    changed = copy.deepcopy(pyproject)
    deps = changed["project"]["dependencies"]
    deps[:] = ["numpy>=2.1" if parse_requirement(d)[0] == "numpy" else d for d in deps]
    changed["project"]["requires-python"] = ">=3.12"
    problems = compare(changed, environment)
    assert any("'numpy'" in p for p in problems), problems
    assert any("python lower bound" in p for p in problems), problems


def test_comparison_catches_environment_yml_drift(pyproject, environment):
    changed = copy.deepcopy(environment)
    changed["dependencies"].insert(2, "scipy")
    pip = changed["dependencies"][-1]["pip"]
    pip[:] = ["-e .[tests]" if item.startswith("-e") else item for item in pip]
    problems = compare(pyproject, changed)
    assert any("'scipy'" in p and "does not know" in p for p in problems), problems
    assert any("lacks the extras ['notebooks']" in p for p in problems), problems

    pip.remove("-e .[tests]")
    assert any("'-e .[...]'" in p for p in compare(pyproject, changed))
