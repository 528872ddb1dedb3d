"""Shared test set-up.

Helpers live in plain modules beside the tests, never in test modules (a test module imports no other
test module; ``test_layering.py`` checks it):

- ``dicom_factory``: every DICOM file the tests write by hand;
- ``synth_fakes``: specs and a fake renderer for the generator's writer;
- ``worker_stubs``: a stand-in model bundle for the worker (also used by the worker subprocesses);
- ``bids_tools``: running dcm2bids / heudiconv.
"""

from __future__ import annotations

import sys
from pathlib import Path

TESTING = Path(__file__).resolve().parent
if str(TESTING) not in sys.path:  # the helpers import the same under pytest's importlib mode
    sys.path.insert(0, str(TESTING))
