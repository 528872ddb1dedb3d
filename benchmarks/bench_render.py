"""Benchmark of the simulator's pixel half: template build, make_phantom and render_series per sequence.

    python benchmarks/bench_render.py                 # timings (one core)
    python benchmarks/bench_render.py --png out.png   # also a mid-slice picture of every class

Specs are typical clinical geometries (3 T). Wall-clock and CPU seconds depend on the
machine's load (CPU time less so); torch runs on one thread. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "SeriesClassifier"))

from SeriesClassifierLib.synth.anatomy import load_template, make_phantom  # noqa: E402
from SeriesClassifierLib.synth.render import render_series  # noqa: E402
from SeriesClassifierLib.synth.spec import SeriesSpec  # noqa: E402
from SeriesClassifierLib.vocabulary import load_vocabulary  # noqa: E402

EPI = dict(rows=128, columns=128, pixel_spacing=(1.8, 1.8), slice_thickness=4.0, slice_spacing=5.0, n_slices=30,
           fat_suppressed=True)
ISO = dict(acquisition="3D", rows=256, columns=256, pixel_spacing=(1.0, 1.0), slice_thickness=1.0, slice_spacing=1.0,
           n_slices=176, orientation="SAGITTAL")


def typical_spec(code: str) -> SeriesSpec:
    """A typical acquisition of each class (what a 3 T brain protocol would run)."""
    d: dict = dict(sequence=code, orientation="AXIAL", rows=256, columns=256, pixel_spacing=(0.9, 0.9),
                   slice_thickness=5.0, slice_spacing=6.0, n_slices=24, field_strength=3.0)
    extra = {
        "SCOUT": dict(orientation="MIXED", n_slices=9, slice_thickness=7.0, slice_spacing=10.0,
                      pixel_spacing=(1.0, 1.0), repetition_time=8.6, echo_time=4.0, flip_angle=20),
        "T1_2D_PRE": dict(repetition_time=550, echo_time=12),
        "T1_2D_POST": dict(repetition_time=550, echo_time=12, contrast=True),
        "T1_3D_PRE": dict(ISO, inversion_time=900, repetition_time=2300, flip_angle=9, echo_time=2.3),
        "T1_3D_POST": dict(ISO, inversion_time=900, repetition_time=2300, flip_angle=9, echo_time=2.3, contrast=True),
        "T2_2D": dict(repetition_time=4500, echo_time=95),
        "T2_3D": dict(ISO, repetition_time=3200, echo_time=400),
        "T2_HASTE": dict(repetition_time=1500, echo_time=90),
        "FLAIR_2D": dict(repetition_time=9000, inversion_time=2500, echo_time=90),
        "FLAIR_3D": dict(ISO, repetition_time=5000, inversion_time=1800, echo_time=390),
        "PD": dict(repetition_time=3000, echo_time=15),
        "T2STAR_GRE": dict(repetition_time=650, echo_time=20, flip_angle=20),
        "SWI": dict(acquisition="3D", slice_thickness=1.6, slice_spacing=1.6, n_slices=72, repetition_time=28,
                    echo_time=20, flip_angle=15, derived=True),
        "SWI_MAG": dict(acquisition="3D", slice_thickness=1.6, slice_spacing=1.6, n_slices=72),
        "SWI_PHASE": dict(acquisition="3D", slice_thickness=1.6, slice_spacing=1.6, n_slices=72),
        "SWI_MINIP": dict(acquisition="3D", slice_thickness=1.6, slice_spacing=4.0, n_slices=28,
                          extra={"minip_slab_mm": 12.0}, derived=True),
        "DWI": dict(EPI, b_values=(0.0, 1000.0), echo_time=85, repetition_time=5000),
        "ADC": dict(EPI, b_values=(0.0, 1000.0), derived=True),
        "DIFFUSION_DERIVED": dict(EPI, b_values=(0.0, 1000.0), derived=True),
        "PERFUSION_DSC": dict(EPI, n_slices=20, n_temporal=50, repetition_time=1500, echo_time=30, contrast=True),
        "PERFUSION_ASL": dict(rows=64, columns=64, pixel_spacing=(3.4, 3.4), slice_thickness=5.0, slice_spacing=6.0,
                              n_slices=20, n_temporal=20),
        "TOF_MRA": dict(acquisition="3D", rows=320, columns=320, pixel_spacing=(0.6, 0.6), slice_thickness=0.7,
                        slice_spacing=0.7, n_slices=120, repetition_time=22, echo_time=3.5, flip_angle=20),
        "MRA_MIP": dict(acquisition="3D", orientation="MIXED", rows=320, columns=320, pixel_spacing=(0.6, 0.6),
                        n_slices=12, derived=True, extra={"mip_axis": "CORONAL", "mip_span_deg": 180.0}),
        "CISS": dict(acquisition="3D", rows=384, columns=384, pixel_spacing=(0.5, 0.5), slice_thickness=0.7,
                     slice_spacing=0.7, n_slices=64, repetition_time=5.5, echo_time=2.7, flip_angle=50),
        "FMRI_BOLD": dict(rows=64, columns=64, pixel_spacing=(3.4, 3.4), slice_thickness=3.4, slice_spacing=3.4,
                          n_slices=36, n_temporal=100, repetition_time=2000, echo_time=30, flip_angle=77),
        "FIELDMAP": dict(rows=64, columns=64, pixel_spacing=(3.4, 3.4), slice_thickness=3.0, slice_spacing=3.4,
                         n_slices=36, repetition_time=500, echo_time=4.92, flip_angle=60),
        "OTHER": dict(extra={"other_kind": "MT"}),
    }
    d.update(extra.get(code, {}))
    return SeriesSpec(**d)


def mid_frame(spec: SeriesSpec, frames: np.ndarray) -> np.ndarray:
    n = len(frames)
    if spec.sequence == "DWI":
        return frames[n // 2 + n // 4]  # the b1000 volume
    if spec.sequence in ("PERFUSION_DSC",):
        per = spec.n_slices
        return frames[per * 20 + per // 2]  # near the bolus peak
    if spec.sequence in ("FMRI_BOLD", "PERFUSION_ASL", "FIELDMAP"):
        return frames[spec.n_slices // 2]
    if spec.orientation == "MIXED" and spec.sequence == "SCOUT":
        return frames[1]
    return frames[n // 2]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--png", help="write a mid-slice grid of every class here")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--phantoms", type=int, default=5, help="how many phantoms to time")
    args = ap.parse_args()

    import torch

    torch.set_num_threads(1)
    t0, c0 = time.perf_counter(), time.process_time()
    load_template()
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    print(f"template build (once per process): wall {wall:.2f} s, cpu {cpu:.2f} s")
    times = []
    for k in range(args.phantoms):
        t0 = time.perf_counter()
        phantom = make_phantom(np.random.default_rng(args.seed + k))
        times.append(time.perf_counter() - t0)
    print(f"make_phantom: mean {np.mean(times):.3f} s, max {np.max(times):.3f} s over {len(times)}")

    phantom = make_phantom(np.random.default_rng(args.seed))
    codes = load_vocabulary().sequence_codes
    shown = []
    print(f"{'sequence':<18} {'frames':>16} {'wall s':>8} {'cpu s':>8}")
    for code in codes:
        spec = typical_spec(code)
        t0, c0 = time.perf_counter(), time.process_time()
        rs = render_series(spec, phantom, np.random.default_rng(1))
        dt, dc = time.perf_counter() - t0, time.process_time() - c0
        print(f"{code:<18} {str(rs.frames.shape):>16} {dt:8.2f} {dc:8.2f}")
        shown.append((code, mid_frame(spec, rs.frames), dt))

    study = ["SCOUT", "T1_3D_PRE", "T2_2D", "FLAIR_2D", "DWI", "ADC", "SWI_MAG", "SWI_PHASE", "SWI", "SWI_MINIP",
             "T1_2D_POST", "T1_3D_POST"]
    t0, c0 = time.perf_counter(), time.process_time()
    study_phantom = make_phantom(np.random.default_rng(args.seed + 100))
    for code in study:
        render_series(typical_spec(code), study_phantom, np.random.default_rng(2))
    print(f"12-series study ({', '.join(study)}): wall {time.perf_counter() - t0:.2f} s, "
          f"cpu {time.process_time() - c0:.2f} s incl. make_phantom")

    if args.png:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        cols = 7
        rows = (len(shown) + cols - 1) // cols
        fig, axes = plt.subplots(rows, cols, figsize=(3 * cols, 3.2 * rows))
        for ax in axes.ravel():
            ax.axis("off")
        for ax, (code, img, dt) in zip(axes.ravel(), shown):
            lo, hi = np.percentile(img, [1, 99.5])
            ax.imshow(img, cmap="gray", vmin=lo, vmax=hi)
            ax.set_title(f"{code} ({dt:.1f} s)", fontsize=9)
        fig.tight_layout()
        fig.savefig(args.png, dpi=80)
        print(f"wrote {args.png}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
