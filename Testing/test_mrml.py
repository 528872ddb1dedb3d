"""MRML glue against the real MRML classes (slicer-core), headless.

The overlay must land on the same physical points as the DICOM series it explains; the colour table
and results table must survive a saved scene.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from SeriesClassifierLib.prediction import ModelOutput, SeriesPrediction, TaskPrediction
from SeriesClassifierLib.series import Geometry
from SeriesClassifierLib.slicer import mrml
from SeriesClassifierLib.vocabulary import load_vocabulary

slicer = pytest.importorskip("slicer")
pytestmark = pytest.mark.mrml
if not hasattr(slicer, "vtkMRMLScene"):  # the unrelated PyPI package "slicer" shadows slicer-core
    pytest.fail("the installed 'slicer' package is not slicer-core (no vtkMRMLScene)", pytrace=False)


def _rotation(axis: str, degrees: float) -> np.ndarray:
    c, s = math.cos(math.radians(degrees)), math.sin(math.radians(degrees))
    return {
        "x": np.array([[1, 0, 0], [0, c, -s], [0, s, c]]),
        "y": np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]]),
        "z": np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]]),
    }[axis]


def oblique_geometry(n_slices: int = 7, tilt_step: np.ndarray | None = None) -> Geometry:
    """An axial stack turned 30° about x then 25° about y: oblique by the vocabulary's 20° rule.

    Rows ≠ columns and row spacing ≠ column spacing, so any swap of i/j or of the two spacings shows.
    """
    r = _rotation("y", 25) @ _rotation("x", 30)
    row_dir, col_dir = r @ np.array([1.0, 0, 0]), r @ np.array([0, 1.0, 0])
    normal = np.cross(row_dir, col_dir)
    origin = np.array([-95.5, -120.25, 33.0])
    step = normal * 4.5 if tilt_step is None else tilt_step
    positions = [tuple(origin + k * step) for k in range(n_slices)]
    return Geometry(
        rows=12,
        columns=9,
        pixel_spacing=(0.8, 1.3),  # (between rows, between columns)
        orientations=[tuple(np.concatenate([row_dir, col_dir]))],
        positions=positions,
        slice_thickness=4.0,
        spacing_between_slices=4.5,
    )


def dicom_lps(geometry: Geometry, i: int, j: int, k: int) -> np.ndarray:
    """PS3.3 C.7.6.2.1.1: P = S_k + X·Δi·i + Y·Δj·j with Δi the column spacing, Δj the row spacing."""
    iop = np.asarray(geometry.orientations[0])
    x, y = iop[:3], iop[3:]
    delta_j, delta_i = geometry.pixel_spacing
    return np.asarray(geometry.positions[k]) + x * delta_i * i + y * delta_j * j


def node_ras(node, i: int, j: int, k: int) -> np.ndarray:
    return (mrml.matrix_from_vtk(_ijk_to_ras(node)) @ np.array([i, j, k, 1.0]))[:3]


def _ijk_to_ras(node):
    import vtk

    m = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(m)
    return m


VOXELS = [(0, 0, 0), (8, 0, 0), (0, 11, 0), (8, 11, 6), (3, 5, 2), (7, 1, 4)]


@pytest.fixture()
def scene():
    return slicer.vtkMRMLScene()


def test_oblique_overlay_lands_on_the_dicom_positions(scene):
    geometry = oblique_geometry()
    heat = np.random.default_rng(0).random((7, 12, 9)).astype(np.float32)
    node = mrml.create_overlay_volume(scene, heat, geometry)
    for i, j, k in VOXELS:
        lps = dicom_lps(geometry, i, j, k)
        expected_ras = np.array([-lps[0], -lps[1], lps[2]])
        np.testing.assert_allclose(node_ras(node, i, j, k), expected_ras, atol=1e-6)
    # the voxel values stay where they were: array[k, j, i] is column i, row j of slice k
    np.testing.assert_array_equal(mrml.volume_array(node), heat)
    assert node.GetImageData().GetDimensions() == (9, 12, 7)


def test_gantry_tilted_stack_keeps_its_shear(scene):
    r = _rotation("x", 30)
    normal = np.cross(r @ [1.0, 0, 0], r @ [0, 1.0, 0])
    tilted = normal * 4.5 + np.array([0.0, 1.2, 0.0])  # positions drift off the normal, as with gantry tilt
    geometry = oblique_geometry(n_slices=5, tilt_step=tilted)
    node = mrml.create_overlay_volume(scene, np.zeros((5, 12, 9)), geometry)
    for i, j, k in [(0, 0, 4), (8, 11, 3)]:
        lps = dicom_lps(geometry, i, j, k)
        np.testing.assert_allclose(node_ras(node, i, j, k), [-lps[0], -lps[1], lps[2]], atol=1e-6)


def test_single_slice_uses_the_normal_and_spacing():
    geometry = oblique_geometry(n_slices=1)
    m = mrml.ijk_to_lps(geometry)
    iop = np.asarray(geometry.orientations[0])
    normal = np.cross(iop[:3], iop[3:])
    np.testing.assert_allclose(m[:3, 2], normal * 4.5, atol=1e-9)


def test_mixed_planes_and_wrong_shapes_are_refused(scene):
    geometry = oblique_geometry()
    mixed = Geometry(
        rows=12, columns=9, pixel_spacing=(1, 1), positions=geometry.positions,
        orientations=[(1, 0, 0, 0, 1, 0), (0, 1, 0, 0, 0, -1)],
    )
    with pytest.raises(ValueError, match="MIXED"):
        mrml.ijk_to_ras(mixed)
    with pytest.raises(ValueError, match="does not match the series grid"):
        mrml.create_overlay_volume(scene, np.zeros((7, 9, 12)), geometry)
    with pytest.raises(ValueError, match="ImagePositionPatient"):
        mrml.ijk_to_ras(Geometry(rows=2, columns=2, pixel_spacing=(1, 1), orientations=[(1, 0, 0, 0, 1, 0)],
                                 positions=[]))


def test_overlay_node_is_reused_and_uses_the_heat_table(scene):
    geometry = oblique_geometry()
    first = mrml.create_overlay_volume(scene, np.zeros((7, 12, 9)), geometry)
    again = mrml.create_overlay_volume(scene, np.ones((7, 12, 9)), geometry, node=first)
    assert again is first
    assert mrml.volume_array(first).max() == 1.0
    table = scene.GetFirstNodeByName(mrml.HEAT_COLOR_TABLE_NAME)
    assert first.GetDisplayNode().GetColorNodeID() == table.GetID()
    assert mrml.create_heat_color_table(scene) is table  # one table per scene
    display = first.GetDisplayNode()
    assert (display.GetWindowLevelMin(), display.GetWindowLevelMax()) == pytest.approx((mrml.HEAT_THRESHOLD, 1.0))
    assert display.GetApplyThreshold() and display.GetLowerThreshold() == pytest.approx(mrml.HEAT_THRESHOLD)


def test_heat_colors_rise_from_transparent():
    rgba = mrml.heat_colors(256)
    assert rgba.shape == (256, 4)
    assert rgba[0, 3] == 0.0 and rgba[-1].tolist() == [1.0, 1.0, 1.0, 1.0]
    assert np.all(np.diff(rgba[:, 3]) >= 0) and np.all(np.diff(rgba[:, 0]) >= 0)


def test_set_foreground_on_every_slice_view(scene):
    composites = []
    for _ in range(3):
        c = slicer.vtkMRMLSliceCompositeNode()
        scene.AddNode(c)
        composites.append(c)
    background = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "series")
    overlay = mrml.create_overlay_volume(scene, np.zeros((7, 12, 9)), oblique_geometry())
    mrml.set_foreground(scene, overlay, 0.4, background_node=background)
    for c in composites:
        assert c.GetForegroundVolumeID() == overlay.GetID()
        assert c.GetBackgroundVolumeID() == background.GetID()
        assert c.GetForegroundOpacity() == pytest.approx(0.4)
    mrml.set_foreground_opacity(scene, 0.9)
    assert all(c.GetForegroundOpacity() == pytest.approx(0.9) for c in composites)


def _prediction(uid: str, seq: str, p: float, cnn_seq: str | None, needs_review: bool) -> SeriesPrediction:
    vocab = load_vocabulary()
    attributes = {a.code: TaskPrediction(a.values[0], 0.9) for a in vocab.attributes}
    models = {"forest": ModelOutput("forest", sequence=TaskPrediction(seq, p))}
    if cnn_seq:
        models["cnn"] = ModelOutput("cnn", sequence=TaskPrediction(cnn_seq, 0.7))
    return SeriesPrediction(
        series_uid=uid, study_uid="1.2.9", series_number=int(uid.rsplit(".", 1)[1]),
        series_description="t2_tse_tra ä", n_images=24,
        sequence=TaskPrediction(seq, p), orientation=TaskPrediction("AXIAL", 0.99), attributes=attributes,
        needs_review=needs_review, reasons=["models disagree"] if needs_review else [], models=models,
        model_version="test-1",
    )


def test_results_rows_carry_predictions_agreement_and_labels():
    vocab = load_vocabulary()
    seq = vocab.sequence_codes
    preds = [_prediction("1.2.3.1", seq[5], 0.93, seq[5], False), _prediction("1.2.3.2", seq[1], 0.41, seq[2], True),
             _prediction("1.2.3.3", seq[0], 0.88, None, False)]
    labels = {"1.2.3.2": {"sequence": seq[2], "orientation": "AXIAL", "state": "corrected"}}
    rows = mrml.result_rows(preds, labels)
    assert [r["agreement"] for r in rows] == ["yes", "no", "forest only"]
    assert rows[1]["label_sequence"] == seq[2] and rows[1]["review_state"] == "corrected"
    assert rows[0]["review_state"] == "unreviewed" and rows[0]["label_sequence"] == ""
    names = [c.name for c in mrml.result_columns()]
    assert set(rows[0]) == set(names)
    for a in vocab.attributes:  # one column per auxiliary attribute, from the vocabulary
        assert f"attr_{a.code}" in names


def test_colour_and_results_tables_round_trip_through_a_saved_scene(scene, tmp_path):
    seq = load_vocabulary().sequence_codes
    preds = [_prediction("1.2.3.1", seq[5], 0.93, seq[5], False), _prediction("1.2.3.2", seq[1], 0.41, seq[2], True)]
    preds[1].sequence = None  # a series that could not be classified still has a row
    preds[1].error = "no pixel data, no headers"
    rows = mrml.result_rows(preds, {"1.2.3.1": {"sequence": seq[6], "orientation": "CORONAL", "state": "corrected"}})
    table = mrml.create_results_table(scene, rows)
    colors = mrml.create_heat_color_table(scene)
    geometry = oblique_geometry()
    heat = np.random.default_rng(1).random((7, 12, 9)).astype(np.float32)
    overlay = mrml.create_overlay_volume(scene, heat, geometry, name="Grad-CAM 1.2.3.1", color_node=colors)

    path = mrml.save_nodes(scene, [table, colors, overlay], str(tmp_path / "saved"))
    loaded = mrml.load_scene(path)

    table2 = loaded.GetFirstNodeByName("SeriesClassifier results")
    got = mrml.table_rows(table2)
    assert len(got) == 2
    for want, have in zip(rows, got):
        for key, value in want.items():
            if isinstance(value, float) and math.isnan(value):
                assert math.isnan(have[key]), key
            elif isinstance(value, float):
                assert have[key] == pytest.approx(value), key
            else:
                assert have[key] == value, key
    assert table2.GetColumnTitle("sequence_probability") == "P(seq)"

    colors2 = loaded.GetFirstNodeByName(mrml.HEAT_COLOR_TABLE_NAME)
    # colour files keep 8 bits per channel
    np.testing.assert_allclose(mrml.color_table_rgba(colors2), mrml.heat_colors(256), atol=1 / 255 + 1e-9)

    overlay2 = loaded.GetFirstNodeByName("Grad-CAM 1.2.3.1")
    np.testing.assert_allclose(mrml.volume_array(overlay2), heat)
    np.testing.assert_allclose(mrml.matrix_from_vtk(_ijk_to_ras(overlay2)), mrml.ijk_to_ras(geometry), atol=1e-5)
    assert overlay2.GetDisplayNode().GetColorNodeID() == colors2.GetID()


def test_overlay_matches_every_file_of_a_real_oblique_dicom_series(scene, tmp_path):
    """From DICOM files through the engine's header reading: each file's pixels land on whole voxels."""
    import pydicom
    from dicom_factory import write_series

    from SeriesClassifierLib.dicom.headers import read_series
    from SeriesClassifierLib.dicom.sources import iter_series_refs

    r = _rotation("z", 20) @ _rotation("x", 35)  # oblique: 35° off axial, then turned in-plane
    iop = tuple(np.round(np.concatenate([r @ [1.0, 0, 0], r @ [0, 1.0, 0]]), 6))
    write_series(tmp_path / "obl", "FLAIR_2D", n_slices=6, iop=iop, size=8)
    (ref,) = list(iter_series_refs(tmp_path))
    geometry = read_series(ref).geometry
    node = mrml.create_overlay_volume(scene, np.zeros((6, 8, 8)), geometry)
    ras_to_ijk = np.linalg.inv(mrml.matrix_from_vtk(_ijk_to_ras(node)))
    seen_k = set()
    for path in ref.files:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        x, y = np.array(ds.ImageOrientationPatient[:3], float), np.array(ds.ImageOrientationPatient[3:], float)
        delta_j, delta_i = (float(v) for v in ds.PixelSpacing)
        for i, j in [(0, 0), (7, 0), (0, 7), (5, 3)]:
            lps = np.array(ds.ImagePositionPatient, float) + x * delta_i * i + y * delta_j * j
            ijk = (ras_to_ijk @ np.array([-lps[0], -lps[1], lps[2], 1.0]))[:3]
            np.testing.assert_allclose(ijk[:2], [i, j], atol=1e-3)  # DS strings carry ~6 digits
            k = round(float(ijk[2]))
            assert abs(ijk[2] - k) < 1e-3 and 0 <= k < 6
            seen_k.add(k)
    assert seen_k == set(range(6))  # every file is one slice of the overlay, none shared
