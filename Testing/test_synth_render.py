"""The generator's pixel half: phantom, physics and rendering (synth/anatomy, physics, render)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from synth_fakes import small

from SeriesClassifierLib.synth import physics
from SeriesClassifierLib.synth.anatomy import BASE_TISSUES, make_phantom
from SeriesClassifierLib.synth.render import angle_from_nearest_axis, render_series, tissue_maps
from SeriesClassifierLib.synth.spec import RenderedSeries, SeriesSpec
from SeriesClassifierLib.vocabulary import load_vocabulary

VOCAB = load_vocabulary()
THRESHOLD = VOCAB.oblique_threshold_degrees


@pytest.fixture(scope="module")
def phantom():
    return make_phantom(np.random.default_rng(7))


@pytest.fixture
def no_site_effects(monkeypatch):
    """Physics checks measure tissue means: no padding bars, background suppression, smoothing, FOV shift or motion,
    and a good SNR (the random noise floor is a nuisance here)."""
    from SeriesClassifierLib.synth import render

    for name in ("BAR_RATE", "BACKGROUND_RATE", "SMOOTH_RATE", "OFFCENTRE_RATE", "MOTION_RATE"):
        monkeypatch.setattr(render, name, 0.0)
    monkeypatch.setattr(render, "SNR_RANGE", (30.0, 60.0))


def n_volumes(rs: RenderedSeries, spec: SeriesSpec) -> int:
    return len(rs.positions) // spec.n_slices if spec.orientation != "MIXED" else 1


@pytest.mark.parametrize("code", VOCAB.sequence_codes)
def test_every_sequence_renders(code, phantom):
    spec = small(code)
    rs = render_series(spec, phantom, np.random.default_rng(1))
    assert rs.frames.dtype == np.float32
    assert rs.frames.ndim == 3 and rs.frames.shape[1:] == (64, 64)
    assert np.isfinite(rs.frames).all()
    assert len(rs.positions) == len(rs.orientations) == rs.frames.shape[0]
    assert rs.frames.shape[0] % spec.n_slices == 0
    assert rs.frames.std() > 0
    if rs.signed:
        assert rs.frames.min() >= -4096 and rs.frames.max() <= 4095
    else:
        assert rs.frames.min() >= 0 and rs.frames.max() <= 4095
    for per_frame in (rs.b_values, rs.temporal_indices, rs.echo_numbers):
        assert per_frame is None or len(per_frame) == rs.frames.shape[0]


def test_volume_major_order_and_per_frame_values(phantom):
    spec = small("DWI", b_values=(0.0, 500.0, 1000.0))
    rs = render_series(spec, phantom, np.random.default_rng(2))
    assert rs.frames.shape[0] == 3 * spec.n_slices
    assert rs.b_values == [0.0] * 12 + [500.0] * 12 + [1000.0] * 12
    assert rs.positions[:12] == rs.positions[12:24]
    # diffusion weighting lowers the signal volume by volume
    means = [rs.frames[k * 12 : (k + 1) * 12].mean() for k in range(3)]
    assert means[0] > means[1] > means[2]

    dsc = render_series(small("PERFUSION_DSC"), phantom, np.random.default_rng(2))
    assert dsc.temporal_indices == [t for t in range(30) for _ in range(12)]
    fm = render_series(small("FIELDMAP"), phantom, np.random.default_rng(2))
    assert fm.echo_numbers == [1] * 12 + [2] * 12
    phase = render_series(small("FIELDMAP", extra={"fieldmap_part": "phasediff"}), phantom, np.random.default_rng(2))
    assert phase.signed and phase.frames.min() < 0 < phase.frames.max()


# ---------------------------------------------------------------- contrast


def means(code: str, phantom, tissues=("CSF", "WM", "GM"), threshold=0.85, seed=3, **kw) -> dict[str, float]:
    spec = small(code, **kw)
    rs = render_series(spec, phantom, np.random.default_rng(seed))
    n = spec.n_slices
    maps = tissue_maps(rs, phantom, list(tissues), n_planes=n)
    out = {}
    for vol in range(len(rs.positions) // n):
        frames = rs.frames[vol * n : (vol + 1) * n]
        for t in tissues:
            mask = maps[t] > threshold
            assert mask.sum() > 3, f"{code}: no {t} voxels in the stack"
            out[t if vol == 0 else f"{t}@{vol}"] = float(frames[mask].mean())
    return out


def test_t2_csf_bright_t1_csf_dark(phantom, no_site_effects):
    t2 = means("T2_2D", phantom, repetition_time=4500, echo_time=95)
    assert t2["CSF"] > 1.5 * t2["WM"]
    assert t2["GM"] > t2["WM"]
    t1 = means("T1_2D_PRE", phantom, repetition_time=550, echo_time=12)
    assert t1["CSF"] < t1["GM"] < t1["WM"]
    thin = dict(slice_thickness=2.0, slice_spacing=2.0, n_slices=30, pixel_spacing=(2.0, 2.0), rows=112, columns=112)
    mprage = means("T1_3D_PRE", phantom, acquisition="3D", inversion_time=900, repetition_time=2300, flip_angle=9,
                   **thin)
    # the signal equation gives CSF/GM ≈ 0.4 at TI 900/TR 2300; partial volume and noise floor add a little
    assert mprage["CSF"] < 0.55 * mprage["GM"] and mprage["GM"] < mprage["WM"]
    pd = means("PD", phantom, repetition_time=3000, echo_time=15)
    assert pd["GM"] > pd["WM"]
    ciss = means("CISS", phantom, acquisition="3D", **thin)
    assert ciss["CSF"] > 2 * ciss["WM"]


def test_spin_echo_t1_at_1_5_t_has_white_matter_brighter_than_grey(phantom, no_site_effects):
    # with excised-tissue T1 (WM 884 ms) a 1.5-T spin-echo T1 image came out isointense (GM/WM ≈ 1); in vivo
    # T1 (WM 646 ms) gives the contrast scanners show
    for seed in range(3):
        t1 = means("T1_2D_PRE", phantom, seed=seed, field_strength=1.5, repetition_time=550, echo_time=12)
        assert t1["GM"] < 0.88 * t1["WM"]


def test_incidental_mt_darkens_white_matter_of_2d_spin_echo_trains(phantom, no_site_effects):
    p = physics.tissue_params(3.0)
    mt = physics.incidental_mt(p, 0.2)
    wm, gm, csf, fat = (mt[p.index(n)] for n in ("WM", "GM", "CSF", "FAT"))
    assert wm == pytest.approx(0.8) and wm < gm < 1.0 and csf == fat == 1.0
    assert physics.incidental_mt(p, 0.0) == pytest.approx(np.ones(len(p.names)))
    for seed in range(3):  # 3-T FLAIR: grey matter brighter than white, not the isointense image of T1 alone
        flair = means("FLAIR_2D", phantom, seed=seed, repetition_time=9000, inversion_time=2500, echo_time=100)
        assert flair["GM"] > 1.08 * flair["WM"]


def test_flair_nulls_csf_and_shows_lesions(phantom, no_site_effects):
    flair = means("FLAIR_2D", phantom, repetition_time=9000, inversion_time=2500, echo_time=100)
    assert flair["CSF"] < 0.35 * flair["WM"]
    flair3d = means("FLAIR_3D", phantom, acquisition="3D", repetition_time=5000, echo_time=380)
    assert flair3d["CSF"] < 0.35 * flair3d["WM"]


def test_flair_lesions_bright(no_site_effects):
    # a phantom with MS plaques: seeds vary, so search a few
    for seed in range(30):
        ph = make_phantom(np.random.default_rng(seed))
        if "ms_plaques" in ph.seed_info and ph.seed_info["ms_plaques"] >= 6:
            break
    else:
        pytest.fail("no phantom with plaques in 30 seeds")
    spec = small("FLAIR_2D", n_slices=24, slice_spacing=5.0, slice_thickness=5.0)
    rs = render_series(spec, ph, np.random.default_rng(0))
    maps = tissue_maps(rs, ph, ["MS", "WM"])
    lesion = maps["MS"] > 0.5
    wm = (maps["WM"] > 0.9) & (maps["MS"] < 0.01)
    assert lesion.sum() > 0
    assert rs.frames[lesion].mean() > 1.15 * rs.frames[wm].mean()


def test_contrast_enhances_vessels(phantom, no_site_effects):
    kw = dict(acquisition="3D", inversion_time=900, repetition_time=2000, flip_angle=9, slice_thickness=2.0,
              slice_spacing=2.0, n_slices=40, pixel_spacing=(2.0, 2.0), rows=112, columns=112)
    tissues = ("WM", "VEIN", "DURA")
    pre = means("T1_3D_PRE", phantom, tissues, threshold=0.5, **kw)
    post = means("T1_3D_POST", phantom, tissues, threshold=0.5, contrast=True, **kw)
    assert post["VEIN"] / post["WM"] > 1.5 * pre["VEIN"] / pre["WM"]
    assert post["DURA"] / post["WM"] > pre["DURA"] / pre["WM"]


def test_inflow_brightens_arteries_of_a_2d_gradient_echo_without_contrast(phantom, no_site_effects):
    kw = dict(acquisition="2D", repetition_time=8.6, echo_time=4.0, flip_angle=20, slice_thickness=6.0,
              slice_spacing=6.0, n_slices=12, rows=128, columns=128, pixel_spacing=(1.8, 1.8))
    scout = means("SCOUT", phantom, ("ARTERY", "WM"), threshold=0.6, orientation="AXIAL", **kw)
    assert scout["ARTERY"] > 1.5 * scout["WM"]  # saturated blood (no inflow) would sit below white matter
    p = physics.tissue_params(3.0)
    stationary = physics.spoiled_gre(p, 8.6, 4.0, 20)
    fresh = physics.inflow_gre(p, 8.6, 4.0, 20, artery=1.0, vein=0.0)
    artery, wm = p.index("ARTERY"), p.index("WM")
    assert stationary[artery] < stationary[wm] < fresh[artery]
    assert physics.inflow_gre(p, 8.6, 4.0, 20, 0.0, 0.0) == pytest.approx(stationary)  # no inflow: the Ernst signal
    assert fresh[wm] == pytest.approx(stationary[wm])  # tissue does not flow


def test_diffusion_contrast(phantom, no_site_effects):
    kw = dict(rows=96, columns=96, pixel_spacing=(2.4, 2.4), fat_suppressed=True)
    adc = means("ADC", phantom, b_values=(0.0, 1000.0), **kw)
    assert adc["CSF"] > 2000 and 450 < adc["WM"] < 1100 and adc["CSF"] > 2.5 * adc["WM"]
    dwi = means("DWI", phantom, b_values=(0.0, 1000.0), **kw)
    assert dwi["CSF"] > dwi["WM"]  # b0: T2-weighted
    assert dwi["CSF@1"] < dwi["WM@1"]  # b1000: free water dark
    fa = means("DIFFUSION_DERIVED", phantom, b_values=(0.0, 1000.0), **kw)
    assert fa["WM"] > 1.5 * fa["GM"] and fa["WM"] > 3 * fa["CSF"]
    assert max(fa.values()) <= 1000


def test_tof_arteries_brightest(phantom, no_site_effects):
    tof = means("TOF_MRA", phantom, ("ARTERY", "WM", "GM"), threshold=0.6, acquisition="3D", slice_thickness=1.0,
                slice_spacing=1.0, n_slices=60, rows=128, columns=128, pixel_spacing=(1.0, 1.0))
    assert tof["ARTERY"] > 2.0 * max(tof["WM"], tof["GM"])


def test_swi_veins_dark(phantom, no_site_effects):
    kw = dict(acquisition="3D", slice_thickness=2.0, slice_spacing=2.0, n_slices=40, rows=128, columns=128,
              pixel_spacing=(1.5, 1.5))
    swi = means("SWI", phantom, ("VEIN", "WM"), threshold=0.6, **kw)
    assert swi["VEIN"] < 0.7 * swi["WM"]


def test_dsc_bolus_darkens_grey_matter(phantom, no_site_effects):
    spec = small("PERFUSION_DSC", repetition_time=1500, echo_time=30)
    rs = render_series(spec, phantom, np.random.default_rng(4))
    n = spec.n_slices
    gm = tissue_maps(rs, phantom, ["GM"], n_planes=n)["GM"] > 0.8
    curve = np.array([rs.frames[t * n : (t + 1) * n][gm].mean() for t in range(30)])
    assert curve.min() < 0.85 * curve[:3].mean()
    assert curve[-1] > curve.min()  # recovers after the first pass


def test_fat_suppression_darkens_fat(phantom, no_site_effects):
    tissues = ("FAT", "WM")
    plain = means("T1_2D_POST", phantom, tissues, threshold=0.6, contrast=True, repetition_time=550, echo_time=12)
    fs = means("T1_2D_POST", phantom, tissues, threshold=0.6, contrast=True, repetition_time=550, echo_time=12,
               fat_suppressed=True)
    assert fs["FAT"] / fs["WM"] < 0.5 * plain["FAT"] / plain["WM"]


def test_field_strength_changes_contrast(phantom, no_site_effects):
    p15 = physics.tissue_params(1.5)
    p3 = physics.tissue_params(3.0)
    wm = p15.index("WM")
    assert p3.t1[wm] > p15.t1[wm]
    post = physics.tissue_params(3.0, contrast=True)
    assert post.t1[p3.index("VEIN")] < 0.5 * p3.t1[p3.index("VEIN")]


# ---------------------------------------------------------------- geometry

EXPECTED_NORMAL = {"AXIAL": 2, "SAGITTAL": 0, "CORONAL": 1}


def iop_normal(iop) -> np.ndarray:
    return np.cross(np.array(iop[:3]), np.array(iop[3:]))


@pytest.mark.parametrize("orientation", ["AXIAL", "SAGITTAL", "CORONAL"])
def test_straight_planes(orientation, phantom):
    for tilt in [(0.0, 0.0), (7.0, -5.0), (19.0, 12.0)]:  # an exaggerated tilt is clamped below the threshold
        spec = small("T2_2D", orientation=orientation, tilt_degrees=tilt)
        rs = render_series(spec, phantom, np.random.default_rng(5))
        n = iop_normal(rs.orientations[0])
        assert int(np.argmax(np.abs(n))) == EXPECTED_NORMAL[orientation]
        assert angle_from_nearest_axis(n) < THRESHOLD - 4
        if tilt == (0.0, 0.0):
            expected = {"AXIAL": (1, 0, 0, 0, 1, 0), "SAGITTAL": (0, 1, 0, 0, 0, -1), "CORONAL": (1, 0, 0, 0, 0, -1)}
            assert np.allclose(rs.orientations[0], expected[orientation])


@pytest.mark.parametrize("base", ["AXIAL", "CORONAL", "SAGITTAL"])
def test_oblique_planes(base, phantom):
    for tilt in [(30.0, 5.0), (0.0, 0.0), (-38.0, 2.0)]:  # no tilt given: one is drawn in the oblique band
        spec = small("T2_2D", orientation="OBLIQUE", tilt_degrees=tilt, extra={"oblique_base": base})
        rs = render_series(spec, phantom, np.random.default_rng(6))
        ang = angle_from_nearest_axis(iop_normal(rs.orientations[0]))
        assert THRESHOLD + 4 < ang <= 46


def test_positions_spaced_along_normal(phantom):
    spec = small("T2_2D", orientation="OBLIQUE", tilt_degrees=(30.0, 4.0), slice_spacing=6.5)
    rs = render_series(spec, phantom, np.random.default_rng(8))
    normal = iop_normal(rs.orientations[0])
    pos = np.array(rs.positions)
    steps = np.diff(pos, axis=0)
    assert np.allclose(steps @ normal, 6.5, atol=1e-6)
    assert np.allclose(steps - np.outer(steps @ normal, normal), 0, atol=1e-6)
    # the first pixel lies at the corner: the centre of the FOV is half a FOV away along row and column
    row, col = np.array(rs.orientations[0][:3]), np.array(rs.orientations[0][3:])
    centres = pos + 31.5 * 3.6 * row + 31.5 * 3.6 * col
    assert np.linalg.norm(centres.mean(axis=0) - phantom.brain_center) < 15


def test_mixed_localizer_has_three_planes(phantom):
    rs = render_series(small("SCOUT"), phantom, np.random.default_rng(9))
    planes = {int(np.argmax(np.abs(iop_normal(o)))) for o in rs.orientations}
    assert len(planes) >= 2
    assert rs.frames.shape[0] == 9


def test_mip_frames_project_vessels(phantom, no_site_effects):
    spec = small("MRA_MIP", rows=96, columns=96, pixel_spacing=(2.0, 2.0), n_slices=5, acquisition="3D", derived=True)
    rs = render_series(spec, phantom, np.random.default_rng(10))
    assert rs.frames.shape == (5, 96, 96)
    for o in rs.orientations:
        assert angle_from_nearest_axis(iop_normal(o)) < THRESHOLD
    radial = render_series(dataclasses.replace(spec, orientation="MIXED", n_slices=6,
                                               extra={"mip_axis": "CORONAL", "mip_span_deg": 180.0}),
                           phantom, np.random.default_rng(10))
    normals = {tuple(np.round(iop_normal(o), 3)) for o in radial.orientations}
    assert len(normals) == 6
    # a projection is dominated by a few bright vessels: a heavy upper tail
    f = rs.frames[2]
    assert np.percentile(f, 99.5) > 2.5 * np.percentile(f[f > 0], 50)


# ---------------------------------------------------------------- phantom


def test_phantom_tissue_maps_are_fractions(phantom):
    total = sum(phantom.fractions[n] for n in BASE_TISSUES)
    assert total.max() < 1.05
    assert set(BASE_TISSUES) == set(phantom.fractions)
    assert phantom.has("ARTERY") and phantom.has("VEIN")


def test_phantoms_are_deterministic_and_differ():
    a1 = make_phantom(np.random.default_rng(123))
    a2 = make_phantom(np.random.default_rng(123))
    b = make_phantom(np.random.default_rng(124))
    assert np.array_equal(a1.world_to_template, a2.world_to_template)
    assert not np.allclose(a1.world_to_template, b.world_to_template)
    spec = small("T2_2D")
    r1 = render_series(spec, a1, np.random.default_rng(0))
    r2 = render_series(spec, a2, np.random.default_rng(0))
    r3 = render_series(spec, b, np.random.default_rng(0))
    assert np.array_equal(r1.frames, r2.frames) and r1.positions == r2.positions
    assert not np.allclose(r1.frames, r3.frames)


def test_default_subjects_are_young_and_unchanged_by_the_age_option():
    young = make_phantom(np.random.default_rng(5))
    same = make_phantom(np.random.default_rng(5), aged_share=0.0)
    assert "aged" not in young.seed_info
    assert np.array_equal(young.displacement, same.displacement)
    assert [o.tissue for o in young.overlays] == [o.tissue for o in same.overlays]


def test_aged_subjects_have_widened_sulci_and_leukoaraiosis(no_site_effects):
    old = next(ph for ph in (make_phantom(np.random.default_rng(s), aged_share=1.0) for s in range(20))
               if ph.seed_info["aged"]["wmh"] > 0)
    assert old.seed_info["atrophy_mm"] >= 2.5  # the ventricles widen more than a young adult's can
    (sulci,) = [o for o in old.overlays if o.tissue == "CSF"]
    (wmh,) = [o for o in old.overlays if o.tissue == "MS" and o.fraction.shape == sulci.fraction.shape]
    # CSF only where there was cortex, hyperintensity only in white matter and never above the drawn peak
    assert (sulci.fraction <= old.fractions["GM"][sulci.index] + 1e-6).all() and sulci.fraction.max() > 0.1
    assert (wmh.fraction <= old.fractions["WM"][wmh.index] + 1e-6).all()
    assert 0.1 < wmh.fraction.max() <= old.seed_info["aged"]["wmh"] + 0.005  # seed_info rounds to 0.01

    def frames(overlays: list, spec: SeriesSpec) -> np.ndarray:
        ph = dataclasses.replace(old, overlays=overlays, _cache={})
        return render_series(spec, ph, np.random.default_rng(0)).frames

    def brightness(overlays: list, spec: SeriesSpec) -> float:
        return float(frames(overlays, spec).mean())

    t2 = small("T2_2D", repetition_time=4500, echo_time=95)
    flair = small("FLAIR_2D", repetition_time=9000, inversion_time=2500, echo_time=100)
    assert brightness([sulci], t2) > 1.02 * brightness([], t2)  # cortex turned to CSF: bright on T2 …
    assert brightness([sulci], flair) < 0.98 * brightness([], flair)  # … and dark on FLAIR
    # the caps are a small part of the head: some of its pixels, clearly brighter
    bare, capped = frames([], flair), frames([wmh], flair)
    head = bare > 0.2 * bare.max()
    assert (capped[head] > 1.1 * bare[head]).mean() > 0.005


def test_pixels_do_not_depend_on_naming(phantom):
    spec = small("T1_2D_PRE")
    named = dataclasses.replace(spec, series_description="t1_se_tra", protocol_name="T1 SE", sequence_name="*se2d1")
    a = render_series(spec, phantom, np.random.default_rng(11))
    b = render_series(named, phantom, np.random.default_rng(11))
    assert np.array_equal(a.frames, b.frames)


def test_bad_spec_is_named():
    ph = make_phantom(np.random.default_rng(0))
    with pytest.raises(ValueError, match="NOT_A_CODE"):
        render_series(small("NOT_A_CODE"), ph, np.random.default_rng(0))
    with pytest.raises(ValueError, match="bad matrix"):
        render_series(small("T2_2D", rows=0), ph, np.random.default_rng(0))


def test_motion_ghosts_spread_signal_along_phase_encode(phantom, no_site_effects, monkeypatch):
    from SeriesClassifierLib.synth import render

    spec = small("T2_2D", rows=96, columns=96, pixel_spacing=(2.4, 2.4))
    monkeypatch.setattr(render, "MOTION_RATE", 0.0)
    still = render_series(spec, phantom, np.random.default_rng(12)).frames
    monkeypatch.setattr(render, "MOTION_RATE", 1.0)
    moved = render_series(spec, phantom, np.random.default_rng(12)).frames
    # the ghosts put signal into the background rows above and below the head (phase-encode = row index)
    band = np.r_[0:6, 90:96]

    def ghost_ratio(frames):  # background band relative to the brain (the intensity scale is random)
        return frames[:, band, 30:66].mean() / frames[:, 40:56, 40:56].mean()

    assert ghost_ratio(moved) > 1.3 * ghost_ratio(still)


def test_epi_distortion_field_near_air(phantom):
    from SeriesClassifierLib.synth import render

    ctx = render._Context(small("DWI"), phantom, np.random.default_rng(0), [], 3.0, True)
    ppm = render.offresonance_ppm(ctx)
    brain = phantom.template.brain > 0.5
    # air/tissue interfaces (sinuses, mastoids) leave a few tenths of a ppm after shimming ...
    assert np.percentile(np.abs(ppm[brain]), 99.5) > 0.15
    # ... which an EPI readout turns into millimetre shifts along phase encode, mostly near the skull base
    shift = render.epi_shift_map(ctx)
    assert np.percentile(np.abs(shift[brain]), 99.5) > 1.0
    assert np.median(np.abs(shift[brain])) < 1.0


# ---------------------------------------------------------------- no shortcuts keyed to the sequence


def _has_bars(frames: np.ndarray) -> bool:
    """Zero rows (or columns) at two opposite edges of every frame: padding bars."""
    rows = (frames[:, :2] == 0).all() and (frames[:, -2:] == 0).all()
    cols = (frames[:, :, :2] == 0).all() and (frames[:, :, -2:] == 0).all()
    return bool(rows or cols)


@pytest.mark.parametrize("code", ["T1_3D_PRE", "DWI", "FMRI_BOLD", "T2_2D"])
def test_padding_bars_on_every_kind_of_series(code, phantom, monkeypatch):
    from SeriesClassifierLib.synth import render

    monkeypatch.setattr(render, "BACKGROUND_RATE", 0.0)
    kw = {"acquisition": "3D"} if code.endswith("3D_PRE") else {}
    seen = [_has_bars(render_series(small(code, n_slices=4, **kw), phantom, np.random.default_rng(s)).frames)
            for s in range(16)]
    # BAR_RATE of the series, whatever the sequence, 2-D or 3-D, EPI or not
    assert 1 <= sum(seen) <= 13


def test_adc_background_is_not_systematically_zero(phantom):
    corners = []
    for s in range(8):
        f = render_series(small("ADC", n_slices=4), phantom, np.random.default_rng(s)).frames
        corners.append(float(np.abs(f[:, 2:8, 2:8]).mean()))
    assert any(c == 0 for c in corners) and any(c > 0 for c in corners)


def test_snr_does_not_depend_on_the_sequence(phantom):
    from SeriesClassifierLib.synth import render

    values = set()
    for code, base in (("T2_2D", 6.0), ("DWI", 4.5), ("PERFUSION_ASL", 0.6), ("T1_3D_PRE", 9.0)):
        ctx = render._Context(small(code), phantom, np.random.default_rng(3), [], 3.0)
        values.add(round(render.snr_for(ctx, base), 6))
    assert len(values) == 1


def test_site_effects_draw_the_same_whatever_the_sequence(phantom):
    """The decision to add bars / suppress the background uses the same draws for every kind of image."""
    from SeriesClassifierLib.synth import render

    frames = np.ones((3, 32, 32), np.float32)
    out = []
    for code in ("T1_2D_PRE", "ADC", "DWI"):
        ctx = render._Context(small(code), phantom, np.random.default_rng(5), [], 3.0)
        out.append(render.site_effects(ctx, frames.copy()))
    assert all(np.array_equal(out[0], o) for o in out[1:])


def test_phase_contrast_velocity_is_signed_and_flows_in_arteries(phantom, no_site_effects):
    """A cine PC velocity series: one volume per cardiac phase, signed, arteries far from zero (the systolic
    phase faster than the diastolic), still tissue near zero; its magnitude is unsigned with bright inflow."""
    pc = {"other_kind": "PC", "venc": 150, "venc_dir": "in", "rr_interval": 900.0}
    kw = dict(n_temporal=8, slice_thickness=3.0, slice_spacing=3.0, n_slices=20, rows=96, columns=96,
              pixel_spacing=(2.0, 2.0))
    phase = small("OTHER", extra={**pc, "pc_part": "phase"}, **kw)
    rs = render_series(phase, phantom, np.random.default_rng(2))
    assert rs.signed and rs.frames.min() < -1000 and rs.temporal_indices[-1] == 7
    n = phase.n_slices
    maps = tissue_maps(rs, phantom, ["ARTERY", "WM"], n_planes=n)
    artery, wm = maps["ARTERY"] > 0.6, maps["WM"] > 0.9
    speed = [float(rs.frames[k * n:(k + 1) * n][artery].mean()) for k in range(8)]
    still = float(np.abs(rs.frames[:n][wm]).mean())
    assert max(speed) > 4 * still and max(speed) > 1.5 * min(speed)
    mag = render_series(small("OTHER", extra={**pc, "pc_part": "magnitude"}, **kw), phantom,
                        np.random.default_rng(2))
    assert not mag.signed and mag.frames.min() >= 0
    assert mag.frames[:n][artery].mean() > 1.3 * mag.frames[:n][wm].mean()


def test_array_coil_darkens_the_centre_of_a_head_and_changes_nothing_without_it(no_site_effects):
    from scipy import ndimage

    from SeriesClassifierLib.synth.body import BodyPhantoms
    from SeriesClassifierLib.synth.cnn_corpus import with_params

    spec = small("T2_2D", repetition_time=4000, echo_time=90)

    def render(make=make_phantom, **params):
        ph = with_params(make, **params)(np.random.default_rng(2))
        return render_series(spec, ph, np.random.default_rng(5)), ph

    (plain, ph), (none, _), (coil, _) = render(), render(array_coil=0.0), render(array_coil=1.0)
    assert np.array_equal(plain.frames, none.frames)  # no share, not even the random stream moves
    maps = tissue_maps(plain, ph, ["WM", "GM"], n_planes=spec.n_slices)
    brain = (maps["WM"] + maps["GM"]) > 0.9
    depth = np.stack([ndimage.distance_transform_edt(ndimage.binary_fill_holes(b)) for b in brain])
    gain = coil.frames.astype(float) / np.maximum(plain.frames.astype(float), 1.0)
    deep = brain & (depth > np.percentile(depth[brain], 80))
    shallow = brain & (depth <= np.percentile(depth[brain], 20))
    assert gain[deep].mean() < 0.85 * gain[shallow].mean()  # the surface loops see the cortex, not the centre
    # the coil is a head coil: another part keeps its pixels
    knee = BodyPhantoms(("knee",))
    assert np.array_equal(render(knee)[0].frames, render(knee, array_coil=1.0)[0].frames)
