"""Header dropout for training: copies lose fields, the caller's series never do."""

from __future__ import annotations

import numpy as np

from SeriesClassifierLib.series import Series
from SeriesClassifierLib.training.header_augment import (
    TOKEN_FIELDS,
    VENDOR_NAME_FIELDS,
    drop_header_fields,
    excerpt,
    longer_run,
    reconstructed,
    vary_counts,
    vary_matrix,
)


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


def _run(volumes: int, positions: int = 30, mosaic: bool = False) -> Series:
    image_type = ["ORIGINAL", "PRIMARY", "M", "ND"] + (["MOSAIC"] if mosaic else [])
    header = {"ScanningSequence": ["EP"], "ImageType": image_type,
              "NumberOfPositions": 1 if mosaic else positions, "ImagesPerPosition": float(volumes),
              "BValues": [0.0, 1000.0], "EchoTimes": [30.0]}
    n = volumes if mosaic else volumes * positions
    return Series(series_uid="1.2.9", study_uid="1.2", files=[], header=header, n_images=n, n_frames=n)


def test_an_excerpt_keeps_its_counts_consistent():
    rng = np.random.default_rng(0)
    cut = excerpt(_run(40), 1, rng)
    assert (cut.n_images, cut.n_frames, cut.header["NumberOfPositions"], cut.header["ImagesPerPosition"]) == (1, 1, 1,
                                                                                                            1.0)
    assert len(cut.header["BValues"]) == 1 and cut.header["BValues"][0] in (0.0, 1000.0)
    mosaic = excerpt(_run(40, mosaic=True), 3, rng)
    assert (mosaic.n_images, mosaic.header["NumberOfPositions"], mosaic.header["ImagesPerPosition"]) == (3, 1, 3.0)
    assert _run(40).n_images == 1200  # the caller's series is untouched


def test_a_longer_run_scales_volumes_not_positions_and_leaves_single_volumes_alone():
    longer = longer_run(_run(20), 3.0)
    assert longer.n_images == 1800 and longer.header["NumberOfPositions"] == 30
    assert longer.header["ImagesPerPosition"] == 60.0
    one = _run(1)
    assert longer_run(one, 3.0) is one  # an M0 or a b=0 reference stays one volume
    t1 = Series(series_uid="1.3", study_uid="1.2", files=[], n_images=176, n_frames=176,
                header={"ScanningSequence": ["GR", "IR"], "NumberOfPositions": 176, "ImagesPerPosition": 1.0})
    assert longer_run(t1, 3.0) is t1  # not an EPI run


def test_vary_counts_changes_about_the_given_fractions():
    rows = vary_counts([_run(20) for _ in range(1000)], seed=3, excerpt_rate=0.1, long_run_rate=0.3)
    cut = sum(r.n_images <= 3 for r in rows) / len(rows)
    longer = sum(r.n_images > 600 for r in rows) / len(rows)
    assert 0.06 < cut < 0.14 and 0.22 < longer < 0.38


def _image(rows: int, cols: int, spacing: float) -> Series:
    header = {"Rows": rows, "Columns": cols, "PixelSpacing": [spacing, spacing], "RepetitionTime": 3000.0}
    return Series(series_uid="1.3", study_uid="1.3", files=[], header=header)


def test_a_finer_reconstruction_keeps_the_field_of_view():
    dwi = _image(128, 96, 2.0)
    finer = reconstructed(dwi, 3.0)
    assert (finer.header["Rows"], finer.header["Columns"]) == (384, 288)
    assert finer.header["Rows"] * finer.header["PixelSpacing"][0] == 256.0
    assert finer.header["Columns"] * finer.header["PixelSpacing"][1] == 192.0
    assert dwi.header["Rows"] == 128  # the caller's series is untouched
    assert reconstructed(_image(512, 512, 0.5), 4.0).header["Rows"] == 1024  # never beyond 1024
    assert reconstructed(Series(series_uid="1", study_uid="1", files=[], header={}), 2.0).header == {}


def test_vary_matrix_changes_about_the_given_fraction_and_only_the_matrix():
    rows = vary_matrix([_image(64, 64, 3.0) for _ in range(500)], seed=3, rate=0.2)
    changed = [r for r in rows if r.header["Rows"] != 64]
    assert 0.13 < len(changed) / len(rows) < 0.27
    assert all(80 <= r.header["Rows"] <= 256 and r.header["RepetitionTime"] == 3000.0 for r in changed)
    assert vary_matrix([_image(64, 64, 3.0)], seed=3, rate=0.0)[0].header["Rows"] == 64


def test_a_siemens_excerpt_is_named_by_the_b_values_it_kept():
    dwi = _run(4)
    dwi.header.update(SequenceName="*ep_b1000t", BValues=[0.0, 1000.0])
    names = {(tuple(c.header["BValues"]), c.header["SequenceName"])
             for c in (excerpt(dwi, 1, np.random.default_rng(seed)) for seed in range(20))}
    assert names == {((0.0,), "*ep_b0"), ((1000.0,), "*ep_b1000t")}
