"""Score a bundle's forest on held-out generated header rows and record the figures in its forest.json.

    python scripts/record_heldout.py --models SeriesClassifier/Resources/Models --rows HELDOUT.jsonl.gz

HELDOUT comes from ``seriesclassifier synth OUT.jsonl.gz --headers-only --profile holdout``: profiles
(vendors, software, naming) no training row was drawn from. The headers-only path needs no DICOM
folder, so this replaces ``train --eval`` for bundles trained from header rows. Forest only: the
rows carry no pixels.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from SeriesClassifierLib.models.bundle import load_bundle, write_manifest
from SeriesClassifierLib.models.features import add_study_context
from SeriesClassifierLib.run.pipeline import predict_all
from SeriesClassifierLib.training.evaluate import evaluate_predictions, summary_lines, write_report
from SeriesClassifierLib.training.site_training import read_base_rows
from SeriesClassifierLib.training.train_bundle import compact_report


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", required=True, type=Path)
    ap.add_argument("--rows", required=True, type=Path)
    ap.add_argument("--docs", type=Path, help="also write metrics.json and confusion PNGs here")
    args = ap.parse_args(argv)
    series, labels = read_base_rows(args.rows)
    add_study_context(series)
    bundle = load_bundle(args.models, load_cnn=False)
    report = evaluate_predictions([p for _, p in predict_all(series, bundle, use_cnn=False)], labels)
    for line in summary_lines(report):
        print(line)
    if args.docs:
        write_report(report, args.docs, "forest, held-out generated profiles")
    config_path = args.models / "forest.json"
    config = json.loads(config_path.read_text(encoding="utf-8"))
    config["heldout"] = compact_report(report)
    config.setdefault("training", {})["heldout_data"] = f"{args.rows.name} (generated held-out profiles)"
    config_path.write_text(json.dumps(config, indent=1, sort_keys=True), encoding="utf-8")
    write_manifest(args.models)  # forest.json changed: its checksum must follow, or the bundle refuses the forest
    return 0


if __name__ == "__main__":
    sys.exit(main())
