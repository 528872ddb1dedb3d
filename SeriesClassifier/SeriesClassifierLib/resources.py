"""Where the module's bundled resources live.

In a source checkout and in an installed Slicer extension the engine sits beside
``Resources/`` (``SeriesClassifier/Resources``). ``SERIESCLASSIFIER_RESOURCES``
overrides that, for packagers that move things around.
"""

from __future__ import annotations

import os
from pathlib import Path


def resources_dir() -> Path:
    override = os.environ.get("SERIESCLASSIFIER_RESOURCES")
    if override:
        return Path(override)
    return Path(__file__).resolve().parent.parent / "Resources"


def resource_path(*parts: str) -> Path:
    return resources_dir().joinpath(*parts)


def default_models_dir() -> Path:
    return resource_path("Models")
