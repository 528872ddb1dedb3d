"""One mid slice of every sequence class, read back from generated DICOM files → docs/synth_classes.png.

    python scripts/make_class_gallery.py --work /work/scratch/gallery --out docs/synth_classes.png

Generates studies (seeded) into --work until every class of the vocabulary has a
series (or reuses a folder that already has labels.csv with --data), then reads
one series per class with pydicom: classic, mosaic and enhanced files alike.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pydicom  # noqa: E402

from SeriesClassifierLib.synth.generate import generate_study, read_label_rows, write_labels  # noqa: E402
from SeriesClassifierLib.synth.profiles import PROFILES, TRAINING_PROFILES  # noqa: E402
from SeriesClassifierLib.vocabulary import load_vocabulary  # noqa: E402

_KINDS = ("research", "tumour", "stroke", "iac", "routine", "mra")


def _generate(work: Path, codes: list[str], seed: int, max_studies: int) -> None:
    rows, i = [], 0
    while i < max_studies and set(codes) - {r.sequence for r in rows}:
        profile = PROFILES[TRAINING_PROFILES[i % len(TRAINING_PROFILES)]]
        rows += generate_study(work, profile, seed, i, study_type=_KINDS[i % len(_KINDS)])
        i += 1
    write_labels(rows, work / "labels.csv")


def _frames(folder: Path) -> tuple[np.ndarray, list[tuple]]:
    """All frames of a series (n, rows, cols[, 3]) in real-world values as stored, and a position key per frame."""
    files = sorted(folder.glob("*.dcm"))
    dss = sorted((pydicom.dcmread(f) for f in files), key=lambda d: int(d.InstanceNumber))
    out, keys = [], []
    for ds in dss:
        arr = ds.pixel_array.astype(np.float32)
        if "PerFrameFunctionalGroupsSequence" in ds:
            pvt = ds.SharedFunctionalGroupsSequence[0].get("PixelValueTransformationSequence")
            if pvt:
                arr = arr * float(pvt[0].RescaleSlope) + float(pvt[0].RescaleIntercept)
            out += list(arr if int(ds.NumberOfFrames) > 1 else [arr])
            keys += [tuple(round(float(x), 2) for x in f.PlanePositionSequence[0].ImagePositionPatient)
                     for f in ds.PerFrameFunctionalGroupsSequence]
            continue
        arr = arr * float(ds.get("RescaleSlope", 1)) + float(ds.get("RescaleIntercept", 0))
        if "MOSAIC" in ds.ImageType:
            n = int(ds[0x0019, 0x100A].value)
            grid = math.ceil(math.sqrt(n))
            r, c = ds.Rows // grid, ds.Columns // grid
            out += [arr[(k // grid) * r:(k // grid + 1) * r, (k % grid) * c:(k % grid + 1) * c] for k in range(n)]
            keys += [(k,) for k in range(n)]
        else:
            out.append(arr)
            keys.append(tuple(round(float(x), 2) for x in ds.ImagePositionPatient))
    return np.stack(out), keys


def _mid_slice(frames: np.ndarray, keys: list[tuple], code: str, orientation: str) -> np.ndarray:
    """Middle slice of the last volume (highest b, latest time point, second echo); first view of a radial MIP."""
    if orientation == "MIXED":
        return frames[0] if code == "MRA_MIP" else frames[len(frames) // 6]
    per = len(set(keys))
    n_volumes = max(len(frames) // max(per, 1), 1)
    return frames[(n_volumes - 1) * per + per // 2]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("/work/scratch/gallery"))
    parser.add_argument("--data", type=Path, help="use this generated folder (with labels.csv) instead of generating")
    parser.add_argument("--out", type=Path, default=Path("docs/synth_classes.png"))
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--max-studies", type=int, default=24)
    args = parser.parse_args(argv)
    codes = load_vocabulary().sequence_codes
    data = args.data or args.work
    if args.data is None:
        _generate(args.work, codes, args.seed, args.max_studies)
    rows = read_label_rows(data / "labels.csv")
    folders = {}
    for folder in sorted(p for p in data.glob("study_*/s*") if p.is_dir()):
        ds = pydicom.dcmread(sorted(folder.glob("*.dcm"))[0], stop_before_pixels=True)
        folders[ds.SeriesInstanceUID] = folder
    chosen = {}
    for r in rows:
        # prefer straight, non-derived examples so each tile shows the class itself
        score = (r.orientation in ("OBLIQUE",), r.derived == "YES" and r.sequence.startswith("T1_"))
        if r.series_uid in folders and (r.sequence not in chosen or score < chosen[r.sequence][0]):
            chosen[r.sequence] = (score, r)
    cols = 7
    n_rows = math.ceil(len(codes) / cols)
    fig, axes = plt.subplots(n_rows, cols, figsize=(cols * 2.3, n_rows * 2.55), facecolor="black")
    for ax, code in zip(axes.flat, codes):
        ax.set_axis_off()
        if code not in chosen:
            ax.set_title(f"{code}\n(missing)", color="red", fontsize=8)
            continue
        row = chosen[code][1]
        frames, keys = _frames(folders[row.series_uid])
        img = _mid_slice(frames, keys, code, row.orientation)
        if img.ndim == 3:
            ax.imshow(np.clip(img / max(img.max(), 1), 0, 1))
        else:
            lo, hi = np.percentile(img, [1, 99.5])
            ax.imshow(img, cmap="gray", vmin=lo, vmax=hi if hi > lo else lo + 1)
        ax.set_title(f"{code}\n{row.orientation.lower()} · {row.vendor.title()} {row.field_strength:g}T",
                     color="white", fontsize=8)
    for ax in list(axes.flat)[len(codes):]:
        ax.set_axis_off()
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=80, facecolor="black")
    missing = [c for c in codes if c not in chosen]
    print(f"wrote {args.out}; classes missing: {missing or 'none'}")
    return 0 if not missing else 1


if __name__ == "__main__":
    raise SystemExit(main())
