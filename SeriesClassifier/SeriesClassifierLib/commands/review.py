"""``seriesclassifier review``: go through the predictions in the terminal and accept or correct them."""

from __future__ import annotations

import argparse
import sys

from ..labels.review import ReviewSession, review_order
from ..labels.store import StoreError
from ._store_args import add_models_argument, add_store_argument, ensure_predictions, open_store, series_under


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("path", metavar="PATH", nargs="?", help="folder or Slicer DICOM database to review")
    add_store_argument(parser)
    add_models_argument(parser)
    parser.add_argument("--user", help="who is reviewing (default: the login name)")
    parser.add_argument("--all", action="store_true", help="also show series already accepted or corrected")


def run(args: argparse.Namespace) -> int:
    try:
        # a person will look at each series: listing them first is cheap beside that
        refs = series_under(args.path) if args.path else None
        with open_store(args, create=bool(args.path)) as store:
            ensure_predictions(store, args.path, args.models, refs=refs)
            records = review_order(store.records(), include_reviewed=args.all)
            summary = ReviewSession(store, records, sys.stdin, sys.stdout, user=args.user).run()
    except StoreError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0 if summary is not None else 1
