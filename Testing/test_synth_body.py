"""Other body parts in the generator (synth/body.py): shapes, physics on them, and the studies they make."""

from __future__ import annotations

import csv
import dataclasses

import numpy as np
import pytest
from synth_fakes import small

from SeriesClassifierLib.synth import body, render
from SeriesClassifierLib.synth.cnn_corpus import thin_renderer
from SeriesClassifierLib.synth.generate import generate_studies
from SeriesClassifierLib.synth.render import render_series, tissue_maps

_GRID_MID_X = 64  # the body's midline on the template grid (x = 0 mm)


@pytest.fixture
def no_site_effects(monkeypatch):
    for name in ("BAR_RATE", "BACKGROUND_RATE", "SMOOTH_RATE", "OFFCENTRE_RATE", "MOTION_RATE"):
        monkeypatch.setattr(render, name, 0.0)
    monkeypatch.setattr(render, "SNR_RANGE", (30.0, 60.0))


@pytest.mark.parametrize("part, tissues", [
    ("knee", {"FAT", "MUSCLE", "BONE", "CARTILAGE", "TENDON", "CSF"}),
    ("spine", {"MARROW", "DISC", "CSF", "MUSCLE", "FAT"}),
    ("abdomen", {"LIVER", "SPLEEN", "KIDNEY", "FAT", "MUSCLE"}),
    ("pelvis", {"PROSTATE", "CSF", "FAT", "MUSCLE"}),
    ("phantom", {"GEL"}),
])
def test_each_part_holds_its_tissues_as_fractions(part, tissues):
    t = body.load_part(part, 0)
    assert tissues <= set(t.fractions)
    total = sum(t.fractions.values())
    assert total.min() >= 0 and total.max() <= 1.0 + 1e-5
    for name in tissues:  # a tissue is a structure, not a speck
        assert (t.fractions[name] > 0.9).sum() * 1.5**3 > 500, f"{part}: hardly any {name}"
    assert not any(v.flags.writeable for v in t.fractions.values())


def test_variants_and_subjects_differ():
    a, b = body.load_part("knee", 0), body.load_part("knee", 1)
    assert not np.array_equal(a.fractions["FAT"], b.fractions["FAT"])
    p1 = body.make_body_phantom(np.random.default_rng(1), "knee")
    p2 = body.make_body_phantom(np.random.default_rng(1), "knee")
    p3 = body.make_body_phantom(np.random.default_rng(2), "knee")
    assert np.array_equal(p1.world_to_template, p2.world_to_template)
    assert not np.array_equal(p1.world_to_template, p3.world_to_template)
    assert p1.anatomy == "knee" and not p1.overlays


def test_unknown_part_is_named():
    with pytest.raises(ValueError, match="elbow"):
        body.load_part("elbow")


def _means(code, phantom, tissues, **kw):
    spec = small(code, field_strength=1.5, **kw)
    rs = render_series(spec, phantom, np.random.default_rng(3))
    maps = tissue_maps(rs, phantom, list(tissues), n_planes=spec.n_slices)
    frames = rs.frames[: spec.n_slices]
    return {t: float(frames[maps[t] > 0.85].mean()) for t in tissues}


def test_knee_contrast_follows_the_signal_equations(no_site_effects):
    knee = body.make_body_phantom(np.random.default_rng(4), "knee")
    tissues = ("FAT", "MUSCLE", "CSF")
    t1 = _means("T1_2D_PRE", knee, tissues, orientation="CORONAL", repetition_time=550, echo_time=12)
    assert t1["FAT"] > t1["MUSCLE"] > t1["CSF"]
    t2 = _means("T2_2D", knee, tissues, orientation="CORONAL", repetition_time=4500, echo_time=95)
    assert t2["CSF"] > t2["MUSCLE"] and t2["FAT"] > t2["MUSCLE"]


def test_abdomen_diffusion_and_contrast(no_site_effects):
    abd = body.make_body_phantom(np.random.default_rng(5), "abdomen")
    pre = _means("T1_3D_PRE", abd, ("LIVER", "MUSCLE"), acquisition="3D", repetition_time=4, echo_time=2,
                 flip_angle=10)
    post = _means("T1_3D_POST", abd, ("LIVER", "MUSCLE"), acquisition="3D", repetition_time=4, echo_time=2,
                  flip_angle=10, contrast=True)
    assert post["LIVER"] / post["MUSCLE"] > pre["LIVER"] / pre["MUSCLE"]  # the liver takes up gadolinium
    spec = small("DWI", field_strength=1.5, b_values=(0.0, 800.0))
    rs = render_series(spec, abd, np.random.default_rng(6))
    assert rs.frames[: spec.n_slices].mean() > rs.frames[spec.n_slices:].mean()


def test_dti_renders_without_white_matter():
    pelvis = body.make_body_phantom(np.random.default_rng(7), "pelvis")
    isotropic = {k: v for k, v in pelvis.fractions.items() if k not in ("WM", "TENDON")}  # no fibres anywhere
    pelvis = dataclasses.replace(pelvis, fractions=isotropic)
    rs = render_series(small("DWI", b_values=(0.0, 1000.0, 1000.0, 1000.0)), pelvis, np.random.default_rng(1))
    assert np.isfinite(rs.frames).all() and rs.frames.std() > 0


def test_adapt_spec_leaves_out_brain_sequences_and_replans():
    rng = np.random.default_rng(0)
    assert body.adapt_spec("knee", small("SWI"), rng) is None
    assert body.adapt_spec("knee", small("FMRI_BOLD"), rng) is None
    assert body.adapt_spec("phantom", small("FMRI_BOLD"), rng).sequence == "FMRI_BOLD"
    assert body.adapt_spec("head", small("SWI"), rng).sequence == "SWI"
    planes = {body.adapt_spec("spine", small("T2_2D"), rng).orientation for _ in range(40)}
    assert planes == {"SAGITTAL", "AXIAL"}
    assert body.adapt_spec("spine", small("SCOUT", orientation="MIXED"), rng).orientation == "MIXED"


def test_a_body_corpus_has_no_brain_only_series_and_derived_series_keep_their_source_plane(tmp_path):
    rows = generate_studies(tmp_path, 2, 3, make_phantom=body.BodyPhantoms(("knee", "abdomen")),
                            render=thin_renderer(3))
    assert rows
    assert not {r.sequence for r in rows} & body.excluded_sequences("knee")
    with open(tmp_path / "labels.csv", newline="") as f:
        assert len(list(csv.DictReader(f))) == len(rows)
    by_study: dict[str, dict[str, str]] = {}
    for r in rows:
        by_study.setdefault(r.study_uid, {})[r.sequence] = r.orientation
    for seqs in by_study.values():
        if "DWI" in seqs and "ADC" in seqs:
            assert seqs["DWI"] == seqs["ADC"]


def test_a_wider_tissue_jitter_varies_the_contrast_between_series(no_site_effects):
    from SeriesClassifierLib.synth.anatomy import make_phantom
    from SeriesClassifierLib.synth.cnn_corpus import with_params

    def spread(sigma):
        ph = with_params(make_phantom, tissue_jitter=sigma)(np.random.default_rng(2))
        ratios = []
        for seed in range(6):
            spec = small("T1_2D_PRE", repetition_time=550, echo_time=12)
            rs = render_series(spec, ph, np.random.default_rng(seed))
            maps = tissue_maps(rs, ph, ["GM", "WM"], n_planes=spec.n_slices)
            ratios.append(rs.frames[maps["WM"] > 0.85].mean() / rs.frames[maps["GM"] > 0.85].mean())
        return float(np.std(np.log(ratios)))

    assert spread(0.3) > 2 * spread(0.0)


def test_fat_gain_dims_fat_in_gradient_echoes_only_and_leaves_the_rest_of_the_series_alone(no_site_effects):
    from SeriesClassifierLib.synth.anatomy import make_phantom
    from SeriesClassifierLib.synth.cnn_corpus import with_params

    mprage = small("T1_3D_PRE", repetition_time=2000, echo_time=3, inversion_time=900, flip_angle=9)
    spin_echo = small("T1_2D_PRE", repetition_time=550, echo_time=12)

    def mean_by_tissue(spec, **params):
        ph = with_params(make_phantom, **params)(np.random.default_rng(2))
        rs = render_series(spec, ph, np.random.default_rng(5))
        maps = tissue_maps(rs, ph, ["FAT", "WM"], n_planes=spec.n_slices)
        return rs.frames, {t: rs.frames[m > 0.9].mean() for t, m in maps.items()}

    plain, by_plain = mean_by_tissue(mprage)
    same, _ = mean_by_tissue(mprage, fat_gain=(1.0, 1.0))
    dim, by_dim = mean_by_tissue(mprage, fat_gain=(0.4, 0.4))
    assert np.array_equal(plain, same)  # a gain of 1 changes nothing, not even the random stream
    # the series is scaled to its own range, so what moves is fat beside the brain
    fat_to_wm = (by_dim["FAT"] / by_dim["WM"]) / (by_plain["FAT"] / by_plain["WM"])
    assert fat_to_wm == pytest.approx(0.4, rel=0.15)
    # a spin-echo train keeps its bright fat
    assert np.array_equal(mean_by_tissue(spin_echo)[0], mean_by_tissue(spin_echo, fat_gain=(0.4, 0.4))[0])


def _without_substructure(monkeypatch, part, variant):
    monkeypatch.setattr(body, "_substructure", lambda canvas, rng: None)
    return body.load_part.__wrapped__(part, variant)


def test_muscles_lie_in_compartments_between_fat_planes(monkeypatch):
    from scipy import ndimage as ndi

    def compartments(t):
        labels, _ = ndi.label(t.fractions["MUSCLE"] > 0.6)
        return int((np.bincount(labels.ravel())[1:] > 50).sum())

    textured = body.load_part("knee", 0)
    assert body._YELLOW_MARROW not in textured.fractions  # fat to the signal equations
    assert compartments(textured) >= 4 > compartments(_without_substructure(monkeypatch, "knee", 0))


def test_marrow_is_mottled_by_trabeculae_and_fat(monkeypatch):
    def mottled(t):  # marrow voxels holding a share of bone that partial volume at the cortex cannot explain
        bone, fat = t.fractions["BONE"], t.fractions["FAT"]
        return int(((bone > 0.1) & (bone < 0.4) & (fat > 0.55)).sum())

    assert mottled(body.load_part("knee", 0)) > 5 * mottled(_without_substructure(monkeypatch, "knee", 0))
    spine = body.load_part("spine", 0)
    red = spine.fractions["MARROW"][spine.fractions["MARROW"] > 0.2]
    assert red.std() > 0.1  # islands of fat among red marrow


def test_a_cervical_spine_has_its_cord_from_the_neck_into_the_brain_above():
    cervical = [body.load_part("spine", v) for v in range(body.VARIANTS)]
    cervical = [t for t in cervical if "GM" in t.fractions]
    assert cervical, "no cervical variant among the spine's"
    for t in cervical:
        wm, gm = t.fractions["WM"][_GRID_MID_X], t.fractions["GM"][_GRID_MID_X]
        cord = wm.max(axis=0)  # along z, the midline's whitest voxel
        brain_from = int(np.nonzero(gm.max(axis=0) > 0.5)[0].min())
        assert brain_from > 40  # the brain sits in the upper part of the box, the neck below it
        assert (cord[2:brain_from] > 0.5).all(), "the cord is broken between the neck and the brain"


def _ends(phantom, orientation):
    """Mean signal of the first and last 8 % of rows of a 320 mm field of view, taller than the tissue maps' box."""
    spec = small("T1_2D_PRE", orientation=orientation, rows=128, columns=128, pixel_spacing=(2.5, 2.5), n_slices=3,
                 repetition_time=550, echo_time=12)
    frame = render_series(spec, phantom, np.random.default_rng(0)).frames[1]
    edge = len(frame) * 8 // 100
    return float(frame[:edge].mean()), float(frame[-edge:].mean()), float(frame.max())


def test_a_neck_and_a_limb_reach_the_edge_of_a_tall_field_of_view_and_a_phantom_does_not(no_site_effects,
                                                                                           monkeypatch):
    from SeriesClassifierLib.synth.anatomy import make_phantom

    head = make_phantom(np.random.default_rng(1))
    knee = body.make_body_phantom(np.random.default_rng(3), "knee")
    bottle = body.make_body_phantom(np.random.default_rng(0), "phantom")
    # (the ends' mean signal against the image's brightest pixel: tissue 0.11-0.13 here, air and noise < 0.03)
    top, bottom, peak = _ends(head, "SAGITTAL")
    assert max(top, bottom) > 0.06 * peak and min(top, bottom) < 0.03 * peak  # the neck goes on; air above
    top, bottom, peak = _ends(knee, "CORONAL")
    assert min(top, bottom) > 0.06 * peak  # the leg goes on both ways
    top, bottom, peak = _ends(bottle, "CORONAL")
    assert max(top, bottom) < 0.04 * peak  # an object ends

    monkeypatch.setattr(render, "_z_limits", lambda template: (-np.inf, np.inf))  # the box's edge as a cut
    top, bottom, peak = _ends(head, "SAGITTAL")
    assert max(top, bottom) < 0.03 * peak
