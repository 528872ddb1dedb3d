"""Click to overlay: Grad-CAM of another series of a classified study, before and after the warm worker.

    python benchmarks/bench_gradcam_click.py [STUDY_DIR] [--repeat 3] [--threads 2]

Without STUDY_DIR one simulated study is generated first (as "Load sample study" does). Then, for
series 2, 3, … of the study (the first one was "clicked" during classification), it times what the module
does between the click and the overlay on screen:

- before (one process per click, the module as it was): start ``python -m SeriesClassifierLib.run.worker
  --gradcam-only`` for the series — interpreter, torch and the models load again — wait for its heat map;
- after (the warm worker): one ``--serve`` process that already classified the study answers a
  ``gradcam`` request;

and in both cases reads the heat map file and builds the overlay volume in an MRML scene (slicer-core,
when installed). Prints seconds per click; it asserts nothing (timings depend on the machine).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ENGINE_DIR = Path(__file__).resolve().parent.parent / "SeriesClassifier"
sys.path.insert(0, str(ENGINE_DIR))

from SeriesClassifierLib.run.worker import EventReader, command, load_heatmap, write_manifest  # noqa: E402
from SeriesClassifierLib.run.worker_session import SubprocessTransport, WorkerSession  # noqa: E402


def environment(threads: int) -> dict:
    return dict(os.environ, PYTHONPATH=os.pathsep.join([str(ENGINE_DIR), os.environ.get("PYTHONPATH", "")]),
                OMP_NUM_THREADS=str(threads), PYTHONUNBUFFERED="1")


def show_overlay(path: str, scene) -> float:
    """Heat map file → overlay volume (what logic.showOverlay does); seconds."""
    t0 = time.perf_counter()
    heat, geometry, _meta = load_heatmap(path)
    if scene is not None:
        from SeriesClassifierLib.slicer import mrml

        with contextlib.suppress(ValueError):  # a multi-plane scout has no single grid
            mrml.create_overlay_volume(scene, heat, geometry)
    return time.perf_counter() - t0


def click_cold(manifest: Path, uid: str, gradcam_dir: Path, threads: int, scene) -> float:
    t0 = time.perf_counter()
    cmd = command(sys.executable, manifest, series_uids=[uid], gradcam_dir=gradcam_dir, gradcam_only=True,
                  device="cpu", threads=threads)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=environment(threads))
    reader, path = EventReader(), None
    for line in proc.stdout:
        for event in reader.feed(line):
            if event["type"] == "gradcam":
                path = event["path"]
    proc.wait()
    if path is None:
        raise RuntimeError(f"no heat map for {uid}")
    show_overlay(path, scene)
    return time.perf_counter() - t0


def click_warm(session: WorkerSession, manifest: Path, uid: str, gradcam_dir: Path, scene) -> float:
    t0 = time.perf_counter()
    paths = []
    rid = session.request("gradcam", {"source": str(manifest), "series_uids": [uid], "gradcam_dir": str(gradcam_dir),
                                      "device": "cpu"},
                          lambda e: paths.append(e["path"]) if e["type"] == "gradcam" else None)
    session.wait(rid, 600)
    if not paths:
        raise RuntimeError(f"no heat map for {uid}")
    show_overlay(paths[-1], scene)
    return time.perf_counter() - t0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("study", nargs="?", help="a DICOM folder (default: generate one simulated study)")
    p.add_argument("--repeat", type=int, default=3, help="clicks measured each way (different series)")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-click-"))
    study = Path(args.study) if args.study else work / "study"
    if not args.study:
        from SeriesClassifierLib.synth.generate import generate_studies

        t0 = time.perf_counter()
        generate_studies(study, 1, 11)
        print(f"generated a study in {time.perf_counter() - t0:.1f} s")
    from SeriesClassifierLib.dicom.sources import iter_series_refs

    refs = list(iter_series_refs(study))
    manifest = write_manifest(work / "manifest.json", [
        {"series_uid": r.series_uid, "study_uid": r.study_uid, "files": [str(f) for f in r.files]} for r in refs])
    try:
        import slicer

        scene = slicer.vtkMRMLScene() if hasattr(slicer, "vtkMRMLScene") else None
    except ImportError:
        scene = None
    uids = [r.series_uid for r in refs][1: 1 + args.repeat]
    print(f"{len(refs)} series; measuring {len(uids)} clicks each way; overlay in MRML: {scene is not None}")

    cold = [click_cold(manifest, uid, work / "cold", args.threads, scene) for uid in uids]

    session = WorkerSession(SubprocessTransport(), [sys.executable, "-u", "-m", "SeriesClassifierLib.run.worker",
                                                    "--serve", "--threads", str(args.threads)],
                            environment(args.threads))
    t0 = time.perf_counter()
    rid = session.request("classify", {"source": str(manifest), "gradcam_dir": str(work / "warm"), "device": "cpu"})
    session.wait(rid, 1800)
    print(f"warm worker: classified the study (with the first Grad-CAMs) in {time.perf_counter() - t0:.1f} s")
    warm = [click_warm(session, manifest, uid, work / "warm-clicks", scene) for uid in uids]
    session.quit()
    print(f"starts of the warm worker: {session.starts}")

    def fmt(xs):
        return f"median {statistics.median(xs):.2f} s (each: {', '.join(f'{x:.2f}' for x in xs)})"

    print(f"click → overlay, before (a new worker per click): {fmt(cold)}")
    print(f"click → overlay, after (the warm worker):         {fmt(warm)}")


if __name__ == "__main__":
    main()
