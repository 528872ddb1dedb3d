"""Vendor- and generation-true headers (synth/habits.py) and the fast header corpus (synth/header_corpus.py).

The habits asserted here are those real scanner files show (the real development set, VENDOR_NAMING.md,
dcm2niix's vendor notes): GE's private b-value on every image, RM localisers and EP\\GR BOLD; Philips b = 0
on classic images, empty ScanningSequence on enhanced objects; Siemens ASL without an inversion time; field
strength moving TR/TE/TI the way physics does.
"""

from __future__ import annotations

import json
import re

import numpy as np
import pydicom
import pytest
from synth_fakes import fake_phantom, fake_render

from SeriesClassifierLib.commands.synth import generate_header_rows
from SeriesClassifierLib.synth.generate import generate_studies, read_label_rows
from SeriesClassifierLib.synth.header_corpus import header_render, make_header_phantom
from SeriesClassifierLib.synth.profiles import HOLDOUT_PROFILES, PROFILES, TRAINING_PROFILES
from SeriesClassifierLib.synth.protocols import plan_study
from SeriesClassifierLib.training.header_rows import read_study
from SeriesClassifierLib.training.site_training import read_base_rows
from SeriesClassifierLib.vocabulary import load_vocabulary

VOCAB = load_vocabulary()


def _specs(profile: str, n: int = 40, kind: str | None = None, seed: int = 3):
    p = PROFILES[profile]
    return [s for i in range(n) for s in plan_study(p, np.random.default_rng([seed, i]), kind)]


def _tech(specs, tech):
    return [s for s in specs if s.extra["technique"] == tech]


@pytest.fixture(scope="module")
def ge_philips_rows():
    names = ["ge_signa_premier_3t", "philips_achieva_15t", "philips_ingenia_3t", "siemens_skyra_3t",
             "toshiba_titan_3t"]
    return generate_header_rows(8, seed=21, profiles=names)


# --- habits in the plans ------------------------------------------------------------------------------------------


def test_ge_localizers_are_rm_and_bold_is_ep_gr_single_shot():
    specs = _specs("ge_signa_premier_3t", kind="research")
    scouts = _tech(specs, "scout")
    assert scouts and all(s.scanning_sequence == ("RM",) for s in scouts)
    bold = _tech(specs, "bold")
    assert bold and all(s.scanning_sequence == ("EP", "GR") and "EPI_GEMS" in s.scan_options for s in bold)
    assert sum(s.sequence_variant == ("SS",) for s in bold) > len(bold) / 2
    assert all(s.echo_train_length == 1 for s in bold)  # GE writes 1, not the EPI factor
    dwi = [s for s in specs if s.sequence == "DWI"]
    assert dwi and all(s.scanning_sequence == ("EP", "SE") for s in dwi)


def test_ge_genesis_era_flair_is_rm_without_ti():
    flair = _tech(_specs("ge_signa_excite_15t_lx", 80), "flair_2d")
    rm = [s for s in flair if s.scanning_sequence == ("RM",)]
    assert rm and all(s.inversion_time is None and s.sequence_name == "flair" for s in rm)


def test_siemens_asl_has_no_inversion_time_and_3d_asl_is_grase():
    specs = _specs("siemens_skyra_3t", 80, kind="tumour") + _specs("anonymised_research", 60)
    asl = [s for s in specs if s.sequence == "PERFUSION_ASL"]
    assert asl and all(s.inversion_time is None for s in asl)
    assert all(s.scanning_sequence == ("EP",) for s in asl)
    grase = [s for s in asl if s.extra["technique"] in ("asl_3d", "asl_3d_m0")]
    assert grase and all("tgse3d" in s.sequence_name and 28 <= s.echo_time <= 40 for s in grase)
    assert all(s.flip_angle >= 120 for s in grase if s.extra["technique"] == "asl_3d")
    assert any(s.extra["technique"] in ("asl_m0", "asl_3d_m0") for s in asl)  # separate M0 series exist


def test_spin_echo_flip_angles_follow_vendor_conventions():
    siemens = _tech(_specs("siemens_skyra_3t", 60), "t2_tse")
    philips = _tech(_specs("philips_achieva_15t", 60), "t2_tse")
    assert siemens and all(s.flip_angle >= 120 for s in siemens)  # Siemens writes the refocusing angle
    assert philips and all(s.flip_angle == 90 for s in philips)  # Philips the excitation


def test_pd_is_not_one_fixed_header():
    pd = [s for p in TRAINING_PROFILES for s in _tech(_specs(p, 40), "pd_tse")]
    assert len({s.scanning_sequence + s.sequence_variant for s in pd}) >= 4
    assert len({s.flip_angle for s in pd}) >= 3
    assert any(s.extra.get("n_echoes", 1) == 2 for s in pd)  # PD + T2 dual echo in one series


def test_canon_diffusion_habits():
    dwi = [s for s in _specs("canon_vantage_15t", 60) if s.sequence == "DWI"]
    assert dwi and all(s.scanning_sequence == ("SE", "EP") and s.sequence_name.startswith("SEEPI2D") for s in dwi)
    assert sum(s.sequence_variant == ("NONE",) for s in dwi) > len(dwi) / 2


def test_field_maps_of_every_kind_and_vendor():
    seen = {}
    for p in TRAINING_PROFILES:
        for s in _specs(p, 25, kind="research"):
            if s.sequence == "FIELDMAP":
                seen.setdefault(PROFILES[p].vendor, set()).add(s.extra["technique"])
    assert {"fmap_mag", "fmap_phase", "fmap_sepi"} <= seen["SIEMENS"]
    assert "fmap_b0" in seen["GE"] and "fmap_b0" in seen["PHILIPS"]
    assert all(v for v in seen.values())


def test_timing_follows_field_strength():
    def mean(profile, tech, attr, kind=None):
        values = [getattr(s, attr) for s in _tech(_specs(profile, 80, kind), tech) if getattr(s, attr)]
        assert values, (profile, tech)
        return float(np.mean(values))

    # FLAIR inversion time grows with B0 (tissue and CSF T1 longer at 3 T, shorter at 0.3 T)
    assert mean("siemens_skyra_3t", "flair_2d", "inversion_time") > mean("siemens_aera_15t", "flair_2d",
                                                                       "inversion_time")
    assert mean("siemens_aera_15t", "flair_2d", "inversion_time") > mean("hitachi_airis_03t", "flair_2d",
                                                                       "inversion_time")
    # T2* shortens with B0: BOLD and GRE T2* use shorter TEs at 3 T
    assert mean("siemens_aera_15t", "bold", "echo_time", "research") > mean("siemens_skyra_3t", "bold", "echo_time",
                                                                           "research") + 8
    assert mean("siemens_aera_15t", "t2star", "echo_time") > mean("siemens_skyra_3t", "t2star", "echo_time")
    # T1 SE uses a shorter TR at low field
    assert mean("hitachi_airis_03t", "t1_se", "repetition_time", "iac") < mean("siemens_skyra_3t", "t1_se",
                                                                              "repetition_time", "iac")


def test_low_field_has_no_epi_perfusion_fmri_or_swi():
    specs = _specs("hitachi_airis_03t", 80)
    codes = {s.sequence for s in specs}
    assert not codes & {"FMRI_BOLD", "PERFUSION_DSC", "PERFUSION_ASL", "SWI", "SWI_MAG", "SWI_PHASE"}


def test_every_vendor_profile_uses_only_vocabulary_codes():
    for p in list(TRAINING_PROFILES) + list(HOLDOUT_PROFILES):
        for s in _specs(p, 8):
            VOCAB.check_sequence(s.sequence)


def test_siemens_phase_contrast_names_its_venc_and_its_velocity_is_signed_other():
    specs = _specs("siemens_skyra_3t", 40, kind="mra")
    pc = [s for s in specs if s.extra["technique"].startswith("other_pc")]
    assert pc and all(s.sequence == "OTHER" for s in pc)  # no class of its own
    rng = np.random.default_rng(0)
    velocity = _tech(specs, "other_pc_phase")
    assert velocity and {s.acquisition for s in velocity} == {"2D", "3D"}
    for s in velocity:
        name = re.fullmatch(r"\*?fl([23])d1_v(\d+)(in|rl|ap|fh)", s.sequence_name)  # *fl2d1_v120in, *fl3d1_v15rl
        assert name and int(name[2]) == s.extra["venc"] and name[1] == s.acquisition[0]
        assert s.image_type[:3] == ("DERIVED", "PRIMARY", "P") and s.derived
        assert ("RETRO" in s.image_type) == (s.n_temporal > 1) and ("ND" in s.image_type) == (s.n_temporal == 1)
        assert header_render(s, make_header_phantom(rng), rng).signed
    for s in _tech(specs, "other_pc_mag"):
        assert s.image_type[0] == "ORIGINAL" and s.image_type[2] in ("M", "MAG")
        assert not header_render(s, make_header_phantom(rng), rng).signed
    cine = [s for s in velocity if s.n_temporal > 1]
    assert cine and all(15 <= s.n_temporal <= 40 and 20 <= s.repetition_time <= 60 and 10 <= s.flip_angle <= 30
                        for s in cine)
    assert all(s.extra["venc"] <= 20 for s in cine if s.extra["pc_kind"] == "csf")


def test_phase_contrast_of_other_vendors_in_their_words():
    philips = [s for s in _specs("philips_ingenia_3t", 40, kind="mra") if s.extra["technique"] == "other_pc_phase"]
    assert philips and all(s.image_type[-2:] == ("P", "PCA") and s.sequence == "OTHER" for s in philips)
    ge = [s for s in _specs("ge_signa_premier_3t", 40, kind="mra") if s.extra["technique"].startswith("other_pc")]
    assert ge and all("pc" in s.extra["ge_psd"] for s in ge)
    assert {s.image_type for s in ge if s.extra["technique"] == "other_pc_phase"} == {("ORIGINAL", "PRIMARY", "PHASE")}
    assert all(s.extra["ge_psd"] and {"PPG", "CG"} & set(s.scan_options) for s in ge if s.n_temporal > 1)


def test_phase_contrast_cine_files_carry_trigger_times_and_signed_velocity(tmp_path):
    generate_studies(tmp_path, 3, seed=3, profiles=["siemens_skyra_3t"], make_phantom=make_header_phantom,
                     render=header_render, study_type="mra")
    cines = 0
    for folder in sorted({p.parent for p in tmp_path.rglob("IM*.dcm")}):
        files = [pydicom.dcmread(p, stop_before_pixels=True) for p in sorted(folder.glob("IM*.dcm"))]
        if not re.search(r"fl[23]d1_v", str(files[0].get("SequenceName", ""))) or files[0].ImageType[2] != "P":
            continue
        # the velocity is signed: stored signed, or unsigned with a negative intercept as syngo writes phase
        assert files[0].PixelRepresentation == 1 or float(files[0].RescaleIntercept) < 0
        if "RETRO" in files[0].ImageType:
            assert len({float(ds.TriggerTime) for ds in files}) == int(files[0].CardiacNumberOfImages) >= 15
            cines += 1
    assert cines


def test_two_d_multi_echo_gre_is_a_share_of_the_multi_echo_series_with_t2star_mapping_timing():
    specs = [s for p in TRAINING_PROFILES for s in _specs(p, 30, kind="research")]
    multi = [s for s in specs if s.extra["technique"] in ("t2star_me", "t2star_me2d")]
    two_d = _tech(specs, "t2star_me2d")
    assert 0.15 < len(two_d) / len(multi) < 0.55
    rng = np.random.default_rng(0)
    for s in two_d:
        tes = s.extra["echo_times"]
        assert s.sequence == "T2STAR_GRE" and s.acquisition == "2D" and 6 <= len(tes) == s.extra["n_echoes"] <= 16
        assert 1.0 <= tes[0] <= 5.0 and all(0.7 <= b - a <= 5.0 for a, b in zip(tes, tes[1:]))
        assert 100 <= s.repetition_time <= 1500 and tes[-1] < s.repetition_time and 20 <= s.flip_angle <= 60
        assert max(header_render(s, make_header_phantom(rng), rng).echo_numbers) == len(tes)
        if s.vendor == "SIEMENS":
            assert re.fullmatch(rf"\*?fl2d{len(tes)}r?", s.sequence_name)  # *fl2d12: twelve echoes
    assert all(s.acquisition == "3D" and s.repetition_time <= 55 for s in _tech(specs, "t2star_me"))


def test_philips_enhanced_two_d_multi_echo_reads_as_the_real_one():
    """The real file the forest misread: enhanced MR, FFE, 2-D, ORIGINAL\\PRIMARY\\T1\\NONE, a dozen echoes."""
    series, labels = generate_header_rows(4, seed=2, profiles=["philips_ingenia_3t"], study_type="research")
    two_d = [s for s in series if labels[s.series_uid]["sequence"] == "T2STAR_GRE"
             and s.header.get("MRAcquisitionType") == "2D" and len(s.header.get("EchoTimes") or []) >= 6]
    assert two_d
    for s in two_d:
        assert s.header["Enhanced"] and s.header["ImageType"] == ["ORIGINAL", "PRIMARY", "T1", "NONE"]
        assert s.header["PhilipsScanningTechnique"] in ("FFE", "T1FFE")


# --- habits in the files and in what the engine reads -------------------------------------------------------------


def test_ge_non_diffusion_series_carry_private_b_zero(ge_philips_rows):
    series, labels = ge_philips_rows
    ge = [s for s in series if labels[s.series_uid]["vendor"] == "GE"]
    plain = [s for s in ge if labels[s.series_uid]["sequence"] not in ("DWI", "ADC", "DIFFUSION_DERIVED")]
    assert plain
    with_b0 = [s for s in plain if s.header.get("BValues") == [0.0]]
    assert len(with_b0) >= 0.85 * len(plain)


def test_ge_private_b_value_is_in_the_file(tmp_path):
    generate_studies(tmp_path, 1, seed=4, profiles=["ge_signa_premier_3t"], make_phantom=make_header_phantom,
                     render=header_render, study_type="routine")
    found = 0
    for path in sorted(tmp_path.rglob("IM00001.dcm")):
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        if "DIFFUSION" in str(ds.get("SeriesDescription", "")).upper() or ds.get("ScanningSequence") == ["EP", "SE"]:
            continue
        if (0x0043, 0x1039) in ds:
            assert int(ds[0x0043, 0x1039].value[0]) % 1000000000 == 0
            found += 1
    assert found >= 3


def test_philips_classic_b_zero_everywhere_and_enhanced_without_scanning_sequence(ge_philips_rows):
    series, labels = ge_philips_rows
    philips = [s for s in series if labels[s.series_uid]["vendor"] == "PHILIPS"]
    classic = [s for s in philips if not s.header.get("Enhanced")
               and labels[s.series_uid]["profile"] == "philips_achieva_15t"]
    assert classic and sum(s.header.get("BValues") == [0.0] for s in classic if labels[s.series_uid]["sequence"]
                           not in ("DWI", "ADC", "DIFFUSION_DERIVED")) >= 0.7 * len(classic) - 4
    enhanced = [s for s in philips if s.header.get("Enhanced") and s.header["ImageType"][0] == "ORIGINAL"]
    assert enhanced
    for s in enhanced:
        assert s.header["ScanningSequence"] == [] and s.header["SequenceVariant"] == []
        assert s.header["PulseSequenceName"] and s.header["PhilipsScanningTechnique"]


def test_header_corpus_reads_like_a_rendered_corpus(tmp_path):
    """The fast rows carry the same acquisition header values as files written with pixels."""
    names = ["toshiba_titan_3t", "ge_signa_architect_3t"]
    fast, fast_labels = generate_header_rows(2, seed=8, profiles=names)
    generate_studies(tmp_path, 2, seed=8, profiles=names, make_phantom=fake_phantom, render=fake_render)
    slow = []
    rows = read_label_rows(tmp_path / "labels.csv")
    for study in sorted(tmp_path.glob("study_*")):
        slow += read_study(study, rows)[0]
    assert {s.series_uid for s in fast} == {s.series_uid for s in slow} == set(fast_labels)
    keys = ("ScanningSequence", "SequenceVariant", "ScanOptions", "SequenceName", "RepetitionTime", "EchoTime",
            "InversionTime", "FlipAngle", "EchoTrainLength", "ImageType", "BValues", "Rows", "Columns",
            "GEPulseSequenceName", "Manufacturer", "MRAcquisitionType", "SeriesDescription", "EchoTimes")
    by_uid = {s.series_uid: s for s in slow}
    for s in fast:
        other = by_uid[s.series_uid]
        for key in keys:
            assert s.header.get(key) == other.header.get(key), (key, fast_labels[s.series_uid]["sequence"])
        if fast_labels[s.series_uid]["sequence"] != "MRA_MIP":  # the writer tests' stand-in renders 3 MIP angles
            assert s.n_images == other.n_images


def test_header_corpus_is_deterministic_and_in_base_rows_format(tmp_path):
    a, b = tmp_path / "a.jsonl.gz", tmp_path / "b.jsonl.gz"
    generate_header_rows(3, seed=5, profiles=["uih_umr780_3t", "philips_elition_3t_r11"], out=a)
    generate_header_rows(3, seed=5, profiles=["uih_umr780_3t", "philips_elition_3t_r11"], out=b)
    series, labels = read_base_rows(a)
    assert series and len(labels) == len(series)
    assert [json.dumps(s.to_dict(), sort_keys=True) for s in series] == [
        json.dumps(s.to_dict(), sort_keys=True) for s in read_base_rows(b)[0]]
    for s in series:
        assert s.files == [] and not s.skipped
        assert set(labels[s.series_uid]) >= {"sequence", "orientation", "vendor", "profile", "field_strength"}
        assert "StudyContext" in s.header
