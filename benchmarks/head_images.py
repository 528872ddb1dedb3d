"""How the head looks to the CNN: real development series against a generated corpus, class by class.

    python benchmarks/head_images.py --real REALDEV --manifest ../shared/real-dev/real_dev.tsv [--measure M]
    python benchmarks/head_images.py --generated CORPUS [--limit 260] [--measure M]

Each series is read as the CNN reads it (its K slices, normalised, 128²). Printed: one line per series (real) or
per class (generated). REALDEV: ``build_real_dev.py``'s folder, brain/head series only (``--manifest`` gives the
anatomy). A benchmark: the data are fetched or generated. Two measures (``--measure``):

- ``centre`` (default): how dark the centre of the head is. On the middle half of the slices the head is masked
  and the median of its deepest part (distance to the edge > 0.65 of the largest) is divided by the median of
  a ring under its surface (0.12–0.30). An unnormalised phased-array head coil makes the ratio small
  (docs/REAL_DATA.md, session 12); the tissue contrast moves it too, so compare a class with the same class.
- ``sharpness``: how sharp its edges are. The 95th percentile of the gradient magnitude over the head divided
  by the same after a σ = 1 px Gaussian blur (median over the slices): near 1, the image was already that
  smooth; larger, sharper (docs/CNN_SHORTCUTS.md, session 13).
"""

from __future__ import annotations

import argparse
import csv
import warnings
from collections import defaultdict
from collections.abc import Iterator
from itertools import islice
from pathlib import Path

import numpy as np
from scipy import ndimage


def centre_to_surface(image: np.ndarray) -> float | None:
    """Median of the deep head over the median under its surface; None where no head is found."""
    mask = ndimage.binary_fill_holes(ndimage.binary_opening(image > 0.1, iterations=2))
    labelled, n = ndimage.label(mask)
    if n == 0:
        return None
    head = labelled == (np.bincount(labelled.ravel())[1:].argmax() + 1)
    if head.mean() < 0.1:
        return None
    depth = ndimage.distance_transform_edt(head)
    deepest = depth.max()
    inner = image[depth > 0.65 * deepest]
    ring = image[(depth > 0.12 * deepest) & (depth < 0.3 * deepest)]
    return float(np.median(inner) / max(float(np.median(ring)), 1e-3))


def edge_sharpness(image: np.ndarray) -> float | None:
    """The steepest edges' gradient over theirs after a σ = 1 px blur; None where no head is found."""
    head = ndimage.binary_dilation(image > 0.15, iterations=2)
    if head.sum() < 200:
        return None

    def steepest(im: np.ndarray) -> float:
        return float(np.percentile(np.hypot(ndimage.sobel(im, 0), ndimage.sobel(im, 1))[head], 95))

    image = image.astype(np.float32)
    return steepest(image) / max(steepest(ndimage.gaussian_filter(image, 1.0)), 1e-6)


MEASURES = {"centre": (centre_to_surface, True), "sharpness": (edge_sharpness, False)}


def series_value(images: np.ndarray, measure: str) -> float:
    """The measure's median over the series' slices (the middle half of them for ``centre``)."""
    function, middle_only = MEASURES[measure]
    if middle_only:
        quarter = len(images) // 4
        images = images[quarter: len(images) - quarter or None]
    values = [v for v in map(function, images) if v is not None]
    return float(np.median(values)) if values else float("nan")


def sampled(folder: Path, keep, model=None) -> Iterator[tuple[dict, np.ndarray]]:
    """(label row, the CNN's input slices) of every series of ``folder`` whose label row ``keep`` accepts, as
    ``model`` (default: the bundled CNN) samples them. Only those series' headers are read, one at a time."""
    from SeriesClassifierLib.dicom.headers import read_series
    from SeriesClassifierLib.models.cnn import CnnModel
    from SeriesClassifierLib.resources import default_models_dir
    from SeriesClassifierLib.run.pipeline import resolve_refs
    from SeriesClassifierLib.training.corpus import cnn_samples

    with open(folder / "labels.csv", newline="", encoding="utf-8") as fp:
        labels = {r["series_uid"]: r for r in csv.DictReader(fp) if keep(r)}
    model = model or CnnModel.load(default_models_dir())
    wanted = (read_series(ref) for ref in resolve_refs(folder) if ref.series_uid in labels)
    for s, sm in cnn_samples(model, wanted, name=lambda s: s.series_uid):
        yield labels[s.series_uid], sm.images


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--real", type=Path, help="the real development set's folder")
    p.add_argument("--manifest", type=Path, help="real_dev.tsv (anatomy per case)")
    p.add_argument("--generated", type=Path, help="a generated corpus (cnn_corpus or synth)")
    p.add_argument("--limit", type=int, default=260, help="generated series read at most")
    p.add_argument("--measure", choices=sorted(MEASURES), default="centre")
    args = p.parse_args()
    warnings.simplefilter("ignore")
    if args.real:
        heads = None
        if args.manifest:
            with open(args.manifest, newline="", encoding="utf-8") as fp:
                heads = {r["case_id"] for r in csv.DictReader(fp, delimiter="\t") if r.get("anatomy") == "brain/head"}
        for row, images in sampled(args.real, lambda r: heads is None or r["case"] in heads):
            print(f"{row['case']:<28} {row['sequence']:<16} {series_value(images, args.measure):.2f}")
    if args.generated:
        by_class = defaultdict(list)
        for row, images in islice(sampled(args.generated, lambda r: True), args.limit):
            by_class[row["sequence"]].append(series_value(images, args.measure))
        for code, values in sorted(by_class.items()):
            print(f"{code:<18} n={len(values):3d} median {np.nanmedian(values):.2f}, 10th–90th percentiles "
                  f"{np.nanpercentile(values, 10):.2f}–{np.nanpercentile(values, 90):.2f}")
        every = [r for values in by_class.values() for r in values]
        print("every series: 10/50/90th percentiles", np.round(np.nanpercentile(every, [10, 50, 90]), 2))


if __name__ == "__main__":
    main()
