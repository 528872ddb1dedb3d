"""``seriesclassifier label``: record a correction (or an acceptance) for one series."""

from __future__ import annotations

import argparse
import sys

from ..store import LabelStore, StoreError
from ._store_args import add_store_argument, store_path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("series_uid", metavar="SERIES_UID", help="SeriesInstanceUID of the series")
    parser.add_argument("--sequence", metavar="CODE", help="sequence code from the vocabulary")
    parser.add_argument("--orientation", metavar="CODE", help="orientation code from the vocabulary")
    parser.add_argument(
        "--attribute", metavar="NAME=VALUE", action="append", default=[], help="auxiliary attribute, repeatable"
    )
    parser.add_argument("--accept", action="store_true", help="confirm the current label instead of changing it")
    parser.add_argument("--user", help="who made the correction (default: the login name)")
    parser.add_argument("--note", help="free-text note")
    parser.add_argument("--path", help="the folder or Slicer DICOM database the series belongs to (finds the store)")
    parser.add_argument(
        "--allow-unknown", action="store_true", help="label a series that has no prediction in the store"
    )
    add_store_argument(parser)


def _attributes(pairs: list[str]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        if "=" not in pair:
            raise ValueError(f"--attribute {pair!r}: expected NAME=VALUE")
        name, value = pair.split("=", 1)
        out[name.strip()] = value.strip()
    return out


def run(args: argparse.Namespace) -> int:
    try:
        with LabelStore(store_path(args), create=args.allow_unknown) as store:
            if store.current(args.series_uid) is None and not args.allow_unknown:
                print(
                    f"error: series {args.series_uid} is not in {store.path} (typo? use --allow-unknown to label "
                    "it anyway)",
                    file=sys.stderr,
                )
                return 1
            if args.accept:
                store.accept(args.series_uid, user=args.user, note=args.note, source="cli")
            else:
                store.correct(
                    args.series_uid,
                    sequence=args.sequence,
                    orientation=args.orientation,
                    attributes=_attributes(args.attribute),
                    user=args.user,
                    note=args.note,
                    source="cli",
                )
            record = store.current(args.series_uid)
    except (ValueError, KeyError, StoreError) as e:
        print(f"error: {str(e).strip(chr(34))}", file=sys.stderr)
        return 1
    print(f"{record.series_uid}: {record.sequence} {record.orientation or ''} ({record.state})".replace("  ", " "))
    return 0
