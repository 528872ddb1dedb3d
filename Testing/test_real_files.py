"""The bundled forest on the real files pydicom and pydicom-data ship: nothing crashes, every
series gets a prediction or a clear reason why not. Run with -s to see the table."""

from __future__ import annotations

from pathlib import Path

import pydicom.data
import pytest

from SeriesClassifierLib.dicom.sources import FolderSource
from SeriesClassifierLib.models.bundle import load_bundle
from SeriesClassifierLib.run.pipeline import classify


def packaged_files() -> list[Path]:
    folders = [Path(pydicom.data.__file__).parent / "test_files"]
    try:
        import data_store  # pydicom-data

        folders.append(Path(data_store.__file__).parent / "data")
    except ImportError:
        pass
    return sorted(p for folder in folders for p in folder.rglob("*") if p.is_file())


MR_FILES = ["MR_small.dcm", "MR_small_bigendian.dcm", "MR_small_implicit.dcm", "MR_truncated.dcm", "emri_small.dcm",
            "MR-SIEMENS-DICOM-WithOverlays.dcm", "MR2_UNCR.dcm", "MR2_J2KI.dcm", "examples_overlay.dcm"]


@pytest.fixture(scope="module")
def results():
    bundle = load_bundle(load_cnn=False)
    rows = []
    for path in packaged_files():
        source = FolderSource(path)
        predictions = list(classify(list(source), bundle, use_cnn=False))
        rows.append((path, predictions, source.problems, source.ignored))
    return rows


def test_every_packaged_file_gets_a_prediction_or_a_reason(results):
    assert len(results) > 100
    lines = []
    for path, predictions, problems, ignored in results:
        if not predictions:
            # not DICOM at all, or DICOM without a SeriesInstanceUID: ignored or reported, never a crash
            assert ignored or problems, path
            continue
        for p in predictions:
            if p.error:
                assert p.error.startswith("skipped: ") and len(p.error) > 12, (path, p.error)
                lines.append(f"{path.name:45s} {p.error}")
            else:
                assert p.sequence is not None and 0 < p.sequence.probability <= 1
                forest = next((r for r in p.reasons if r.startswith("forest: ")), "")
                lines.append(f"{path.name:45s} {p.sequence.label:12s} {p.sequence.probability:.2f} "
                             f"{p.orientation.label if p.orientation else '-':9s} "
                             f"{'REVIEW ' if p.needs_review else ''}{forest}")
    print("\n" + "\n".join(lines))


def _packaged(by_name: dict, name: str) -> None:
    """pydicom 2.4 (Slicer 5.6/5.8) ships fewer files (it downloads the rest on demand): skip those only there."""
    import pydicom

    if name not in by_name and int(pydicom.__version__.split(".")[0]) < 3:
        pytest.skip(f"{name} is not packaged with pydicom {pydicom.__version__}")


def test_the_real_mr_images_are_classified_not_skipped(results):
    by_name = {path.name: predictions for path, predictions, _, _ in results}
    import pydicom

    if int(pydicom.__version__.split(".")[0]) < 3:
        assert sum(n in by_name for n in MR_FILES) >= len(MR_FILES) - 1  # pydicom 2.4 lacks examples_overlay.dcm
    for name in MR_FILES:
        if name not in by_name and int(pydicom.__version__.split(".")[0]) < 3:
            continue
        assert name in by_name, name
        (p,) = by_name[name]
        assert p.error is None and p.sequence is not None, (name, p.error)


def test_non_images_are_skipped_with_what_they_are(results):
    by_name = {path.name: predictions for path, predictions, _, _ in results}
    for name in ("reportsi.dcm", "rtplan.dcm", "liver.dcm", "CT_small.dcm", "SC_jpeg_no_color_transform.dcm"):
        _packaged(by_name, name)
    assert "structured report" in by_name["reportsi.dcm"][0].error
    assert "radiotherapy" in by_name["rtplan.dcm"][0].error
    assert "segmentation" in by_name["liver.dcm"][0].error
    assert "modality CT" in by_name["CT_small.dcm"][0].error
    assert "not an MR image" in by_name["SC_jpeg_no_color_transform.dcm"][0].error


def test_an_mr_header_without_timing_goes_to_review(results):
    by_name = {path.name: predictions for path, predictions, _, _ in results}
    _packaged(by_name, "emri_small.dcm")
    (p,) = by_name["emri_small.dcm"]  # enhanced MR with its functional groups stripped
    assert p.needs_review and any("no MR acquisition parameters" in r for r in p.reasons)
