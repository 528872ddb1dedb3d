"""Grad-CAM: any head/class, on the series grid, written as NRRD/NIfTI with the series geometry."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from dicom_factory import AXIAL, CORONAL, SAGITTAL, numbered_volume, write_classic, write_mosaic

from SeriesClassifierLib.dicom.slices import SliceOptions, sample_series
from SeriesClassifierLib.models.cnn import CnnModel
from SeriesClassifierLib.models.gradcam import (
    NRRD_LEVELS,
    gradcam,
    gradcam_series,
    read_nrrd,
    slice_cams,
    write_gradcam,
)
from SeriesClassifierLib.series import Series


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return CnnModel.new()


def _volume(n, rows, cols, seed=0):
    rng = np.random.default_rng(seed)
    vol = rng.integers(0, 50, (n, rows, cols)).astype(np.uint16)
    vol[:, rows // 4 : 3 * rows // 4, cols // 4 : 3 * cols // 4] += 800
    return vol


def test_heatmap_lies_on_the_series_grid_with_zeros_where_not_sampled(model, tmp_path):
    files = write_classic(tmp_path / "s", _volume(20, 40, 56), iop=CORONAL, spacing=3.0)
    r = gradcam_series(model, files, head="sequence")
    assert r.heatmap.shape == (20, 40, 56)
    assert r.heatmap.dtype == np.float32
    assert r.heatmap.min() >= 0.0 and r.heatmap.max() <= 1.0
    sampled = set(r.slice_indices)
    assert len(sampled) == 8
    for i in range(20):
        if i not in sampled:
            assert not r.heatmap[i].any()
    assert r.target in model.config.sequence_classes
    assert len(r.geometry.positions) == 20


@pytest.mark.parametrize("head", ["sequence", "orientation", "contrast", "acquisition", "fat_suppressed", "derived"])
def test_every_head_and_a_chosen_class(model, tmp_path, head):
    files = write_classic(tmp_path / "s", _volume(6, 32, 32))
    cls = model.config.sequence_classes[3] if head == "sequence" else None
    r = gradcam_series(model, files, head=head, target=cls)
    assert r.head == head
    if cls:
        assert r.target == cls


def test_unknown_head_or_class_is_a_clear_error(model, tmp_path):
    files = write_classic(tmp_path / "s", _volume(3, 32, 32))
    with pytest.raises(ValueError, match="unknown head"):
        gradcam_series(model, files, head="colour")
    with pytest.raises(ValueError, match="unknown class"):
        gradcam_series(model, files, head="sequence", target="NOT_A_CLASS")


def test_gradcam_follows_the_evidence():
    """A network whose class score is the mean brightness of the top-left quadrant must look there."""
    model = CnnModel.new()
    net = model.net
    with torch.no_grad():
        for p in net.parameters():
            p.zero_()
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.fill_(1.0)
                m.running_var.fill_(1.0)
                m.running_mean.zero_()
        # identity-like path: centre tap of every conv passes channel 0 through
        for m in net.modules():
            if isinstance(m, torch.nn.Conv2d):
                k = m.kernel_size[0] // 2
                m.weight[0, 0, k, k] = 1.0
        seq_idx = 5
        last = net.sequence_head[-1]
        first = net.sequence_head[0]
        first.weight[0, 0] = 1.0
        last.weight[seq_idx, 0] = 1.0
    images = np.zeros((2, 128, 128), dtype=np.float32)
    images[:, 10:50, 10:50] = 1.0
    cams = slice_cams(model, images, "sequence", seq_idx)
    inside = cams[:, 10:50, 10:50].mean()
    outside = cams[:, 70:, 70:].mean()
    assert inside > 5 * max(outside, 1e-6)


def test_gradcam_plus_plus_runs_and_is_normalised(model, tmp_path):
    files = write_classic(tmp_path / "s", _volume(8, 32, 32))
    a = gradcam_series(model, files, method="gradcam")
    b = gradcam_series(model, files, method="gradcam++", target=a.target)
    assert b.heatmap.shape == a.heatmap.shape and b.heatmap.max() <= 1.0
    with pytest.raises(ValueError, match="method"):
        gradcam_series(model, files, method="saliency")


def test_nrrd_carries_the_series_geometry(model, tmp_path):
    files = write_classic(tmp_path / "s", _volume(10, 30, 40), iop=SAGITTAL, spacing=2.5)
    sampled = sample_series(files, SliceOptions(k=4))
    r = gradcam(model, sampled)
    series = Series(series_uid="1.2.3.4.5", study_uid="1", files=files, series_number=7)
    out = write_gradcam(r, series, tmp_path / "out", fmt="nrrd")
    nrrd = [p for p in out if p.suffix == ".nrrd"][0]
    assert nrrd.name.startswith("007_1.2.3.4.5_sequence_")
    vol, fields = read_nrrd(nrrd)
    np.testing.assert_allclose(vol, r.heatmap, atol=0.5 / 255 + 1e-6)  # stored in steps of 1/255
    assert fields["space"] == "left-posterior-superior" and fields["encoding"] == "gzip"
    # compressed: a fraction of the raw float32 map (272 MB for 151 MB of DICOM before)
    assert nrrd.stat().st_size < 0.25 * r.heatmap.size * 4
    assert fields["sizes"] == "40 30 10"
    g = r.geometry
    origin = [float(v) for v in fields["space origin"].strip("()").split(",")]
    np.testing.assert_allclose(origin, g.positions[0], atol=1e-4)
    dirs = [[float(v) for v in d.strip("() ").split(",")] for d in fields["space directions"].split(") (")]
    np.testing.assert_allclose(dirs[0], np.array(SAGITTAL[:3]) * g.pixel_spacing[1], atol=1e-5)
    np.testing.assert_allclose(dirs[1], np.array(SAGITTAL[3:]) * g.pixel_spacing[0], atol=1e-5)
    np.testing.assert_allclose(dirs[2], np.cross(SAGITTAL[:3], SAGITTAL[3:]) * 2.5, atol=1e-5)
    assert any(p.suffix == ".png" and p.stat().st_size > 1000 for p in out)


def test_nifti_affine_is_the_ras_version_of_the_geometry(model, tmp_path):
    import nibabel as nib

    files = write_classic(tmp_path / "s", _volume(6, 32, 32), iop=AXIAL, spacing=4.0)
    r = gradcam_series(model, files)
    out = write_gradcam(r, Series(series_uid="9", study_uid="1", files=files), tmp_path / "o", fmt="nifti",
                        png=False)
    img = nib.load(str(out[0]))
    assert img.shape == (32, 32, 6)
    # voxel (i=col, j=row, k=slice) of the last slice → LPS position of that slice, in RAS
    ras = img.affine @ np.array([0, 0, 5, 1.0])
    lps = np.array(r.geometry.positions[5])
    np.testing.assert_allclose(ras[:3], lps * np.array([-1, -1, 1]), atol=1e-4)
    np.testing.assert_allclose(np.transpose(np.asarray(img.dataobj), (2, 1, 0)), r.heatmap, atol=1e-6)


def test_mixed_series_writes_one_volume_per_plane(model, tmp_path):
    imgs = _volume(9, 32, 32)
    iops = [AXIAL] * 3 + [SAGITTAL] * 3 + [CORONAL] * 3
    positions = [[0, 0, 5.0 * (i % 3)] if i < 3 else ([5.0 * (i % 3), 0, 0] if i < 6 else [0, 5.0 * (i % 3), 0])
                 for i in range(9)]
    files = write_classic(tmp_path / "loc", imgs, positions=positions, iops=iops)
    r = gradcam_series(model, files)
    out = write_gradcam(r, Series(series_uid="3", study_uid="1", files=files), tmp_path / "o", png=False)
    assert sorted(p.name.rsplit("_", 1)[-1] for p in out) == ["plane1.nrrd", "plane2.nrrd", "plane3.nrrd"]
    for p in out:
        vol, fields = read_nrrd(p)
        assert vol.shape == (3, 32, 32)


def test_mosaic_heatmap_is_on_the_tile_grid(model, tmp_path):
    files = write_mosaic(tmp_path / "m", [numbered_volume(7, 16, 16)], [1000])
    r = gradcam_series(model, files)
    assert r.heatmap.shape == (7, 16, 16)


def test_series_object_is_accepted(model, tmp_path):
    files = write_classic(tmp_path / "s", _volume(4, 32, 32))
    r = gradcam_series(model, Series(series_uid="x", study_uid="y", files=files))
    assert r.heatmap.shape[0] == 4


def test_gradcam_after_a_prediction_reuses_its_slices_once(model, tmp_path, monkeypatch):
    """The CLI and the worker ask for a map right after predicting: the K slices are not read twice."""
    import SeriesClassifierLib.models.gradcam as gradcam_module

    files = write_classic(tmp_path / "s", _volume(12, 32, 32), iop=AXIAL, spacing=3.0)
    other = write_classic(tmp_path / "o", _volume(12, 32, 32, seed=1), iop=AXIAL, spacing=3.0)
    series = Series(series_uid="1", study_uid="1", files=files)
    fresh = gradcam_series(model, series)
    model.predict(series)
    reads = []
    monkeypatch.setattr(gradcam_module, "sample_series", lambda *a, **k: reads.append(a) or sample_series(*a, **k))
    backbone = []
    features = model.net.features
    monkeypatch.setattr(model.net, "features", lambda x: backbone.append(len(x)) or features(x))
    reused = gradcam_series(model, series, target=fresh.target)  # the predicted class, as the CLI asks
    np.testing.assert_array_equal(reused.heatmap, fresh.heatmap)
    assert reads == [] and backbone == []  # neither the slices nor the backbone's forward pass again
    gradcam_series(model, series)  # handed over once: the next map samples again
    model.predict(series)
    gradcam_series(model, Series(series_uid="2", study_uid="1", files=other))  # not the predicted series
    assert len(reads) == 2
    assert len(backbone) == 3  # the second map, the prediction, the other series' map


def test_nrrd_is_gzip_compressed_and_png_carries_its_title(model, tmp_path):
    import gzip

    from PIL import Image

    files = write_classic(tmp_path / "s", _volume(30, 64, 64), iop=AXIAL, spacing=2.0)
    r = gradcam_series(model, files)
    out = write_gradcam(r, Series(series_uid="9", study_uid="1", files=files, series_description="ax t2"),
                        tmp_path / "o")
    nrrd = next(p for p in out if p.suffix == ".nrrd")
    head, _, body = nrrd.read_bytes().partition(b"\n\n")
    assert b"encoding: gzip" in head
    stored = np.round(r.heatmap.astype(np.float32) * NRRD_LEVELS) / NRRD_LEVELS  # in steps of 1/255
    assert gzip.decompress(body) == np.ascontiguousarray(stored, dtype="<f4").tobytes()
    assert len(body) < r.heatmap.nbytes / 4
    png = Image.open(next(p for p in out if p.suffix == ".png"))
    assert png.info["Title"].startswith("ax t2 — Grad-CAM sequence=")
    assert png.size == (4 * 128, 2 * 128)  # 8 sampled slices, 4 a row, at the CNN's size


def test_gzip_slices_is_plain_gzip_of_the_volume_bytes():
    import gzip

    from SeriesClassifierLib.models.gradcam import gzip_slices

    rng = np.random.default_rng(3)
    volume = np.zeros((12, 9, 7), dtype=np.float32)
    volume[3] = rng.random((9, 7))
    volume[8, 2, 2] = 0.25
    volume[10] = -0.0  # not the zero slice's bytes
    for v in (volume, volume[:1], volume[:0], np.ones((2, 3, 3), dtype=np.float64)):
        assert gzip.decompress(gzip_slices(v)) == np.ascontiguousarray(v, dtype="<f4").tobytes()
