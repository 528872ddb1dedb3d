"""``seriesclassifier classify PATH --out results.csv|results.json``: every series under a folder or Slicer database."""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Iterable
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
    parser.add_argument("--workers", type=int, default=0, metavar="N",
                        help="classify in N local worker processes (whole studies per task); results and their "
                             "order are the same as in one process")
    parser.add_argument("--scheduler", metavar="ADDRESS",
                        help="classify on a running dask.distributed scheduler (e.g. tcp://host:8786; "
                             'pip install "seriesclassifier[dask]"); workers must see PATH and the models')
    parser.add_argument("--threads", type=int, metavar="N",
                        help="torch threads per process (default: torch's own; with --workers the cores shared "
                             "out; Dask workers: 1). The CNN's probabilities are bit-identical between runs with "
                             "the same count (they differ ~1e-9 otherwise)")
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


def write_results(predictions: Iterable[SeriesPrediction], out: Path) -> int:
    """Write each prediction as it comes (an archive's results are never all in memory); returns the count.

    Each one is flushed at once, so the file can be followed while an archive runs.

    The JSON is laid out as ``json.dumps({"series": [...]}, indent=1)`` would write it.
    """
    out.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    if out.suffix.lower() == ".json":
        with open(out, "w", encoding="utf-8") as f:
            f.write('{\n "series": [')
            for n, p in enumerate(predictions, start=1):
                item = json.dumps(dict(p.to_dict(), top3=p.sequence.top(3) if p.sequence else []), indent=1)
                f.write(("," if n > 1 else "") + "\n  " + item.replace("\n", "\n  "))
                f.flush()
            f.write("\n ]\n}" if n else "]\n}")
        return n
    codes = load_vocabulary().attribute_codes
    columns = CSV_COLUMNS + [c for code in codes for c in (code, f"{code}_probability")] + ["top3", "reason", "error"]
    with open(out, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        for p in predictions:
            writer.writerow(csv_row(p, codes))
            f.flush()  # each row on disk as its series finishes: a stopped run keeps what was done
            n += 1
    return n


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


def _load_models(args, driver_only: bool):
    """The bundle, or an exit code. With workers the models run in them: here the CNN is only looked for."""
    from ..models.bundle import CNN_WEIGHTS, load_bundle

    try:
        bundle = load_bundle(args.models, load_forest=not args.no_forest, load_cnn=not (args.no_cnn or driver_only))
    except FileNotFoundError as exc:
        print(f"models: {exc}", file=sys.stderr)
        return 2
    for problem in bundle.problems:
        print(f"warning: {problem}", file=sys.stderr)
    has_cnn = (bundle.path / CNN_WEIGHTS).is_file() if driver_only else bundle.cnn is not None
    if args.gradcam and (args.no_cnn or not has_cnn):
        print("--gradcam needs the CNN, and no CNN is loaded (--no-cnn, or none in the models folder)",
              file=sys.stderr)
        return 2
    return bundle


class _Tally:
    """Counts what streams past, for the summary line."""

    def __init__(self, predictions: Iterable[SeriesPrediction]):
        self.predictions, self.skipped, self.review = predictions, 0, 0

    def __iter__(self):
        for p in self.predictions:
            self.skipped += bool(p.error)
            self.review += bool(p.needs_review and not p.error)
            yield p


def run(args) -> int:
    from ..run.pipeline import resolve_refs
    from ..run.stream import classify_stream

    out = Path(args.out)
    if out.suffix.lower() not in {".csv", ".json"}:
        print(f"--out {out}: use a .csv or .json file name", file=sys.stderr)
        return 2
    if args.no_cnn and args.no_forest:
        print("--no-cnn and --no-forest together leave no model to run", file=sys.stderr)
        return 2
    if args.workers < 0 or (args.threads is not None and args.threads < 1):
        print("--workers: 0 or more processes; --threads: 1 or more", file=sys.stderr)
        return 2
    try:
        refs = resolve_refs(args.path)
    except FileNotFoundError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    bundle = None
    if refs:  # nothing to classify: no model is loaded (an empty run costs the imports only)
        bundle = _load_models(args, driver_only=bool(args.workers or args.scheduler))
        if isinstance(bundle, int):
            return bundle
    elif args.models and not Path(args.models).is_dir():
        print(f"models: {args.models}: models folder not found", file=sys.stderr)
        return 2
    predictions = _Tally(classify_stream(
        refs, bundle, use_forest=not args.no_forest, use_cnn=not args.no_cnn, workers=args.workers,
        scheduler=args.scheduler, threads=args.threads, gradcam_dir=args.gradcam if bundle is not None else None,
        progress=ProgressBar(not args.quiet)))
    try:
        n = write_results(predictions, out)
    except (OSError, RuntimeError) as exc:  # a scheduler out of reach, dask not installed, a worker lost
        print(f"classification stopped: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    if not args.quiet:
        print(f"{n} series ({predictions.skipped} not classified, {predictions.review} need review) → {out}",
              file=sys.stderr)
    return 0
