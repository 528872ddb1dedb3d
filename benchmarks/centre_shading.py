"""How dark is the centre of the head? Real development series against a generated corpus, class by class.

    python benchmarks/centre_shading.py --real REALDEV --manifest ../shared/real-dev/real_dev.tsv
    python benchmarks/centre_shading.py --generated CORPUS [--limit 260]

Each series is read as the CNN reads it (its K slices, normalised); on the middle half of them the head is
masked and the median of its deepest part (distance to the edge > 0.65 of the largest) is divided by the
median of a ring under its surface (0.12–0.30). Printed: one line per series (real) or per class (generated).
An unnormalised phased-array head coil makes the ratio small (docs/REAL_DATA.md, session 12); the tissue
contrast moves it too, so compare a class with the same class. REALDEV: ``build_real_dev.py``'s folder,
brain/head series only (``--manifest`` gives the anatomy). A benchmark: the data are fetched or generated.
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


def series_ratio(images: np.ndarray) -> float:
    quarter = len(images) // 4
    middle = images[quarter: len(images) - quarter or None]
    ratios = [r for r in map(centre_to_surface, middle) if r is not None]
    return float(np.median(ratios)) if ratios else float("nan")


def sampled(folder: Path, keep) -> Iterator[tuple[dict, np.ndarray]]:
    """(label row, the CNN's input slices) of every series of ``folder`` whose label row ``keep`` accepts."""
    from SeriesClassifierLib.models.cnn import CnnModel
    from SeriesClassifierLib.resources import default_models_dir
    from SeriesClassifierLib.run.pipeline import read_all_series, resolve_refs
    from SeriesClassifierLib.training.corpus import cnn_samples

    with open(folder / "labels.csv", newline="", encoding="utf-8") as fp:
        labels = {r["series_uid"]: r for r in csv.DictReader(fp) if keep(r)}
    model = CnnModel.load(default_models_dir())
    wanted = (s for s in read_all_series(resolve_refs(folder)) if s.series_uid in labels)
    for s, sm in cnn_samples(model, wanted, name=lambda s: s.series_uid):
        yield labels[s.series_uid], sm.images


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--real", type=Path, help="the real development set's folder")
    p.add_argument("--manifest", type=Path, help="real_dev.tsv (anatomy per case)")
    p.add_argument("--generated", type=Path, help="a generated corpus (cnn_corpus or synth)")
    p.add_argument("--limit", type=int, default=260, help="generated series read at most")
    args = p.parse_args()
    warnings.simplefilter("ignore")
    if args.real:
        heads = None
        if args.manifest:
            with open(args.manifest, newline="", encoding="utf-8") as fp:
                heads = {r["case_id"] for r in csv.DictReader(fp, delimiter="\t") if r.get("anatomy") == "brain/head"}
        for row, images in sampled(args.real, lambda r: heads is None or r["case"] in heads):
            print(f"{row['case']:<28} {row['sequence']:<16} {series_ratio(images):.2f}")
    if args.generated:
        by_class = defaultdict(list)
        for row, images in islice(sampled(args.generated, lambda r: True), args.limit):
            by_class[row["sequence"]].append(series_ratio(images))
        for code, ratios in sorted(by_class.items()):
            print(f"{code:<18} n={len(ratios):3d} median {np.nanmedian(ratios):.2f}")
        every = [r for ratios in by_class.values() for r in ratios]
        print("every series: 10/50/90th percentiles", np.round(np.nanpercentile(every, [10, 50, 90]), 2))


if __name__ == "__main__":
    main()
