"""Vendor-neutral physics features: what a header says, whatever the vendor's words."""

from __future__ import annotations

import math

from SeriesClassifierLib.models.physics import b_values, physics_features, weighting


def _phys(header, n_images=20, n_frames=20):
    return physics_features(header, n_images, n_frames)


def test_a_vendor_b0_placeholder_is_not_diffusion():
    # GE writes (0043,1039) on every image and Philips b=0 on non-diffusion series
    ir_spgr = {"ScanningSequence": ["GR"], "BValues": [0.0], "RepetitionTime": 7.0, "EchoTime": 2.8,
               "InversionTime": 400.0, "MRAcquisitionType": "3D"}
    f = _phys(ir_spgr)
    assert f["phys:diffusion"] == 0.0 and f["phys:epi"] == 0.0 and f["phys:inversion"] == 1.0
    dwi = {"ScanningSequence": ["EP", "SE"], "BValues": [0.0, 1000.0]}
    g = _phys(dwi)
    assert g["phys:diffusion"] == 1.0 and g["phys:n_b"] == 2.0 and g["phys:epi"] == 1.0


def test_no_b_value_tag_is_unknown_not_zero():
    assert math.isnan(_phys({"ScanningSequence": ["SE"]})["phys:diffusion"])


def test_siemens_diffusion_name_gives_the_b_value():
    assert b_values({"SequenceName": "ep_b2000#16"}) == [2000.0]
    assert _phys({"SequenceName": "*ep_b1000t"})["phys:diffusion"] == 1.0


def test_weighting_follows_tr_and_te():
    assert weighting(500, 12) == 0.0  # T1
    assert weighting(2300, 22) == 1.0  # PD
    assert weighting(4000, 100) == 2.0  # T2
    assert math.isnan(weighting(1200, 55)) and math.isnan(weighting(math.nan, 10))
    # not defined for EPI or inversion-prepared series, whose contrast TR/TE alone do not set
    assert math.isnan(_phys({"ScanningSequence": ["SE", "IR"], "RepetitionTime": 9000, "EchoTime": 100,
                             "InversionTime": 2500})["phys:weighting"])


def test_volumes_of_a_mosaic_run_and_of_a_multiframe_series():
    assert _phys({"ImageType": ["ORIGINAL", "PRIMARY", "M", "MOSAIC"]}, n_images=156)["phys:volumes"] == 156
    assert _phys({"NumberOfPositions": 36}, n_images=5460, n_frames=5460)["phys:volumes"] == 5460 / 36


def test_phase_projection_and_derived_from_image_type():
    f = _phys({"ImageType": ["DERIVED", "PRIMARY", "MIP_COR", "SUB"]})
    assert f["phys:projection"] == 1.0 and f["phys:subtraction"] == 1.0 and f["phys:derived"] == 1.0
    g = _phys({"ImageType": ["ORIGINAL", "PRIMARY", "P", "ND"]})
    assert g["phys:phase"] == 1.0 and g["phys:derived"] == 0.0


def test_echoes_are_not_time_points():
    # a PD/T2 dual echo has two images at each of its 35 positions and one volume; a 3-echo BOLD run of 100
    # volumes has 300 images at each position
    dual = {"NumberOfPositions": 35, "EchoTimes": [11.0, 92.0], "ScanningSequence": ["SE"]}
    assert _phys(dual, n_images=70, n_frames=70)["phys:volumes"] == 1.0
    me_bold = {"NumberOfPositions": 30, "EchoTimes": [14.0, 30.0, 46.0], "ScanningSequence": ["EP"]}
    assert _phys(me_bold, n_images=9000, n_frames=9000)["phys:volumes"] == 100.0


def test_field_maps_are_read_in_each_vendors_words():
    assert _phys({"ImageType": ["ORIGINAL", "PRIMARY", "B0 MAP", "B0", "FFE"]})["phys:field_map"] == 1.0  # Philips
    assert _phys({"GEPulseSequenceName": "b0map", "ImageType": ["ORIGINAL", "PRIMARY", "OTHER"]})[
        "phys:field_map"] == 1.0  # GE's psd
    assert _phys({"GEPulseSequenceName": "B0rf", "ImageType": ["ORIGINAL", "PRIMARY", "OTHER"]})[
        "phys:field_map"] == 1.0  # its variant (dcm2niix, GE field maps)
    assert _phys({"SequenceName": "*fm2d2r"})["phys:field_map"] == 1.0  # Siemens gre_field_mapping
    for name in ("*tfl3d1_16ns", "*fl2d1", "ep_b0", "*epfid2d1_64"):
        assert _phys({"SequenceName": name})["phys:field_map"] == 0.0, name
