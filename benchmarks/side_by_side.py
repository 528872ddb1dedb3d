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
from head_images import sampled  # the CNN's input slices of chosen labelled series: one definition


def real_pictures(model, real: Path, cases: list[str], every_slice: bool) -> list[tuple[str, np.ndarray]]:
    from SeriesClassifierLib.models.cnn import head_classes

    classes = head_classes(model.config)["sequence"]
    pictures = []
    for row, images in sampled(real, lambda r: r["case"] in cases, model):
        probabilities = model.infer(images)["sequence"]
        for i, p in enumerate(probabilities):
            top = np.argsort(p)[::-1][:3]
            print(f"{row['case']} slice {i}: " + ", ".join(f"{classes[t]} {p[t]:.2f}" for t in top))
            if every_slice or i == len(images) // 2:
                pictures.append((f"real {row['case']} {i}: {classes[top[0]]}", images[i]))
    return pictures


def generated_pictures(model, corpus: Path, codes: list[str], orientation: str | None,
                       per_class: int) -> list[tuple[str, np.ndarray]]:
    with open(corpus / "labels.csv", newline="", encoding="utf-8") as fp:
        rows = list(csv.DictReader(fp))
    rng = np.random.default_rng(0)
    chosen = set()
    for code in codes:
        of_code = [r["series_uid"] for r in rows if r["sequence"] == code and orientation in (None, r["orientation"])]
        chosen.update(rng.permutation(of_code)[:per_class])
    return [(f"generated {r['sequence']} {r['orientation'].lower()} {r['field_strength']} T", images[len(images) // 2])
            for r, images in sampled(corpus, lambda r: r["series_uid"] in chosen, model)]


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
