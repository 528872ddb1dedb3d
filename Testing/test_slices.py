"""Slice sampling and preprocessing: ordering, 4-D, multi-frame, mosaic, odd data, normalisation."""

from __future__ import annotations

import warnings

import numpy as np
import pydicom
import pydicom.filebase
import pydicom.filewriter
import pytest
from dicom_factory import (
    AXIAL,
    CORONAL,
    SAGITTAL,
    numbered_volume,
    write_classic,
    write_enhanced,
    write_mosaic,
)
from pydicom.data import get_testdata_file

from SeriesClassifierLib.dicom import slices
from SeriesClassifierLib.dicom.slices import (
    SliceOptions,
    SliceReadError,
    build_stack,
    clahe,
    normalise,
    read_slice,
    resize_square,
    sample_indices,
    sample_series,
)
from SeriesClassifierLib.pydicom_compat import PYDICOM_VERSION


def _markers(stack, indices=None):
    indices = range(len(stack)) if indices is None else indices
    return [int(read_slice(stack.images[i])[0, 0]) for i in indices]


def test_classic_files_sorted_along_normal_whatever_the_file_order(tmp_path):
    files = write_classic(tmp_path / "s", numbered_volume(12), iop=SAGITTAL, shuffle_seed=3)
    stack = build_stack(files)
    assert _markers(stack) == list(range(12))
    assert len(stack.geometry.positions) == 12
    assert stack.geometry.spacing_between_slices == pytest.approx(5.0)


def test_k_slices_from_the_central_part(tmp_path):
    files = write_classic(tmp_path / "s", numbered_volume(40))
    stack = build_stack(files)
    idx = sample_indices(stack, 8, 0.7)
    assert len(idx) == 8
    assert min(idx) >= 6 and max(idx) <= 33  # 70 % of 40 slices: 6..33
    assert idx == sorted(idx)
    # fewer slices than K: all of them
    assert sample_indices(build_stack(files[:5]), 8) == [0, 1, 2, 3, 4]


@pytest.mark.torch  # the CNN's slice resizing
def test_only_the_sampled_files_are_decoded(tmp_path, monkeypatch):
    files = write_classic(tmp_path / "s", numbered_volume(60))
    calls = []
    real = slices.read_slice
    monkeypatch.setattr(slices, "read_slice", lambda ref, cache=None: calls.append(ref.path) or real(ref, cache))
    s = sample_series(files, SliceOptions(k=8))
    assert len(calls) == 8 and s.images.shape == (8, 128, 128)


def test_time_series_keeps_the_middle_time_point(tmp_path):
    n_pos, n_time = 6, 5
    vols = []
    positions = []
    for t in range(n_time):
        v = numbered_volume(n_pos)
        v[:, 0, 0] = 1000 * t + np.arange(n_pos)  # marker: time*1000 + slice
        vols.append(v)
        positions += [list(np.array([0, 0, 1.0]) * 5 * i) for i in range(n_pos)]
    files = write_classic(tmp_path / "bold", np.concatenate(vols), positions=positions)
    stack = build_stack(files)
    assert len(stack) == n_pos
    assert _markers(stack) == [2000 + i for i in range(n_pos)]  # middle of 5 time points
    assert any("middle" in n for n in stack.notes)


def test_dwi_keeps_the_highest_b_value(tmp_path):
    n_pos = 5
    b0, b1000 = numbered_volume(n_pos), numbered_volume(n_pos)
    b1000[:, 0, 0] = 500 + np.arange(n_pos)
    positions = [list(np.array([0, 0, 1.0]) * 5 * i) for i in range(n_pos)] * 2
    files = write_classic(tmp_path / "dwi", np.concatenate([b0, b1000]), positions=positions,
                          b_values=[0] * n_pos + [1000] * n_pos)
    stack = build_stack(files)
    assert _markers(stack) == [500 + i for i in range(n_pos)]


@pytest.mark.torch  # the CNN's slice resizing
def test_enhanced_multiframe_sorted_by_per_frame_position(tmp_path):
    f = write_enhanced(tmp_path / "e", numbered_volume(9), iop=CORONAL)
    stack = build_stack([f])
    assert _markers(stack) == list(range(9))
    assert stack.images[0].frame is not None
    s = sample_series([f], SliceOptions(k=4))
    assert s.images.shape[0] == 4


@pytest.mark.parametrize("with_count", [True, False])
def test_mosaic_is_tiled_back_into_slices_and_highest_b_kept(tmp_path, with_count):
    n = 7 if with_count else 9  # without (0019,100a) the layout comes from the acquisition matrix
    vol0 = numbered_volume(n, 16, 16)
    vol1 = numbered_volume(n, 16, 16)
    vol1[:, 0, 0] = 300 + np.arange(n)
    files = write_mosaic(tmp_path / "m", [vol0, vol1], [0, 1000], with_count=with_count)
    stack = build_stack(files)
    assert len(stack) == n
    assert (stack.geometry.rows, stack.geometry.columns) == (16, 16)
    assert _markers(stack) == [300 + i for i in range(n)]
    # tile centres move along the normal by SpacingBetweenSlices
    z = [p[2] for p in stack.geometry.positions]
    assert np.allclose(np.diff(z), 4.0)


@pytest.mark.torch  # the CNN's slice resizing
def test_mixed_planes_sample_every_plane(tmp_path):
    imgs = numbered_volume(9)
    iops = [AXIAL] * 3 + [SAGITTAL] * 3 + [CORONAL] * 3
    positions = [[0, 0, 5.0 * (i % 3)] if i < 3 else ([5.0 * (i % 3), 0, 0] if i < 6 else [0, 5.0 * (i % 3), 0])
                 for i in range(9)]
    files = write_classic(tmp_path / "loc", imgs, positions=positions, iops=iops)
    s = sample_series(files, SliceOptions(k=6))
    planes = {tuple(np.round(o, 1)) for o in s.orientations}
    assert len(planes) == 3
    assert len(s.stack.groups) == 3


@pytest.mark.parametrize(
    "name", ["MR_small.dcm", "MR2_J2KR.dcm", "MR_small_RLE.dcm", "emri_small_jpeg_ls_lossless.dcm",
             "JPEG-LL.dcm"]  # JPEG lossless process 14, as GE and OsiriX archives store MR (pylibjpeg-libjpeg)
)
@pytest.mark.torch  # the CNN's slice resizing
def test_real_pydicom_files_give_fixed_size_slices(name):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        s = sample_series([get_testdata_file(name)], SliceOptions(k=8, size=128))
    assert s.images.shape[1:] == (128, 128)
    assert s.images.dtype == np.float32
    assert s.images.min() >= 0.0 and s.images.max() <= 1.0
    assert s.images.std() > 0.05  # an image, not a blank


def test_a_file_without_preamble_or_file_meta_still_gives_its_pixels(tmp_path):
    """Old archives hold bare datasets (ACR-NEMA style); the headers were read, so must the pixels be."""
    [written] = write_classic(tmp_path / "s", numbered_volume(1))
    ds = pydicom.dcmread(written)
    expected = ds.pixel_array.astype(np.float32)
    bare = tmp_path / "bare.dcm"
    with open(bare, "wb") as fp:  # the dataset alone, implicit VR little endian, no 128-byte preamble
        pydicom.filewriter.write_dataset(pydicom.filebase.DicomFileLike(fp), _implicit(ds))
    [ref] = build_stack([bare]).images
    np.testing.assert_array_equal(read_slice(ref), expected)


def _implicit(ds):
    del ds.file_meta
    if PYDICOM_VERSION >= (3, 0):
        ds.set_original_encoding(True, True)
    else:
        ds.is_implicit_VR, ds.is_little_endian = True, True
    return ds


def test_unreadable_pixels_raise_a_clear_message():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(SliceReadError, match="MR_truncated.dcm"):
            sample_series([get_testdata_file("MR_truncated.dcm")])


@pytest.mark.torch  # the CNN's slice resizing
def test_one_bad_file_does_not_stop_the_series(tmp_path):
    files = write_classic(tmp_path / "s", numbered_volume(6))
    bad = tmp_path / "s" / "garbage.dcm"
    bad.write_bytes(b"not dicom at all")
    s = sample_series([*files, bad], SliceOptions(k=8))
    assert len(s.images) == 6
    assert any("garbage.dcm" in w for w in s.warnings)


def test_no_images_at_all_is_a_slice_read_error(tmp_path):
    bad = tmp_path / "x.dcm"
    bad.write_bytes(b"nope")
    with pytest.raises(SliceReadError, match="no readable images"):
        build_stack([bad])


def test_percentile_normalisation_ignores_hot_pixels():
    rng = np.random.default_rng(0)
    img = rng.uniform(100, 200, (64, 64)).astype(np.float32)
    img[0, 0] = 1e6  # one hot pixel would crush a min/max scaling
    out = normalise(img)
    assert out.min() == 0.0 and out.max() == 1.0
    assert 0.3 < np.median(out) < 0.7
    assert np.all(normalise(np.full((8, 8), 7.0)) == 0)  # flat image: zeros, no division by zero


def test_clahe_raises_local_contrast_and_stays_in_range():
    x = np.linspace(0.4, 0.5, 64 * 64, dtype=np.float32).reshape(64, 64)
    y = clahe(x, tiles=4, clip=8.0)
    assert y.shape == x.shape and y.min() >= 0.0 and y.max() <= 1.0
    assert y.std() > 1.5 * x.std()  # the clip limit caps the gain: slope <= clip


@pytest.mark.torch  # the CNN's slice resizing
@pytest.mark.parametrize("shape", [(20, 48), (512, 384), (128, 128)])
def test_resize_pads_to_square_and_maps_back(shape):
    img = np.zeros(shape, dtype=np.float32)
    img[shape[0] // 4 : shape[0] // 2, shape[1] // 4 : shape[1] // 2] = 1.0
    out, t = resize_square(img, 128)
    assert out.shape == (128, 128)
    back = t.to_native(out)
    assert back.shape == shape
    assert np.corrcoef(back.ravel(), img.ravel())[0, 1] > 0.8
