"""``seriesclassifier train --data PATH --labels labels.csv --out MODELDIR``: train a models bundle.

Argument handling only; the work is ``training.train_bundle`` (see there for what is trained on what).
"""

from __future__ import annotations

import sys
from pathlib import Path

from ..errors import TrainingError
from ..training.header_augment import FIELD_DROPOUT
from ..training.site_training import BASE_ROWS
from ..training.train_bundle import TrainOptions, train_bundle


def add_arguments(parser) -> None:
    parser.add_argument("--data", required=True, help="labelled DICOM folder (or Slicer database)")
    parser.add_argument("--labels", help="labels CSV, or a label store (its corrected and accepted series; a folder "
                        "means its default store) (default: DATA/labels.csv)")
    parser.add_argument("--out", required=True, help="models folder to write (forest_trees.*, forest.json, card …)")
    parser.add_argument("--from", dest="base", help="start from this models folder (copies what is not retrained)")
    parser.add_argument("--no-cnn", action="store_true", help="train the forest only (with --from: the CNN is "
                        "copied from the base bundle)")
    parser.add_argument("--fine-tune-cnn", action="store_true",
                        help="with --from: fine-tune the base CNN's heads on the site's series (off by default: on "
                        "10-100 series it lowered the CNN's accuracy on the rest of a site, docs/SITE_ADAPTATION.md)")
    parser.add_argument("--site-weight", type=float, default=10.0,
                        help="with --from: weight of each site series against one of the base's training rows")
    parser.add_argument("--test-fraction", type=float,
                        help="share of the site's series (whole studies) kept out of training to compare the new "
                        "bundle with --from on (default 0.2 with --from, else 0)")
    parser.add_argument("--write-base-rows", action="store_true",
                        help=f"store the training header records in the bundle ({BASE_ROWS}) for later --from "
                        "retraining; only for data you may share (e.g. generated studies)")
    parser.add_argument("--holdout-profile", nargs="*", default=[], help="profiles (labels 'profile' column) to "
                        "exclude from training and report as held-out")
    parser.add_argument("--eval", dest="eval_data", help="a separate labelled folder to report held-out metrics on")
    parser.add_argument("--eval-labels", help="labels CSV for --eval (default: EVAL/labels.csv)")
    parser.add_argument("--descriptions", action="store_true",
                        help="also use SeriesDescription/ProtocolName tokens (off by default: descriptions lie)")
    parser.add_argument("--kind", choices=["random_forest", "extra_trees"], help="tree ensemble (default: RF)")
    parser.add_argument("--n-estimators", type=int, help="trees per task (default 200)")
    parser.add_argument("--field-dropout", type=float, default=FIELD_DROPOUT,
                        help="share of training rows that lose each token field, vendor sequence name, flip angle "
                        "and echo train (robustness to new vendors and stripped tags)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cache", help="JSON-lines cache of read headers (reused when present)")
    parser.add_argument("--docs", help="also copy the held-out confusion PNGs here")


def options_from(args) -> TrainOptions:
    def path(value):
        return Path(value) if value else None

    return TrainOptions(
        data=Path(args.data), out=Path(args.out), labels=path(args.labels), base=path(args.base),
        no_cnn=args.no_cnn, fine_tune_cnn=args.fine_tune_cnn, site_weight=args.site_weight,
        test_fraction=args.test_fraction, write_base_rows=args.write_base_rows,
        holdout_profiles=list(args.holdout_profile or []), eval_data=path(args.eval_data),
        eval_labels=path(args.eval_labels), descriptions=args.descriptions, kind=args.kind,
        n_estimators=args.n_estimators, field_dropout=args.field_dropout, seed=args.seed, cache=path(args.cache),
        docs=path(args.docs),
        command="seriesclassifier train " + " ".join(sys.argv[2:]) if sys.argv[1:2] == ["train"] else "",
    )


def run(args) -> int:
    try:
        train_bundle(options_from(args))
    except TrainingError as exc:
        print(exc, file=sys.stderr)
        return 2
    return 0
