"""``seriesclassifier evaluate PATH --labels labels.csv|STORE --out DIR [--baseline MODELDIR]``.

PATH is a folder (or Slicer database), or a results JSON from ``classify``. For a folder, the predictions
``classify`` recorded in its label store are reused while the files and the models are the same; only new
or changed series are classified (and recorded).
Writes metrics.json and confusion PNGs; with ``--baseline`` the same series are also
classified by a second bundle (read once, predicted twice) and comparison.json/.md say
what changed, series by series.
"""

from __future__ import annotations

import sys
from pathlib import Path


def add_arguments(parser) -> None:
    parser.add_argument("path", help="folder / Slicer database to classify, or a results .json from classify")
    parser.add_argument("--labels", help="reference labels: a CSV, or a label store (its corrected and accepted "
                        "series) (default: PATH/labels.csv for a folder)")
    parser.add_argument("--out", required=True, help="folder for metrics.json and confusion_<task>.png")
    parser.add_argument("--models", help="models folder (default: the bundled models)")
    parser.add_argument("--baseline", help="a second models folder to compare with on the same series "
                        "(e.g. the bundled models, given as their folder)")
    parser.add_argument("--no-cnn", action="store_true", help="headers only")
    parser.add_argument("--no-forest", action="store_true", help="pixels only")
    parser.add_argument("--title", default="", help="title prefix for the pictures")
    parser.add_argument("--store", metavar="PATH", help="label store whose predictions are reused and completed "
                        "(default: PATH's own, as for classify)")


def run(args) -> int:
    from ..labels.store import StoreError
    from ..training.evaluate import (
        compare_bundles,
        evaluate_predictions,
        read_any_labels,
        read_predictions,
        summary_lines,
        write_comparison,
        write_report,
    )

    path = Path(args.path)
    labels_path = Path(args.labels) if args.labels else path / "labels.csv"
    try:
        labels = read_any_labels(labels_path)
    except (ValueError, StoreError) as exc:
        print(f"labels: {exc} (give --labels)", file=sys.stderr)
        return 2
    from ..training.evaluate import unknown_codes

    unknown, given = unknown_codes(labels)
    if unknown:  # scored as absent, they would give empty or flattering metrics without a word
        print(f"{'error' if len(unknown) == given else 'warning'}: {labels_path}: {len(unknown)} of {given} labels "
              f"not in the vocabulary, left out; the first: {unknown[0]}", file=sys.stderr)
        if len(unknown) == given:
            return 2
    is_results = path.is_file() and path.suffix.lower() == ".json"
    if args.baseline and is_results:
        print("--baseline needs DICOM to classify, not a results JSON", file=sys.stderr)
        return 2
    if is_results:
        predictions, baseline = read_predictions(path), None
    else:
        try:
            predictions, baseline = _classify(path, args)
        except (StoreError, FileNotFoundError) as exc:
            print(str(exc), file=sys.stderr)
            return 2
    report = evaluate_predictions(predictions, labels)
    written = write_report(report, args.out, args.title)
    for line in summary_lines(report):
        print(line)
    if baseline is not None:
        comparison = compare_bundles(predictions, baseline, labels)
        written += write_comparison(comparison, args.out)
        for task in ("sequence", "orientation"):
            t = comparison["tasks"].get(task)
            if t:
                print(f"  {task:15s} baseline {t['baseline']['accuracy']:.4f} → new {t['new']['accuracy']:.4f}")
        print(f"  fixed {len(comparison['fixed'])} series, broken {len(comparison['broken'])}")
    print(f"wrote {', '.join(str(p) for p in written)}", file=sys.stderr)
    return 0


def _classify(path: Path, args) -> tuple[list, list | None]:
    """Predictions of --models (reused from PATH's label store where still valid, new ones recorded there)
    and, with --baseline, of the baseline bundle on the same series (never recorded: it is the comparison)."""
    from ..labels.store import StoreError
    from ._predictions import ModelChoice, ProgressBar, classify_refs, up_to_date
    from ._store_args import open_store, series_under

    use = {"use_forest": not args.no_forest, "use_cnn": not args.no_cnn}
    refs = series_under(str(path))
    choice = ModelChoice(args.models, **use)
    try:
        store = open_store(args)
    except (StoreError, OSError) as exc:  # a read-only folder: classify without keeping the answers
        print(f"warning: no label store ({exc}); classifying without one", file=sys.stderr)
        store = None
    if store is None:
        predictions, _ = classify_refs(refs, refs, choice, progress=ProgressBar())
    else:
        with store:
            predictions, _ = up_to_date(store, refs, choice)
    baseline = None
    if args.baseline:
        print("classifying with the baseline models", file=sys.stderr)
        baseline, _ = classify_refs(refs, refs, ModelChoice(args.baseline, **use), progress=ProgressBar())
    return predictions, baseline
