"""Pictures and tables for the CNN section of the docs (prints a table; asserts nothing).

    python benchmarks/cnn_gradcam_docs.py grid CORPUS [--models DIR] [--out docs/gradcam_grid.png]
    python benchmarks/cnn_gradcam_docs.py real [--models DIR] [--out docs/gradcam_real_mr.png]

``grid``: for every sequence class of a labelled corpus (labels.csv), the first
series of that class: its middle sampled slice with the Grad-CAM of the TRUE
class overlaid, titled with the true and the predicted class.

``real``: the real MR files that pydicom / pydicom-data ship (none of them is a
brain: they are out of domain), copied with their headers stripped (identity and
pixels only) and run through the whole pipeline: what the forest can still say,
what the CNN says, the ensemble's answer, and the CNN's Grad-CAM.
"""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path

import numpy as np

from SeriesClassifierLib.pydicom_compat import save_dataset


def _model(models: str | None):
    from SeriesClassifierLib.models.cnn import CnnModel
    from SeriesClassifierLib.resources import default_models_dir

    return CnnModel.load(models or default_models_dir())


def _overlay(ax, image, cam, title):
    ax.imshow(image, cmap="gray", vmin=0, vmax=1)
    ax.imshow(cam, cmap="jet", alpha=0.45 * (cam > 0.1), vmin=0, vmax=1)
    ax.set_title(title, fontsize=7)
    ax.axis("off")


def grid(corpus: str, models: str | None, out: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from SeriesClassifierLib.dicom.slices import sample_series
    from SeriesClassifierLib.models.gradcam import gradcam
    from SeriesClassifierLib.training.cnn_train import label_rows, series_files

    model = _model(models)
    rows = label_rows(Path(corpus) / "labels.csv")
    files = series_files(corpus)
    first = {}
    for r in rows:
        if r["series_uid"] in files and r["sequence"] not in first:
            first[r["sequence"]] = r
    classes = [c for c in model.config.sequence_classes if c in first]
    cols = 7
    n_rows = int(np.ceil(len(classes) / cols))
    fig, axes = plt.subplots(n_rows, cols, figsize=(2.3 * cols, 2.5 * n_rows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    print(f"{'true':18s} {'predicted':18s} p     orientation")
    for ax, code in zip(axes.ravel(), classes):
        r = first[code]
        sampled = sample_series(files[r["series_uid"]], model.config.options)
        out_pred = model.predict_sampled(sampled)
        cam = gradcam(model, sampled, "sequence", code)
        mid = len(sampled.images) // 2
        _overlay(ax, sampled.images[mid], cam.slice_maps[mid],
                 f"{code}\npred {out_pred.sequence.label} {out_pred.sequence.probability:.2f}")
        print(f"{code:18s} {out_pred.sequence.label:18s} {out_pred.sequence.probability:.2f}  {r['orientation']}")
    fig.suptitle("Grad-CAM of the true class (CNN alone, headers unused); title: true / predicted", fontsize=9)
    fig.tight_layout()
    fig.savefig(out, dpi=80)
    print(f"wrote {out}")


REAL = {
    # file: what it is, from its headers (for the table; the models do not see them once stripped)
    "MR_small.dcm": "small MR, SE TR 4000 / TE 240 (T2-weighted), not a brain",
    "MR2_UNCR.dcm": "shoulder, T1W/SE (T1 2D), oblique",
    "MR-SIEMENS-DICOM-WithOverlays.dcm": "abdomen, t1_vibe_fs_tra dyn (T1 3D fat-sat, MPR)",
    "emri_small.dcm": "enhanced MR, 10 frames, no geometry; T1 per ImageType",
}

# What survives stripping: identity (so the file still groups into a series) and the pixel module.
# Acquisition parameters, names, descriptions, ImageType and geometry all go.
KEEP = {"SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID", "Modality", "InstanceNumber",
        "Rows", "Columns", "BitsAllocated", "BitsStored", "HighBit", "PixelRepresentation", "SamplesPerPixel",
        "PhotometricInterpretation", "PlanarConfiguration", "NumberOfFrames", "RescaleSlope", "RescaleIntercept",
        "PixelData"}


def stripped_copy(src: str | Path, folder: Path) -> Path:
    """A copy of a DICOM file with only identity and pixel data left (headers stripped)."""
    import pydicom

    ds = pydicom.dcmread(src)
    for elem in list(ds):
        if elem.keyword not in KEEP:
            del ds[elem.tag]
    out = folder / Path(src).name
    save_dataset(ds, out)
    return out


def real(models: str | None, out: str) -> None:
    """The real MR files with headers stripped, through the whole pipeline (forest + CNN + ensemble)."""
    import tempfile

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from pydicom.data import get_testdata_file

    from SeriesClassifierLib.dicom.slices import sample_series
    from SeriesClassifierLib.models.bundle import load_bundle
    from SeriesClassifierLib.models.gradcam import gradcam
    from SeriesClassifierLib.run.pipeline import classify

    bundle = load_bundle(models)
    model = bundle.cnn
    fig, axes = plt.subplots(1, len(REAL), figsize=(3.0 * len(REAL), 3.4))
    print("| file | what it is (headers, before stripping) | forest | CNN sequence (p) | CNN top-3 | "
          "CNN orientation (p) | ensemble | review |")
    print("|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for ax, (name, what) in zip(axes, REAL.items()):
            folder = Path(tmp) / name
            folder.mkdir()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                path = stripped_copy(get_testdata_file(name), folder)
                (p,) = classify(folder, bundle)
                sampled = sample_series([path], model.config.options)
            cnn, forest = p.models.get("cnn"), p.models.get("forest")
            forest_says = (f"{forest.sequence.label} ({forest.sequence.probability:.2f})"
                           if forest is not None and forest.sequence else "no answer")
            top3 = ", ".join(f"{c} {q:.2f}" for c, q in cnn.sequence.top(3))
            print(f"| {name} | {what} | {forest_says} | {cnn.sequence.label} ({cnn.sequence.probability:.2f}) | "
                  f"{top3} | {cnn.orientation.label} ({cnn.orientation.probability:.2f}) | "
                  f"{p.sequence.label} ({p.sequence.probability:.2f}) | {'yes' if p.needs_review else 'no'} |")
            cam = gradcam(model, sampled, "sequence")
            mid = len(sampled.images) // 2
            _overlay(ax, sampled.images[mid], cam.slice_maps[mid],
                     f"{name}\n{cnn.sequence.label} {cnn.sequence.probability:.2f}")
    fig.suptitle("Real MR files shipped with pydicom (not brains), headers stripped: CNN, Grad-CAM of its top class",
                 fontsize=9)
    fig.tight_layout(rect=(0, 0, 1, 0.92))
    fig.savefig(out, dpi=80)
    print(f"wrote {out}")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("what", choices=["grid", "real"])
    p.add_argument("corpus", nargs="?")
    p.add_argument("--models")
    p.add_argument("--out")
    a = p.parse_args()
    if a.what == "grid":
        grid(a.corpus, a.models, a.out or "docs/gradcam_grid.png")
    else:
        real(a.models, a.out or "docs/gradcam_real_mr.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
