"""Check a generated corpus: every file reads, required attributes, dcm2niix converts, orientation matches labels.

    python scripts/check_corpus.py /work/data/corpus_holdout [--max-studies N]

Prints counts per check and the first problems. Uses the IOD tables of Testing/test_synth_validity.py.
"""

from __future__ import annotations

import argparse
import collections
import subprocess
import sys
import tempfile
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "Testing"))
from test_synth_validity import iod_problems, nifti_normal_lps  # noqa: E402

from SeriesClassifierLib.synth.generate import read_label_rows  # noqa: E402

AXES = {"SAGITTAL": 0, "CORONAL": 1, "AXIAL": 2}


def _n_slices(ds: pydicom.Dataset, files: list[Path]) -> int:
    if "NumberOfFrames" in ds and "PerFrameFunctionalGroupsSequence" in ds:
        frames = ds.PerFrameFunctionalGroupsSequence
        return len({tuple(f.PlanePositionSequence[0].ImagePositionPatient) for f in frames})
    if "MOSAIC" in ds.ImageType:
        return int(ds[0x0019, 0x100A].value)
    return len({tuple(pydicom.dcmread(f, stop_before_pixels=True).ImagePositionPatient) for f in files})


def check_series(folder: Path, row, work: Path) -> list[str]:
    files = sorted(folder.glob("*.dcm"))
    problems = []
    for f in files:
        ds = pydicom.dcmread(f)
        ds.pixel_array  # noqa: B018  (decoding is part of the check)
    ds = pydicom.dcmread(files[0])
    problems += [f"IOD {p}" for p in iod_problems(ds, ("EchoTrainLength", "InversionTime", "SequenceName"))]
    if row.sequence == "MRA_MIP" and len(files) * int(ds.get("NumberOfFrames", 1)) > 1:
        # projection sets are not parallel slices: dcm2niix rightly refuses ("slice orientation varies") or splits
        return problems
    out = work / folder.name
    out.mkdir()
    cmd = ["dcm2niix", "-b", "n", "-z", "n", "-o", str(out), str(folder)]
    res = subprocess.run(cmd, capture_output=True, text=True)
    niis = sorted(out.glob("*.nii"))
    if res.returncode != 0 or not niis:
        return [*problems, f"dcm2niix failed (rc {res.returncode})"]
    if row.orientation == "MIXED":
        return problems
    img, n = nib.load(niis[0]), _n_slices(ds, files)
    if n not in img.shape[:3]:
        return [*problems, f"dcm2niix shape {img.shape} has no axis of {n} slices ({len(niis)} files)"]
    normal = np.abs(nifti_normal_lps(img, n))
    angle = float(np.degrees(np.arccos(np.clip(normal.max(), -1, 1))))
    if row.orientation == "OBLIQUE" and angle <= 20:
        problems.append(f"labelled OBLIQUE but {angle:.1f} deg from an axis")
    if row.orientation in AXES and (angle >= 20 or int(np.argmax(normal)) != AXES[row.orientation]):
        problems.append(f"labelled {row.orientation} but normal {np.round(normal, 2)}")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("corpus", type=Path)
    parser.add_argument("--max-studies", type=int, default=None)
    args = parser.parse_args(argv)
    rows = {r.series_uid: r for r in read_label_rows(args.corpus / "labels.csv")}
    studies = sorted(p for p in args.corpus.glob("study_*") if p.is_dir())[: args.max_studies]
    counts: collections.Counter = collections.Counter()
    failures = []
    with tempfile.TemporaryDirectory() as tmp:
        for study in studies:
            for folder in sorted(p for p in study.iterdir() if p.is_dir()):
                uid = pydicom.dcmread(next(folder.glob("*.dcm")), stop_before_pixels=True).SeriesInstanceUID
                if uid not in rows:
                    continue  # a study still being written
                work = Path(tmp) / study.name
                work.mkdir(exist_ok=True)
                problems = check_series(folder, rows[uid], work)
                counts["series"] += 1
                counts["ok" if not problems else "problem"] += 1
                failures += [f"{folder.relative_to(args.corpus)} {rows[uid].sequence}: {p}" for p in problems]
    print(f"{args.corpus}: {len(studies)} studies, {counts['series']} series, {counts['ok']} ok, "
          f"{counts['problem']} with problems")
    for line in failures[:30]:
        print("  " + line)
    return 0 if not failures else 1


if __name__ == "__main__":
    raise SystemExit(main())
