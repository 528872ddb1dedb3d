"""``seriesclassifier evaluate PATH --labels labels.csv --out DIR``: metrics.json and confusion PNGs.

PATH is a folder (or Slicer database) to classify now, or a results JSON from ``classify``.
"""

from __future__ import annotations

import sys
from pathlib import Path


def add_arguments(parser) -> None:
    parser.add_argument("path", help="folder / Slicer database to classify, or a results .json from classify")
    parser.add_argument("--labels", help="reference labels CSV (default: PATH/labels.csv for a folder)")
    parser.add_argument("--out", required=True, help="folder for metrics.json and confusion_<task>.png")
    parser.add_argument("--models", help="models folder (default: the bundled models)")
    parser.add_argument("--no-cnn", action="store_true", help="headers only")
    parser.add_argument("--no-forest", action="store_true", help="pixels only")
    parser.add_argument("--title", default="", help="title prefix for the pictures")


def run(args) -> int:
    from ..evaluate import evaluate_predictions, read_labels, read_predictions, summary_lines, write_report

    path = Path(args.path)
    labels_path = Path(args.labels) if args.labels else path / "labels.csv"
    if not labels_path.is_file():
        print(f"labels: {labels_path} not found (give --labels)", file=sys.stderr)
        return 2
    try:
        labels = read_labels(labels_path)
    except ValueError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    if path.is_file() and path.suffix.lower() == ".json":
        predictions = read_predictions(path)
    else:
        from ..models import load_bundle
        from ..pipeline import classify
        from .classify import ProgressBar

        bundle = load_bundle(args.models, load_forest=not args.no_forest, load_cnn=not args.no_cnn)
        predictions = list(classify(path, bundle, use_forest=not args.no_forest, use_cnn=not args.no_cnn,
                                    progress=ProgressBar(True)))
    report = evaluate_predictions(predictions, labels)
    written = write_report(report, args.out, args.title)
    for line in summary_lines(report):
        print(line)
    print(f"wrote {', '.join(str(p) for p in written)}", file=sys.stderr)
    return 0
