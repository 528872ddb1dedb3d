"""Studies and labels: coverage of every class, consistent attributes, vendor tags, determinism, the CLI."""

from __future__ import annotations

import collections
import csv
import hashlib

import numpy as np
import pydicom
import pytest
from synth_fakes import fake_phantom, fake_render

from SeriesClassifierLib.commands.cli import main
from SeriesClassifierLib.synth.generate import LABEL_COLUMNS, generate_studies, read_label_rows
from SeriesClassifierLib.synth.profiles import HOLDOUT_PROFILES, PROFILES, TRAINING_PROFILES, get_profiles
from SeriesClassifierLib.synth.protocols import STUDY_TYPES, plan_study
from SeriesClassifierLib.vocabulary import load_vocabulary

VOCAB = load_vocabulary()


def _plans(profiles, n, seed=7):
    out = []
    for i in range(n):
        p = PROFILES[profiles[i % len(profiles)]]
        out.append((p, plan_study(p, np.random.default_rng([seed, i]))))
    return out


@pytest.mark.parametrize("group", [TRAINING_PROFILES, HOLDOUT_PROFILES])
def test_thirty_studies_cover_every_class_and_orientation(group):
    specs = [s for _, plan in _plans(group, 30) for s in plan]
    assert {s.sequence for s in specs} == set(VOCAB.sequence_codes)
    assert {s.orientation for s in specs} == set(VOCAB.orientation_codes)


def test_oblique_share_of_2d_series_is_realistic():
    specs = [s for _, plan in _plans(TRAINING_PROFILES + HOLDOUT_PROFILES, 120) for s in plan]
    two_d = [s for s in specs if s.acquisition == "2D" and s.sequence != "SCOUT"]
    share = sum(s.orientation == "OBLIQUE" for s in two_d) / len(two_d)
    assert 0.03 < share < 0.12


@pytest.mark.parametrize("kind", STUDY_TYPES)
def test_study_types_hold_their_core_series(kind):
    p = PROFILES["siemens_skyra_3t"]
    for seed in range(5):
        codes = [s.sequence for s in plan_study(p, np.random.default_rng(seed), kind)]
        assert codes[0] == "SCOUT"
        core = {"routine": {"T2_2D", "DWI", "ADC"}, "stroke": {"DWI", "ADC", "FLAIR_2D", "TOF_MRA", "MRA_MIP"},
                "tumour": {"T2_2D", "DWI", "ADC", "T1_2D_PRE", "T1_3D_POST", "T1_2D_POST"},
                "research": {"T1_3D_PRE", "T2_3D", "FLAIR_3D", "DWI", "DIFFUSION_DERIVED", "FIELDMAP", "FMRI_BOLD"},
                "iac": {"CISS", "T1_2D_POST"}, "mra": {"TOF_MRA", "MRA_MIP"}}[kind]
        assert core <= set(codes), (kind, codes)


def test_attributes_are_consistent_with_headers():
    for _, plan in _plans(TRAINING_PROFILES + HOLDOUT_PROFILES, 60):
        for s in plan:
            VOCAB.check_sequence(s.sequence)
            VOCAB.check_orientation(s.orientation)
            assert s.derived == (s.image_type[0] == "DERIVED")
            if s.sequence in ("T1_2D_POST", "T1_3D_POST", "PERFUSION_DSC"):
                assert s.contrast
            if s.sequence in ("T1_2D_PRE", "T1_3D_PRE", "TOF_MRA", "FMRI_BOLD", "PERFUSION_ASL"):
                assert not s.contrast
            if not s.contrast:
                assert "contrast_agent" not in s.extra
            fs_tokens = {"FS", "SFS", "FAT_SAT", "SPIR", "SPAIR"}
            assert s.fat_suppressed == bool(fs_tokens & set(s.scan_options))
            if s.sequence in ("T1_3D_PRE", "T1_3D_POST", "T2_3D", "FLAIR_3D", "TOF_MRA", "CISS") and not s.derived:
                assert s.acquisition == "3D"
            if s.sequence in ("T1_2D_PRE", "T1_2D_POST", "T2_2D", "FLAIR_2D", "DWI", "FMRI_BOLD"):
                assert s.acquisition == "2D"


def test_mess_happens_at_the_profile_rates():
    plans = _plans(TRAINING_PROFILES, 80)
    specs = [s for _, plan in plans for s in plan]
    wrong = sum(bool(s.extra.get("wrong_description")) for s in specs) / len(specs)
    assert 0.02 < wrong < 0.15
    anon = [s for p, plan in plans if p.name == "anonymised_research" for s in plan]
    stripped = sum("SeriesDescription" in s.extra["drop_tags"] for s in anon) / len(anon)
    assert stripped > 0.6
    post = [s for s in specs if s.contrast]
    agents = collections.Counter(
        "missing" if s.extra["contrast_agent"] is None else
        "placeholder" if s.extra["contrast_agent"] in ("ANONYMIZED", "XXXX", "", "NONE", "REMOVED") else "real"
        for s in post)
    assert agents["real"] > agents["missing"] > 0 and agents["placeholder"] > 0


def test_holdout_profiles_are_separate_and_cover_a_vendor_each():
    assert set(HOLDOUT_PROFILES).isdisjoint(TRAINING_PROFILES)
    assert len(PROFILES) >= 10 and len(TRAINING_PROFILES) >= 8
    # one held-out profile per vendor family of the training set, plus a vendor never trained on (Hitachi)
    assert {PROFILES[n].vendor for n in HOLDOUT_PROFILES} == {"CANON", "GE", "SIEMENS", "PHILIPS", "HITACHI"}
    assert {PROFILES[n].vendor for n in TRAINING_PROFILES} >= {"CANON", "GE", "SIEMENS", "PHILIPS", "UIH"}
    assert [p.name for p in get_profiles(None)] == list(TRAINING_PROFILES)
    assert [p.name for p in get_profiles(["holdout", "siemens_skyra_3t"])] == [*HOLDOUT_PROFILES, "siemens_skyra_3t"]
    with pytest.raises(ValueError, match="unknown profile"):
        get_profiles(["no_such_site"])


@pytest.fixture(scope="module")
def small_corpus(tmp_path_factory):
    out = tmp_path_factory.mktemp("corpus")
    names = ["siemens_skyra_3t", "ge_signa_premier_3t", "philips_ingenia_3t", "canon_vantage_15t"]
    rows = generate_studies(out, 4, seed=11, profiles=names, make_phantom=fake_phantom, render=_small(fake_render))
    return out, rows


def _small(render):
    """Shrink specs so the writer tests stay fast; geometry rules are unchanged."""

    def run(spec, phantom, rng):
        spec.rows, spec.columns = min(spec.rows, 24), min(spec.columns, 24)
        spec.n_slices = min(spec.n_slices, 6 if spec.orientation != "MIXED" else spec.n_slices)
        spec.n_temporal = min(spec.n_temporal, 3)
        spec.b_values = spec.b_values[:3]
        return render(spec, phantom, rng)

    return run


def test_labels_csv_has_exactly_the_columns_and_one_row_per_series(small_corpus):
    out, rows = small_corpus
    with open(out / "labels.csv", newline="") as f:
        reader = csv.reader(f)
        assert tuple(next(reader)) == LABEL_COLUMNS
    assert read_label_rows(out / "labels.csv") == rows
    found = {}
    for path in out.rglob("*.dcm"):
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        found.setdefault(ds.SeriesInstanceUID, set()).add(ds.StudyInstanceUID)
    assert set(found) == {r.series_uid for r in rows}
    assert all(len(s) == 1 for s in found.values())
    for r in rows:
        assert r.contrast in VOCAB.attribute("contrast").values
        assert r.acquisition in VOCAB.attribute("acquisition").values
        assert r.fat_suppressed in VOCAB.attribute("fat_suppressed").values
        assert r.derived in VOCAB.attribute("derived").values


def test_headers_match_labels_and_vendor(small_corpus):
    out, rows = small_corpus
    by_uid = {r.series_uid: r for r in rows}
    seen_vendor_tags = collections.defaultdict(set)
    for folder in sorted(p for p in out.glob("study_*/s*") if p.is_dir()):
        ds = pydicom.dcmread(sorted(folder.glob("*.dcm"))[0], stop_before_pixels=True)
        row = by_uid[ds.SeriesInstanceUID]
        assert ds.MRAcquisitionType == row.acquisition
        image_type = ds.ImageType
        assert (image_type[0] == "DERIVED") == (row.derived == "YES")
        assert float(ds.MagneticFieldStrength) == row.field_strength
        assert ds.Manufacturer == PROFILES[row.profile].manufacturer
        if row.contrast == "PRE":
            assert "ContrastBolusAgent" not in ds
        if (0x0043, 0x1039) in ds:
            seen_vendor_tags[row.vendor].add("GE b")
        if (0x2001, 0x1020) in ds:
            seen_vendor_tags[row.vendor].add("Philips technique")
        if (0x0019, 0x0010) in ds and ds[0x0019, 0x0010].value == "SIEMENS MR HEADER":
            seen_vendor_tags[row.vendor].add("Siemens header")
    assert "Philips technique" in seen_vendor_tags["PHILIPS"]
    assert "GE b" in seen_vendor_tags["GE"]
    assert set(seen_vendor_tags) <= {"SIEMENS", "GE", "PHILIPS"}


def _digest(folder):
    h = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            h.update(str(path.relative_to(folder)).encode())
            h.update(path.read_bytes())
    return h.hexdigest()


def test_same_seed_gives_identical_files_and_other_seed_differs(tmp_path):
    kw = dict(profiles=["siemens_xa_vida_3t", "philips_achieva_15t"], make_phantom=fake_phantom,
              render=_small(fake_render))
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    generate_studies(a, 2, seed=3, **kw)
    generate_studies(b, 2, seed=3, **kw)
    generate_studies(c, 2, seed=4, **kw)
    assert (a / "labels.csv").read_bytes() == (b / "labels.csv").read_bytes()
    assert _digest(a) == _digest(b)
    assert _digest(a) != _digest(c)
    assert (a / "labels.csv").read_bytes() != (c / "labels.csv").read_bytes()


def test_cli_lists_profiles_and_rejects_unknown(capsys, tmp_path):
    assert main(["synth", "--list-profiles"]) == 0
    out = capsys.readouterr().out
    for name in PROFILES:
        assert name in out
    assert main(["synth", str(tmp_path / "x"), "--profile", "nowhere"]) == 2
    assert "unknown profile" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_extending_a_folder_keeps_earlier_labels_and_matches_one_long_run(tmp_path):
    kw = dict(profiles=["ge_optima_15t", "canon_vantage_15t"], make_phantom=fake_phantom, render=_small(fake_render))
    generate_studies(tmp_path / "long", 3, seed=5, **kw)
    generate_studies(tmp_path / "ext", 2, seed=5, **kw)
    rows = generate_studies(tmp_path / "ext", 1, seed=5, start=2, **kw)
    assert (tmp_path / "ext" / "labels.csv").read_bytes() == (tmp_path / "long" / "labels.csv").read_bytes()
    assert len({r.study_uid for r in rows}) == 3
    assert _digest(tmp_path / "ext") == _digest(tmp_path / "long")
    forced = generate_studies(tmp_path / "forced", 2, seed=5, study_type="mra", **kw)
    assert {r.sequence for r in forced} <= {"SCOUT", "TOF_MRA", "MRA_MIP", "T2_2D", "DWI", "ADC",
                                            "DIFFUSION_DERIVED", "OTHER"}  # OTHER: phase-contrast flow


def test_regenerating_into_an_old_folder_removes_stale_series(tmp_path):
    kw = dict(profiles=["ge_optima_15t"], make_phantom=fake_phantom, render=_small(fake_render))
    generate_studies(tmp_path, 1, seed=9, **kw)
    stale = tmp_path / "study_0000" / "s099"
    stale.mkdir()
    (stale / "IM00001.dcm").write_bytes(b"old")
    rows = generate_studies(tmp_path, 1, seed=9, **kw)
    assert not stale.exists()
    assert len([p for p in (tmp_path / "study_0000").iterdir() if p.is_dir()]) == len(rows)
