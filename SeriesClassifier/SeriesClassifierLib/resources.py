"""Where the module's bundled resources live.

In a source checkout and in an installed Slicer extension the engine sits beside
``Resources/`` (``SeriesClassifier/Resources``); a wheel carries the same folder inside
the package (``SeriesClassifierLib/Resources``, see setup.py), which is looked at first.
``SERIESCLASSIFIER_RESOURCES`` overrides both, for packagers that move things around.
"""

from __future__ import annotations

import os
from pathlib import Path


def resources_dir() -> Path:
    override = os.environ.get("SERIESCLASSIFIER_RESOURCES")
    if override:
        return Path(override)
    here = Path(__file__).resolve().parent
    inside = here / "Resources"
    if (inside / "vocabulary.json").is_file():  # installed from a wheel
        return inside
    return here.parent / "Resources"


def resource_path(*parts: str) -> Path:
    return resources_dir().joinpath(*parts)


def default_models_dir() -> Path:
    return resource_path("Models")
