"""Fit the CNN's embedding novelty (models.novelty.EmbeddingNovelty) and store it with the CNN's weights.

    python scripts/fit_cnn_novelty.py --models SeriesClassifier/Resources/Models \
        --reference REFERENCE_CORPUS --held-out HELDOUT_CORPUS [--percentile 95] [--k 5]

REFERENCE_CORPUS: generated studies of the training profiles
(``python -m SeriesClassifierLib.synth.cnn_corpus REF --studies 40 --seed 903``);
HELDOUT_CORPUS: generated studies of the held-out profiles
(``python -m SeriesClassifierLib.synth.cnn_corpus HELD --studies 15 --seed 904 --profile holdout``);
with ``--parts`` (synth/body.py), corpora of other body parts can join either list.
Each series' mean slice embedding joins the reference; the threshold is the ``--percentile`` of the
held-out series' distances. No real image sets anything here.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import numpy as np

from SeriesClassifierLib.models.cnn import CnnModel
from SeriesClassifierLib.models.novelty import EmbeddingNovelty
from SeriesClassifierLib.run.pipeline import read_all_series, resolve_refs
from SeriesClassifierLib.training.corpus import cnn_samples


def series_embeddings(model: CnnModel, corpus: Path) -> np.ndarray:
    """(n, D): the mean slice embedding of every series of ``corpus`` the CNN can read."""
    rows = []
    for _series, sampled in cnn_samples(model, read_all_series(resolve_refs(corpus))):
        rows.append(model.infer(sampled.images)["embedding"].mean(axis=0))
    return np.stack(rows)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", required=True, type=Path, help="folder with cnn.safetensors + cnn.json (rewritten)")
    ap.add_argument("--reference", required=True, type=Path, nargs="+", help="one or more corpora")
    ap.add_argument("--held-out", required=True, type=Path, nargs="+", help="one or more corpora")
    ap.add_argument("--percentile", type=float, default=95.0)
    ap.add_argument("--k", type=int, default=5)
    args = ap.parse_args(argv)
    model = CnnModel.load(args.models)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reference = np.concatenate([series_embeddings(model, c) for c in args.reference])
        held_out = np.concatenate([series_embeddings(model, c) for c in args.held_out])
    model.novelty = EmbeddingNovelty.fit(reference, held_out, percentile=args.percentile, k=args.k)
    model.config.novelty = {"reference_series": len(reference), "held_out_series": len(held_out),
                            "command": "python scripts/fit_cnn_novelty.py " + " ".join(argv or sys.argv[1:])}
    model.save(args.models)
    print(f"reference {len(reference)} series, held-out {len(held_out)}; threshold {model.novelty.threshold:.3f} "
          f"({args.percentile:g} % of held-out within)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
