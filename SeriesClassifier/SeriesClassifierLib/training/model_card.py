"""The model card: what a bundle was trained on, how well it does on data it never saw, how to retrain.

A card is a training product, so it lives here; ``models.bundle`` only reads it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..models.bundle import CARD_FILE
from ..models.ensemble import EnsembleParams
from ..models.forest import ForestModel
from .evaluate import per_class_table, review_figures, task_figures

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
        f"- Data: `{training.get('data')}` ({training.get('n_series')} series)"
        + (f", plus the base bundle's {training['n_base_rows']} training rows" if training.get("n_base_rows") else "")
        + ".",
        f"- Training profiles: {', '.join(training.get('profiles') or []) or 'n/a'}",
        f"- Held-out profiles (never trained on): {', '.join(training.get('heldout_profiles') or []) or 'none'}",
        "- Series per class: " + ", ".join(f"{k} {v}" for k, v in (training.get("class_counts") or {}).items()),
        "",
    ]
    if heldout:
        lines += ["## Held-out results (forest alone)", ""]
        for task, r in heldout.get("tasks", {}).items():
            lines.append(f"- {task}: {task_figures(r)}")
        if "review" in heldout:
            lines.append(f"- needs_review: {review_figures(heldout['review'])}")
        if "sequence" in heldout.get("tasks", {}):
            lines += ["", "Per class (sequence):", "", per_class_table(heldout["tasks"]["sequence"])]
        lines.append("")
    lines += [
        "## Limits",
        "",
        "- Real sites name, order and omit tags in ways no training set covers. Check the results on your own",
        "  data (`seriesclassifier evaluate`) and retrain on your corrected labels (below) before relying on it.",
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
