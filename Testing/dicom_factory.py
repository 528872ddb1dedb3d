"""Small hand-made MR DICOM files for the engine tests (header-focused, 8×8 pixels).

Not a simulator: just enough header variety to exercise sources, header reading,
features and a toy forest quickly. The generator (synth/) makes realistic studies.
"""

from __future__ import annotations

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
) -> tuple[str, list[Path]]:
    """Write n single-frame MR images of one series; returns (series uid, files)."""
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
    description: str = "",
) -> str:
    """One enhanced MR file; TR/TE/TI/flip in shared functional groups, b-value and geometry per frame."""
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
    normal = np.cross(np.array(iop[:3]), np.array(iop[3:]))
    per_frame = []
    for f in range(frames):
        item = Dataset()
        pos = Dataset()
        n_b = len(b_values) if b_values else 1
        pos.ImagePositionPatient = [float(v) for v in normal * 4.0 * (f // n_b)]
        item.PlanePositionSequence = Sequence([pos])
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


class FlatPhantom:
    """Just enough of a phantom for the generator's slice geometry (tests that need headers, not images)."""

    brain_center = np.zeros(3)

    def template_to_world(self, points):
        return np.asarray(points, dtype=float)


def cheap_render(spec, phantom, rng):
    """The generator's geometry and per-frame values with 16×16 flat images: realistic headers, fast."""
    from SeriesClassifierLib.synth.render import slice_geometry
    from SeriesClassifierLib.synth.spec import RenderedSeries

    planes = slice_geometry(spec, phantom, rng)
    volumes = len(spec.b_values) if spec.b_values else max(int(spec.n_temporal or 1), 1)
    per_frame = {}
    if spec.b_values:
        per_frame["b_values"] = [float(b) for b in spec.b_values for _ in planes]
    elif volumes > 1:
        per_frame["temporal_indices"] = [v for v in range(volumes) for _ in planes]
    return RenderedSeries(
        frames=np.full((len(planes) * volumes, 16, 16), 100.0, dtype=np.float32),
        positions=[tuple(float(x) for x in p.origin) for p in planes] * volumes,
        orientations=[tuple(float(x) for x in (*p.row, *p.col)) for p in planes] * volumes,
        pixel_spacing=(float(spec.pixel_spacing[0]), float(spec.pixel_spacing[1])),
        slice_thickness=float(spec.slice_thickness),
        signed="PHASE" in spec.sequence or spec.sequence == "FIELDMAP",
        **per_frame,
    )
