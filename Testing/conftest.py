"""Shared test set-up.

Helpers live in plain modules beside the tests, never in test modules (a test module imports no other
test module; ``test_layering.py`` checks it):

- ``dicom_factory``: every DICOM file the tests write by hand;
- ``synth_fakes``: specs and a fake renderer for the generator's writer;
- ``worker_stubs``: a stand-in model bundle for the worker (also used by the worker subprocesses);
- ``bids_tools``: running dcm2bids / heudiconv.

torch: the CNN's tests need it. The main run (Python 3.11, the CPU build installed first) runs them all;
the runs under Slicer's other Pythons (.ci/run: 3.9 with Slicer 5.8's packages, 3.12) have no CPU build
of torch on these machines and leave them out explicitly: ``-m "not torch"`` for the marked tests, and the
files below (which import torch at the top) are not even collected there.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

TESTING = Path(__file__).resolve().parent
if str(TESTING) not in sys.path:  # the helpers import the same under pytest's importlib mode
    sys.path.insert(0, str(TESTING))

# these import torch at module level
TORCH_FILES = {"test_aggregate.py", "test_cnn.py", "test_cnn_losses.py", "test_gradcam.py"}
HAVE_TORCH = importlib.util.find_spec("torch") is not None

# The fuzzing harness needs hypothesis (a dev extra); Slicer's Pythons in .ci/run have only the engine's
# requirements and leave it out explicitly, as the torch files.
HYPOTHESIS_FILES = {"test_fuzz_headers.py"}
HAVE_HYPOTHESIS = importlib.util.find_spec("hypothesis") is not None

collect_ignore = ([] if HAVE_TORCH else sorted(TORCH_FILES)) + ([] if HAVE_HYPOTHESIS else sorted(HYPOTHESIS_FILES))


def pytest_collection_modifyitems(config, items):
    for item in items:
        if Path(str(item.fspath)).name in TORCH_FILES:
            item.add_marker(pytest.mark.torch)


@pytest.fixture(autouse=True)
def _private_state_dir(tmp_path_factory, monkeypatch):
    """The commands note the label stores they write (for ``label UID`` from anywhere): never in the real home."""
    monkeypatch.setenv("SERIESCLASSIFIER_STATE_DIR", str(tmp_path_factory.mktemp("state")))
