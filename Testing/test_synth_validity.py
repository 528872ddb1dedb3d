"""Generated DICOM is valid: required attributes of each IOD, dcm2niix converts it with the right orientation."""

from __future__ import annotations

import shutil
import subprocess

import nibabel as nib
import numpy as np
import pydicom
import pytest
from synth_fakes import make_spec, write_fake_series

from SeriesClassifierLib.synth.profiles import PROFILES

# Type 1 attributes per module (PS3.3), top level; Type 2 must be present but may be empty.
TYPE1_COMMON = {
    "SOP Common": ["SOPClassUID", "SOPInstanceUID"],
    "General Study": ["StudyInstanceUID"],
    "General Series": ["Modality", "SeriesInstanceUID"],
    "Frame of Reference": ["FrameOfReferenceUID"],
    "Image Pixel": ["SamplesPerPixel", "PhotometricInterpretation", "Rows", "Columns", "BitsAllocated", "BitsStored",
                    "HighBit", "PixelRepresentation", "PixelData"],
}
TYPE2_COMMON = {
    "Patient": ["PatientName", "PatientID", "PatientBirthDate", "PatientSex"],
    "General Study": ["StudyDate", "StudyTime", "ReferringPhysicianName", "StudyID", "AccessionNumber"],
    "General Series": ["SeriesNumber"],
    "Frame of Reference": ["PositionReferenceIndicator"],
    "General Equipment": ["Manufacturer"],
}
TYPE1_CLASSIC = {
    "Image Plane": ["PixelSpacing", "ImageOrientationPatient", "ImagePositionPatient"],
    "MR Image": ["ImageType", "ScanningSequence", "SequenceVariant"],
}
TYPE2_CLASSIC = {
    "General Image": ["InstanceNumber"],
    "Image Plane": ["SliceThickness"],
    "MR Image": ["MRAcquisitionType", "EchoTime"],
}
TYPE1_ENHANCED = {
    "Enhanced General Equipment": ["Manufacturer", "ManufacturerModelName", "DeviceSerialNumber", "SoftwareVersions"],
    "Multi-frame Functional Groups": ["PerFrameFunctionalGroupsSequence", "InstanceNumber", "ContentDate",
                                      "ContentTime", "NumberOfFrames"],
    "Multi-frame Dimension": ["DimensionOrganizationSequence", "DimensionIndexSequence"],
    "Enhanced MR Image": ["ImageType", "PixelPresentation", "VolumetricProperties", "VolumeBasedCalculationTechnique",
                          "ComplexImageComponent", "AcquisitionContrast", "ContentQualification", "ResonantNucleus",
                          "KSpaceFiltering", "MagneticFieldStrength"],
    "Enhanced MR Image (C, original)": ["AcquisitionDateTime", "AcquisitionDuration"],
    "MR Pulse Sequence (C, original)": ["PulseSequenceName", "MRAcquisitionType", "EchoPulseSequence",
                                        "MultipleSpinEcho", "MultiPlanarExcitation", "PhaseContrast",
                                        "TimeOfFlightContrast", "SteadyStatePulseSequence", "EchoPlanarPulseSequence",
                                        "SaturationRecovery", "SpectrallySelectedSuppression", "OversamplingPhase",
                                        "GeometryOfKSpaceTraversal", "SegmentedKSpaceTraversal", "CoverageOfKSpace",
                                        "NumberOfKSpaceTrajectories"],
}
TYPE2_ENHANCED = {"Acquisition Context": ["AcquisitionContextSequence"],
                  "Multi-frame Functional Groups": ["SharedFunctionalGroupsSequence"]}


def _missing(ds: pydicom.Dataset, table: dict, type1: bool) -> list[str]:
    out = []
    for module, keywords in table.items():
        for kw in keywords:
            if kw not in ds or (type1 and (ds[kw].value is None or ds[kw].value == "")):
                out.append(f"{module}: {kw}")
    return out


def iod_problems(ds: pydicom.Dataset, dropped: tuple[str, ...] = ()) -> list[str]:
    """Missing Type 1 / Type 2 attributes of the MR IODs (deliberately dropped optional tags excused)."""
    problems = _missing(ds, TYPE1_COMMON, True) + _missing(ds, TYPE2_COMMON, False)
    if ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.4.1":
        t1 = dict(TYPE1_ENHANCED)
        if ds.ImageType[0] == "DERIVED":
            t1 = {k: v for k, v in t1.items() if "original" not in k}
        problems += _missing(ds, t1, True) + _missing(ds, TYPE2_ENHANCED, False)
        shared = ds.SharedFunctionalGroupsSequence[0]
        for need in ("PixelMeasuresSequence", "MRImageFrameTypeSequence", "FrameAnatomySequence"):
            if need not in shared:
                problems.append(f"shared functional group {need}")
        for i, frame in enumerate(ds.PerFrameFunctionalGroupsSequence):
            if "FrameContentSequence" not in frame or "PlanePositionSequence" not in frame:
                problems.append(f"frame {i}: Frame Content / Plane Position")
            if "PlaneOrientationSequence" not in frame and "PlaneOrientationSequence" not in shared:
                problems.append(f"frame {i}: Plane Orientation")
            if "DimensionIndexValues" not in frame.FrameContentSequence[0]:
                problems.append(f"frame {i}: DimensionIndexValues")
        if len(ds.PerFrameFunctionalGroupsSequence) != int(ds.NumberOfFrames):
            problems.append("NumberOfFrames != per-frame items")
    else:
        problems += _missing(ds, TYPE1_CLASSIC, True)
        problems += [p for p in _missing(ds, TYPE2_CLASSIC, False) if p.split(": ")[1] not in dropped]
    return problems


CASES = [
    ("t2_tse", "siemens_skyra_3t", "classic", "AXIAL"),
    ("t2_tse", "ge_optima_15t", "classic", "SAGITTAL"),
    ("flair_2d", "philips_achieva_15t", "classic", "CORONAL"),
    ("t1_se", "canon_vantage_15t", "classic", "OBLIQUE"),
    ("dwi", "siemens_skyra_3t", "mosaic", "AXIAL"),
    ("bold", "anonymised_research", "mosaic", "OBLIQUE"),
    ("dwi", "philips_ingenia_3t", "enhanced", "AXIAL"),
    ("t1_3d_ir", "siemens_xa_vida_3t", "enhanced", "SAGITTAL"),
    ("dsc", "canon_vantage_15t", "enhanced", "OBLIQUE"),
    ("t2_tse", "philips_ingenia_3t", "enhanced", "CORONAL"),
    ("adc", "siemens_xa_vida_3t", "enhanced", "AXIAL"),
    ("dwi", "siemens_xa_vida_3t", "enhanced", "OBLIQUE"),
    ("dti", "siemens_xa_vida_3t", "enhanced", "AXIAL"),
    ("dti", "siemens_skyra_3t", "mosaic", "AXIAL"),
    ("dti", "ge_signa_premier_3t", "classic", "AXIAL"),
]


def _case_spec(tech, profile, orientation):
    plane = orientation if orientation != "OBLIQUE" else "AXIAL"
    extra = {"b_values": (0.0, 1000.0)} if tech == "dwi" else {}
    if tech == "dti":
        extra["b_values"] = (0.0, 1000.0, 1000.0, 1000.0)
    if tech in ("bold", "dsc"):
        extra["n_temporal"] = 3
    spec = make_spec(tech, profile, rows=40, columns=48, n_slices=7, plane=plane, **extra)
    spec.orientation = orientation
    spec.tilt_degrees = (32.0, 0.0) if orientation == "OBLIQUE" else (3.0, -2.0)
    spec.extra["base_plane"] = spec.extra["oblique_base"] = plane
    return spec


@pytest.mark.parametrize("tech,profile,storage,orientation", CASES)
def test_required_attributes_present(tmp_path, tech, profile, storage, orientation):
    spec = _case_spec(tech, profile, orientation)
    _, paths = write_fake_series(tmp_path, spec, profile, storage=storage)
    for path in paths:
        ds = pydicom.dcmread(path)
        assert iod_problems(ds, tuple(spec.extra.get("drop_tags", ()))) == [], path
        assert ds.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
        assert ds.Manufacturer == PROFILES[profile].manufacturer


def nifti_normal_lps(img: nib.Nifti1Image, n_slices: int) -> np.ndarray:
    """Unit slice-axis direction of a NIfTI (the axis with ``n_slices`` voxels), in DICOM LPS."""
    axis = [i for i in range(3) if img.shape[i] == n_slices][-1]
    v = img.affine[:3, axis] * np.array([-1.0, -1.0, 1.0])
    return v / np.linalg.norm(v)


def test_dcm2niix_is_installed():
    assert shutil.which("dcm2niix"), "dcm2niix (dev extra, PyPI package dcm2niix) is needed for the conversion tests"


@pytest.mark.parametrize("tech,profile,storage,orientation", CASES)
def test_dcm2niix_converts_with_matching_orientation(tmp_path, tech, profile, storage, orientation):
    spec = _case_spec(tech, profile, orientation)
    rendered, _ = write_fake_series(tmp_path / "dcm", spec, profile, storage=storage)
    out = tmp_path / "nii"
    out.mkdir()
    subprocess.run(["dcm2niix", "-b", "n", "-z", "n", "-o", str(out), str(tmp_path / "dcm")],
                   check=True, capture_output=True)
    niis = sorted(out.glob("*.nii"))
    assert len(niis) == 1, [p.name for p in niis]
    img = nib.load(niis[0])
    iop = np.asarray(rendered.orientations[0])
    expected = np.cross(iop[:3], iop[3:])
    assert abs(float(nifti_normal_lps(img, spec.n_slices) @ expected)) > 0.999
    n_vol = max(len(spec.b_values), spec.n_temporal)
    assert img.shape[:3] == (48, 40, 7) or sorted(img.shape[:3]) == sorted((48, 40, 7))
    assert (img.shape[3] if img.ndim == 4 else 1) == n_vol
    normal = nifti_normal_lps(img, spec.n_slices)
    tilt = np.degrees(np.arccos(np.max(np.abs(normal))))
    assert (tilt > 20) == (orientation == "OBLIQUE")


# --- one real study through the real renderer ---------------------------------------------------------------------

AXES = {"SAGITTAL": 0, "CORONAL": 1, "AXIAL": 2}


@pytest.fixture(scope="module")
def real_study(tmp_path_factory):
    from SeriesClassifierLib.synth.anatomy import make_phantom
    from SeriesClassifierLib.synth.generate import generate_study
    from SeriesClassifierLib.synth.render import render_series

    def smaller(spec, phantom, rng):  # same geometry rules, fewer pixels: keeps the test quick
        scale = min(1.0, 96 / max(spec.rows, spec.columns))
        spec.rows, spec.columns = int(spec.rows * scale), int(spec.columns * scale)
        spec.pixel_spacing = (spec.pixel_spacing[0] / scale, spec.pixel_spacing[1] / scale)
        if spec.acquisition == "3D" and spec.n_slices > 48:
            spec.slice_thickness = spec.slice_spacing = spec.slice_spacing * spec.n_slices / 48
            spec.n_slices = 48
        return render_series(spec, phantom, rng)

    out = tmp_path_factory.mktemp("real")
    rows = generate_study(out, PROFILES["siemens_skyra_3t"], seed=21, index=0, make_phantom=make_phantom,
                          render=smaller, study_type="routine")
    return out / "study_0000", rows, lambda dest: generate_study(
        dest, PROFILES["siemens_skyra_3t"], seed=21, index=0, make_phantom=make_phantom, render=smaller,
        study_type="routine")


def test_real_study_is_byte_identical_when_regenerated(real_study, tmp_path):
    folder, rows, again = real_study
    assert again(tmp_path) == rows
    first = {p.relative_to(folder): p.read_bytes() for p in folder.rglob("*.dcm")}
    second = {p.relative_to(tmp_path / "study_0000"): p.read_bytes() for p in (tmp_path / "study_0000").rglob("*.dcm")}
    assert first.keys() == second.keys()
    assert all(first[k] == second[k] for k in first)


def test_real_study_every_series_written_valid_and_converted(real_study, tmp_path):
    folder, rows, _ = real_study
    series_dirs = sorted(p for p in folder.iterdir() if p.is_dir())
    assert len(series_dirs) == len(rows) >= 8
    by_uid = {r.series_uid: r for r in rows}
    for d in series_dirs:
        files = sorted(d.glob("*.dcm"))
        ds = pydicom.dcmread(files[0])
        row = by_uid[ds.SeriesInstanceUID]
        assert iod_problems(ds, ("EchoTrainLength", "InversionTime", "SequenceName")) == [], d
        out = tmp_path / d.name
        out.mkdir()
        subprocess.run(["dcm2niix", "-b", "n", "-z", "n", "-o", str(out), str(d)], check=True, capture_output=True)
        niis = sorted(out.glob("*.nii"))
        assert niis, f"dcm2niix wrote nothing for {d.name} ({row.sequence})"
        if row.orientation == "MIXED":
            continue
        n_slices = len(files) if "MOSAIC" not in ds.ImageType else int(ds[0x0019, 0x100A].value)
        if "NumberOfFrames" in ds:
            n_slices = len({tuple(f.PlanePositionSequence[0].ImagePositionPatient)
                            for f in ds.PerFrameFunctionalGroupsSequence})
        elif "MOSAIC" not in ds.ImageType:
            n_slices = len({tuple(pydicom.dcmread(f, stop_before_pixels=True).ImagePositionPatient) for f in files})
        img = nib.load(niis[0])
        normal = np.abs(nifti_normal_lps(img, n_slices))
        angle = np.degrees(np.arccos(np.clip(normal.max(), -1, 1)))
        if row.orientation == "OBLIQUE":
            assert angle > 20, (d.name, row.sequence, angle)
        else:
            assert angle < 20 and int(np.argmax(normal)) == AXES[row.orientation], (d.name, row.sequence, normal)
