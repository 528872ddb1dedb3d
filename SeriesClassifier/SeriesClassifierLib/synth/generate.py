"""Whole studies on disk: protocols → render → writer, plus labels.csv.

``generate_studies(out_dir, n_studies, seed)`` writes ``out_dir/study_NNNN/sNNN/…``
(one folder per study, one per series) and ``out_dir/labels.csv`` with one row
per series. Everything derives from ``seed``: the same seed gives byte-identical
files (UIDs from ``make_uid``, dates drawn from the seed, no clock).
"""

from __future__ import annotations

import csv
import datetime as _dt
import os
import shutil
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from .body import adapt_spec
from .profiles import Profile, get_profiles
from .protocols import plan_study
from .spec import RenderedSeries, SeriesSpec
from .writer import SeriesContext, StudyContext, make_uid, write_series

LABEL_COLUMNS = ("series_uid", "study_uid", "sequence", "orientation", "contrast", "acquisition", "fat_suppressed",
                 "derived", "vendor", "field_strength", "profile")

RenderFn = Callable[[SeriesSpec, object, np.random.Generator], RenderedSeries]
PhantomFn = Callable[[np.random.Generator], object]


@dataclass
class LabelRow:
    series_uid: str
    study_uid: str
    sequence: str
    orientation: str
    contrast: str  # PRE | POST
    acquisition: str  # 2D | 3D
    fat_suppressed: str  # YES | NO
    derived: str  # YES | NO
    vendor: str
    field_strength: float
    profile: str


def label_row(spec: SeriesSpec, series_uid: str, study_uid: str, profile: Profile) -> LabelRow:
    return LabelRow(
        series_uid=series_uid, study_uid=study_uid, sequence=spec.sequence, orientation=spec.orientation,
        contrast="POST" if spec.contrast else "PRE", acquisition=spec.acquisition,
        fat_suppressed="YES" if spec.fat_suppressed else "NO", derived="YES" if spec.derived else "NO",
        vendor=spec.vendor, field_strength=spec.field_strength, profile=profile.name,
    )


def _default_renderer() -> tuple[PhantomFn, RenderFn]:
    from .anatomy import make_phantom
    from .render import render_series

    return make_phantom, render_series


_FIRST = ("Alex", "Sam", "Robin", "Kim", "Jo", "Charlie", "Noa", "Mika", "Toni", "Eli")
_LAST = ("Synth", "Phantom", "Example", "Testperson", "Muster", "Dupont", "Garcia", "Jansen")


def _study_context(profile: Profile, seed: int, index: int, rng: np.random.Generator) -> StudyContext:
    key = f"seed{seed}/study{index:05d}"
    date = _dt.date(2018, 1, 1) + _dt.timedelta(days=int(rng.integers(0, 6 * 365)))
    age = int(rng.integers(18, 90))
    birth = date.replace(year=date.year - age) if not (date.month == 2 and date.day == 29) else date.replace(
        year=date.year - age, day=28)
    hour, minute = int(rng.integers(7, 20)), int(rng.integers(0, 60))
    return StudyContext(
        profile=profile, seed_key=key,
        patient_id=f"SYN{seed:03d}{index:05d}",
        patient_name=f"{rng.choice(_LAST)}^{rng.choice(_FIRST)}",
        patient_birth_date=birth.strftime("%Y%m%d"), patient_sex=str(rng.choice(["F", "M"])),
        patient_age=f"{age:03d}Y", patient_weight=float(rng.integers(50, 110)),
        study_uid=make_uid(key, "study"), study_date=date.strftime("%Y%m%d"),
        study_time=f"{hour:02d}{minute:02d}{int(rng.integers(0, 60)):02d}", study_id=str(int(rng.integers(1, 99999))),
        accession=f"A{int(rng.integers(10**7, 10**8))}", frame_of_reference_uid=make_uid(key, "frame-of-reference"),
        device_serial=str(int(rng.integers(10000, 99999))),
        station_name=f"{profile.vendor[:3]}MR{int(rng.integers(1, 9))}",
    )


def _series_number(profile: Profile, k: int, spec: SeriesSpec) -> int:
    if profile.vendor == "PHILIPS":
        return (k + 1) * 100 + (2 if spec.derived else 1)
    return k + 1


def _clock(study_time: str, seconds: float) -> str:
    h, m, s = int(study_time[:2]), int(study_time[2:4]), int(study_time[4:6])
    total = (h * 3600 + m * 60 + s + int(seconds)) % 86400
    return f"{total // 3600:02d}{(total % 3600) // 60:02d}{total % 60:02d}"


def generate_study(
    out_dir: str | Path,
    profile: Profile,
    seed: int,
    index: int,
    make_phantom: PhantomFn | None = None,
    render: RenderFn | None = None,
    study_type: str | None = None,
) -> list[LabelRow]:
    """Plan, render and write one study into ``out_dir/study_<index>``; returns its label rows."""
    if make_phantom is None or render is None:
        default_phantom, default_render = _default_renderer()
        make_phantom, render = make_phantom or default_phantom, render or default_render
    rng = np.random.default_rng([seed, index, 1])
    study = _study_context(profile, seed, index, rng)
    specs = plan_study(profile, rng, study_type)
    phantom = make_phantom(np.random.default_rng([seed, index, 2]))
    part = getattr(phantom, "anatomy", "head")
    study_dir = Path(out_dir) / f"study_{index:04d}"
    rows: list[LabelRow] = []
    elapsed = 0.0
    for k, spec in enumerate(specs):
        if part != "head":  # a knee has no SWI, and is mostly sagittal or coronal
            adapted = adapt_spec(part, spec, np.random.default_rng([seed, index, 5, int(spec.extra.get("grid_of", k))]))
            if adapted is None:  # the others keep their numbers and grid_of links
                continue
            spec = adapted
        series_uid = make_uid(study.seed_key, "series", k)
        series = SeriesContext(series_uid=series_uid, series_number=_series_number(profile, k, spec),
                               series_time=_clock(study.study_time, elapsed), coil=str(rng.choice(profile.coils)))
        elapsed += 60 + 3 * spec.n_slices
        series_rng = np.random.default_rng([seed, index, 3, k])
        if "grid_of" in spec.extra:  # a derived series and its source: one grid (render.slice_geometry)
            spec.extra["grid_seed"] = [seed, index, 4, int(spec.extra["grid_of"])]
        try:
            rendered = render(spec, phantom, series_rng)
            write_series(spec, rendered, study, series, study_dir / f"s{k + 1:03d}", series_rng)
        except Exception as exc:  # one bad series must not stop a long corpus run; it gets no files, no label
            shutil.rmtree(study_dir / f"s{k + 1:03d}", ignore_errors=True)
            print(f"synth: study {index} ({profile.name}) series {k + 1} {spec.sequence} skipped: "
                  f"{type(exc).__name__}: {exc}", file=sys.stderr)
            continue
        rows.append(label_row(spec, series_uid, study.study_uid, profile))
    # series folders left by an earlier run of other code would hold files without labels
    for old in study_dir.glob("s[0-9][0-9][0-9]"):
        if old.is_dir() and int(old.name[1:]) > len(specs):
            shutil.rmtree(old, ignore_errors=True)
    return rows


def write_labels(rows: list[LabelRow], path: str | Path) -> None:
    """Write labels.csv atomically (readers of a growing corpus never see half a file)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=LABEL_COLUMNS, lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow(asdict(row))
    os.replace(tmp, path)


def read_label_rows(path: str | Path) -> list[LabelRow]:
    with open(path, newline="", encoding="utf-8") as f:
        return [LabelRow(**{**r, "field_strength": float(r["field_strength"])}) for r in csv.DictReader(f)]


def generate_studies(
    out_dir: str | Path,
    n_studies: int,
    seed: int,
    profiles: list[str] | tuple[str, ...] | None = None,
    make_phantom: PhantomFn | None = None,
    render: RenderFn | None = None,
    progress: Callable[[int, int, list[LabelRow]], None] | None = None,
    start: int = 0,
    study_type: str | None = None,
) -> list[LabelRow]:
    """Write ``n_studies`` studies (profiles in turn; training profiles when None) and ``labels.csv``.

    ``start`` > 0 extends an existing folder with studies ``start … start+n_studies-1`` (same seed, same
    profile rotation); labels.csv keeps the rows of the other studies. ``study_type`` forces one protocol.
    """
    chosen = get_profiles(profiles)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    indices = range(start, start + n_studies)
    redo = {make_uid(f"seed{seed}/study{i:05d}", "study") for i in indices}
    kept = [r for r in read_label_rows(out / "labels.csv") if r.study_uid not in redo] if start and (
        out / "labels.csv").exists() else []
    rows: list[LabelRow] = []
    for n, i in enumerate(indices):
        profile = chosen[i % len(chosen)]
        study_rows = generate_study(out, profile, seed, i, make_phantom, render, study_type)
        rows += study_rows
        write_labels(kept + rows, out / "labels.csv")  # kept current so a long run is usable while it goes
        if progress is not None:
            progress(n + 1, n_studies, study_rows)
    write_labels(kept + rows, out / "labels.csv")
    return kept + rows
