"""A models folder as one bundle: which models are present, their ensemble settings, card and version.

A folder holds any of: ``forest_trees.npz`` + ``forest_trees.json`` + ``forest.json`` (the metadata
forest as plain arrays; an older bundle's ``forest.skops`` is still read),
``cnn.safetensors`` + ``cnn.json`` (the slice CNN), ``ensemble.json`` (weights, review
threshold) and ``MODEL_CARD.md``. Missing models are simply absent from the bundle; the
pipeline uses what is there. The bundled folder is ``Resources/Models``.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..resources import default_models_dir
from .ensemble import EnsembleParams
from .forest import CONFIG_FILE, FOREST_FILE, ForestModel
from .forest_arrays import ARRAYS_FILE

log = logging.getLogger(__name__)

CARD_FILE = "MODEL_CARD.md"
CNN_WEIGHTS = "cnn.safetensors"


@dataclass
class ModelBundle:
    forest: ForestModel | None = None
    cnn: Any = None  # a CnnModel (cnn.py) when cnn.safetensors is present
    ensemble: EnsembleParams = field(default_factory=EnsembleParams)
    version: str = ""
    card: str = ""
    path: Path | None = None
    problems: list[str] = field(default_factory=list)  # models present but not loadable, with why

    @property
    def model_names(self) -> list[str]:
        return [n for n, m in (("forest", self.forest), ("cnn", self.cnn)) if m is not None]

    def describe(self) -> str:
        names = ", ".join(self.model_names) or "no models"
        return f"{names} (version {self.version or 'unknown'}) from {self.path}"


def bundle_version(models_dir: Path) -> str:
    """The version written by training (forest.json / cnn.json), joined when both exist."""
    versions = []
    for name in (CONFIG_FILE, "cnn.json"):
        path = models_dir / name
        if path.is_file():
            try:
                v = json.loads(path.read_text(encoding="utf-8")).get("version")
            except (OSError, ValueError):
                v = None
            if v:
                versions.append(f"{name.split('.')[0]}-{v}")
    return "+".join(versions)


def load_bundle(
    models_dir: str | Path | None = None, *, load_forest: bool = True, load_cnn: bool = True
) -> ModelBundle:
    """Load the models present in a folder (default: the bundled ``Resources/Models``).

    A model that is present but fails to load is left out and named in ``problems``; a
    folder with no model at all raises FileNotFoundError.
    """
    folder = Path(models_dir) if models_dir is not None else default_models_dir()
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: models folder not found")
    bundle = ModelBundle(path=folder, ensemble=EnsembleParams.load(folder), version=bundle_version(folder))
    card = folder / CARD_FILE
    bundle.card = card.read_text(encoding="utf-8") if card.is_file() else ""
    present = False
    if (folder / ARRAYS_FILE).is_file() or (folder / FOREST_FILE).is_file():
        present = True
        if load_forest:
            try:
                bundle.forest = ForestModel.load(folder)
            except Exception as exc:  # noqa: BLE001 - a broken model must not hide the others
                bundle.problems.append(f"forest: {exc}")
                log.warning("forest not loaded from %s: %s", folder, exc)
    if (folder / CNN_WEIGHTS).is_file():
        present = True
        if load_cnn:
            try:
                from .cnn import CnnModel  # torch is imported only when a CNN is there to use

                bundle.cnn = CnnModel.load(folder)
            except Exception as exc:  # noqa: BLE001
                bundle.problems.append(f"cnn: {exc}")
                log.warning("cnn not loaded from %s: %s", folder, exc)
    if not present:
        raise FileNotFoundError(f"{folder}: no models here (expected {ARRAYS_FILE} and/or {CNN_WEIGHTS})")
    return bundle
