"""The Grad-CAM overlay on real MRML classes (slicer-core): graded and see-through where cold, own layers only,
no leaked collections."""

from __future__ import annotations

import numpy as np
import pytest

from SeriesClassifierLib.series import Geometry
from SeriesClassifierLib.slicer import mrml

slicer = pytest.importorskip("slicer")
if not hasattr(slicer, "vtkMRMLScene"):
    pytest.skip("the installed 'slicer' package is not slicer-core", allow_module_level=True)
pytestmark = pytest.mark.mrml


def _geometry(n_slices=2, rows=4, cols=16) -> Geometry:
    return Geometry(rows=rows, columns=cols, pixel_spacing=(1.0, 1.0), orientations=[(1, 0, 0, 0, 1, 0)] * n_slices,
                    positions=[(0, 0, float(k)) for k in range(n_slices)])


def displayed_rgba(volume_node) -> np.ndarray:
    """What Slicer's slice layer receives from the volume's display node: RGBA per voxel, [k, j, i, 4]."""
    from vtk.util import numpy_support

    display = volume_node.GetDisplayNode()
    display.SetInputImageDataConnection(volume_node.GetImageDataConnection())  # as vtkMRMLSliceLayerLogic does
    display.UpdateImageDataPipeline()
    connection = display.GetOutputImageDataConnection()
    producer = connection.GetProducer()
    producer.Update()
    image = producer.GetOutputDataObject(connection.GetIndex())
    i, j, k = image.GetDimensions()
    return numpy_support.vtk_to_numpy(image.GetPointData().GetScalars()).reshape(k, j, i, -1)


def test_the_overlay_is_graded_and_cold_voxels_are_transparent():
    scene = slicer.vtkMRMLScene()
    geometry = _geometry()
    ramp = np.linspace(0.0, 1.0, 16, dtype=np.float32)
    node = mrml.create_overlay_volume(scene, np.tile(ramp, (2, 4, 1)), geometry)
    rgba = displayed_rgba(node)[0, 0]  # one row of the ramp
    cold, hot = ramp < mrml.HEAT_THRESHOLD, ramp >= mrml.HEAT_THRESHOLD + 0.01
    assert rgba.shape == (16, 4)
    assert np.all(rgba[cold, 3] == 0), f"cold voxels drawn: alpha {rgba[cold, 3]}"
    assert np.all(rgba[hot, 3] == 255)
    colours = {tuple(c) for c in rgba[hot, :3]}
    assert len(colours) >= 8, "hot voxels must be graded, not one colour"
    red = rgba[hot, 0].astype(int) + rgba[hot, 1] + rgba[hot, 2]
    assert np.all(np.diff(red) >= 0) and red[-1] > red[0]  # brighter with heat


def test_hiding_the_overlay_leaves_other_views_alone():
    scene = slicer.vtkMRMLScene()
    composites = [scene.AddNode(slicer.vtkMRMLSliceCompositeNode()) for _ in range(3)]
    overlay = mrml.create_overlay_volume(scene, np.zeros((2, 4, 16), np.float32), _geometry())
    users = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "the user's own foreground")
    mrml.set_foreground(scene, overlay, 0.4)
    composites[2].SetForegroundVolumeID(users.GetID())  # the user put something else in one view
    composites[2].SetForegroundOpacity(0.9)
    mrml.set_foreground_opacity(scene, 0.7, overlay)
    assert [c.GetForegroundOpacity() for c in composites] == pytest.approx([0.7, 0.7, 0.9])
    assert mrml.clear_foreground(scene, overlay) == 2
    assert [c.GetForegroundVolumeID() for c in composites] == [None, None, users.GetID()]


def test_no_collection_is_leaked_per_opacity_change():
    """scene.GetNodesByClass returns a collection the caller owns: unless UnRegister'ed, each call leaks it."""
    scene = slicer.vtkMRMLScene()
    for _ in range(3):
        scene.AddNode(slicer.vtkMRMLSliceCompositeNode())
    returned = []

    class Recording:
        def __getattr__(self, name):
            attr = getattr(scene, name)
            if name != "GetNodesByClass":
                return attr

            def call(*args):
                collection = attr(*args)
                returned.append(collection)
                return collection

            return call

    for value in (0.1, 0.2, 0.3):
        mrml.set_foreground_opacity(Recording(), value)
    leaked = [c for c in returned if c.GetReferenceCount() > 2]  # ours in `returned` + the one never released
    assert not leaked and all(c.GetReferenceCount() == 1 for c in returned), [c.GetReferenceCount() for c in returned]
    composite = scene.GetNthNodeByClass(0, "vtkMRMLSliceCompositeNode")
    assert composite.GetForegroundOpacity() == pytest.approx(0.3)
