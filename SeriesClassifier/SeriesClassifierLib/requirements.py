"""The engine's requirements, read from ``Resources/requirements.txt`` (the list pyproject.toml reads too),
and what of them this Python lacks: missing, or installed in a version outside the range.

Standard library only: the Slicer module calls this before anything else is installed.
"""

from __future__ import annotations

import importlib.metadata
import re
from pathlib import Path
from typing import Callable, Optional

from .resources import resource_path

REQUIREMENTS_FILE = "requirements.txt"
_SECTION = re.compile(r"^#\s*\[(\w+)\]")
_REQUIREMENT = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)\s*(.*)$")
_SPEC = re.compile(r"^(>=|<=|==|!=|~=|>|<)\s*([0-9][0-9A-Za-z.*+-]*)$")


def requirements_path() -> Path:
    return resource_path(REQUIREMENTS_FILE)


def read_requirements(sections=("core",), path: Optional[Path] = None) -> list:
    """The requirement lines of the named sections, in file order."""
    wanted, current, out = set(sections), None, []
    for raw in (path or requirements_path()).read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        m = _SECTION.match(line)
        if m:
            current = m.group(1)
        elif line and not line.startswith("#") and current in wanted:
            out.append(line)
    return out


def split_requirement(requirement: str) -> tuple:
    """('scikit-learn', ['>=1.3']) from 'scikit-learn>=1.3'."""
    m = _REQUIREMENT.match(requirement.strip())
    if not m:
        raise ValueError(f"not a requirement: {requirement!r}")
    specs = [s.strip() for s in m.group(2).split(",") if s.strip()]
    return m.group(1), specs


def version_tuple(version: str) -> tuple:
    """The release numbers of a version ('2.4.4' -> (2, 4, 4); '2.13.0+cpu' -> (2, 13, 0); '1.6rc1' -> (1, 6))."""
    release = re.match(r"^\s*v?(\d+(?:\.\d+)*)", version)
    return tuple(int(p) for p in release.group(1).split(".")) if release else ()


def _cmp(a: tuple, b: tuple) -> int:
    n = max(len(a), len(b))
    a, b = a + (0,) * (n - len(a)), b + (0,) * (n - len(b))
    return (a > b) - (a < b)


def satisfies(version: str, specs: list) -> bool:
    """Whether ``version`` is inside every ``specs`` bound (release numbers; enough for these ranges)."""
    have = version_tuple(version)
    if not have:
        return False
    for spec in specs:
        m = _SPEC.match(spec)
        if not m:
            raise ValueError(f"unsupported version specifier {spec!r}")
        op, text = m.groups()
        if text.endswith(".*"):
            prefix = version_tuple(text[:-2])
            same = have[: len(prefix)] == prefix
            if (op == "==" and not same) or (op == "!=" and same):
                return False
            continue
        c = _cmp(have, version_tuple(text))
        ok = {">=": c >= 0, "<=": c <= 0, ">": c > 0, "<": c < 0, "==": c == 0, "!=": c != 0}.get(op)
        if op == "~=":
            want = version_tuple(text)
            ok = c >= 0 and have[: len(want) - 1] == want[:-1]
        if not ok:
            return False
    return True


def unmet(requirements: list, version_of: Optional[Callable] = None) -> list:
    """(requirement, installed version or None) for each requirement missing or outside its range."""
    version_of = version_of or importlib.metadata.version
    out = []
    for requirement in requirements:
        name, specs = split_requirement(requirement)
        try:
            version = version_of(name)
        except importlib.metadata.PackageNotFoundError:
            out.append((requirement, None))
            continue
        if not satisfies(version, specs):
            out.append((requirement, version))
    return out


def minimum_version(requirement: str) -> str:
    """The lower bound of a requirement ('torch>=2.2,<2.15' -> '2.2'), '' when there is none."""
    for spec in split_requirement(requirement)[1]:
        if spec.startswith(">="):
            return spec[2:]
    return ""
