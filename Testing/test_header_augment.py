"""Header dropout for training: copies lose fields, the caller's series never do."""

from __future__ import annotations

from SeriesClassifierLib.series import Series
from SeriesClassifierLib.training.header_augment import TOKEN_FIELDS, VENDOR_NAME_FIELDS, drop_header_fields


def _series(i: int) -> Series:
    header = {"ScanningSequence": ["SE"], "SequenceVariant": ["SK"], "ScanOptions": [], "ImageType": ["ORIGINAL"],
              "SequenceName": "*tse2d1_15", "FlipAngle": 150.0, "EchoTrainLength": 15.0, "RepetitionTime": 4000.0,
              "StudyContext": {"rank": 0.5}}
    return Series(series_uid=f"1.2.{i}", study_uid="1.2", files=[], header=header)


def test_rate_zero_keeps_every_field_but_context_can_go():
    rows = drop_header_fields([_series(i) for i in range(50)], 0.0, seed=1, context_rate=0.0)
    assert all(r.header == _series(0).header for r in rows)


def test_rate_one_removes_tokens_names_and_secondary_values_not_physics():
    originals = [_series(i) for i in range(5)]
    rows = drop_header_fields(originals, 1.0, seed=1, context_rate=1.0)
    for r in rows:
        assert not set(r.header) & set(TOKEN_FIELDS + VENDOR_NAME_FIELDS + ("FlipAngle", "EchoTrainLength"))
        assert "StudyContext" not in r.header and r.header["RepetitionTime"] == 4000.0
    assert all("SequenceName" in s.header for s in originals)  # the caller's series are untouched


def test_same_seed_same_rows_and_a_fraction_near_the_rate():
    a = drop_header_fields([_series(i) for i in range(400)], 0.3, seed=7)
    b = drop_header_fields([_series(i) for i in range(400)], 0.3, seed=7)
    assert [r.header for r in a] == [r.header for r in b]
    lost = sum("SequenceName" not in r.header for r in a) / len(a)
    assert 0.2 < lost < 0.4
