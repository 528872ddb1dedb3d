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


_NOTICES = """## Notices

The training corpus is simulated. Its images are built from nilearn's MNI ICBM152 2009
template (Copyright (C) 1993-2009 Louis Collins, McConnell Brain Imaging Centre, Montreal
Neurological Institute, McGill University; permission to use, copy, modify and distribute
granted provided the copyright notice appears in all copies; provided "as is" without
express or implied warranty) and pydeface's mean head (MIT licence, Copyright (c) 2017
Russell Poldrack and contributors). The forest reads headers only; no image of a person
is in it. See docs/THIRD_PARTY.md for the full notices.
"""


def write_model_card(
    folder: str | Path,
    forest: ForestModel | None,
    ensemble: EnsembleParams,
    heldout: dict[str, Any] | None,
    training: dict[str, Any],
    version: str,
    notes: list[str] | None = None,
) -> Path:
    """MODEL_CARD.md: what was trained on what, how well it does on data it never saw, how to retrain."""
    from ..training.evaluate import per_class_table

    lines = [
        "# SeriesClassifier models",
        "",
        f"Version: `{version}`",
        "",
        "## What is here",
        "",
    ]
    if forest is not None:
        cfg = forest.config()
        lines += [
            "- `forest_trees.npz` + `forest_trees.json` + `forest.json`: metadata forest "
            f"({cfg['kind']}, {cfg['n_estimators']} trees per task; "
            f"tasks {', '.join(cfg['tasks'])}), {len(forest.extractor.feature_names)} features "
            f"({len(forest.extractor.tokens)} header tokens), description tokens "
            f"{'ON' if forest.extractor.use_description else 'OFF'}. Probabilities calibrated by temperature "
            f"scaling on out-of-bag votes (temperatures: "
            + ", ".join(f"{t} {v:.3g}" for t, v in cfg["temperatures"].items())
            + "). Orientation is computed from ImageOrientationPatient (exact), not learnt.",
        ]
    lines += [
        f"- `ensemble.json`: model weights {ensemble.weights}; a series needs review when its top sequence "
        f"probability is below {ensemble.review_threshold} (chosen so that calibrated out-of-bag predictions above "
        "it are >= 99 % correct) or the models disagree.",
        "",
        "## Training data",
        "",
        f"- Data: `{training.get('data')}` ({training.get('n_series')} series), simulated studies from the "
        "project's generator (`seriesclassifier synth`): realistic vendor headers, simulated images.",
        f"- Training profiles: {', '.join(training.get('profiles') or []) or 'n/a'}",
        f"- Held-out profiles (never trained on): {', '.join(training.get('heldout_profiles') or []) or 'none'}",
        "- Series per class: " + ", ".join(f"{k} {v}" for k, v in (training.get("class_counts") or {}).items()),
        "",
    ]
    if heldout:
        lines += ["## Held-out results (forest alone)", ""]
        for task, r in heldout.get("tasks", {}).items():
            ece = f", ECE {r['ece']:.3f}" if "ece" in r else ""
            lines.append(f"- {task}: accuracy {r['accuracy']:.4f}, macro-F1 {r['macro_f1']:.4f}{ece} (n={r['n']})")
        if "review" in heldout:
            rv = heldout["review"]
            lines.append(f"- needs_review: {rv['flagged_fraction']:.1%} flagged, accuracy of the others "
                         f"{rv['accuracy_not_flagged']}")
        if "sequence" in heldout.get("tasks", {}):
            lines += ["", "Per class (sequence):", "", per_class_table(heldout["tasks"]["sequence"])]
        lines.append("")
    lines += [
        "## Limits",
        "",
        "- Trained on simulated headers from a handful of vendor profiles: real sites name, order and omit tags",
        "  in ways no generator covers. Check the results on your own data (`seriesclassifier evaluate`) and",
        "  retrain on your corrected labels (below) before relying on it.",
        "- Without image geometry (ImageOrientationPatient) the forest gives no orientation.",
        "",
        "## Retrain",
        "",
        "```",
        training.get("command") or "seriesclassifier train --data CORPUS --labels CORPUS/labels.csv --out MODELDIR",
        "```",
        "",
    ]
    for note in notes or []:
        lines += [f"Note: {note}", ""]
    lines.append(_NOTICES)
    path = Path(folder) / CARD_FILE
    path.write_text("\n".join(lines), encoding="utf-8")
    return path
