"""Benchmark: peak memory and time of a classification with each hostile file present (issue 17).

Generates one simulated study (the generator, pixels included), then classifies it in a fresh process
(``seriesclassifier classify``, forest and CNN) once alone and once with each hostile file added beside
it: tiny files declaring a mosaic of 2×10⁹ images, 2×10⁹ frames or a 65535² image, a deflate bomb
(inflating to 1 GB from about 1 MB), a 1 GB sparse file of zeros with a DICM preamble. Prints wall time and
peak RSS per run. Asserts nothing about time: the regression tests (Testing/test_hostile_files.py) prove
the refusals; this shows what they cost.

Usage: python benchmarks/bench_hostile.py --work /tmp/hostile-bench
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
import zlib
from pathlib import Path


def _good_study(work: Path) -> Path:
    from SeriesClassifierLib.synth.generate import generate_studies

    study = work / "study"
    if not study.exists():
        generate_studies(study, 1, 7)
    return study


def _variant(template: Path, out: Path, **changes) -> Path:
    import pydicom
    from pydicom.uid import generate_uid

    from SeriesClassifierLib.pydicom_compat import save_dataset

    ds = pydicom.dcmread(template)
    ds.SeriesInstanceUID = generate_uid()
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    for key, value in changes.items():
        setattr(ds, key, value)
    out.parent.mkdir(parents=True, exist_ok=True)
    save_dataset(ds, out)
    return out


def _mosaic(template: Path, out: Path) -> Path:
    import pydicom

    from SeriesClassifierLib.pydicom_compat import save_dataset

    _variant(template, out, ImageType=["ORIGINAL", "PRIMARY", "M", "MOSAIC"])
    ds = pydicom.dcmread(out)
    ds.private_block(0x0019, "SIEMENS MR HEADER", create=True)
    ds.add_new((0x0019, 0x100A), "UL", 2_000_000_000)
    save_dataset(ds, out)
    return out


def _bomb(template: Path, out: Path, inflated: int = 1 << 30) -> Path:
    """A deflated data set: the template's elements, then an OB element of ``inflated`` zero bytes."""
    import pydicom

    ds = pydicom.dcmread(template, stop_before_pixels=True)
    head = template.read_bytes()
    meta_end = head.index(b"\x08\x00", 132)  # first element after the file meta group
    body = head[meta_end : head.find(b"\xe0\x7f\x10\x00")]
    syntax = b"1.2.840.10008.1.2.1.99\x00"
    meta_fields = (b"\x02\x00\x10\x00UI" + len(syntax).to_bytes(2, "little") + syntax)
    del ds
    compressor = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    chunks = [compressor.compress(body + b"\x09\x00\x10\x10OB\x00\x00" + inflated.to_bytes(4, "little"))]
    zeros = bytes(1 << 20)
    for _ in range(inflated >> 20):
        chunks.append(compressor.compress(zeros))
    chunks.append(compressor.flush())
    group_length = b"\x02\x00\x00\x00UL\x04\x00" + len(meta_fields).to_bytes(4, "little")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(b"\x00" * 128 + b"DICM" + group_length + meta_fields + b"".join(chunks))
    return out


def _zeros(out: Path, size: int = 1 << 30) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "wb") as f:
        f.write(b"\x00" * 128 + b"DICM")
        f.truncate(size)
    return out


HOSTILE = {
    "mosaic of 2e9 images": lambda t, d: _mosaic(t, d / "mosaic.dcm"),
    "NumberOfFrames 2e9": lambda t, d: _variant(t, d / "frames.dcm", NumberOfFrames=2_000_000_000),
    "65535² image": lambda t, d: _variant(t, d / "huge.dcm", Rows=65535, Columns=65535),
    "deflate bomb (1 GB)": lambda t, d: _bomb(t, d / "bomb.dcm"),
    "1 GB of zeros": lambda t, d: _zeros(d / "zeros.dcm"),
}


_MEASURE = ("import resource, subprocess, sys; subprocess.run(sys.argv[1:], capture_output=True); "
            "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")


def _run(study: Path, out: Path) -> tuple[float, float, bool]:
    """(seconds, peak RSS in MB, results written) of one classification in a fresh process."""
    out.unlink(missing_ok=True)
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", _MEASURE, sys.executable, "-m", "SeriesClassifierLib", "classify",
                           str(study), "--out", str(out), "--quiet"], capture_output=True, text=True)
    seconds = time.perf_counter() - start
    return seconds, int(proc.stdout.strip() or 0) / 1024, out.exists()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", required=True, help="scratch folder (about 30 MB on disk; sparse files aside)")
    args = parser.parse_args()
    work = Path(args.work)
    study = _good_study(work)
    from SeriesClassifierLib.dicom.sources import looks_like_dicom

    template = next(p for p in sorted(study.rglob("*")) if p.is_file() and looks_like_dicom(p))
    print(f"{'run':28s} {'seconds':>8s} {'peak MB':>8s} results")
    seconds, peak, done = _run(study, work / "alone.csv")
    print(f"{'good study alone':28s} {seconds:8.1f} {peak:8.0f} {done}")
    for name, make in HOSTILE.items():
        mixed = work / "mixed"
        shutil.rmtree(mixed, ignore_errors=True)
        shutil.copytree(study, mixed)
        make(template, mixed / "hostile")
        seconds, peak, done = _run(mixed, work / "mixed.csv")
        print(f"{'+ ' + name:28s} {seconds:8.1f} {peak:8.0f} {done}")
    shutil.rmtree(work / "mixed", ignore_errors=True)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    raise SystemExit(main())
