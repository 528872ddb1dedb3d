"""Compare header models on held-out profiles: RF vs ExtraTrees vs HistGradientBoosting,
with/without description tokens, with/without study context.

Reads the header caches written by ``seriesclassifier train --cache`` (or builds them), trains
on the training corpus, scores sequence accuracy / macro-F1 and attribute accuracy on the
held-out corpus (profiles never trained on). Prints a table; asserts nothing.

    python benchmarks/compare_forests.py --train /work/data/corpus_train --holdout /work/data/corpus_holdout \
        --cache-dir /work/scratch/header_cache
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np


def load(path: Path, cache: Path):
    from SeriesClassifierLib.training.corpus import read_all
    from SeriesClassifierLib.training.evaluate import read_labels

    labels = read_labels(path / "labels.csv")
    series = [s for s in read_all(path, cache) if not s.skipped and s.series_uid in labels]
    return series, labels


def macro_f1(y, p):
    from sklearn.metrics import f1_score

    return f1_score(y, p, average="macro", labels=sorted(set(y)))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--train", required=True)
    ap.add_argument("--holdout", required=True)
    ap.add_argument("--cache-dir", default="/work/scratch/header_cache")
    ap.add_argument("--trees", type=int, default=100)
    args = ap.parse_args(argv)
    from sklearn.ensemble import ExtraTreesClassifier, HistGradientBoostingClassifier, RandomForestClassifier

    from SeriesClassifierLib.models.features import FeatureExtractor
    from SeriesClassifierLib.models.forest import normalise_label
    from SeriesClassifierLib.training.header_augment import drop_header_fields

    cache = Path(args.cache_dir)
    train, train_labels = load(Path(args.train), cache / "train.jsonl")
    held, held_labels = load(Path(args.holdout), cache / "holdout.jsonl")
    y_train = np.array([normalise_label("sequence", train_labels[s.series_uid]["sequence"]) for s in train])
    y_held = np.array([normalise_label("sequence", held_labels[s.series_uid]["sequence"]) for s in held])
    print(f"train {len(train)} series, held-out {len(held)} series")

    models = {
        "random_forest": lambda: RandomForestClassifier(args.trees, class_weight="balanced_subsample", n_jobs=1,
                                                        random_state=0),
        "extra_trees": lambda: ExtraTreesClassifier(args.trees, class_weight="balanced_subsample", n_jobs=1,
                                                    random_state=0),
        "hist_gb": lambda: HistGradientBoostingClassifier(max_iter=200, learning_rate=0.1, random_state=0),
    }
    settings = [(False, True, 0.0), (False, False, 0.0), (False, True, 0.3), (True, True, 0.0), (True, True, 0.3)]
    for descriptions, context, names in settings:
        tr = drop_header_fields(train, names, 0, context_rate=0.15 if context else 1.0)
        he = held if context else drop_header_fields(held, 0.0, 0, context_rate=1.0)
        extractor = FeatureExtractor(use_description=descriptions).fit(tr)
        X_tr, X_he = extractor.transform(tr), extractor.transform(he)
        for name, make in models.items():
            if name == "hist_gb" and (descriptions or not context or names):
                continue  # one HistGB row is enough to compare model families
            t0 = time.time()
            pred = make().fit(X_tr, y_train).predict(X_he)
            acc, f1 = float(np.mean(pred == y_held)), macro_f1(y_held, pred)
            print(f"{name:14s} desc={'on ' if descriptions else 'off'} context={'on ' if context else 'off'} "
                  f"field-dropout={names:.1f}  acc {acc:.4f}  macro-F1 {f1:.4f}  ({time.time() - t0:.0f} s)",
                  flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
