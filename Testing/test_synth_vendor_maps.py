"""Vendor-true headers of two kinds of series the forest misread on real data (synth/habits.py, writer.py).

GE and Philips B0 field maps (the scanner's map in Hz, and its magnitude) and the maps syngo XA computes from a
diffusion scan (ADC, trace, FA, exponential ADC) in its enhanced objects. The facts asserted are those
docs/PROFILES.md lists with their sources (dcm2niix's source, notes and issue threads, the development Ingenia
B0 file): Philips' RM/SS and B0 MAP image types, the map and its magnitude in one series, GE's B0map/B0rf/3db0map
psds with two volumes split by (0021,104F), XA's DIFFUSION\\ADC-style image types and per-frame diffusion habits.
"""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path

import numpy as np
import pydicom
import pytest

from SeriesClassifierLib.commands.synth import generate_header_rows
from SeriesClassifierLib.synth.generate import generate_studies, read_label_rows
from SeriesClassifierLib.synth.header_corpus import header_render, make_header_phantom
from SeriesClassifierLib.synth.profiles import PROFILES
from SeriesClassifierLib.synth.protocols import plan_study


def _specs(profile: str, n: int, kind: str | None = None, seed: int = 3):
    p = PROFILES[profile]
    return [s for i in range(n) for s in plan_study(p, np.random.default_rng([seed, i]), kind)]


def _tech(specs, tech):
    return [s for s in specs if s.extra["technique"] == tech]


def _series(root: Path, profile: str, n: int, kind: str, seed: int = 3, files_of: str = "FIELDMAP"):
    """(label sequence, headers) of the series of ``n`` header-only studies: every file's header for the series
    labelled ``files_of``, the first file's for the others."""
    generate_studies(root, n, seed=seed, profiles=[profile], make_phantom=make_header_phantom, render=header_render,
                     study_type=kind)
    labels = {row.series_uid: row.sequence for row in read_label_rows(root / "labels.csv")}
    out = []
    for folder in sorted({p.parent for p in root.rglob("IM00001.dcm")}):
        paths = sorted(folder.glob("IM*.dcm"))
        first = pydicom.dcmread(paths[0], stop_before_pixels=True)
        sequence = labels[first.SeriesInstanceUID]
        rest = [pydicom.dcmread(p, stop_before_pixels=True) for p in paths[1:]] if sequence == files_of else []
        out.append((sequence, [first, *rest]))
    return out


def _words(image_type) -> str:
    return "\\".join(str(v) for v in image_type)


def _private(ds: pydicom.Dataset, tag: tuple[int, int]):
    return ds[tag].value if tag in ds else None


# --- Philips B0 maps ----------------------------------------------------------------------------------------------


def test_philips_b0_maps_are_rm_ss_and_typed_b0_map_per_software_generation():
    for profile in ("philips_achieva_15t", "philips_ingenia_3t", "philips_elition_3t_r11"):
        b0 = _tech(_specs(profile, 30, "research"), "fmap_b0")
        assert b0, profile
        for s in b0:
            # what dcm2niix's BIDS guess requires of a Philips direct field map, and its B0 + MAP image type rule
            assert s.scanning_sequence == ("RM",) and s.sequence_variant == ("SS",)
            assert s.image_type[:2] == ("ORIGINAL", "PRIMARY") and s.image_type[3] == "B0" and not s.derived
            assert s.extra["hz_unsigned"] and s.extra["hz_rescale_type"] == "Hz"
        third = Counter(s.image_type[2] for s in b0)
        if PROFILES[profile].generation == "R11":
            assert third["B0"] > third["B0 MAP"]  # R11 writes B0\B0, R5 B0 MAP\B0 (dcm2niix issue 455)
        else:
            assert set(third) == {"B0 MAP"}
        assert any(s.extra["b0_with_magnitude"] for s in b0) and len({s.image_type[4] for s in b0}) >= 1


def test_philips_phase_difference_is_a_phase_map_not_a_b0_map():
    phase = [s for p in ("philips_achieva_15t", "philips_intera_15t_r2") for s in
             _tech(_specs(p, 40, "research"), "fmap_phase")]
    assert phase and all(s.image_type[2:4] == ("PHASE MAP", "P") for s in phase)


def test_philips_classic_b0_map_holds_the_hz_map_and_its_magnitude(tmp_path):
    found = 0
    for sequence, files in _series(tmp_path, "philips_achieva_15t", 8, "research"):
        if sequence != "FIELDMAP" or files[0].ScanningSequence != "RM":
            continue
        assert files[0].SequenceVariant == "SS"
        hz = [ds for ds in files if "B0" in _words(ds.ImageType) and "MAP" in _words(ds.ImageType)]
        magnitude = [ds for ds in files if list(ds.ImageType) == ["ORIGINAL", "PRIMARY", "M_FFE", "M", "FFE"]]
        assert hz and len(hz) + len(magnitude) == len(files)
        assert all(ds.RescaleType == "Hz" and ds.PixelRepresentation == 0 and float(ds.RescaleIntercept) < 0
                   for ds in hz)  # unsigned, a negative intercept gives the sign back
        if magnitude:
            assert len(magnitude) == len(hz) and int(files[0].ImagesInAcquisition) == len(files)
            found += 1
    assert found


def test_philips_enhanced_b0_map_types_its_frames_like_the_ingenia_file(tmp_path):
    mixed = 0
    for sequence, files in _series(tmp_path, "philips_ingenia_3t", 10, "research"):
        ds = files[0]
        if sequence != "FIELDMAP" or "PerFrameFunctionalGroupsSequence" not in ds or ds.ImageType[3] not in (
                "MIXED", "B0"):
            continue
        assert "ScanningSequence" not in ds and ds.PulseSequenceName in ("FFE", "T1FFE")
        assert ds.AcquisitionContrast == ds.ImageType[2] == "T1"
        frames = ds.PerFrameFunctionalGroupsSequence
        shared = ds.SharedFunctionalGroupsSequence[0]
        kinds = Counter()
        for f in frames:
            ft = (f.get("MRImageFrameTypeSequence") or shared.MRImageFrameTypeSequence)[0]
            kinds[(ft.FrameType[3], ft.ComplexImageComponent)] += 1
            assert f.FrameContentSequence[0].TemporalPositionIndex == 1  # map and magnitude are not time points
        if ds.ImageType[3] == "MIXED":
            assert ds.ComplexImageComponent == "MIXED" and "NumberOfTemporalPositions" not in ds
            assert set(kinds) == {("B0", "REAL"), ("M", "MAGNITUDE")} and len(set(kinds.values())) == 1
            assert "Private ImageTypeMR" in [i.DimensionDescriptionLabel for i in ds.DimensionIndexSequence]
            mixed += 1
        else:
            assert set(kinds) == {("B0", "REAL")}
    assert mixed


# --- GE B0 maps ---------------------------------------------------------------------------------------------------


def test_ge_b0_map_is_one_series_of_two_volumes_with_its_psd_names(tmp_path):
    found = Counter()
    for sequence, files in _series(tmp_path, "ge_signa_premier_3t", 12, "research"):
        ds = files[0]
        internal = _private(ds, (0x0019, 0x109E))
        if sequence != "FIELDMAP" or internal is None:
            continue
        psd = _private(ds, (0x0019, 0x109C))
        three_d = ds.MRAcquisitionType == "3D"
        assert (psd, internal) == ("3db0map", "EFGRE3D") if three_d else (psd in ("B0map", "B0rf")
                                                                          and internal == "B0map")
        locations = int(_private(ds, (0x0021, 0x104F)))
        assert int(ds.ImagesInAcquisition) == len(files) == 2 * locations  # the map's volume, then the magnitude
        assert len({_words(f.ImageType) for f in files}) == 1  # nothing but the image number splits them
        delta_te_ms = -1000.0 / (2 * math.pi * float(_private(ds, (0x0019, 0x10E2))))
        assert 2.1 < delta_te_ms < 2.5  # 3 T: fat and water in phase again
        found["3D" if three_d else "2D"] += 1
    assert found["2D"] and found["3D"]


def test_ge_b0_map_brings_no_separate_magnitude_series():
    specs = _specs("ge_signa_architect_3t", 40, "research")
    assert _tech(specs, "fmap_b0") and all(s.extra["b0_with_magnitude"] for s in _tech(specs, "fmap_b0"))
    # every GE magnitude series is the first half of a dual-echo magnitude + phase-difference pair
    assert len(_tech(specs, "fmap_mag")) == len(_tech(specs, "fmap_phase"))
    rng = np.random.default_rng(0)
    for s in _tech(specs, "fmap_b0"):
        rendered = header_render(s, make_header_phantom(rng), rng)
        assert rendered.signed and len(rendered.frames) == 2 * len(set(rendered.positions))


# --- Siemens XA enhanced diffusion maps ---------------------------------------------------------------------------

_XA_WORDS = {"ADC": {"ADC"}, "DIFFUSION_DERIVED": {"FA", "EXP"}, "DWI": {"TRACEW"}}


@pytest.fixture(scope="module")
def xa_diffusion(tmp_path_factory):
    """(label, header) of the enhanced diffusion objects of a few XA research and stroke studies."""
    out = []
    for kind in ("research", "stroke"):
        for sequence, files in _series(tmp_path_factory.mktemp(kind), "siemens_xa_vida_3t", 5, kind, seed=5,
                                       files_of=""):
            if sequence in _XA_WORDS and "PerFrameFunctionalGroupsSequence" in files[0]:
                out.append((sequence, files[0]))
    return out


@pytest.fixture(scope="module")
def xa_maps(xa_diffusion):
    return [(sequence, ds) for sequence, ds in xa_diffusion if ds.ImageType[0] == "DERIVED"]


def test_xa_enhanced_diffusion_maps_carry_syngo_image_types(xa_maps):
    assert {sequence for sequence, _ in xa_maps} == set(_XA_WORDS)
    for sequence, ds in xa_maps:
        assert list(ds.ImageType[:3]) == ["DERIVED", "PRIMARY", "DIFFUSION"] and len(ds.ImageType) == 4
        assert ds.ImageType[3] in _XA_WORDS[sequence]
        assert ds.AcquisitionContrast == "DIFFUSION" and ds.ComplexImageComponent == "MAGNITUDE"
        text = list(_private(ds, (0x0021, 0x1175)))  # XA30+: the classic words, ND/NORM included
        assert text[:4] == list(ds.ImageType) and len(text) > 4
        assert _private(ds, (0x0021, 0x0011)) == "SIEMENS MR SDI 02"
        shared = ds.SharedFunctionalGroupsSequence[0]
        assert list(shared.MRImageFrameTypeSequence[0].FrameType) == list(ds.ImageType)


def test_xa_enhanced_diffusion_maps_keep_diffusion_and_timing_as_shares(xa_maps):
    maps = [ds for sequence, ds in xa_maps if sequence != "DWI"]
    with_b = [ds for ds in maps if "MRDiffusionSequence" in ds.PerFrameFunctionalGroupsSequence[0]]
    assert 0 < len(with_b) < len(maps)  # a habit, not a rule
    for ds in with_b:
        for f in ds.PerFrameFunctionalGroupsSequence:
            item = f.MRDiffusionSequence[0]
            assert item.DiffusionBValue > 0 and item.DiffusionDirectionality == "ISOTROPIC"
            assert "DiffusionGradientDirectionSequence" not in item  # a b-value, no direction: derived, isotropic
    timed = [ds for _, ds in xa_maps if "MRTimingAndRelatedParametersSequence" in ds.SharedFunctionalGroupsSequence[0]]
    assert 0 < len(timed) < len(xa_maps)
    assert all(ds.PulseSequenceName.startswith("*ep_b") for ds in timed)


def test_xa_maps_read_by_the_engine_as_the_forest_sees_them():
    series, labels = generate_header_rows(4, seed=5, profiles=["siemens_xa_vida_3t"], study_type="stroke")
    adc = [s for s in series if labels[s.series_uid]["sequence"] == "ADC" and s.header["Enhanced"]]
    assert adc and all("ADC" in s.header["ImageType"] and "DIFFUSION" in s.header["ImageType"] for s in adc)
    assert any(s.header["BValues"] and s.header["BValues"][0] > 0 for s in adc)


def test_xa_raw_diffusion_frames_may_be_typed_bmatrix(xa_diffusion):
    typed = Counter()
    for sequence, ds in xa_diffusion:
        if sequence != "DWI" or ds.ImageType[0] != "ORIGINAL":
            continue
        for f in ds.PerFrameFunctionalGroupsSequence:
            item = f.MRDiffusionSequence[0]
            typed[item.DiffusionDirectionality] += 1
            if item.DiffusionDirectionality == "BMATRIX":
                m = item.DiffusionBMatrixSequence[0]
                trace = m.DiffusionBValueXX + m.DiffusionBValueYY + m.DiffusionBValueZZ
                assert abs(trace - item.DiffusionBValue) < 1.0  # b·g·gᵀ of a unit direction
    assert typed["BMATRIX"] and typed["DIRECTIONAL"] and typed["NONE"]


@pytest.mark.parametrize("with_magnitude", [False, True])
def test_rendered_b0_map_carries_its_magnitude_as_a_second_volume_where_the_habit_says(with_magnitude):
    from synth_fakes import small

    from SeriesClassifierLib.synth.anatomy import make_phantom
    from SeriesClassifierLib.synth.render import render_series

    spec = small("FIELDMAP", repetition_time=20, echo_time=4.9, flip_angle=20,
                 extra={"fieldmap_part": "b0map", "echo_time_2": 7.2, "b0_with_magnitude": with_magnitude})
    rs = render_series(spec, make_phantom(np.random.default_rng(4)), np.random.default_rng(1))
    volumes = rs.frames.reshape(-1, spec.n_slices, *rs.frames.shape[1:])
    assert rs.signed and len(volumes) == (2 if with_magnitude else 1)
    assert volumes[0].min() < 0 < volumes[0].max()  # the map in Hz is signed
    if with_magnitude:
        assert volumes[1].min() >= 0 and np.percentile(volumes[1], 99) > 10 * np.abs(volumes[0]).mean()
