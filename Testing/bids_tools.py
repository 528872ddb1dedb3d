"""Running dcm2bids and heudiconv from the tests."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

TOOL_ENV = {**os.environ, "NO_ET": "1", "OMP_NUM_THREADS": "1"}


def tool(name: str) -> str:
    found = shutil.which(name) or shutil.which(name, path=str(Path(sys.executable).parent))
    assert found, f"{name} is not installed: pip install -e '.[dev]'"
    return found


def niftis(folder: Path) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in folder.glob("sub-*/**/*.nii.gz")}
