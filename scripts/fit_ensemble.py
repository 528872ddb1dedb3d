"""Fit the ensemble on one held-out corpus and compare CNN, forest and ensemble on another.

    python scripts/fit_ensemble.py --models MODELDIR --calib /work/data/corpus_calib \\
        --test /work/data/corpus_holdout --out /work/data/ensemble_report [--docs docs] [--write]

Both corpora come from profiles never trained on; the ensemble's few numbers (one weight per
model, the review threshold) are fitted on --calib and every figure is measured on --test,
so no series is used for both. Each model's output is kept in the classify results
(``SeriesPrediction.models``), so the variants are recombinations of one run per corpus:

- forest alone (headers only), CNN alone (pixels only: its orientation too, as when
  headers are stripped), the unfitted mean, the fitted ensemble.

Writes OUT/<corpus>.json (the classify results, reused when present), OUT/comparison.json,
OUT/comparison.md and confusion pictures (OUT, or --docs); --write stores the fitted
parameters as MODELDIR/ensemble.json.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from pathlib import Path

from SeriesClassifierLib.models.ensemble import EnsembleParams, combine, fit_params
from SeriesClassifierLib.prediction import SeriesPrediction
from SeriesClassifierLib.training.evaluate import (
    evaluate_predictions,
    plot_confusion,
    read_labels,
    read_predictions,
    summary_lines,
)

VARIANTS = {  # name → (models used, which params)
    "forest": (("forest",), "fitted"),
    "cnn": (("cnn",), "fitted"),
    "mean": (("forest", "cnn"), "mean"),
    "ensemble": (("forest", "cnn"), "fitted"),
}


def classified(corpus: Path, models: Path, out: Path) -> list[SeriesPrediction]:
    """Every series of a corpus through both models (results cached as JSON in out)."""
    cache = out / f"{corpus.name}.json"
    if cache.is_file():
        return read_predictions(cache)
    from SeriesClassifierLib.commands.classify import ProgressBar
    from SeriesClassifierLib.models.bundle import load_bundle
    from SeriesClassifierLib.run.pipeline import classify

    bundle = load_bundle(models)
    if bundle.forest is None or bundle.cnn is None:
        raise SystemExit(f"{models}: needs both forest and CNN ({bundle.problems or 'missing files'})")
    predictions = list(classify(corpus, bundle, progress=ProgressBar(True)))
    cache.write_text(json.dumps([p.to_dict() for p in predictions]), encoding="utf-8")
    return predictions


def recombined(predictions: list[SeriesPrediction], names: tuple[str, ...], params: EnsembleParams):
    """The predictions as if only ``names`` had answered, pooled with ``params``."""
    out = []
    for p in predictions:
        q = copy.copy(p)
        c = combine({n: o for n, o in p.models.items() if n in names}, params)
        q.sequence, q.orientation, q.attributes = c.sequence, c.orientation, c.attributes
        q.needs_review = c.needs_review
        out.append(q)
    return out


def markdown(reports: dict[str, dict]) -> str:
    names = list(reports)
    lines = ["| | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]

    def row(label, get):
        cells = []
        for n in names:
            try:
                v = get(reports[n])
            except (KeyError, TypeError):
                v = None
            cells.append("—" if v is None else (f"{v:.3f}" if isinstance(v, float) else str(v)))
        lines.append(f"| {label} | " + " | ".join(cells) + " |")

    row("sequence accuracy", lambda r: r["tasks"]["sequence"]["accuracy"])
    row("sequence macro-F1", lambda r: r["tasks"]["sequence"]["macro_f1"])
    row("sequence ECE", lambda r: r["tasks"]["sequence"].get("ece"))
    row("orientation accuracy", lambda r: r["tasks"]["orientation"]["accuracy"])
    row("flagged for review", lambda r: r["review"]["flagged_fraction"])
    row("accuracy of the unflagged", lambda r: r["review"]["accuracy_not_flagged"])
    row("errors not flagged", lambda r: r["review"]["errors_missed"])
    classes = list(reports[names[0]]["tasks"]["sequence"]["per_class"])
    lines += ["", "Per-class sequence recall:", "", "| class | n | " + " | ".join(names) + " |",
              "|---" * (len(names) + 2) + "|"]
    for c in classes:
        pc = [reports[n]["tasks"]["sequence"]["per_class"].get(c, {}) for n in names]
        n_support = pc[0].get("support", 0)
        if not n_support:
            continue
        lines.append(f"| {c} | {n_support} | " + " | ".join(f"{m.get('recall', 0):.2f}" for m in pc) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", required=True, type=Path)
    ap.add_argument("--calib", required=True, type=Path)
    ap.add_argument("--test", required=True, type=Path)
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--docs", type=Path, help="also write the confusion pictures here")
    ap.add_argument("--target-accuracy", type=float, default=0.99)
    ap.add_argument("--disagreement-confidence", type=float, default=0.5)
    ap.add_argument("--write", action="store_true", help="save the fitted params into MODELDIR/ensemble.json")
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)

    calib_labels = read_labels(args.calib / "labels.csv")
    calib = [p for p in classified(args.calib, args.models, args.out) if p.series_uid in calib_labels]
    base = EnsembleParams.load(args.models)
    base.disagreement_confidence = args.disagreement_confidence
    fitted = fit_params([p.models for p in calib], [calib_labels[p.series_uid]["sequence"] for p in calib],
                        base=base, target_accuracy=args.target_accuracy)
    print(f"fitted on {len(calib)} series of {args.calib}: {json.dumps(fitted.to_dict())}", file=sys.stderr)

    test_labels = read_labels(args.test / "labels.csv")
    test = classified(args.test, args.models, args.out)
    params = {"fitted": fitted, "mean": EnsembleParams(review_threshold=fitted.review_threshold)}
    reports = {}
    for name, (names, which) in VARIANTS.items():
        reports[name] = evaluate_predictions(recombined(test, names, params[which]), test_labels)
        print(f"== {name}", file=sys.stderr)
        for line in summary_lines(reports[name]):
            print(line, file=sys.stderr)
        for task in ("sequence", "orientation"):
            if task in reports[name]["tasks"]:
                for folder in filter(None, [args.out, args.docs]):
                    plot_confusion(reports[name]["tasks"][task], folder / f"{name}_heldout_confusion_{task}.png",
                                   f"{name}, held-out profiles: {task}")
    table = markdown(reports)
    (args.out / "comparison.md").write_text(table + "\n", encoding="utf-8")
    (args.out / "comparison.json").write_text(json.dumps({"params": fitted.to_dict(), "calib": str(args.calib),
                                                          "test": str(args.test), "reports": reports}, indent=1),
                                              encoding="utf-8")
    print(table)
    if args.write:
        print(f"wrote {fitted.save(args.models)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
