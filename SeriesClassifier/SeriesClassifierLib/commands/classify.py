"""``seriesclassifier classify PATH --out results.csv|results.json``: every series under a folder or Slicer database."""

from __future__ import annotations

import csv
import io
import json
import sys
import time
from pathlib import Path

from ..prediction import SeriesPrediction
from ..vocabulary import load_vocabulary

CSV_COLUMNS = [
    "series_uid",
    "study_uid",
    "patient_id",
    "series_number",
    "series_description",
    "n_images",
    "sequence",
    "sequence_probability",
    "orientation",
    "orientation_probability",
    "needs_review",
]


def add_arguments(parser) -> None:
    parser.add_argument("path", help="folder of DICOM files (any layout) or a Slicer DICOM database folder")
    parser.add_argument("--out", required=True, help="results file: .csv (table) or .json (everything)")
    parser.add_argument("--models", help="models folder (default: the bundled models)")
    parser.add_argument("--no-cnn", action="store_true", help="headers only: do not run the CNN")
    parser.add_argument("--no-forest", action="store_true", help="pixels only: do not run the metadata forest")
    parser.add_argument("--gradcam", metavar="DIR",
                        help="also write each series' Grad-CAM for its predicted sequence into DIR: NRRD on the "
                             "series' voxel grid (LPS) and a PNG of the sampled slices; needs the CNN")
    parser.add_argument("--quiet", action="store_true", help="no progress or summary on stderr")


def csv_row(p: SeriesPrediction, attribute_codes: list[str]) -> dict[str, object]:
    row: dict[str, object] = {
        "series_uid": p.series_uid,
        "study_uid": p.study_uid,
        "patient_id": p.patient_id,
        "series_number": "" if p.series_number is None else p.series_number,
        "series_description": p.series_description,
        "n_images": p.n_images,
        "sequence": p.sequence.label if p.sequence else "",
        "sequence_probability": f"{p.sequence.probability:.4f}" if p.sequence else "",
        "orientation": p.orientation.label if p.orientation else "",
        "orientation_probability": f"{p.orientation.probability:.4f}" if p.orientation else "",
        "needs_review": int(p.needs_review),
    }
    for code in attribute_codes:
        a = p.attributes.get(code)
        row[code] = a.label if a else ""
        row[f"{code}_probability"] = f"{a.probability:.4f}" if a else ""
    row["top3"] = "; ".join(f"{lbl} {pr:.3f}" for lbl, pr in p.sequence.top(3)) if p.sequence else ""
    row["reason"] = " | ".join(p.reasons[:3])
    row["error"] = p.error or ""
    return row


def write_results(predictions: list[SeriesPrediction], out: Path) -> None:
    """The results file, written atomically (write_export): a full disk leaves no partial file."""
    from ..labels.export import write_export
    from ..labels.safe_text import csv_cell

    if out.suffix.lower() == ".json":
        data = {"series": [dict(p.to_dict(), top3=p.sequence.top(3) if p.sequence else []) for p in predictions]}
        write_export(json.dumps(data, indent=1), out)
        return
    codes = load_vocabulary().attribute_codes
    columns = CSV_COLUMNS + [c for code in codes for c in (code, f"{code}_probability")] + ["top3", "reason", "error"]
    text = io.StringIO(newline="")
    writer = csv.DictWriter(text, fieldnames=columns)
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


WRITE_EVERY_SECONDS = 10.0  # how often a long run's results so far are written out


class IncrementalResults:
    """An ``on_result`` hook that rewrites the results file (atomically) every WRITE_EVERY_SECONDS.

    A fault late in a long run (a full disk at the end, a crash) then leaves the series done until the last
    write, instead of nothing; the final write after the run is the whole table, as before.
    """

    def __init__(self, out: Path, then=None):
        self.out, self.then, self.done = out, then, []
        self.last = time.monotonic()

    def __call__(self, series, prediction: SeriesPrediction) -> None:
        if self.then is not None:
            self.then(series, prediction)
        self.done.append(prediction)
        if time.monotonic() - self.last < WRITE_EVERY_SECONDS:
            return
        try:
            write_results(self.done, self.out)
        except OSError as exc:  # OutputError; the run goes on and the final write reports it
            print(f"warning: results so far not written: {exc}", file=sys.stderr)
        self.last = time.monotonic()


class ProgressBar:
    """A one-line bar on stderr, only when stderr is a terminal."""

    def __init__(self, enabled: bool):
        self.enabled = enabled and sys.stderr.isatty()

    def __call__(self, done: int, total: int, series_uid: str) -> None:
        if not self.enabled:
            return
        width = 30
        filled = int(width * done / max(total, 1))
        sys.stderr.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total} series")
        if done == total:
            sys.stderr.write("\n")
        sys.stderr.flush()


def run(args) -> int:
    from ..models.bundle import load_bundle
    from ..run.pipeline import classify

    out = Path(args.out)
    if out.suffix.lower() not in {".csv", ".json"}:
        print(f"--out {out}: use a .csv or .json file name", file=sys.stderr)
        return 2
    if args.no_cnn and args.no_forest:
        print("--no-cnn and --no-forest together leave no model to run", file=sys.stderr)
        return 2
    from ..labels.export import check_writable

    check_writable(out)  # before the run's work, not after it (OutputError: a message from cli.main)
    try:
        bundle = load_bundle(args.models, load_forest=not args.no_forest, load_cnn=not args.no_cnn)
    except FileNotFoundError as exc:
        print(f"models: {exc}", file=sys.stderr)
        return 2
    for problem in bundle.problems:
        print(f"warning: {problem}", file=sys.stderr)
    on_result = None
    if args.gradcam:
        if args.no_cnn or bundle.cnn is None:
            print("--gradcam needs the CNN, and no CNN is loaded (--no-cnn, or none in the models folder)",
                  file=sys.stderr)
            return 2
        on_result = gradcam_writer(bundle.cnn, Path(args.gradcam))
    on_result = IncrementalResults(out, on_result)
    try:
        predictions = list(
            classify(args.path, bundle, use_forest=not args.no_forest, use_cnn=not args.no_cnn,
                     progress=ProgressBar(not args.quiet), on_result=on_result)
        )
    except FileNotFoundError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    write_results(predictions, out)
    if not args.quiet:
        skipped = sum(1 for p in predictions if p.error)
        review = sum(1 for p in predictions if p.needs_review and not p.error)
        print(f"{len(predictions)} series ({skipped} not classified, {review} need review) → {out}", file=sys.stderr)
    return 0
