"""Real series beside generated ones, as the CNN sees them: the way generator gaps have been found.

    python benchmarks/side_by_side.py --real REALDEV --cases CASE[,CASE...] --generated CORPUS
        --classes CODE[,CODE...] [--orientation SAGITTAL] [--per-class 5] [--models DIR] [--slices] --out PNG

REALDEV is the folder ``build_real_dev.py`` writes (``../shared/real-dev``), CASE a ``case`` of its labels;
CORPUS a labelled generated corpus (``cnn_corpus`` or ``seriesclassifier synth``). Each picture is the CNN's
input (after sampling and normalisation), titled with where it came from. For each real series the middle
sampled slice is drawn, or with ``--slices`` every sampled slice, titled with the CNN's answer for that slice;
the CNN's three likeliest classes per slice are printed. Then ``--per-class`` generated series of each class
(of ``--orientation``, drawn with seed 0), their middle slices. Side by side, real 2-D localisers showed the
bright vessels generated ones lacked (session 18's inflow), and real knees and spines the anatomy generated
shapes lack (session 19). A benchmark: the real data are fetched.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np


def _labels(folder: Path) -> dict[str, dict]:
    with open(folder / "labels.csv", newline="", encoding="utf-8") as fp:
        return {r["series_uid"]: r for r in csv.DictReader(fp)}


def _sampled(model, folder: Path, wanted: dict[str, str]) -> list[tuple[str, object]]:
    """(title, the slices the CNN samples) of each series of ``folder`` whose uid ``wanted`` names."""
    from SeriesClassifierLib.run.pipeline import read_all_series, resolve_refs
    from SeriesClassifierLib.training.corpus import cnn_samples

    chosen = (s for s in read_all_series(resolve_refs(folder)) if s.series_uid in wanted)
    return [(wanted[s.series_uid], sampled) for s, sampled in cnn_samples(model, chosen)]


def real_pictures(model, real: Path, cases: list[str], every_slice: bool) -> list[tuple[str, np.ndarray]]:
    from SeriesClassifierLib.models.cnn import head_classes

    classes = head_classes(model.config)["sequence"]
    wanted = {u: r["case"] for u, r in _labels(real).items() if r["case"] in cases}
    pictures = []
    for case, sampled in _sampled(model, real, wanted):
        probabilities = model.infer(sampled.images)["sequence"]
        middle = len(sampled.images) // 2
        for i, (image, p) in enumerate(zip(sampled.images, probabilities)):
            top = np.argsort(p)[::-1][:3]
            print(f"{case} slice {i}: " + ", ".join(f"{classes[t]} {p[t]:.2f}" for t in top))
            if every_slice or i == middle:
                pictures.append((f"real {case} {i}: {classes[top[0]]}", image))
    return pictures


def generated_pictures(model, corpus: Path, codes: list[str], orientation: str | None,
                       per_class: int) -> list[tuple[str, np.ndarray]]:
    rng = np.random.default_rng(0)
    labels = _labels(corpus)
    wanted = {}
    for code in codes:
        rows = [r for r in labels.values() if r["sequence"] == code and orientation in (None, r["orientation"])]
        for r in rng.permutation(rows)[:per_class]:
            wanted[r["series_uid"]] = f"generated {code} {r['orientation'].lower()} {r['field_strength']} T"
    return [(title, s.images[len(s.images) // 2]) for title, s in _sampled(model, corpus, wanted)]


def draw(pictures: list[tuple[str, np.ndarray]], out: Path, columns: int = 6) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = max(1, -(-len(pictures) // columns))
    fig, axes = plt.subplots(rows, columns, figsize=(2.2 * columns, 2.4 * rows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, (title, image) in zip(axes.ravel(), pictures):
        ax.imshow(image, cmap="gray", vmin=0, vmax=1)
        ax.set_title(title, fontsize=6)
    fig.tight_layout()
    fig.savefig(out, dpi=60)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    from SeriesClassifierLib.models.cnn import CnnModel
    from SeriesClassifierLib.resources import default_models_dir

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--real", required=True, type=Path)
    ap.add_argument("--cases", required=True, help="comma-separated cases of the real labels")
    ap.add_argument("--generated", type=Path)
    ap.add_argument("--classes", default="", help="comma-separated sequence codes to draw from --generated")
    ap.add_argument("--orientation", help="only generated series of this orientation")
    ap.add_argument("--per-class", type=int, default=3)
    ap.add_argument("--models", type=Path, help="the CNN's folder (default: the bundled one)")
    ap.add_argument("--slices", action="store_true", help="draw every sampled slice of the real series")
    ap.add_argument("--out", required=True, type=Path)
    args = ap.parse_args(argv)
    model = CnnModel.load(args.models or default_models_dir())
    pictures = real_pictures(model, args.real, args.cases.split(","), args.slices)
    if args.generated and args.classes:
        pictures += generated_pictures(model, args.generated, args.classes.split(","), args.orientation,
                                       args.per_class)
    draw(pictures, args.out)
    print(f"{len(pictures)} pictures -> {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
