"""Would the images' geometry, beside the CNN's pixels, name more real series? A probe, not a model.

    python benchmarks/geometry_probe.py --data REALDEV [--manifest real_dev.tsv] [--weights 0.5 1] [--seeds 0 1 2]

A forest on geometry alone (what a NIfTI file keeps: matrix, pixel and slice spacing, field of view, number of
locations and of images per location, planes and their normals; none of the acquisition parameters, names or
ImageType) is trained on the bundle's generated header rows (``forest_train.jsonl.gz``, with the forest's
count and matrix variation) and scored on the real development set alone and multiplied with the bundled
CNN's series probabilities (restricted by the pixel facts, as ``cnn_real_probe.py`` reads them), its
log-probabilities weighted by each ``--weights`` value. Nothing is fitted on real series.

Why it is a probe: an anonymiser that strips headers strips geometry too (``cnn_gradcam_docs.py``), and with
headers the metadata forest already reads all of it. The figure says how much of the pixels' gap geometry
would close, not a model to ship. A benchmark: the data are fetched.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import numpy as np

GEOMETRY = ("slice_spacing", "pixel_spacing", "rows", "columns", "matrix_max", "fov", "n_positions",
            "images_per_position", "coverage", "n_planes", "normal_x", "normal_y", "normal_z", "obliquity")
FLOOR = 1e-3  # a class the geometry forest never votes for keeps a little probability


def geometry_matrix(series) -> np.ndarray:
    from SeriesClassifierLib.models.features import numeric_features

    rows = []
    for s in series:
        f = numeric_features(s)
        rows.append([f.get(n, np.nan) for n in GEOMETRY] + [v for k, v in sorted(f.items()) if k.startswith("plane:")])
    return np.array(rows, dtype=float)


def geometry_forest(seed: int, copies: int = 3):
    """A forest on the geometry of the bundle's generated rows, each row varied ``copies`` times."""
    from sklearn.ensemble import RandomForestClassifier

    from SeriesClassifierLib.resources import default_models_dir
    from SeriesClassifierLib.training.header_augment import vary_counts, vary_matrix
    from SeriesClassifierLib.training.site_training import read_base_rows

    series, labels = read_base_rows(default_models_dir() / "forest_train.jsonl.gz")
    varied = [s for k in range(copies) for s in vary_matrix(vary_counts(series, seed + k), seed + k)]
    y = [labels[s.series_uid]["sequence"] for s in series] * copies
    forest = RandomForestClassifier(400, min_samples_leaf=10, class_weight="balanced", n_jobs=2, random_state=seed)
    return forest.fit(geometry_matrix(varied), y)


def main(argv: list[str] | None = None) -> int:
    from cnn_real_probe import add_anatomy, real_slices, series_scores

    from SeriesClassifierLib.models.cnn import CnnModel
    from SeriesClassifierLib.resources import default_models_dir
    from SeriesClassifierLib.run.pipeline import read_all_series, resolve_refs

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True, type=Path)
    ap.add_argument("--manifest", type=Path, help="real_dev.tsv: also the brain and head series apart")
    ap.add_argument("--weights", type=float, nargs="+", default=[0.5, 1.0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = ap.parse_args(argv)
    model = CnnModel.load(default_models_dir())
    classes = model.config.sequence_classes
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        images, uids, _, labels = real_slices(args.data, model)
        series = [s for s in read_all_series(resolve_refs(args.data)) if s.series_uid in set(uids)]
    if args.manifest:
        add_anatomy(labels, args.manifest)
    scores = series_scores(np.log(model.infer(images)["sequence"] + 1e-9), uids, classes, labels, with_facts=True)
    cnn = np.array([scores[s.series_uid] for s in series])
    truth = np.array([labels[s.series_uid]["sequence"] for s in series])
    heads = np.array([labels[s.series_uid].get("anatomy") == "brain/head" for s in series])

    def line(name: str, scores: np.ndarray) -> str:
        right = np.array(classes)[scores.argmax(axis=1)] == truth
        text = f"{name}: {right.sum()}/{len(series)}"
        return text + (f"; heads {right[heads].sum()}/{heads.sum()}" if args.manifest else "")

    print(line("CNN, pixels with pixel facts", cnn))
    X = geometry_matrix(series)
    for seed in args.seeds:
        forest = geometry_forest(seed)
        p = forest.predict_proba(X)
        geometry = np.full((len(series), len(classes)), FLOOR)
        for j, c in enumerate(forest.classes_):
            geometry[:, classes.index(c)] += p[:, j]
        print(line(f"seed {seed}: geometry alone", np.log(geometry)))
        for w in args.weights:
            print(line(f"seed {seed}: CNN x geometry^{w:g}", cnn + w * np.log(geometry)))
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).parent))
    sys.exit(main())
