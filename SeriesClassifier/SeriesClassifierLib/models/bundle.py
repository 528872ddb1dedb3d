"""A models folder as one bundle: which models are present, their ensemble settings, card and version.

A folder holds any of: ``forest_trees.npz`` + ``forest_trees.json`` + ``forest.json`` (the metadata
forest as plain arrays; an older bundle's ``forest.skops`` is still read),
``cnn.safetensors`` + ``cnn.json`` (the slice CNN), ``ensemble.json`` (weights, review
threshold) and ``MODEL_CARD.md``. Missing models are simply absent from the bundle; the
pipeline uses what is there. The bundled folder is ``Resources/Models``.

``bundle_manifest.json`` holds the SHA-256 of every model file, written when a bundle is made
(``write_manifest``) and checked on load: a model whose files differ from it (damaged, replaced, or
added without it) is refused with the file named. A folder without a manifest (a bundle made by hand)
loads, with the contents still checked (forest indices, finite weights and temperatures, dtypes).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import BundleError
from ..resources import default_models_dir
from ..vocabulary import load_vocabulary
from .ensemble import ENSEMBLE_FILE, EnsembleParams
from .forest import CONFIG_FILE, FOREST_FILE, ForestModel
from .forest_arrays import ARRAYS_FILE

log = logging.getLogger(__name__)

CARD_FILE = "MODEL_CARD.md"
CNN_WEIGHTS = "cnn.safetensors"
MANIFEST_FILE = "bundle_manifest.json"
MANIFEST_FORMAT = "seriesclassifier-bundle-manifest"
# The files each model is made of (the card is prose and not checked).
MODEL_FILES = {
    "forest": (ARRAYS_FILE, "forest_trees.json", CONFIG_FILE, FOREST_FILE, "forest_train.jsonl.gz"),
    "cnn": (CNN_WEIGHTS, "cnn.json"),
    "ensemble": ("ensemble.json",),
}


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
    # the decision settings (ensemble.json, the vocabulary's physics rules) change answers without retraining:
    # stored predictions made under other settings must not pass for this bundle's (run/incremental.py keys
    # them by this version)
    if versions and (models_dir / ENSEMBLE_FILE).is_file():
        h = hashlib.sha256(_decision_settings(models_dir))
        h.update(repr(load_vocabulary().physics_rules).encode())
        versions.append(f"ensemble-{h.hexdigest()[:8]}")
    return "+".join(versions)


def _decision_settings(models_dir: Path) -> bytes:
    """ensemble.json as the code reads it, defaults included: a setting added with a new default changes the
    answers of a bundle whose file does not name it, as an edited file does (the file's bytes when unusable)."""
    try:
        return json.dumps(EnsembleParams.load(models_dir).to_dict(), sort_keys=True).encode()
    except BundleError:
        return (models_dir / ENSEMBLE_FILE).read_bytes()


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_manifest(folder: str | Path) -> Path:
    """Record the SHA-256 of every model file present (temporary file, then rename)."""
    folder = Path(folder)
    names = sorted(n for files in MODEL_FILES.values() for n in files if (folder / n).is_file())
    manifest = {"format": MANIFEST_FORMAT, "version": 1, "files": {n: _sha256(folder / n) for n in names}}
    tmp = folder / (MANIFEST_FILE + ".part")
    tmp.write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, folder / MANIFEST_FILE)
    return folder / MANIFEST_FILE


def manifest_problems(folder: str | Path) -> dict[str, str]:
    """{model: why} for each model whose files differ from the manifest; {} without a manifest."""
    folder = Path(folder)
    path = folder / MANIFEST_FILE
    if not path.is_file():
        return {}
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
        files = manifest["files"]
        if manifest.get("format") != MANIFEST_FORMAT or not isinstance(files, dict):
            raise ValueError("not a bundle manifest")
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise BundleError(f"{path}: unreadable ({e})") from e
    problems = {}
    for model, names in MODEL_FILES.items():
        for name in names:
            present, listed = (folder / name).is_file(), name in files
            if present and not listed:
                problems[model] = f"{folder / name}: not in {MANIFEST_FILE} (added after the bundle was made)"
            elif listed and not present:
                problems[model] = f"{folder / name}: listed in {MANIFEST_FILE} but missing"
            elif present and _sha256(folder / name) != files[name]:
                problems[model] = f"{folder / name}: checksum differs from {MANIFEST_FILE} (damaged or replaced)"
    return problems


def _cnn_class() -> type:
    from .cnn import CnnModel  # torch is imported only when a CNN is there to use

    return CnnModel


def _load_model(bundle: ModelBundle, name: str, damaged: dict[str, str], load: Callable[[], Any]) -> Any:
    """The model ``load`` gives, or None with the reason in ``bundle.problems``: a damaged or broken model
    must not hide the others."""
    if name in damaged:
        bundle.problems.append(f"{name}: {damaged[name]}")
        return None
    try:
        return load()
    except Exception as exc:  # noqa: BLE001 - whatever breaks one model, the others still load
        bundle.problems.append(f"{name}: {exc}")
        log.warning("%s not loaded from %s: %s", name, bundle.path, exc)
        return None


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
    damaged = manifest_problems(folder)
    if "ensemble" in damaged:  # every answer goes through it: no bundle without it
        raise BundleError(damaged["ensemble"])
    bundle = ModelBundle(path=folder, ensemble=EnsembleParams.load(folder), version=bundle_version(folder))
    card = folder / CARD_FILE
    bundle.card = card.read_text(encoding="utf-8") if card.is_file() else ""
    has_forest = (folder / ARRAYS_FILE).is_file() or (folder / FOREST_FILE).is_file()
    has_cnn = (folder / CNN_WEIGHTS).is_file()
    if has_forest and load_forest:
        bundle.forest = _load_model(bundle, "forest", damaged, lambda: ForestModel.load(folder))
    if has_cnn and load_cnn:
        bundle.cnn = _load_model(bundle, "cnn", damaged, lambda: _cnn_class().load(folder))
    if not (has_forest or has_cnn):
        raise FileNotFoundError(f"{folder}: no models here (expected {ARRAYS_FILE} and/or {CNN_WEIGHTS})")
    if bundle.problems and not bundle.model_names and (load_forest or load_cnn):
        raise BundleError(f"{folder}: no usable model: " + "; ".join(bundle.problems))
    return bundle
