"""A CNN training corpus: whole generated studies, with only the slices the CNN can sample rendered.

    python -m SeriesClassifierLib.synth.cnn_corpus OUT --studies N --seed S [--profile NAME ...] [--slices 10]
        [--parts knee spine abdomen pelvis phantom] [--tissue-jitter 0.2] [--aged 0.35]

The CNN reads K (8) slices from the central 70 % of a series (``dicom.slices.sample_indices``).
Rendering all 176 partitions of a 3-D T1 to keep 8 of them is most of the generator's time, so
each spec is thinned before rendering: ``--slices`` planes (default 10) spread over the central
75 % of the planned stack, same slice thickness (partial volume unchanged), same matrix, pixel
size, timing, b-values and time points. Headers are written from the planned spec, so the files
are an ordinary corpus for ``training.cnn_train`` (labels.csv, one folder per series); they are not a
header-model corpus (the slice count no longer matches the plan).
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import time

from .body import PARTS, BodyPhantoms
from .spec import SeriesSpec


def thin_spec(spec: SeriesSpec, n: int = 10, span: float = 0.75) -> SeriesSpec:
    """``n`` planes over the central ``span`` of the planned stack (localizers and short stacks unchanged)."""
    if spec.orientation == "MIXED" or spec.n_slices <= n or n < 2:
        return spec
    if spec.sequence == "MRA_MIP":  # projections at angles, not positions: fewer angles, same span
        return dataclasses.replace(spec, n_slices=n)
    spacing = spec.slice_spacing * (spec.n_slices - 1) * span / (n - 1)
    return dataclasses.replace(spec, n_slices=n, slice_spacing=float(spacing))


def thin_renderer(n: int = 10):
    from .render import render_series

    def render(spec, phantom, rng):
        return render_series(thin_spec(spec, n), phantom, rng)

    return render


def with_params(make_phantom, **params):
    """``make_phantom`` whose subjects carry ``params`` for the renderer (``tissue_jitter``, ``fat_gain``,
    ``array_coil``)."""

    def make(rng):
        phantom = make_phantom(rng)
        phantom.params.update(params)
        return phantom

    return make


def main(argv: list[str] | None = None) -> int:
    from . import render
    from .generate import generate_studies

    p = argparse.ArgumentParser(prog="python -m SeriesClassifierLib.synth.cnn_corpus",
                                description=__doc__.splitlines()[0])
    p.add_argument("out")
    p.add_argument("--studies", type=int, required=True)
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--profile", nargs="+", default=None, help="profiles or groups (default: training)")
    p.add_argument("--slices", type=int, default=10, help="planes rendered per stack (default 10)")
    p.add_argument("--first-study", type=int, default=0)
    p.add_argument("--parts", nargs="+", choices=PARTS,
                   help="render these body parts (synth/body.py), one per study, instead of heads")
    p.add_argument("--tissue-jitter", type=float,
                   help=f"each tissue's own per-series log-normal jitter of PD, T1, T2, T2* (default "
                        f"{render.TISSUE_JITTER:.3f}): wider varies the contrast within what each sequence implies")
    p.add_argument("--fat-gain", type=float, nargs=2, metavar=("LOW", "HIGH"),
                   help="scale fat and marrow by a per-series log-uniform factor in [LOW, HIGH] in every series but "
                        "the spin-echo trains (default: 1): real MPRAGEs show fat far less bright beside the "
                        "brain than the equations")
    p.add_argument("--array-coil", type=float, metavar="SHARE",
                   help="the share of head series seen through an unnormalised phased-array coil, bright at the "
                        "surface and dark in the centre (default: none), as research EPI often is on real scanners")
    p.add_argument("--aged", type=float, metavar="SHARE",
                   help="the share of head subjects that are old (default: none): wide ventricles and sulci, "
                        "periventricular white-matter hyperintensity, a stronger deformation (anatomy.make_phantom)")
    args = p.parse_args(argv)
    args.fat_gain = tuple(args.fat_gain) if args.fat_gain else None
    start = time.perf_counter()

    def progress(done, total, rows):
        print(f"study {done}/{total}: {len(rows)} series ({rows[0].profile if rows else '-'}), "
              f"{time.perf_counter() - start:.0f} s", flush=True)

    if args.parts:
        make_phantom = BodyPhantoms(tuple(args.parts))
    else:
        from .anatomy import make_phantom
        if args.aged:
            make_phantom = functools.partial(make_phantom, aged_share=args.aged)
    params = {"tissue_jitter": args.tissue_jitter, "fat_gain": args.fat_gain, "array_coil": args.array_coil}
    params = {k: v for k, v in params.items() if v is not None}
    if params:
        make_phantom = with_params(make_phantom, **params)
    rows = generate_studies(args.out, args.studies, args.seed, args.profile, make_phantom=make_phantom,
                            render=thin_renderer(args.slices), progress=progress, start=args.first_study)
    print(f"labels.csv of {args.out} now lists {len(rows)} series")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
