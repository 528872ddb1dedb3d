"""CNN, forest and Grad-CAM timings on this CPU (prints figures; asserts nothing).

    python benchmarks/bench_cnn.py [--series-dir FOLDER_OF_ONE_SERIES]

Without --series-dir a 24-slice 256×256 classic series is written to a temporary
folder. Reports ms/slice for the network alone (per batch size and thread
count), ms/series for reading + preprocessing K slices, for the whole
``CnnModel.predict(series)``, for Grad-CAM, and for the forest (header reading +
features + trees) on the same series.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "Testing"))


def _timeit(fn, repeat: int = 5) -> float:
    fn()  # warm-up
    t = time.perf_counter()
    for _ in range(repeat):
        fn()
    return (time.perf_counter() - t) / repeat


def main() -> int:
    from SeriesClassifierLib.dicom.slices import sample_series
    from SeriesClassifierLib.models.cnn import CnnModel, count_parameters
    from SeriesClassifierLib.models.gradcam import gradcam
    from SeriesClassifierLib.resources import default_models_dir
    from SeriesClassifierLib.series import Series

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--series-dir")
    args = p.parse_args()

    models = default_models_dir()
    model = CnnModel.load(models) if (models / "cnn.safetensors").is_file() else CnnModel.new()
    k, size = model.config.options.k, model.config.options.size
    print(f"model: {count_parameters(model.net):,} parameters, input {size}x{size}, K={k}, "
          f"version {model.config.version}")
    import os

    print(f"torch {torch.__version__}, CPU threads available: {torch.get_num_threads()}, "
          f"load average {os.getloadavg()[0]:.1f} (other work on the machine slows the 2-thread figures most)")

    x = np.random.default_rng(0).random((64, size, size)).astype(np.float32)
    for threads in (1, 2):
        torch.set_num_threads(threads)
        for bs in (1, 8, 64):
            dt = _timeit(lambda bs=bs: model.infer(x[:bs], batch_size=bs))
            print(f"network only: threads={threads} batch={bs:3d}: {1000 * dt / bs:6.2f} ms/slice")

    with tempfile.TemporaryDirectory() as tmp:
        if args.series_dir:
            files = sorted(Path(args.series_dir).rglob("*"))
            files = [f for f in files if f.is_file()]
        else:
            from test_slices_data import write_classic

            rng = np.random.default_rng(0)
            vol = rng.integers(0, 1000, (24, 256, 256)).astype(np.uint16)
            files = write_classic(Path(tmp) / "s", vol)
        series = Series(series_uid="bench", study_uid="bench", files=files)
        for threads in (1, 2):
            torch.set_num_threads(threads)
            t_sample = _timeit(lambda: sample_series(files, model.config.options))
            t_predict = _timeit(lambda: model.predict(series))
            sampled = sample_series(files, model.config.options)
            n = len(sampled.images)
            t_cam = _timeit(lambda sampled=sampled: gradcam(model, sampled, "sequence"), repeat=3)
            print(f"threads={threads}: {len(files)} files, K={n} (one batch of {n}): "
                  f"read+preprocess {1000 * t_sample:.0f} ms/series, "
                  f"predict(series) {1000 * t_predict:.0f} ms/series ({1000 * (t_predict - t_sample) / n:.2f} ms/slice "
                  f"network+aggregation), Grad-CAM {1000 * t_cam:.0f} ms/series ({1000 * t_cam / n:.1f} ms/slice, "
                  f"incl. resampling to the series grid)")
        _bench_forest(Path(args.series_dir) if args.series_dir else Path(tmp))
    return 0


def _bench_forest(folder: Path) -> None:
    from SeriesClassifierLib.dicom.headers import read_series
    from SeriesClassifierLib.dicom.sources import iter_series_refs
    from SeriesClassifierLib.models.bundle import load_bundle

    forest = load_bundle(load_cnn=False).forest
    ref = next(iter(iter_series_refs(folder)))
    t_read = _timeit(lambda: read_series(ref))
    series = read_series(ref)
    t_forest = _timeit(lambda: forest.predict(series), repeat=20)
    print(f"forest: {len(ref.files)} files: read headers {1000 * t_read:.0f} ms/series, "
          f"features + trees (4 tasks) {1000 * t_forest:.1f} ms/series")


if __name__ == "__main__":
    raise SystemExit(main())
