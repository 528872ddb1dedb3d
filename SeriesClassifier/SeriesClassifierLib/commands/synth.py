"""``seriesclassifier synth OUT --studies N --seed S [--profile NAME ...] [--list-profiles]``.

Writes simulated brain MRI studies as DICOM plus ``OUT/labels.csv``. ``--profile``
takes several names; ``training`` and ``holdout`` stand for the two groups.
``--headers-only`` writes the forest's training rows instead (``OUT`` is a ``.jsonl.gz``, the format of
a bundle's ``forest_train.jsonl.gz``): the same studies, header records read back from header-only
files, no anatomy rendered (``synth/header_corpus.py`` writes, ``training/header_rows.py`` reads).
"""

from __future__ import annotations

import argparse
import sys
import time


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("out", nargs="?", help="output folder (created)")
    parser.add_argument("--studies", type=int, default=1, help="number of studies (default 1)")
    parser.add_argument("--seed", type=int, default=0, help="random seed; same seed gives identical files")
    parser.add_argument("--profile", nargs="+", metavar="NAME", default=None,
                        help="site profiles to use in turn (default: all training profiles); "
                             "'training' and 'holdout' name the groups")
    parser.add_argument("--list-profiles", action="store_true", help="list the site profiles and exit")
    parser.add_argument("--first-study", type=int, default=0, metavar="K",
                        help="extend OUT with studies K..K+N-1 of the same seed (labels.csv keeps the others)")
    parser.add_argument("--study-type", default=None,
                        help="force one protocol: routine, stroke, tumour, research, iac or mra")
    parser.add_argument("--headers-only", action="store_true",
                        help="write header records + labels to OUT (.jsonl.gz) without rendering anatomy")


def _expand(names: list[str] | None) -> list[str] | None:
    from ..synth.profiles import HOLDOUT_PROFILES, TRAINING_PROFILES

    if names is None:
        return None
    out: list[str] = []
    for name in names:
        out += list({"training": TRAINING_PROFILES, "holdout": HOLDOUT_PROFILES}.get(name, [name]))
    return out


def run(args: argparse.Namespace) -> int:
    from ..synth.profiles import PROFILES, get_profiles

    if args.list_profiles:
        for p in PROFILES.values():
            print(f"{p.name:26s} {'holdout ' if p.holdout else 'training'} {p.imitates}")
        return 0
    if not args.out:
        print("synth: give an output folder (or --list-profiles)", file=sys.stderr)
        return 2
    if args.studies < 1 or args.first_study < 0:
        print("synth: --studies must be at least 1 and --first-study not negative", file=sys.stderr)
        return 2
    names = _expand(args.profile)
    try:
        get_profiles(names)
    except ValueError as exc:
        print(f"synth: {exc}", file=sys.stderr)
        return 2
    from ..synth.generate import generate_studies

    start = time.perf_counter()

    def progress(done: int, total: int, rows) -> None:
        elapsed = time.perf_counter() - start
        print(f"study {done}/{total}: {len(rows)} series ({rows[0].profile}), {elapsed:.0f} s", flush=True)

    from ..synth.protocols import STUDY_TYPES

    if args.study_type is not None and args.study_type not in STUDY_TYPES:
        print(f"synth: unknown study type {args.study_type!r}; known: {', '.join(STUDY_TYPES)}", file=sys.stderr)
        return 2
    if args.headers_only:
        series, _ = generate_header_rows(args.studies, args.seed, names, args.out, args.first_study,
                                         args.study_type, start_time=start)
        elapsed = time.perf_counter() - start
        print(f"{args.out}: {len(series)} series in {elapsed:.0f} s "
              f"({elapsed / max(len(series), 1) * 1000:.0f} ms per series)")
        return 0

    rows = generate_studies(args.out, args.studies, args.seed, names, progress=progress, start=args.first_study,
                            study_type=args.study_type)
    print(f"labels.csv of {args.out} now lists {len(rows)} series")
    return 0


def generate_header_rows(n_studies: int, seed: int, profiles=None, out=None, first_study: int = 0,
                         study_type: str | None = None, start_time: float | None = None):
    """The forest's training rows of ``n_studies`` generated studies without rendering anatomy.

    (series, labels by series uid); with ``out`` also written as a ``forest_train.jsonl.gz``-format file.
    Lives in the face because it joins the generator (synth) and the engine's header reading (training),
    which the layers keep apart.
    """
    from ..synth.header_corpus import header_studies
    from ..training.header_rows import header_rows

    t0 = time.perf_counter() if start_time is None else start_time

    def tick(done: int, n: int) -> None:
        if start_time is not None and (done % 25 == 0 or done == n_studies):
            print(f"study {done}/{n_studies}: {n} series, {time.perf_counter() - t0:.0f} s", flush=True)

    return header_rows(header_studies(n_studies, seed, profiles, first_study, study_type), out, tick)

