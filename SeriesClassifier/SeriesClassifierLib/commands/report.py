"""``seriesclassifier report``: a self-contained HTML contact sheet of the predictions and labels."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..labels.export import write_export
from ..labels.report import build_report, report_items
from ..labels.store import LabelRecord, StoreError
from ..labels.thumbnail import middle_image
from ._store_args import add_store_argument, ensure_predictions, open_store, series_under


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("path", metavar="PATH", help="folder or Slicer DICOM database (for the images)")
    add_store_argument(parser)
    parser.add_argument("--out", required=True, metavar="FILE", help="HTML file to write")
    parser.add_argument("--title", default="SeriesClassifier report", help="page title")
    parser.add_argument("--gradcam", action="store_true", help="overlay the CNN's Grad-CAM (needs the CNN model)")
    parser.add_argument("--models", metavar="DIR", help="models folder: to classify the series of PATH the store "
                        "has no prediction for, and for --gradcam (default: the bundled models)")
    parser.add_argument("--anonymise", "--anonymize", action="store_true",
                        help="leave patient IDs, study UIDs and notes out of the page")


def _gradcam_images(models: str | None, files: dict[str, list[Path]]):
    """An image provider giving the middle sampled CNN input and its Grad-CAM, or None without a CNN."""
    from ..models.bundle import load_bundle
    from ..models.gradcam import gradcam_series

    try:
        bundle = load_bundle(models, load_forest=False, load_cnn=True)
    except (FileNotFoundError, OSError, ValueError) as e:
        print(f"warning: no models ({e}); the report has no Grad-CAM", file=sys.stderr)
        return None
    if bundle.cnn is None:
        print("warning: no CNN in the model bundle; the report has no Grad-CAM", file=sys.stderr)
        return None

    def provide(record: LabelRecord):
        series_files = files.get(record.series_uid)
        if not series_files:
            return None, None, "files not found under PATH"
        try:
            result = gradcam_series(bundle.cnn, series_files)
        except Exception as exc:  # no Grad-CAM for this one: still show its picture
            print(f"warning: {record.series_uid}: no Grad-CAM ({type(exc).__name__}: {exc})", file=sys.stderr)
            result = None
        if result is None or result.images is None or result.slice_maps is None or not len(result.images):
            image, note = middle_image(series_files)
            return image, None, note
        k = len(result.images) // 2
        return result.images[k], result.slice_maps[k], ""

    return provide


def run(args: argparse.Namespace) -> int:
    try:
        refs = series_under(args.path)
        files = {ref.series_uid: list(ref.files) for ref in refs}
        with open_store(args) as store:
            ensure_predictions(store, args.path, args.models, refs=refs, strict=False)  # --models: for Grad-CAM
            records = store.records()
    except StoreError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1

    def plain(record: LabelRecord):
        series_files = files.get(record.series_uid)
        if not series_files:
            return None, None, "files not found under PATH"
        image, note = middle_image(series_files)
        return image, None, note

    provider = plain
    if args.gradcam:
        provider = _gradcam_images(args.models, files) or plain

    def warn(message: str) -> None:
        print(f"warning: {message}", file=sys.stderr)

    items = report_items(records, provider, on_error=warn)
    out = write_export(build_report(items, args.title, anonymise=args.anonymise), args.out)
    missing = sum(1 for i in items if i.image is None)
    print(f"wrote {out}: {len(items)} series" + (f", {missing} without image" if missing else ""), file=sys.stderr)
    return 0
