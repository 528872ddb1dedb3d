"""How quickly the Slicer module sees results: the worker process from launch to first prediction and done.

    python benchmarks/bench_worker.py STUDY_DIR [--models DIR] [--no-cnn] [--gradcam] [--threads N] [--repeat R]

Runs ``python -m SeriesClassifierLib.run.worker`` the way the module does (a separate process, JSON lines on
stdout) and prints, per run: time to the worker's first event (interpreter + engine import), to ``start``
(series listed), to the first prediction, to ``done``, and seconds per series. Without STUDY_DIR give
``--generate`` to write a one-study sample with the generator first (as "Load sample study" does).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ENGINE_DIR = Path(__file__).resolve().parent.parent / "SeriesClassifier"


def run_once(study: Path, models: str | None, no_cnn: bool, gradcam_dir: str | None, threads: int) -> dict:
    sys.path.insert(0, str(ENGINE_DIR))
    from SeriesClassifierLib.run.worker import EventReader, command

    cmd = command(sys.executable, study, models=models, use_cnn=not no_cnn, gradcam_dir=gradcam_dir,
                  device="cpu", threads=threads)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ENGINE_DIR), os.environ.get("PYTHONPATH", "")]))
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env)
    reader, marks, n = EventReader(), {}, 0
    for line in proc.stdout:
        for event in reader.feed(line):
            now = time.perf_counter() - t0
            kind = event["type"]
            if kind == "prediction":
                n += 1
                marks.setdefault("first_prediction", now)
            else:
                marks.setdefault(kind, now)
            if kind == "start":
                marks["device"] = event.get("device", "")
    proc.wait()
    marks["exit"] = time.perf_counter() - t0
    marks["series"] = n
    marks["returncode"] = proc.returncode
    return marks


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("study", nargs="?", type=Path)
    parser.add_argument("--generate", action="store_true", help="generate a one-study sample first")
    parser.add_argument("--models")
    parser.add_argument("--no-cnn", action="store_true")
    parser.add_argument("--gradcam", action="store_true")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        study = args.study
        if study is None:
            if not args.generate:
                parser.error("give STUDY_DIR or --generate")
            sys.path.insert(0, str(ENGINE_DIR))
            from SeriesClassifierLib.synth.generate import generate_studies

            t = time.perf_counter()
            rows = generate_studies(Path(tmp) / "study", 1, 7)
            print(f"generated {len(rows)} series in {time.perf_counter() - t:.1f} s")
            study = Path(tmp) / "study"
        print(f"cpu threads for torch: {args.threads}; cores: {os.cpu_count()}; cnn: {not args.no_cnn}; "
              f"gradcam: {args.gradcam}")
        for i in range(args.repeat):
            marks = run_once(study, args.models, args.no_cnn, str(Path(tmp) / "cams") if args.gradcam else None,
                             args.threads)
            per = (marks.get("done", marks["exit"]) - marks.get("first_prediction", 0)) / max(marks["series"] - 1, 1)
            print(json.dumps({"run": i + 1, **{k: round(v, 2) if isinstance(v, float) else v for k, v in marks.items()},
                              "s_per_series_after_first": round(per, 3)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
