"""``seriesclassifier export``: labels as CSV, JSON, a BIDS mapping, a dcm2bids config or a heudiconv heuristic."""

from __future__ import annotations

import argparse
import json
import sys

from ..labels.bids import reusable_dcm2bids_config, reusable_heudiconv_heuristic
from ..labels.bids_metadata import load_overrides
from ..labels.export import FORMATS, export, export_summary, select, write_export
from ..labels.store import StoreError
from ._store_args import add_models_argument, add_store_argument, ensure_predictions, open_store, series_under


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
        "--bids-sidecar",
        metavar="FILE",
        help="BIDS sidecar fields no DICOM header holds (ASL BackgroundSuppression, PostLabelingDelay, the "
        "aslcontext volume types, …): a JSON object keyed by series UID, SeriesDescription or BIDS suffix "
        '(e.g. {"asl": {"BackgroundSuppression": true, "aslcontext": ["control", "label"]}}); see docs/EXPORTS.md',
    )
    parser.add_argument(
        "--reusable",
        action="store_true",
        help="configs for the next subjects, with no series UIDs inside: heudiconv, a heuristic that classifies "
        "each series itself (--models names the models it uses); dcm2bids, rules made from what the labelled "
        "series of each BIDS name share (sequence, timing ranges, ImageType; the description only where these "
        "do not tell two names apart: give PATH so the headers are read). Without it both list this dataset's "
        "series",
    )


def _reusable(args: argparse.Namespace) -> int:
    """The reusable heuristic needs no store: it carries the models' path, not the labels."""
    from pathlib import Path

    from .. import __version__

    models = str(Path(args.models).resolve()) if args.models else None
    try:
        overrides = load_overrides(args.bids_sidecar) if args.bids_sidecar else None
    except ValueError as e:
        print(f"error: --bids-sidecar {e}", file=sys.stderr)
        return 2
    text = reusable_heudiconv_heuristic(models, args.include_derived, version=__version__, overrides=overrides)
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
        overrides = load_overrides(args.bids_sidecar) if args.bids_sidecar else None
    except ValueError as e:
        print(f"error: --bids-sidecar {e}", file=sys.stderr)
        return 2
    try:
        with open_store(args, create=bool(args.path)) as store:
            refs = series_under(args.path) if args.path else None
            ensure_predictions(store, args.path, args.models, refs=refs)
            records = select(store.records(), args.reviewed_only)
            vocabulary = store.vocabulary
    except StoreError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    if not records:
        print("warning: no series to export", file=sys.stderr)
    facts = _facts(records, vocabulary, refs)
    if args.reusable:  # dcm2bids rules from the labelled series
        config, problems = reusable_dcm2bids_config(records, vocabulary, args.include_derived, facts, overrides,
                                                    acquisitions=_acquisitions(records, refs))
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
                  include_derived=args.include_derived, facts=facts, overrides=overrides)
    _report_incomplete(records, vocabulary, facts, overrides)
    if args.out == "-":
        sys.stdout.write(text)
    else:
        out = write_export(text, args.out)
        summary = export_summary(records, args.format, vocabulary, args.include_derived, facts, overrides)
        print(f"wrote {args.format} for {summary} to {out}", file=sys.stderr)
    return 0


def _facts(records: list, vocabulary, refs: list | None) -> dict | None:
    """What the DICOM headers of the ASL and field-map series say for BIDS (None: no DICOM at hand, not checked)."""
    from ..labels.bids_metadata import read_facts

    wanted = {r.series_uid for r in records if r.sequence and (m := vocabulary.sequence(r.sequence).bids)
              and m.datatype in ("perf", "fmap")}
    if not wanted:
        return {}
    if refs is None:
        print("note: the sidecar fields of ASL and field-map series are not checked without the DICOM: give PATH",
              file=sys.stderr)
        return None
    return {ref.series_uid: read_facts(ref.series_uid, ref.files, ref.series_description)
            for ref in refs if ref.series_uid in wanted}


def _acquisitions(records: list, refs: list | None) -> dict | None:
    """What dcm2niix will write into each labelled series' sidecars (sequence, times), which the reusable rules
    are made from and checked against; None without the DICOM (the rules then use ImageType and descriptions)."""
    from ..dicom.headers import read_series
    from ..labels.bids_metadata import acquisition_sidecars

    if refs is None:
        return None
    labelled = {r.series_uid for r in records if r.sequence}
    return {ref.series_uid: acquisition_sidecars(read_series(ref).header) for ref in refs if ref.series_uid in labelled}


def _report_incomplete(records: list, vocabulary, facts: dict | None, overrides: dict | None) -> None:
    """Say which series were kept out of the raw BIDS tree for want of sidecar fields, and how to give them."""
    from ..labels.bids import bids_names

    if facts is None:
        return
    numbers = {r.series_uid: r.prediction.series_number if r.prediction else None for r in records}
    for uid, n in bids_names(records, vocabulary, facts=facts, overrides=overrides).items():
        if n.suffix == "m0scan" and n.missing:
            print(f"warning: series {numbers.get(uid)} ({uid}): an M0 scan whose ASL series is kept out of the raw "
                  f"tree goes with it ({n.filename})", file=sys.stderr)
        elif n.missing:
            print(f"warning: series {numbers.get(uid)} ({uid}): {n.suffix} needs {', '.join(n.missing)}, which "
                  f"its DICOM does not say; kept out of the raw tree ({n.filename}). Give them with "
                  f"--bids-sidecar FILE, e.g. {{\"{n.suffix}\": {{...}}}} (docs/EXPORTS.md)", file=sys.stderr)
