"""The bundled forest's recipe: one place that says how a forest is fitted, for every caller.

``seriesclassifier train``, the real-data benchmark's leave-source-out folds and site
retraining all call ``fit_forest``, so a figure measured on a fold is a figure of the
model that ships.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..models.features import FeatureExtractor
from ..models.forest import ForestModel
from ..series import Series
from ..vocabulary import load_vocabulary
from .header_augment import (
    EXCERPT_RATE,
    FIELD_DROPOUT,
    LONG_RUN_RATE,
    RECON_RATE,
    drop_header_fields,
    vary_counts,
    vary_matrix,
)


def training_targets(series: Sequence[Series], labels: dict[str, dict[str, str]]) -> dict[str, list]:
    """Per task, each series' label (None where the labels do not say)."""
    tasks = ["sequence", *load_vocabulary().attribute_codes]
    return {task: [labels[s.series_uid].get(task) for s in series] for task in tasks}


def fit_forest(
    train: Sequence[Series],
    labels: dict[str, dict[str, str]],
    *,
    descriptions: bool = False,
    kind: str = "random_forest",
    n_estimators: int = 200,
    seed: int = 0,
    field_dropout: float = FIELD_DROPOUT,
    sample_weight: Sequence[float] | None = None,
    excerpt_rate: float = EXCERPT_RATE,
    long_run_rate: float = LONG_RUN_RATE,
    recon_rate: float = RECON_RATE,
    sequence_max_features: float | str = "sqrt",
) -> ForestModel:
    """A forest fitted on ``train`` with header dropout, varied counts (excerpts, longer runs) and reconstruction
    matrices (header_augment); ``labels`` maps series UID → task → label."""
    forest = ForestModel(FeatureExtractor(use_description=descriptions), kind=kind, n_estimators=n_estimators,
                         random_state=seed, sequence_max_features=sequence_max_features)
    varied = vary_matrix(vary_counts(train, seed + 1, excerpt_rate, long_run_rate), seed + 2, recon_rate)
    rows = drop_header_fields(varied, field_dropout, seed)
    return forest.fit(rows, training_targets(rows, labels), sample_weight=sample_weight)
