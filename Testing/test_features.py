from __future__ import annotations

import math

import numpy as np
import pytest

from SeriesClassifierLib.models.features import (
    FeatureExtractor,
    description_tokens,
    header_tokens,
    numeric_features,
    sequence_file_tokens,
    sequence_name_tokens,
)
from SeriesClassifierLib.series import Geometry, Series


def make_series(**header) -> Series:
    geometry = Geometry(rows=256, columns=256, pixel_spacing=(0.9, 0.9), orientations=[(1, 0, 0, 0, 1, 0)],
                        positions=[(0, 0, 5.0 * i) for i in range(4)], slice_thickness=4.0,
                        spacing_between_slices=5.0)
    h = {"Rows": 256, "Columns": 256, "NumberOfPositions": 4}
    h.update(header)
    return Series(series_uid="1", study_uid="2", files=[], n_images=4, n_frames=4, header=h, geometry=geometry,
                  orientation="AXIAL")


def test_sequence_names_become_family_tokens():
    assert {"tfl3d1_16ns", "tfl3d", "tfl", "ns"} <= set(sequence_name_tokens("*tfl3d1_16ns"))
    assert "ep_b" in sequence_name_tokens("*ep_b1000t")
    assert "tir2d" in sequence_name_tokens("*tir2d1_19")
    assert sequence_name_tokens("") == []


def test_a_siemens_program_gives_its_folder_and_technique_words():
    assert {"customerseq", "ep2d", "pcasl"} <= set(sequence_file_tokens("%CustomerSeq%\\ep2d_pcasl_ve11c"))
    assert sequence_file_tokens("%SiemensSeq%\\tfl") == ["siemensseq", "tfl"]
    assert "sf:serviceseq" in header_tokens({"SiemensSequenceFile": "%ServiceSeq%\\sn"})
    assert sequence_file_tokens("") == []


def test_description_tokens_catch_contrast_spellings():
    for text in ("t1_se_tra +C", "AX_FS_T1_POST_GAD", "T1W_SE_+C", "t1 km", "T1 C+"):
        assert "<contrast>" in description_tokens(text), text
    assert "<contrast>" not in description_tokens("t2_tse_tra")


def test_header_tokens_are_prefixed_and_descriptions_optional():
    h = {"ScanningSequence": ["SE", "IR"], "ImageType": ["DERIVED", "PRIMARY", "ADC"], "SequenceName": "*tir2d1_19",
         "SeriesDescription": "t2_tirm_tra_dark-fluid"}
    tokens = header_tokens(h)
    assert {"ss:SE", "ss:IR", "it:ADC", "sn:tir2d"} <= set(tokens)
    assert not any(t.startswith("desc:") for t in tokens)
    assert "desc:fluid" in header_tokens(h, with_description=True)


def test_missing_values_are_nan_never_a_sentinel():
    f = numeric_features(make_series(RepetitionTime=500.0))
    assert f["tr"] == 500.0
    assert math.isnan(f["te"]) and math.isnan(f["ti"]) and math.isnan(f["phys:b_max"])
    assert f["plane:AXIAL"] == 1.0 and f["normal_z"] == pytest.approx(1.0)


@pytest.mark.parametrize("agent,expected", [(None, math.nan), ("", math.nan), ("ANONYMIZED", math.nan),
                                            ("NONE", 0.0), ("Gadovist", 1.0), ("GD-DOTA 15ml", 1.0)])
def test_contrast_agent_absent_is_unknown_not_given(agent, expected):
    value = numeric_features(make_series(ContrastBolusAgent=agent))["contrast_agent"]
    assert (math.isnan(value) and math.isnan(expected)) or value == expected


def test_extractor_fit_transform_and_json_round_trip():
    train = [make_series(RepetitionTime=500.0, ScanningSequence=["SE"]) for _ in range(3)]
    train.append(make_series(EchoTime=90.0, ScanningSequence=["GR"], SequenceVariant=["SP"]))
    ex = FeatureExtractor(min_token_count=2).fit(train)
    assert ex.tokens == ["ss:SE"]  # GR/SP seen once: dropped
    X = ex.transform(train)
    assert X.shape == (4, len(ex.feature_names))
    names = ex.feature_names
    assert X[0, names.index("missing:te")] == 1.0 and X[3, names.index("missing:te")] == 0.0
    assert X[0, names.index("tok:ss:SE")] == 1.0 and X[3, names.index("tok:ss:SE")] == 0.0
    again = FeatureExtractor.from_dict(ex.to_dict())
    np.testing.assert_array_equal(again.transform(train), X)


def test_unfitted_extractor_refuses():
    with pytest.raises(RuntimeError, match="not fitted"):
        FeatureExtractor().transform([make_series()])


def test_study_context_orders_series_and_counts_same_protocol_before_and_after():
    from SeriesClassifierLib.models.features import add_study_context

    def t1(number, agent=None, study="S"):
        s = make_series(ScanningSequence=["SE"], MRAcquisitionType="2D", SequenceName="*se2d1", ImageType=["ORIGINAL"],
                        SeriesNumber=number, SeriesTime=f"1000{number:02d}", ContrastBolusAgent=agent)
        s.study_uid = study
        return s

    flair = make_series(ScanningSequence=["SE", "IR"], InversionTime=2500.0, SeriesNumber=2, SeriesTime="100002")
    flair.study_uid = "S"
    pre, post, other_study = t1(1), t1(3, agent="Gadovist"), t1(1, study="T")
    add_study_context([post, flair, pre, other_study])
    assert pre.header["StudyContext"]["same_after"] == 1 and pre.header["StudyContext"]["same_before"] == 0
    assert post.header["StudyContext"]["same_before"] == 1 and post.header["StudyContext"]["rank"] == 1.0
    assert flair.header["StudyContext"]["same_before"] == 0
    assert post.header["StudyContext"]["agent_in_study"] == 1.0 and pre.header["StudyContext"]["agent_before"] == 0
    assert other_study.header["StudyContext"]["n_series"] == 1
    f = numeric_features(post)
    assert f["ctx:same_before"] == 1.0
    assert math.isnan(numeric_features(make_series())["ctx:same_before"])  # alone: unknown, not zero
