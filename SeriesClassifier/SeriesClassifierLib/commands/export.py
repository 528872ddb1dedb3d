"""``seriesclassifier export``: labels as CSV, JSON, a BIDS mapping, a dcm2bids config or a heudiconv heuristic."""

from __future__ import annotations

import argparse
import json
import sys

from ..labels.bids import reusable_dcm2bids_config, reusable_heudiconv_heuristic
from ..labels.export import FORMATS, export, export_summary, select, write_export
from ..labels.store import StoreError
from ._store_args import add_models_argument, add_store_argument, ensure_predictions, open_store


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("path", metavar="PATH", nargs="?", help="classified folder or Slicer DICOM database")
    add_store_argument(parser)
    add_models_argument(parser)
    parser.add_argument("--format", choices=FORMATS, required=True, help="what to write")
    parser.add_argument("--out", required=True, metavar="FILE", help="output file ('-' for standard output)")
    parser.add_argument(
        "--identifiers",
        action="store_true",
        help="keep patient identifiers: PatientID column and notes, BIDS subjects named from PatientIDs "
        "(default: left out, subjects numbered 01, 02, …)",
    )
    parser.add_argument("--anonymise", "--anonymize", action="store_true",
                        help="the default now; accepted so older scripts keep working")
    parser.add_argument("--reviewed-only", action="store_true", help="only series a person accepted or corrected")
    parser.add_argument(
        "--include-derived",
        action="store_true",
        help="also put derived series (ADC, MIP, minIP, …) into the dcm2bids/heudiconv configs",
    )
    parser.add_argument(
        "--reusable",
        action="store_true",
        help="configs for the next subjects, with no series UIDs inside: heudiconv, a heuristic that classifies "
        "each series itself (--models names the models it uses); dcm2bids, rules made from what the labelled "
        "series of each BIDS name share (description, ImageType). Without it both list this dataset's series",
    )


def _reusable(args: argparse.Namespace) -> int:
    """The reusable heuristic needs no store: it carries the models' path, not the labels."""
    from pathlib import Path

    from .. import __version__

    models = str(Path(args.models).resolve()) if args.models else None
    text = reusable_heudiconv_heuristic(models, args.include_derived, version=__version__)
    if args.out == "-":
        sys.stdout.write(text)
    else:
        print(f"wrote a reusable heudiconv heuristic to {write_export(text, args.out)}", file=sys.stderr)
    return 0


def run(args: argparse.Namespace) -> int:
    if args.reusable and args.format not in ("heudiconv", "dcm2bids"):
        print("error: --reusable is for --format heudiconv or dcm2bids", file=sys.stderr)
        return 2
    if args.reusable and args.format == "heudiconv":
        return _reusable(args)
    try:
        with open_store(args, create=bool(args.path)) as store:
            ensure_predictions(store, args.path, args.models)
            records = select(store.records(), args.reviewed_only)
            vocabulary = store.vocabulary
    except StoreError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    if not records:
        print("warning: no series to export", file=sys.stderr)
    if args.reusable:  # dcm2bids rules from the labelled series
        config, problems = reusable_dcm2bids_config(records, vocabulary, args.include_derived)
        for problem in problems:
            print(f"warning: {problem}", file=sys.stderr)
        text = json.dumps(config, indent=2) + "\n"
        if args.out == "-":
            sys.stdout.write(text)
        else:
            print(f"wrote {len(config['descriptions'])} reusable dcm2bids rules from {len(records)} series to "
                  f"{write_export(text, args.out)}", file=sys.stderr)
        return 0
    if args.identifiers and args.anonymise:
        print("error: --identifiers and --anonymise contradict each other", file=sys.stderr)
        return 2
    text = export(records, args.format, vocabulary, anonymise=not args.identifiers,
                  include_derived=args.include_derived)
    if args.out == "-":
        sys.stdout.write(text)
    else:
        out = write_export(text, args.out)
        summary = export_summary(records, args.format, vocabulary, args.include_derived)
        print(f"wrote {args.format} for {summary} to {out}", file=sys.stderr)
    return 0
