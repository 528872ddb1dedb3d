"""Tiny DICOM series written by hand for the slice/CNN tests (classic, enhanced multi-frame, mosaic).

Imported by the other test_slices*/test_cnn*/test_gradcam* modules; its own tests
check that what it writes reads back as intended.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from SeriesClassifierLib.pydicom_compat import save_dataset

MR = "1.2.840.10008.5.1.4.1.1.4"
ENHANCED_MR = "1.2.840.10008.5.1.4.1.1.4.1"
AXIAL = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
SAGITTAL = (0.0, 1.0, 0.0, 0.0, 0.0, -1.0)
CORONAL = (1.0, 0.0, 0.0, 0.0, 0.0, -1.0)


def _base(sop_class: str, series_uid: str, rows: int, cols: int) -> Dataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "MR"
    ds.StudyInstanceUID = "1.2.3.4"
    ds.SeriesInstanceUID = series_uid
    ds.PatientID = "TEST"
    ds.Rows, ds.Columns = rows, cols
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.PixelSpacing = [1.0, 1.0]
    return ds


def _normal(iop):
    return np.cross(np.array(iop[:3]), np.array(iop[3:]))


def write_classic(folder: Path, images: np.ndarray, iop=AXIAL, spacing: float = 5.0, series_uid: str | None = None,
                  b_values: list[float] | None = None, shuffle_seed: int | None = 0,
                  positions: list | None = None, iops: list | None = None) -> list[Path]:
    """One file per image; positions along the normal; files written in shuffled order."""
    folder.mkdir(parents=True, exist_ok=True)
    series_uid = series_uid or generate_uid()
    n = len(images)
    files = []
    for i in range(n):
        this_iop = iops[i] if iops else iop
        ds = _base(MR, series_uid, images.shape[1], images.shape[2])
        ds.ImageOrientationPatient = list(this_iop)
        pos = positions[i] if positions else list(_normal(this_iop) * spacing * i)
        ds.ImagePositionPatient = [float(v) for v in pos]
        ds.InstanceNumber = i + 1
        if b_values is not None:
            ds.DiffusionBValue = float(b_values[i])
        ds.PixelData = np.ascontiguousarray(images[i].astype(np.uint16)).tobytes()
        f = folder / f"IM{i:04d}.dcm"
        save_dataset(ds, f)
        files.append(f)
    if shuffle_seed is not None:
        files = list(np.random.default_rng(shuffle_seed).permutation(files))
    return [Path(f) for f in files]


def write_enhanced(folder: Path, frames: np.ndarray, iop=AXIAL, spacing: float = 5.0,
                   series_uid: str | None = None) -> Path:
    """One Enhanced MR object; per-frame positions in PlanePositionSequence, frames in reverse order."""
    folder.mkdir(parents=True, exist_ok=True)
    ds = _base(ENHANCED_MR, series_uid or generate_uid(), frames.shape[1], frames.shape[2])
    ds.NumberOfFrames = len(frames)
    shared = Dataset()
    po = Dataset()
    po.ImageOrientationPatient = list(iop)
    shared.PlaneOrientationSequence = Sequence([po])
    pm = Dataset()
    pm.PixelSpacing = [1.0, 1.0]
    pm.SliceThickness = spacing
    shared.PixelMeasuresSequence = Sequence([pm])
    ds.SharedFunctionalGroupsSequence = Sequence([shared])
    per_frame = []
    n = len(frames)
    order = list(range(n))[::-1]  # stored from top to bottom: the reader must sort
    for i in order:
        item = Dataset()
        pp = Dataset()
        pp.ImagePositionPatient = [float(v) for v in _normal(iop) * spacing * i]
        item.PlanePositionSequence = Sequence([pp])
        per_frame.append(item)
    ds.PerFrameFunctionalGroupsSequence = Sequence(per_frame)
    ds.PixelData = np.ascontiguousarray(frames[order].astype(np.uint16)).tobytes()
    f = folder / "enhanced.dcm"
    save_dataset(ds, f)
    return f


def write_mosaic(folder: Path, volumes: list[np.ndarray], b_values: list[float], iop=AXIAL,
                 spacing: float = 4.0, with_count: bool = True, series_uid: str | None = None) -> list[Path]:
    """Siemens-style mosaics: one file per volume (b-value), tiles row-major, (0019,100a) = n."""
    folder.mkdir(parents=True, exist_ok=True)
    series_uid = series_uid or generate_uid()
    files = []
    for v, (vol, b) in enumerate(zip(volumes, b_values)):
        n, tr, tc = vol.shape
        side = int(np.ceil(np.sqrt(n)))
        mosaic = np.zeros((side * tr, side * tc), dtype=np.uint16)
        for t in range(n):
            r, c = divmod(t, side)
            mosaic[r * tr : (r + 1) * tr, c * tc : (c + 1) * tc] = vol[t]
        ds = _base(MR, series_uid, side * tr, side * tc)
        ds.ImageType = ["ORIGINAL", "PRIMARY", "DIFFUSION", "NONE", "ND", "MOSAIC"]
        ds.ImageOrientationPatient = list(iop)
        ds.ImagePositionPatient = [0.0, 0.0, 0.0]
        ds.AcquisitionMatrix = [tr, 0, 0, tc]
        ds.SpacingBetweenSlices = spacing
        ds.InstanceNumber = v + 1
        ds.AcquisitionNumber = 1
        ds.private_block(0x0019, "SIEMENS MR HEADER", create=True)
        if with_count:
            ds.add_new((0x0019, 0x100A), "US", n)
        ds.add_new((0x0019, 0x100C), "IS", str(int(b)))
        ds.PixelData = mosaic.tobytes()
        f = folder / f"MOSAIC{v:03d}.dcm"
        save_dataset(ds, f)
        files.append(f)
    return files


def numbered_volume(n: int, rows: int = 32, cols: int = 32) -> np.ndarray:
    """Slice i has a bright square whose size grows with i and intensity 100*(i+1): easy to identify."""
    vol = np.full((n, rows, cols), 5, dtype=np.uint16)
    for i in range(n):
        h = 2 + (i % (rows // 2 - 2))
        vol[i, rows // 2 - h // 2 : rows // 2 + h // 2 + 1, cols // 2 - h // 2 : cols // 2 + h // 2 + 1] = 100 * (i + 1)
        vol[i, 0, 0] = i  # a marker pixel
    return vol


def pattern_image(kind: int, rng: np.random.Generator, size: int = 48) -> np.ndarray:
    """A head-like disk whose inner pattern depends on ``kind`` (0..n): learnable toy classes."""
    yy, xx = np.mgrid[:size, :size]
    c = size / 2 + rng.normal(0, 1.5, 2)
    r = np.hypot(yy - c[0], xx - c[1])
    img = np.where(r < size * 0.4, 400.0, 20.0)
    if kind % 3 == 0:
        img[r < size * 0.2] = 1500  # bright centre ("CSF")
    elif kind % 3 == 1:
        img[(r > size * 0.3) & (r < size * 0.4)] = 1500  # bright rim
    else:
        img[::4, :] *= 3.0  # stripes ("vessels")
    img += rng.normal(0, 15, img.shape)
    return np.clip(img, 0, 4000)


def make_toy_corpus(root: Path, classes: list[str], per_class: int, profiles: list[str], seed: int = 0,
                    n_slices: int = 6) -> Path:
    """A corpus folder + labels.csv (the generator's format) with learnable toy classes."""
    rng = np.random.default_rng(seed)
    rows = []
    for ci, code in enumerate(classes):
        for j in range(per_class):
            profile = profiles[j % len(profiles)]
            iop = [AXIAL, SAGITTAL, CORONAL][j % 3]
            uid = generate_uid()
            images = np.stack([pattern_image(ci, rng) for _ in range(n_slices)])
            write_classic(root / f"s{ci}_{j}", images, iop=iop, series_uid=uid)
            rows.append({"series_uid": uid, "study_uid": "1.2.3.4", "sequence": code,
                         "orientation": ["AXIAL", "SAGITTAL", "CORONAL"][j % 3],
                         "contrast": "PRE", "acquisition": "2D", "fat_suppressed": "NO", "derived": "NO",
                         "vendor": "TEST", "field_strength": "3", "profile": profile})
    with open(root / "labels.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return root


def test_written_files_read_back(tmp_path):
    files = write_classic(tmp_path / "c", numbered_volume(5))
    assert len(files) == 5
    ds = pydicom.dcmread(files[0])
    assert ds.pixel_array.shape == (32, 32)
    f = write_enhanced(tmp_path / "e", numbered_volume(4))
    assert pydicom.dcmread(f).pixel_array.shape == (4, 32, 32)
    m = write_mosaic(tmp_path / "m", [numbered_volume(5, 16, 16)], [0])
    assert pydicom.dcmread(m[0]).pixel_array.shape == (48, 48)  # ceil(sqrt(5)) = 3 tiles per side
