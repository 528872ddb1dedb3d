"""Test-run settings shared by every file.

torch: the CNN's tests need it. The main run (Python 3.11, the CPU build installed first) runs them all;
the runs under Slicer's other Pythons (.ci/run: 3.9 with Slicer 5.8's packages, 3.12) have no CPU build
of torch on these machines and leave them out explicitly: ``-m "not torch"`` for the marked tests, and the
files below (which import torch at the top) are not even collected there.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

TORCH_FILES = {"test_aggregate.py", "test_cnn.py", "test_gradcam.py"}  # import torch at module level
HAVE_TORCH = importlib.util.find_spec("torch") is not None

collect_ignore = [] if HAVE_TORCH else sorted(TORCH_FILES)


def pytest_collection_modifyitems(config, items):
    for item in items:
        if Path(str(item.fspath)).name in TORCH_FILES:
            item.add_marker(pytest.mark.torch)
