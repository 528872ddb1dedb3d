"""The one place the tests write DICOM files by hand (small MR series).

- ``write_classic_series`` / ``write_enhanced_series`` / ``write_sr`` / ``write_toy_corpus`` /
  ``read_toy_corpus``: header variety (8×8 pixels) for sources, header reading, features and a toy forest;
- ``write_classic`` / ``write_enhanced`` / ``write_mosaic`` / ``make_toy_corpus``: pixel-exact series
  (shuffled files, reversed frames, mosaics) for slice sampling, the CNN and Grad-CAM;
- ``write_series``: a tiny classic series for the worker, the Slicer Logic and MRML tests.

Not a simulator: the generator (synth/) makes realistic studies.
"""

from __future__ import annotations

import csv
import sqlite3
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from SeriesClassifierLib.pydicom_compat import save_dataset

MR_IMAGE = "1.2.840.10008.5.1.4.1.1.4"
ENHANCED_MR = "1.2.840.10008.5.1.4.1.1.4.1"
BASIC_TEXT_SR = "1.2.840.10008.5.1.4.1.1.88.11"

AXIAL = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
SAGITTAL = (0.0, 1.0, 0.0, 0.0, 0.0, -1.0)
CORONAL = (1.0, 0.0, 0.0, 0.0, 0.0, -1.0)

# class -> header recipe; values are jittered by ``recipe_headers``
RECIPES = {
    "T1_2D_PRE": dict(ss=["SE"], sv=["SP"], tr=(450, 650), te=(8, 15), flip=90, acq="2D", sn="*se2d1", etl=1),
    "T2_2D": dict(ss=["SE"], sv=["SK", "SP"], tr=(3500, 6000), te=(80, 110), flip=150, acq="2D", sn="*tse2d1_15",
                  etl=15),
    "FLAIR_2D": dict(ss=["SE", "IR"], sv=["SK", "SP", "MP"], tr=(8000, 10000), te=(80, 120), ti=(2300, 2600),
                     flip=150, acq="2D", sn="*tir2d1_19", etl=19),
    "T1_3D_PRE": dict(ss=["GR", "IR"], sv=["SP", "MP"], tr=(1800, 2300), te=(2, 4), ti=(850, 1000), flip=9,
                      acq="3D", sn="*tfl3d1_16ns", etl=1),
    "DWI": dict(ss=["EP"], sv=["SK", "SP"], tr=(4000, 7000), te=(60, 95), flip=90, acq="2D", sn="*ep_b1000t",
                b=[0, 1000], it=["DERIVED", "PRIMARY", "DIFFUSION", "TRACEW"]),
}


def recipe_headers(sequence: str, rng: np.random.Generator) -> dict:
    r = RECIPES[sequence]
    h = {
        "ScanningSequence": r["ss"],
        "SequenceVariant": r["sv"],
        "RepetitionTime": float(rng.uniform(*r["tr"])),
        "EchoTime": float(rng.uniform(*r["te"])),
        "FlipAngle": float(r["flip"]),
        "MRAcquisitionType": r["acq"],
        "SequenceName": r["sn"],
    }
    if "ti" in r:
        h["InversionTime"] = float(rng.uniform(*r["ti"]))
    if "etl" in r:
        h["EchoTrainLength"] = r["etl"]
    if "it" in r:
        h["ImageType"] = r["it"]
    if "b" in r:
        h["b_values"] = r["b"]
    return h


def _base(sop_class: str, study_uid: str, series_uid: str, description: str) -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = sop_class
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = sop_class
    ds.Modality = "MR"
    ds.PatientID = "P1"
    ds.PatientName = "Test^Patient"
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.SeriesNumber = 1
    ds.SeriesDescription = description
    ds.Manufacturer = "SIEMENS"
    ds.MagneticFieldStrength = 3.0
    return ds


def _pixels(ds: Dataset, rows: int = 8, cols: int = 8, frames: int = 1) -> None:
    ds.Rows, ds.Columns = rows, cols
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 0
    ds.PixelData = (np.arange(rows * cols * frames, dtype=np.uint16) % 97).tobytes()


def _save(ds: Dataset, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    save_dataset(ds, path)
    return path


def write_classic_series(
    folder: Path,
    headers: dict,
    *,
    n: int = 5,
    iop=AXIAL,
    iops: list | None = None,
    spacing: float = 5.0,
    study_uid: str | None = None,
    series_uid: str | None = None,
    description: str = "",
    name_files: str = "{i:03d}.dcm",
    vendor_b: str = "standard",
    modality: str = "MR",
    private: dict | None = None,
    per_file: list | None = None,
) -> tuple[str, list[Path]]:
    """Write n single-frame MR images of one series; returns (series uid, files).

    ``private``: {tag: (VR, value)} added to every file (e.g. a Siemens CSA header); ``per_file``: one dict of
    keyword -> value per file (e.g. its EchoTime)."""
    study_uid = study_uid or generate_uid()
    series_uid = series_uid or generate_uid()
    headers = dict(headers)
    b_values = headers.pop("b_values", None)
    files = []
    normal = np.cross(np.array(iop[:3]), np.array(iop[3:]))
    for i in range(n):
        ds = _base(MR_IMAGE, study_uid, series_uid, description)
        ds.SOPInstanceUID = generate_uid()
        ds.Modality = modality
        ds.InstanceNumber = i + 1
        this_iop = iops[i % len(iops)] if iops else iop
        ds.ImageOrientationPatient = list(this_iop)
        ds.ImagePositionPatient = [float(v) for v in normal * spacing * (i % max(1, n // (len(b_values or [0]))))]
        ds.PixelSpacing = [0.9, 0.9]
        ds.SliceThickness = spacing * 0.8
        ds.ImageType = headers.get("ImageType", ["ORIGINAL", "PRIMARY", "M", "ND"])
        for key, value in headers.items():
            if key != "ImageType":
                setattr(ds, key, value)
        for key, value in (per_file[i] if per_file else {}).items():
            setattr(ds, key, value)
        for tag, (vr, value) in (private or {}).items():
            ds.add_new(tag, vr, value)
        if b_values:
            b = float(b_values[i * len(b_values) // n])
            if vendor_b == "standard":
                ds.DiffusionBValue = b
            elif vendor_b == "siemens":
                block = ds.private_block(0x0019, "SIEMENS MR HEADER", create=True)
                block.add_new(0x0C, "IS", str(int(b)))
            elif vendor_b == "ge":
                block = ds.private_block(0x0043, "GEMS_PARM_01", create=True)
                block.add_new(0x39, "IS", [str(int(b + 1e9)), "8", "0", "0"])
            elif vendor_b == "philips":
                block = ds.private_block(0x2001, "Philips Imaging DD 001", create=True)
                block.add_new(0x03, "FL", b)
        _pixels(ds)
        files.append(_save(ds, folder / name_files.format(i=i)))
    return series_uid, files


def write_enhanced_series(
    path: Path, headers: dict, *, frames: int = 6, iop=AXIAL, b_values=None, study_uid: str | None = None,
    description: str = "", asl_contexts: list | None = None, top: dict | None = None,
) -> str:
    """One enhanced MR file; TR/TE/TI/flip in shared functional groups, b-value and geometry per frame.

    ``asl_contexts``: one ASL Context (CONTROL, LABEL, M_ZERO_SCAN) per volume: the frames are that many
    volumes of frames/len slices, each frame with its TemporalPositionIndex and context. ``top``: more
    top-level keyword -> value (e.g. ArterialSpinLabelingContrast)."""
    series_uid = generate_uid()
    ds = _base(ENHANCED_MR, study_uid or generate_uid(), series_uid, description)
    ds.SOPInstanceUID = generate_uid()
    ds.InstanceNumber = 1
    ds.ImageType = headers.get("ImageType", ["ORIGINAL", "PRIMARY", "M", "NONE"])
    for key in ("ScanningSequence", "SequenceVariant", "MRAcquisitionType"):
        if key in headers:
            setattr(ds, key, headers[key])
    ds.PulseSequenceName = headers.get("SequenceName", "").lstrip("*")
    ds.NumberOfFrames = frames
    shared = Dataset()
    timing = Dataset()
    timing.RepetitionTime = headers["RepetitionTime"]
    timing.FlipAngle = headers.get("FlipAngle", 90)
    timing.EchoTrainLength = int(headers.get("EchoTrainLength", 1))
    shared.MRTimingAndRelatedParametersSequence = Sequence([timing])
    echo = Dataset()
    echo.EffectiveEchoTime = headers["EchoTime"]
    shared.MREchoSequence = Sequence([echo])
    if "InversionTime" in headers:
        mod = Dataset()
        mod.InversionRecovery = "YES"
        mod.InversionTimes = [headers["InversionTime"]]
        shared.MRModifierSequence = Sequence([mod])
    measures = Dataset()
    measures.PixelSpacing = [1.0, 1.0]
    measures.SliceThickness = 4.0
    shared.PixelMeasuresSequence = Sequence([measures])
    plane = Dataset()
    plane.ImageOrientationPatient = list(iop)
    shared.PlaneOrientationSequence = Sequence([plane])
    ds.SharedFunctionalGroupsSequence = Sequence([shared])
    for key, value in (top or {}).items():
        setattr(ds, key, value)
    normal = np.cross(np.array(iop[:3]), np.array(iop[3:]))
    per_frame = []
    slices = frames // len(asl_contexts) if asl_contexts else frames
    if asl_contexts:  # stack, position in it, time: what nibabel (heudiconv) needs to shape the volumes
        ds.DimensionIndexSequence = Sequence([_dimension(pointer) for pointer in (0x00209056, 0x00209057, 0x00209128)])
        ds.NumberOfTemporalPositions = len(asl_contexts)
    for f in range(frames):
        item = Dataset()
        pos = Dataset()
        n_b = len(b_values) if b_values else 1
        pos.ImagePositionPatient = [float(v) for v in normal * 4.0 * ((f % slices) if asl_contexts else f // n_b)]
        item.PlanePositionSequence = Sequence([pos])
        if asl_contexts:
            content, asl = Dataset(), Dataset()
            content.TemporalPositionIndex = f // slices + 1
            content.StackID, content.InStackPositionNumber = "1", f % slices + 1
            content.DimensionIndexValues = [1, f % slices + 1, f // slices + 1]
            item.FrameContentSequence = Sequence([content])
            asl.ASLContext = asl_contexts[f // slices]
            item.MRArterialSpinLabelingSequence = Sequence([asl])
        if b_values:
            diff = Dataset()
            diff.DiffusionBValue = float(b_values[f % n_b])
            item.MRDiffusionSequence = Sequence([diff])
        per_frame.append(item)
    ds.PerFrameFunctionalGroupsSequence = Sequence(per_frame)
    _pixels(ds, frames=frames)
    _save(ds, path)
    return series_uid


def write_sr(path: Path, study_uid: str | None = None) -> str:
    series_uid = generate_uid()
    ds = _base(BASIC_TEXT_SR, study_uid or generate_uid(), series_uid, "report")
    ds.Modality = "SR"
    ds.SOPInstanceUID = generate_uid()
    _save(ds, path)
    return series_uid


def write_toy_corpus(root: Path, n_per_class: int = 12, seed: int = 0) -> dict[str, str]:
    """A few studies' worth of recipe series in sagittal/axial/coronal; returns {series uid: class}."""
    rng = np.random.default_rng(seed)
    labels = {}
    planes = [AXIAL, SAGITTAL, CORONAL]
    for cls in RECIPES:
        for k in range(n_per_class):
            uid, _ = write_classic_series(
                root / f"{cls}_{k}", recipe_headers(cls, rng), n=4, iop=planes[k % 3], description=f"{cls.lower()}"
            )
            labels[uid] = cls
    return labels


def read_toy_corpus(root: Path, n_per_class: int = 12, seed: int = 0) -> tuple[list, list[str]]:
    """``write_toy_corpus`` then read back: (series, their sequence labels), in the source's order."""
    from SeriesClassifierLib.dicom.headers import read_series
    from SeriesClassifierLib.dicom.sources import iter_series_refs

    labels = write_toy_corpus(root, n_per_class=n_per_class, seed=seed)
    series = [read_series(r) for r in iter_series_refs(root)]
    return series, [labels[s.series_uid] for s in series]


# ------------------------------------------------------------------ pixel-exact series (slices, CNN, Grad-CAM)


def _image_base(sop_class: str, series_uid: str, rows: int, cols: int) -> Dataset:
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
        ds = _image_base(MR_IMAGE, series_uid, images.shape[1], images.shape[2])
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
    ds = _image_base(ENHANCED_MR, series_uid or generate_uid(), frames.shape[1], frames.shape[2])
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
        ds = _image_base(MR_IMAGE, series_uid, side * tr, side * tc)
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


# ------------------------------------------------------------------ a tiny series (worker, Slicer Logic, MRML)


def write_series(folder: Path, description: str, n_slices: int = 3, iop=(1, 0, 0, 0, 1, 0), number: int = 1,
                 size: int = 4) -> str:
    """A tiny classic MR series (size×size pixels, a bright blob in one corner); returns its SeriesInstanceUID."""
    folder.mkdir(parents=True, exist_ok=True)
    series_uid = generate_uid(entropy_srcs=[description, str(folder)])
    normal = np.cross(iop[:3], iop[3:])
    for k in range(n_slices):
        ds = Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.MediaStorageSOPClassUID = MR_IMAGE
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.SOPClassUID = MR_IMAGE
        ds.SOPInstanceUID = generate_uid(entropy_srcs=[series_uid, str(k)])
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.Modality = "MR"
        ds.PatientID = "P1"
        ds.StudyInstanceUID = generate_uid(entropy_srcs=["study", str(folder.parent)])
        ds.SeriesInstanceUID = series_uid
        ds.SeriesNumber = number
        ds.InstanceNumber = k + 1
        ds.SeriesDescription = description
        ds.ImageOrientationPatient = list(iop)
        ds.ImagePositionPatient = [float(v) for v in normal * 5.0 * k]
        ds.PixelSpacing = [1.0, 1.0]
        ds.SliceThickness = 5.0
        ds.RepetitionTime = 500.0
        ds.EchoTime = 10.0
        ds.Rows = ds.Columns = size
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.BitsAllocated = ds.BitsStored = 16
        ds.HighBit = 15
        ds.PixelRepresentation = 0
        pixels = np.full((size, size), 100, np.uint16)
        pixels[: size // 2, : size // 2] = 1000 + 10 * k
        ds.PixelData = pixels.tobytes()
        save_dataset(ds, folder / f"im{k:03d}.dcm")
    return series_uid


def _dimension(pointer: int) -> Dataset:
    item = Dataset()
    item.DimensionIndexPointer = pointer
    item.FunctionalGroupPointer = 0x00209111  # FrameContentSequence
    return item


def siemens_csa(tags: dict) -> bytes:
    """A Siemens CSA2 ('SV10') header: name -> value (text), as (0029,1010)/(0029,1020) hold it."""
    import struct

    out = bytearray(b"SV10\x04\x03\x02\x01")
    out += struct.pack("<2I", len(tags), 77)
    for name, value in tags.items():
        item = str(value).encode() + b"\0"
        out += struct.pack("<64si4siii", name.encode()[:63], 1, b"UN\0\0", 0, 1, 77)
        out += struct.pack("<4i", len(item), len(item), 77, len(item))
        out += item + b"\0" * ((4 - len(item) % 4) % 4)
    return bytes(out)


def siemens_protocol(values: dict) -> bytes:
    """A CSA series header (0029,1020) whose MrPhoenixProtocol holds these ASCCONV lines (key = value)."""
    lines = "".join(f"{k}\t = {v}\n" for k, v in values.items())
    return siemens_csa({"MrPhoenixProtocol": f"### ASCCONV BEGIN ###\n{lines}### ASCCONV END ###"})


# The CTK DICOM database schema (commontk/CTK Libs/DICOM/Core/Resources/dicom-schema.sql), the
# tables this engine reads, with the indexes CTK creates on them (the reader's per-series queries rely on
# them). 0.8 adds Images.URL (and allows an empty Filename when only a URL is known).
CTK_TABLES = """
CREATE TABLE SchemaInfo (Version VARCHAR(1024) NOT NULL);
CREATE TABLE Patients (
  UID INTEGER PRIMARY KEY AUTOINCREMENT, PatientsName VARCHAR(255) NULL, PatientID VARCHAR(255) NULL,
  PatientsBirthDate DATE NULL, PatientsBirthTime TIME NULL, PatientsSex VARCHAR(1) NULL,
  PatientsAge VARCHAR(10) NULL, PatientsComments VARCHAR(255) NULL, InsertTimestamp VARCHAR(20) NOT NULL,
  DisplayedPatientsName VARCHAR(255) NULL, DisplayedNumberOfStudies INT NULL, DisplayedLastStudyDate DATE NULL,
  DisplayedFieldsUpdatedTimestamp DATETIME NULL);
CREATE TABLE Studies (
  StudyInstanceUID VARCHAR(64) NOT NULL, PatientsUID INT NOT NULL, StudyID VARCHAR(255) NULL,
  StudyDate DATE NULL, StudyTime VARCHAR(20) NULL, StudyDescription VARCHAR(255) NULL,
  AccessionNumber VARCHAR(255) NULL, ModalitiesInStudy VARCHAR(255) NULL, InstitutionName VARCHAR(255) NULL,
  ReferringPhysician VARCHAR(255) NULL, PerformingPhysiciansName VARCHAR(255) NULL,
  InsertTimestamp VARCHAR(20) NOT NULL, DisplayedNumberOfSeries INT NULL,
  DisplayedFieldsUpdatedTimestamp DATETIME NULL, PRIMARY KEY (StudyInstanceUID));
CREATE TABLE Series (
  SeriesInstanceUID VARCHAR(64) NOT NULL, StudyInstanceUID VARCHAR(64) NOT NULL, SeriesNumber INT NULL,
  SeriesDate DATE NULL, SeriesTime VARCHAR(20) NULL, SeriesDescription VARCHAR(255) NULL,
  Modality VARCHAR(20) NULL, BodyPartExamined VARCHAR(255) NULL, FrameOfReferenceUID VARCHAR(64) NULL,
  AcquisitionNumber INT NULL, ContrastAgent VARCHAR(255) NULL, ScanningSequence VARCHAR(45) NULL,
  EchoNumber INT NULL, TemporalPosition INT NULL, InsertTimestamp VARCHAR(20) NOT NULL,
  DisplayedCount INT NULL, DisplayedSize VARCHAR(20) NULL, DisplayedNumberOfFrames INT NULL,
  DisplayedFieldsUpdatedTimestamp DATETIME NULL, PRIMARY KEY (SeriesInstanceUID));
CREATE INDEX SeriesStudyIndex ON Series (StudyInstanceUID);
CREATE INDEX StudiesPatientIndex ON Studies (PatientsUID);
"""
IMAGES_07 = """CREATE TABLE Images (SOPInstanceUID VARCHAR(64) NOT NULL, Filename VARCHAR(1024) NOT NULL,
  SeriesInstanceUID VARCHAR(64) NOT NULL, InsertTimestamp VARCHAR(20) NOT NULL,
  DisplayedFieldsUpdatedTimestamp DATETIME NULL, PRIMARY KEY (SOPInstanceUID));"""
IMAGES_08 = """CREATE TABLE Images (SOPInstanceUID VARCHAR(64) NOT NULL, Filename VARCHAR(1024) NOT NULL,
  URL VARCHAR(1024) NOT NULL, SeriesInstanceUID VARCHAR(64) NOT NULL, InsertTimestamp VARCHAR(20) NOT NULL,
  DisplayedFieldsUpdatedTimestamp DATETIME NULL, PRIMARY KEY (SOPInstanceUID));"""


class CtkIndex:
    """A CTK DICOM database (``ctkDICOM.sql``) written as Slicer indexes files: each patient, study and series
    once, then an Images row per file. A context manager: committed and closed on exit."""

    def __init__(self, db_dir: Path, version: str):
        db_dir.mkdir(parents=True, exist_ok=True)
        self.version = version
        self.con = sqlite3.connect(db_dir / "ctkDICOM.sql")
        self.con.executescript(CTK_TABLES + (IMAGES_08 if version.startswith("0.8") else IMAGES_07)
                               + "CREATE INDEX ImagesSeriesIndex ON Images (SeriesInstanceUID);")
        self.con.execute("INSERT INTO SchemaInfo VALUES (?)", (version,))
        self.patients: dict[str, int] = {}
        self.studies: set[str] = set()
        self.series: set[str] = set()

    def add(self, patient_id: str, patient_name: str, study: str, series: str, sop: str, filename: str, *,
            url: str = "", series_number=None, description: str = "", modality: str = "MR") -> None:
        con = self.con
        if patient_id not in self.patients:
            cur = con.execute("INSERT INTO Patients (PatientsName, PatientID, InsertTimestamp) VALUES (?, ?, 'now')",
                              (patient_name, patient_id))
            self.patients[patient_id] = cur.lastrowid
        if study not in self.studies:
            self.studies.add(study)
            con.execute("INSERT INTO Studies (StudyInstanceUID, PatientsUID, InsertTimestamp) VALUES (?, ?, 'now')",
                        (study, self.patients[patient_id]))
        if series not in self.series:
            self.series.add(series)
            con.execute("INSERT INTO Series (SeriesInstanceUID, StudyInstanceUID, SeriesNumber, SeriesDescription, "
                        "Modality, InsertTimestamp) VALUES (?, ?, ?, ?, ?, 'now')",
                        (series, study, series_number, description, modality))
        if self.version.startswith("0.8"):
            con.execute("INSERT INTO Images (SOPInstanceUID, Filename, URL, SeriesInstanceUID, InsertTimestamp) "
                        "VALUES (?, ?, ?, ?, 'now')", (sop, filename, url, series))
        else:
            con.execute("INSERT INTO Images (SOPInstanceUID, Filename, SeriesInstanceUID, InsertTimestamp) "
                        "VALUES (?, ?, ?, 'now')", (sop, filename, series))

    def __enter__(self) -> CtkIndex:
        return self

    def __exit__(self, *exc) -> None:
        self.con.commit()
        self.con.close()
