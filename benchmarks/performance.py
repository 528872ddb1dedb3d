"""Speed and scale in one run (issue 14): every figure of docs/PERFORMANCE.md, measured side by side.

    python benchmarks/performance.py [--archive DIR] [--studies 6] [--seed 7] [--repeat 3] [--threads 1]
                                     [--big 50000] [--peers-python PATH] [--skip-dask]

Without --archive a generated archive (``seriesclassifier synth``) is written first. Whole processes are
timed as a user runs them (``python -m SeriesClassifierLib.commands.cli ...``): CPU (user + system, the
process and its children, from wait4) and wall time, medians of --repeat runs, the runs of the things
compared interleaved so a busy machine slows both alike. Figures printed:

- start-up: ``--version``; ``classify`` on an empty folder (with and without the CNN);
- header scan: ``classify --no-cnn`` on the archive against the pydicom floor (every file's
  SeriesInstanceUID read with stop_before_pixels/specific_tags, grouped), start-up included;
- series/s headers only and with the full ensemble; peak RSS of each;
- the same full-ensemble run with ``--workers 2`` and on a Dask LocalCluster of 2 worker processes
  (``--scheduler``), their speed-up and whether their results file is byte-identical;
- in one warm process (models loaded once, as the Slicer worker keeps them): CNN ms per slice at 1 and 2
  threads, one study with Grad-CAM for every series, Grad-CAM ms per series and its file sizes;
- with --big N: N one-image series classified headers-only, peak RSS next to a run of N/10;
- with --peers-python: dcm-classifier on the same archive, from the given interpreter's environment.

It asserts nothing: timings depend on the machine and its load.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ENGINE_DIR = Path(__file__).resolve().parent.parent / "SeriesClassifier"
sys.path.insert(0, str(ENGINE_DIR))

CLI = [sys.executable, "-m", "SeriesClassifierLib.commands.cli"]
FLOOR = r"""
import os, sys
from collections import defaultdict
import pydicom
groups = defaultdict(list)
for folder, _, names in os.walk(sys.argv[1]):
    for name in names:
        path = os.path.join(folder, name)
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["SeriesInstanceUID"])
        except Exception:
            continue
        uid = ds.get("SeriesInstanceUID")
        if uid:
            groups[uid].append(path)
print(len(groups))
"""


def env(threads: int | None = None) -> dict:
    extra = {"PYTHONPATH": os.pathsep.join([str(ENGINE_DIR), os.environ.get("PYTHONPATH", "")])}
    if threads:
        extra["OMP_NUM_THREADS"] = str(threads)
    return dict(os.environ, **extra)


# The timed command runs under this small wrapper, which reports its child's usage: measured from here
# (wait4 on a fork of this process) the peak RSS would include this process's own memory before the exec.
WRAPPER = r"""
import json, resource, subprocess, sys, time
start = time.perf_counter()
rc = subprocess.call(sys.argv[1:], stdout=subprocess.DEVNULL)
u = resource.getrusage(resource.RUSAGE_CHILDREN)
print(json.dumps({"rc": rc, "wall": time.perf_counter() - start, "cpu": u.ru_utime + u.ru_stime,
                  "rss_mb": u.ru_maxrss / 1024}))
"""


def measure(cmd: list[str], threads: int | None = None) -> dict:
    """One whole process: wall, CPU (with its children) and peak RSS (its largest process)."""
    proc = subprocess.run([sys.executable, "-c", WRAPPER, *map(str, cmd)], env=env(threads), capture_output=True,
                          text=True)
    try:
        usage = json.loads(proc.stdout.strip().splitlines()[-1])
    except (IndexError, ValueError):
        usage = {"rc": proc.returncode}
    if usage["rc"] != 0:
        raise RuntimeError(f"{' '.join(map(str, cmd))} failed ({usage['rc']}):\n{proc.stderr[-2000:]}")
    return {k: usage[k] for k in ("wall", "cpu", "rss_mb")}


def medians(runs: list[dict]) -> dict:
    return {k: statistics.median(r[k] for r in runs) for k in runs[0]}


def interleaved(commands: dict[str, list[str]], repeat: int, threads: int | None = None) -> dict[str, dict]:
    runs: dict[str, list[dict]] = {name: [] for name in commands}
    for _ in range(repeat):
        for name, cmd in commands.items():
            runs[name].append(measure(cmd, threads))
    return {name: medians(r) for name, r in runs.items()}


def show(name: str, m: dict, extra: str = "") -> None:
    print(f"  {name:<44} {m['cpu']:7.2f} s CPU {m['wall']:7.2f} s wall {m['rss_mb']:7.0f} MB peak RSS {extra}")


def count(archive: Path) -> tuple[int, int]:
    from SeriesClassifierLib.dicom.sources import iter_series_refs

    refs = list(iter_series_refs(archive))
    return len(refs), sum(len(r.files) for r in refs)


# ---------------------------------------------------------------------------------------------- sections


def startup(tmp: Path, repeat: int) -> None:
    print(f"\n== Start-up (whole process, median of {repeat})")
    empty = tmp / "empty"
    empty.mkdir(exist_ok=True)
    res = interleaved({
        "seriesclassifier --version": CLI + ["--version"],
        "classify EMPTY (forest + CNN)": CLI + ["classify", str(empty), "--out", str(tmp / "e.csv"), "--quiet"],
        "classify EMPTY --no-cnn": CLI + ["classify", str(empty), "--out", str(tmp / "e.csv"), "--no-cnn",
                                          "--quiet"],
        "python -c 'import pydicom' (for scale)": [sys.executable, "-c", "import pydicom"],
    }, repeat)
    for name, m in res.items():
        show(name, m)


def header_scan(archive: Path, tmp: Path, repeat: int, n_series: int, n_files: int) -> None:
    print(f"\n== Header scan: {n_files} files, {n_series} series; whole processes, start-up included, "
          f"median of {repeat}, interleaved")
    res = interleaved({
        "pydicom floor (SeriesInstanceUID, grouped)": [sys.executable, "-c", FLOOR, str(archive)],
        "classify --no-cnn (headers only)": CLI + ["classify", str(archive), "--force", "--out", str(tmp / "h.csv"),
                                                   "--no-cnn", "--quiet"],
    }, repeat)
    floor, ours = res.values()
    show("pydicom floor (SeriesInstanceUID, grouped)", floor)
    show("classify --no-cnn (headers only)", ours, f"{n_series / ours['wall']:.1f} series/s")
    print(f"  ratio to the floor: {ours['cpu'] / floor['cpu']:.2f}x CPU, {ours['wall'] / floor['wall']:.2f}x wall")


def full_and_scale(archive: Path, tmp: Path, repeat: int, threads: int, n_series: int, skip_dask: bool) -> None:
    print(f"\n== Full ensemble (forest + CNN) on the archive, {n_series} series; torch threads per process "
          f"{threads}; median of {repeat}, interleaved")
    outs = {name: tmp / f"{name}.json" for name in ("single", "workers2", "dask2")}
    commands = {
        "single": CLI + ["classify", str(archive), "--force", "--out", str(outs["single"]), "--quiet", "--threads",
                         str(threads)],
        "workers2": CLI + ["classify", str(archive), "--force", "--out", str(outs["workers2"]), "--quiet",
                           "--workers", "2", "--threads", str(threads)],
    }
    cluster = None
    with contextlib.ExitStack() as stack:
        if not skip_dask:
            try:
                from distributed import LocalCluster

                cluster = stack.enter_context(LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                                           dashboard_address=None))
                commands["dask2"] = CLI + ["classify", str(archive), "--force", "--out", str(outs["dask2"]), "--quiet",
                                           "--scheduler", cluster.scheduler_address, "--threads", str(threads)]
            except ImportError:
                print("  (dask.distributed not installed: pip install '.[dask]')")
        res = interleaved(commands, repeat)
    single = res["single"]
    show("one process", single, f"{n_series / single['wall']:.1f} series/s")
    labels = {"workers2": "--workers 2 (local processes)",
              "dask2": "--scheduler: LocalCluster, 2 worker processes"}
    for name in ("workers2", "dask2"):
        if name in res:
            same = outs[name].read_bytes() == outs["single"].read_bytes()
            show(labels[name], res[name], f"speed-up {single['wall'] / res[name]['wall']:.2f}x wall; "
                 f"results {'byte-identical' if same else 'DIFFER'}")
    if cluster is not None:
        print("  (Dask: the cluster's 2 worker processes were started before the runs; each loads the models "
              "on its first task; CPU above is the client's only)")


def warm(archive: Path, tmp: Path, threads: int) -> None:
    import numpy as np
    import torch

    from SeriesClassifierLib.dicom.headers import read_series
    from SeriesClassifierLib.dicom.sources import iter_series_refs
    from SeriesClassifierLib.models.bundle import load_bundle
    from SeriesClassifierLib.models.gradcam import gradcam_series
    from SeriesClassifierLib.run.pipeline import predict_series, read_all_series
    from SeriesClassifierLib.run.stream import classify_stream
    from SeriesClassifierLib.run.worker import heatmap_path, save_heatmap

    print(f"\n== Warm process (the models loaded once, as the Slicer worker keeps them); torch threads {threads}")
    t0 = time.perf_counter()
    bundle = load_bundle()
    print(f"  load the bundle (forest arrays + CNN, torch imported): {time.perf_counter() - t0:.2f} s")
    cnn = bundle.cnn
    k, size = cnn.config.options.k, cnn.config.options.size
    x = np.random.default_rng(0).random((k, size, size)).astype(np.float32)
    for n in (1, 2):
        torch.set_num_threads(n)
        cnn.infer(x)
        times = []
        for _ in range(7):
            t = time.perf_counter()
            cnn.infer(x)
            times.append(time.perf_counter() - t)
        print(f"  CNN: {statistics.median(times) * 1000 / k:.1f} ms per slice ({k} slices of {size}², "
              f"{n} thread{'s' if n > 1 else ''})")
    torch.set_num_threads(threads)
    studies = sorted((p for p in archive.iterdir() if p.is_dir()), key=lambda p: -sum(1 for _ in p.iterdir()))
    study = studies[0]
    # A warm worker has drawn maps before: the one-time imports (matplotlib's colour tables, PIL, scipy.ndimage)
    # are paid on another study first.
    list(classify_stream(studies[-1], bundle, gradcam_dir=tmp / "warm-up", threads=threads))
    maps = tmp / "gradcam"
    c0, t0 = time.process_time(), time.perf_counter()
    predictions = list(classify_stream(study, bundle, gradcam_dir=maps, threads=threads))
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    n_files = sum(1 for _ in maps.rglob("*") if _.is_file())
    size_mb = sum(f.stat().st_size for f in maps.rglob("*") if f.is_file()) / 1e6
    print(f"  one study, {len(predictions)} series ({study.name}), full ensemble + Grad-CAM of every series: "
          f"{wall:.2f} s wall, {cpu:.2f} s CPU; {n_files} Grad-CAM files, {size_mb:.1f} MB")
    refs = list(iter_series_refs(study))
    c0, t0 = time.process_time(), time.perf_counter()
    worker_maps = tmp / "worker_maps"
    for series in read_all_series(refs):  # what the Slicer worker does per series, heat maps as .npz
        p = predict_series(series, bundle)
        if p.error or series.skipped or not p.sequence:
            continue
        result = gradcam_series(cnn, series, "sequence", p.sequence.label)
        save_heatmap(heatmap_path(worker_maps, series.series_uid, "sequence", result.target), result.heatmap,
                     result.geometry)
    size_mb = sum(f.stat().st_size for f in worker_maps.iterdir()) / 1e6
    print(f"  the same, as the Slicer worker does it (heat maps as .npz, no NRRD/PNG): "
          f"{time.perf_counter() - t0:.2f} s wall, {time.process_time() - c0:.2f} s CPU; {size_mb:.1f} MB")
    c0, t0 = time.process_time(), time.perf_counter()
    no_maps = list(classify_stream(refs, bundle, threads=threads))
    print(f"  the same study without Grad-CAM: {time.perf_counter() - t0:.2f} s wall, "
          f"{time.process_time() - c0:.2f} s CPU ({len(no_maps)} series)")
    times = []
    for ref, p in zip(refs, no_maps):
        if p.error or not p.sequence:
            continue
        series = read_series(ref)
        t = time.perf_counter()
        gradcam_series(cnn, series, "sequence", p.sequence.label)
        times.append(time.perf_counter() - t)
    print(f"  Grad-CAM alone (slices read + backward pass): {statistics.median(times) * 1000:.0f} ms per series "
          f"(median of {len(times)})")


def big(n: int, tmp: Path, archive: Path) -> None:
    """N one-image series (headers of the archive's series, a tiny image each), headers only; RSS vs N/10."""
    import numpy as np
    import pydicom
    from pydicom.uid import generate_uid

    from SeriesClassifierLib.dicom.sources import iter_series_refs

    sys.path.insert(0, str(ENGINE_DIR.parent / "Testing"))
    from dicom_factory import CtkIndex  # the CTK schema the source tests index with

    print(f"\n== Memory: {n} series, headers only (one 8x8 image per series; 10 series per study)")
    templates = []
    for ref in iter_series_refs(archive):
        ds = pydicom.dcmread(ref.files[0])
        if int(ds.get("NumberOfFrames") or 1) > 1 or not ds.get("Rows"):
            continue  # one small single-frame image per series
        ds.file_meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian
        ds.Rows = ds.Columns = 8
        ds.PixelData = np.zeros((8, 8), dtype=np.uint16).tobytes()
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.SamplesPerPixel = 16, 12, 11, 1
        for tag in list(ds.keys()):
            if tag.group & 1 and tag.group != 0x0019 and tag.group != 0x0043:  # keep b-value blocks only
                del ds[tag]
        templates.append(ds)
    results: dict[tuple[str, int], dict] = {}
    for size in (n // 10, n):
        root, database = tmp / f"big{size}", tmp / f"big{size}-db"
        t0 = time.perf_counter()
        study = None
        # the same files, also indexed as a Slicer database (linked in place): a database lists its files, a
        # folder must be read to the end before any series is known to be complete
        with CtkIndex(database, "0.8.0") as index:
            for i in range(size):
                ds = templates[i % len(templates)]
                if i % 10 == 0:
                    study = generate_uid()
                ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID = study, generate_uid(), generate_uid()
                folder = root / f"{i // 1000:03d}"
                folder.mkdir(parents=True, exist_ok=True)
                ds.save_as(folder / f"{i:06d}.dcm")
                index.add(str(ds.get("PatientID", "")), "", study, ds.SeriesInstanceUID, ds.SOPInstanceUID,
                          str((folder / f"{i:06d}.dcm").resolve()))
        print(f"  wrote {size} files and their database in {time.perf_counter() - t0:.0f} s")
        for kind, source in (("folder", root), ("Slicer database", database)):
            m = measure(CLI + ["classify", str(source), "--force", "--out", str(tmp / f"big{size}.csv"), "--no-cnn",
                               "--quiet"])
            results[kind, size] = m
            show(f"classify --no-cnn, {size} series ({kind})", m, f"{size / m['wall']:.0f} series/s")
    for kind in ("folder", "Slicer database"):
        small, large = results[kind, n // 10], results[kind, n]
        print(f"  {kind}: peak RSS grows {large['rss_mb'] / small['rss_mb']:.2f}x for 10x the series")


PEER_SCRIPTS = {
    "dcm-classifier 0.9.9 (header forest, ONNX)": r"""
import sys
from pathlib import Path
from dcm_classifier.image_type_inference import ImageTypeClassifierBase
from dcm_classifier.study_processing import ProcessOneDicomStudyToVolumesMappingBase
clf, n = ImageTypeClassifierBase(), 0
for study in sorted(p for p in Path(sys.argv[1]).iterdir() if p.is_dir()):
    proc = ProcessOneDicomStudyToVolumesMappingBase(study_directory=study, inferer=clf)
    proc.run_inference()
    n += len(proc.series_dictionary)
print(n)
""",
    "dicom-sequence-classifier 1.0.5 (rules)": r"""
import sys
from dicom_sequence_classifier.Services.DICOMCheckers import classify_dicom
from dicom_sequence_classifier.Services.DICOMReader import extract_metadata, load_dicom_series
labels = [classify_dicom(extract_metadata(dcms[0])) for dcms in load_dicom_series(sys.argv[1]).values()]
print(len(labels))
""",
}


def peers(python: str, archive: Path, tmp: Path, n_series: int) -> None:
    print(f"\n== Peers on the same archive, whole processes ({python})")
    for name, code in PEER_SCRIPTS.items():
        try:
            m = measure([python, "-c", code, str(archive)])
            show(name, m, f"{n_series / m['wall']:.1f} series/s")
        except RuntimeError as exc:
            print(f"  {name} did not run: {str(exc).strip().splitlines()[-1]}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archive", type=Path, help="a folder of studies (default: generate one)")
    parser.add_argument("--studies", type=int, default=6)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="torch threads per process in the timed runs")
    parser.add_argument("--big", type=int, default=0, help="also the memory of N headers-only series")
    parser.add_argument("--peers-python", help="an interpreter with dcm-classifier installed")
    parser.add_argument("--skip-dask", action="store_true")
    parser.add_argument("--sections", default="startup,scan,full,warm",
                        help="which of startup,scan,full,warm to run (--big and --peers-python add theirs)")
    args = parser.parse_args()
    # Dask's worker processes import the engine too: this checkout's, not an installed copy.
    os.environ["PYTHONPATH"] = env()["PYTHONPATH"]
    with tempfile.TemporaryDirectory(prefix="sc-perf-") as tmp_name:
        tmp = Path(tmp_name)
        archive = args.archive
        if archive is None:
            archive = tmp / "archive"
            t0 = time.perf_counter()
            measure(CLI + ["synth", str(archive), "--studies", str(args.studies), "--seed", str(args.seed)])
            print(f"generated {args.studies} studies in {time.perf_counter() - t0:.0f} s")
        n_series, n_files = count(archive)
        print(f"archive {archive}: {n_series} series, {n_files} files; {os.cpu_count()} CPUs, "
              f"load average {os.getloadavg()[0]:.1f} at start; Python {sys.version.split()[0]}")
        sections = set(args.sections.split(","))
        if "startup" in sections:
            startup(tmp, args.repeat)
        if "scan" in sections:
            header_scan(archive, tmp, args.repeat, n_series, n_files)
        if "full" in sections:
            full_and_scale(archive, tmp, args.repeat, args.threads, n_series, args.skip_dask)
        if "warm" in sections:
            warm(archive, tmp, args.threads)
        if args.big:
            big(args.big, tmp, archive)
        if args.peers_python:
            peers(args.peers_python, archive, tmp, n_series)
        print(f"\nload average {os.getloadavg()[0]:.1f} at the end")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
