"""``seriesclassifier classify PATH --out results.csv|results.json``: every series under a folder or Slicer database."""

from __future__ import annotations

import csv
import io
import json
import sys
from pathlib import Path

from ..labels.store import LabelStore, StoreError
from ..prediction import REVIEW, UNKNOWN, SeriesPrediction
from ..vocabulary import load_vocabulary
from ._predictions import ModelChoice, ProgressBar, classify_refs, up_to_date
from ._store_args import add_store_argument, open_store, series_under

# The export's names for the same things (labels/export.py csv_columns), so one spreadsheet formula reads both.
CSV_COLUMNS = [
    "series_uid",
    "study_uid",
    "patient_id",
    "series_number",
    "series_description",
    "n_images",
    "n_frames",
    "predicted_sequence",
    "predicted_sequence_probability",
    "predicted_top3",
    "predicted_orientation",
    "predicted_orientation_probability",
]
TAIL_COLUMNS = ["needs_review", "outcome", "reason", "error", "model_version"]


def add_arguments(parser) -> None:
    parser.add_argument("path", help="folder of DICOM files (any layout) or a Slicer DICOM database folder")
    parser.add_argument("--out", help="also write the results to a file: .csv (table) or .json (everything)")
    parser.add_argument("--models", help="models folder (default: the bundled models)")
    parser.add_argument("--no-cnn", action="store_true", help="headers only: do not run the CNN")
    parser.add_argument("--no-forest", action="store_true", help="pixels only: do not run the metadata forest")
    parser.add_argument("--gradcam", metavar="DIR",
                        help="also write each series' Grad-CAM for its predicted sequence into DIR: NRRD on the "
                             "series' voxel grid (LPS) and a PNG of the sampled slices; needs the CNN; "
                             "classifies every series again (the maps need the pixels)")
    add_store_argument(parser)
    parser.add_argument("--force", action="store_true",
                        help="classify every series again, even those the store holds unchanged predictions for")
    parser.add_argument("--quiet", action="store_true", help="no progress or summary on stderr")


def _bool(value: bool) -> str:
    return "true" if value else "false"


def csv_row(p: SeriesPrediction, attribute_codes: list[str]) -> dict[str, object]:
    row: dict[str, object] = {
        "series_uid": p.series_uid,
        "study_uid": p.study_uid,
        "patient_id": p.patient_id,
        "series_number": "" if p.series_number is None else p.series_number,
        "series_description": p.series_description,
        "n_images": p.n_images,
        "n_frames": p.n_frames or p.n_images,
        "predicted_sequence": p.sequence.label if p.sequence else "",
        "predicted_sequence_probability": f"{p.sequence.probability:.4f}" if p.sequence else "",
        "predicted_top3": p.sequence.top_text(3) if p.sequence else "",
        "predicted_orientation": p.orientation.label if p.orientation else "",
        "predicted_orientation_probability": f"{p.orientation.probability:.4f}" if p.orientation else "",
    }
    for code in attribute_codes:
        a = p.attributes.get(code)
        row[f"attribute_{code}"] = a.label if a else ""
        row[f"attribute_{code}_probability"] = f"{a.probability:.4f}" if a else ""
    row["needs_review"] = _bool(p.needs_review)
    row["outcome"] = p.outcome
    row["reason"] = " | ".join(p.reasons[:3])
    row["error"] = p.error or ""
    row["model_version"] = p.model_version
    return row


def csv_columns(attribute_codes: list[str]) -> list[str]:
    attributes = [c for code in attribute_codes for c in (f"attribute_{code}", f"attribute_{code}_probability")]
    return CSV_COLUMNS + attributes + TAIL_COLUMNS


def write_results(predictions: list[SeriesPrediction], out: Path) -> None:
    """The results file, written atomically (write_export): a full disk leaves no partial file."""
    from ..labels.export import write_export
    from ..labels.safe_text import csv_cell

    if out.suffix.lower() == ".json":
        data = {"series": [dict(p.to_dict(), outcome=p.outcome,
                                predicted_top3=p.sequence.top(3) if p.sequence else [])
                           for p in predictions]}
        write_export(json.dumps(data, indent=1), out)
        return
    codes = load_vocabulary().attribute_codes
    text = io.StringIO(newline="")
    writer = csv.DictWriter(text, fieldnames=csv_columns(codes))
    writer.writeheader()
    for p in predictions:
        writer.writerow({k: csv_cell(v) for k, v in csv_row(p, codes).items()})  # no formula from a header
    write_export(text.getvalue(), out)


def gradcam_writer(cnn, out_dir: Path):
    """A pipeline ``on_result`` hook writing each series' Grad-CAM; a failure costs that map only."""
    from ..models.gradcam import gradcam_series, write_gradcam

    def write(series, prediction: SeriesPrediction) -> None:
        if prediction.error or series.skipped or "cnn" not in prediction.models:
            return
        target = prediction.sequence.label if prediction.sequence else None
        try:
            write_gradcam(gradcam_series(cnn, series, "sequence", target), series, out_dir)
        except Exception as exc:  # noqa: BLE001 - odd pixels must not stop the other series
            print(f"warning: no Grad-CAM for series {series.series_uid}: {exc}", file=sys.stderr)

    return write


def _open_store(args) -> LabelStore | None:
    """The store the predictions go to; None (with a warning) where it cannot be written, e.g. a read-only disc."""
    try:
        return open_store(args)
    except (StoreError, OSError) as exc:
        print(f"warning: predictions not recorded in a label store ({exc}); give --store FILE to keep them",
              file=sys.stderr)
        return None


def _predict(args, refs: list, store: LabelStore | None, gradcam) -> tuple[list[SeriesPrediction], int]:
    """With ``gradcam`` (bundle, hook) every series is classified again with that bundle: the maps need pixels."""
    choice = ModelChoice(args.models, use_forest=not args.no_forest, use_cnn=not args.no_cnn)
    bundle, on_result = gradcam or (None, None)
    if store is not None:
        return up_to_date(store, refs, choice, force=args.force or gradcam is not None, quiet=args.quiet,
                          on_result=on_result, bundle=bundle)
    predictions, _ = classify_refs(refs, refs, choice, progress=ProgressBar(not args.quiet), on_result=on_result,
                                   bundle=bundle)
    return predictions, len(predictions)


def run(args) -> int:
    out = Path(args.out) if args.out else None
    if out is not None and out.suffix.lower() not in {".csv", ".json"}:
        print(f"--out {out}: use a .csv or .json file name", file=sys.stderr)
        return 2
    if args.no_cnn and args.no_forest:
        print("--no-cnn and --no-forest together leave no model to run", file=sys.stderr)
        return 2
    if out is not None:
        from ..labels.export import check_writable

        check_writable(out)  # before the run's work, not after it (OutputError: a message from cli.main)
    gradcam = None
    if args.gradcam:
        from ..models.bundle import load_bundle

        try:
            bundle = load_bundle(args.models, load_forest=not args.no_forest, load_cnn=not args.no_cnn)
        except FileNotFoundError as exc:
            print(f"models: {exc}", file=sys.stderr)
            return 2
        for problem in bundle.problems:
            print(f"warning: {problem}", file=sys.stderr)
        if bundle.cnn is None:
            print("--gradcam needs the CNN, and no CNN is loaded (--no-cnn, or none in the models folder)",
                  file=sys.stderr)
            return 2
        gradcam = (bundle, gradcam_writer(bundle.cnn, Path(args.gradcam)))
    try:
        refs = series_under(args.path)
        store = _open_store(args)
        try:
            predictions, classified = _predict(args, refs, store, gradcam)
        finally:
            if store is not None:
                store.close()
    except (FileNotFoundError, StoreError) as exc:
        print(str(exc), file=sys.stderr)
        return 2
    if out is not None:
        write_results(predictions, out)
    if not args.quiet:
        skipped = sum(1 for p in predictions if p.error)
        review = sum(1 for p in predictions if p.outcome == REVIEW)
        unknown = sum(1 for p in predictions if p.outcome == UNKNOWN)
        where = [str(x) for x in (out, store.path if store is not None else None) if x is not None]
        print(f"{len(predictions)} series ({classified} classified now, {skipped} not classified, {review} need "
              f"review, {unknown} unknown) → {' and '.join(where) or 'nowhere (no store, no --out)'}", file=sys.stderr)
    return 0
