"""``seriesclassifier label``: record a correction (or an acceptance) for one series."""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import sys
from pathlib import Path

from ..labels.review import resolve_code
from ..labels.store import LabelStore, StoreError
from ..vocabulary import load_vocabulary
from ._store_args import add_store_argument, find_store_of, remember_store, store_path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("series_uid", metavar="SERIES_UID", nargs="?", help="SeriesInstanceUID of the series")
    parser.add_argument(
        "--import", dest="import_csv", metavar="CSV",
        help="record the labels of a CSV instead (series_uid + sequence/orientation/attribute columns; "
        "e.g. a generator's labels.csv or an edited export)",
    )
    parser.add_argument("--sequence", metavar="CODE",
                        help="sequence code, or a unique prefix of one in any case (flair_2 → FLAIR_2D)")
    parser.add_argument("--orientation", metavar="CODE", help="orientation code or a unique prefix (ax → AXIAL)")
    parser.add_argument(
        "--attribute", metavar="NAME=VALUE", action="append", default=[], help="auxiliary attribute, repeatable"
    )
    parser.add_argument("--accept", action="store_true", help="confirm the current label instead of changing it")
    parser.add_argument("--history", action="store_true", help="print the series' prediction and label history only")
    parser.add_argument("--user", help="who made the correction (default: the login name)")
    parser.add_argument("--note", help="free-text note")
    parser.add_argument("--path", help="the folder or Slicer DICOM database the series belongs to (finds the store)")
    parser.add_argument(
        "--allow-unknown", action="store_true", help="label a series that has no prediction in the store"
    )
    add_store_argument(parser)


def _code(text: str | None, codes: list[str], what: str) -> str | None:
    """The code ``text`` names, matched as ``review`` matches answers (exact or unique prefix, any case)."""
    if text is None:
        return None
    code, error = resolve_code(text, codes, what)
    if error:
        raise ValueError(error)
    return code


def _attributes(pairs: list[str]) -> dict[str, str]:
    vocabulary = load_vocabulary()
    out = {}
    for pair in pairs:
        if "=" not in pair:
            raise ValueError(f"--attribute {pair!r}: expected NAME=VALUE")
        name, value = (x.strip() for x in pair.split("=", 1))
        name = _code(name, list(vocabulary.attribute_codes), "attribute")
        out[name] = _code(value, list(vocabulary.attribute(name).values), f"{name} value")
    return out


def _label_store(args: argparse.Namespace) -> Path:
    """The store named by --store/--path, else the one store (here or recently written) that knows the series."""
    if args.store or args.path or args.allow_unknown:
        return store_path(args)
    return find_store_of(args.series_uid)


def _import(args: argparse.Namespace) -> int:
    path = Path(args.import_csv)
    try:
        data = path.read_bytes()
        rows = list(csv.DictReader(io.StringIO(data.decode("utf-8-sig"))))
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        print(f"error: {path}: cannot read ({e})", file=sys.stderr)
        return 1
    if not rows or not any(k in rows[0] for k in ("series_uid", "SeriesInstanceUID")):
        print(f"error: {path}: no label rows (a header line naming series_uid and the label columns, "
              "then one row per series)", file=sys.stderr)
        return 1
    try:
        with LabelStore(store_path(args)) as store:
            recorded, problems = store.import_labels(rows, user=args.user, batch=hashlib.sha256(data).hexdigest())
    except StoreError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    for problem in problems:
        print(f"warning: {path.name}: {problem}", file=sys.stderr)
    print(f"imported {recorded} labels from {path} ({len(rows)} rows, {len(problems)} problems)")
    return 0 if not problems else 1


def _print_history(store: LabelStore, series_uid: str) -> int:
    record = store.current(series_uid)
    p = record.prediction
    if p and p.sequence:
        orientation = p.orientation.label if p.orientation else "—"
        print(f"predicted: {p.sequence.label} {p.sequence.probability:.2f} · {orientation} (model {p.model_version})")
    for e in store.history(series_uid):
        labels = " ".join(x for x in (e.sequence, e.orientation) if x)
        labels += "".join(f" {k}={v}" for k, v in sorted(e.attributes.items()))
        note = f" — {e.note}" if e.note else ""
        print(f"{e.created_at}  {e.kind:<7} {labels or '-':<24} {e.user} via {e.source}{note}")
    print(f"current: {record.sequence} · {record.orientation or '—'} ({record.state})")
    return 0


def run(args: argparse.Namespace) -> int:
    if args.import_csv:
        return _import(args)
    if not args.series_uid:
        print("error: give a SERIES_UID or --import CSV", file=sys.stderr)
        return 2
    try:
        vocabulary = load_vocabulary()
        sequence = _code(args.sequence, list(vocabulary.sequence_codes), "sequence")
        orientation = _code(args.orientation, list(vocabulary.orientation_codes), "orientation")
        attributes = _attributes(args.attribute)
        with LabelStore(_label_store(args), create=args.allow_unknown) as store:
            remember_store(store.path)
            if store.current(args.series_uid) is None and not args.allow_unknown:
                print(
                    f"error: series {args.series_uid} is not in {store.path} (typo? use --allow-unknown to label "
                    "it anyway)",
                    file=sys.stderr,
                )
                return 1
            if args.history:
                return _print_history(store, args.series_uid)
            if args.accept:
                store.accept(args.series_uid, user=args.user, note=args.note, source="cli")
            else:
                store.correct(
                    args.series_uid,
                    sequence=sequence,
                    orientation=orientation,
                    attributes=attributes,
                    user=args.user,
                    note=args.note,
                    source="cli",
                )
            record = store.current(args.series_uid)
    except (ValueError, KeyError, StoreError) as e:
        print(f"error: {str(e).strip(chr(34))}", file=sys.stderr)
        return 1
    print(f"{record.series_uid}: {record.sequence} {record.orientation or ''} ({record.state})".replace("  ", " "))
    print(f"recorded in {store.path}", file=sys.stderr)
    return 0
