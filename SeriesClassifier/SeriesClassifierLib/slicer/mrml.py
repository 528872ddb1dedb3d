"""MRML nodes the Slicer module shows: Grad-CAM overlay volumes, the heat colour table, the results table.

Plain functions on an explicit ``vtkMRMLScene`` so they run headless against the MRML library that
PyPI's ``slicer-core`` ships, and unchanged inside Slicer (pass ``slicer.mrmlScene``). ``slicer`` and
``vtk`` are imported inside the functions: the engine must import without them.

Geometry: DICOM gives positions in LPS millimetres (ImagePositionPatient of each slice, the row and
column direction cosines of ImageOrientationPatient, PixelSpacing as (row spacing, column spacing));
Slicer works in RAS, so x and y change sign. A heat map array is indexed ``[slice, row, column]``,
which is the ``[k, j, i]`` order of a VTK image, so voxel (i, j, k) is column i, row j of slice k.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..dicom.geometry import ijk_to_lps
from ..prediction import SeriesPrediction
from ..series import Geometry
from ..vocabulary import load_vocabulary

log = logging.getLogger(__name__)

HEAT_COLOR_TABLE_NAME = "SeriesClassifierHeat"
# Heat below this is not drawn at all. vtkMRMLScalarVolumeDisplayNode ANDs the colour table's alpha with
# its threshold mask (vtkImageLogic, Libs/MRML/Core/vtkMRMLScalarVolumeDisplayNode.cxx), so a table's own
# alpha ramp cannot make cold voxels see-through: every voxel above index 0 comes out opaque. The display
# node's threshold can: voxels outside it get alpha 0, those inside keep the ramp's colour, and the layer's
# opacity (the panel's slider) blends them over the anatomy.
HEAT_THRESHOLD = 0.2
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


# --------------------------------------------------------------------------- geometry (numpy only)


def ijk_to_ras(geometry: Geometry) -> np.ndarray:
    """4×4 IJK→RAS matrix for a volume node on the series' voxel grid."""
    return LPS_TO_RAS @ ijk_to_lps(geometry)


# --------------------------------------------------------------------------- colour table


def heat_colors(n_colors: int = 256) -> np.ndarray:
    """RGBA in 0..1 for a dark-red → red → yellow → white heat ramp over the drawn range.

    The display window spans HEAT_THRESHOLD..1 (see ``create_overlay_volume``), so index 0 is the
    coldest heat still drawn: it starts dark red rather than black. Index 0 has alpha 0 (Slicer draws
    nothing there); the rest are opaque, since the display node reduces alpha to on/off anyway.
    """
    if n_colors < 2:
        raise ValueError("a heat colour table needs at least 2 colours")
    x = 0.15 + 0.85 * np.linspace(0.0, 1.0, n_colors)
    rgba = np.empty((n_colors, 4))
    rgba[:, 0] = np.clip(3 * x, 0, 1)
    rgba[:, 1] = np.clip(3 * x - 1, 0, 1)
    rgba[:, 2] = np.clip(3 * x - 2, 0, 1)
    rgba[:, 3] = 1.0
    rgba[0, 3] = 0.0
    return rgba


def create_heat_color_table(scene: Any, name: str = HEAT_COLOR_TABLE_NAME, n_colors: int = 256) -> Any:
    """The heat colour table node, reused when the scene already has one with this name."""
    import slicer

    existing = scene.GetFirstNodeByName(name)
    if existing is not None and existing.IsA("vtkMRMLColorTableNode"):
        return existing
    node = slicer.vtkMRMLColorTableNode()
    node.SetName(name)
    node.SetTypeToUser()
    node.SetNumberOfColors(n_colors)
    node.SetHideFromEditors(False)
    for index, (r, g, b, a) in enumerate(heat_colors(n_colors)):
        node.SetColor(index, f"heat {index / (n_colors - 1):.3f}", r, g, b, a)
    node.SetAttribute("SeriesClassifier.Role", "heat")
    scene.AddNode(node)
    return node


def color_table_rgba(node: Any) -> np.ndarray:
    """The colours of a colour table node as an (n, 4) array in 0..1."""
    rgba = [0.0, 0.0, 0.0, 0.0]
    out = np.empty((node.GetNumberOfColors(), 4))
    for i in range(node.GetNumberOfColors()):
        node.GetColor(i, rgba)
        out[i] = rgba
    return out


# --------------------------------------------------------------------------- overlay volume


def _vtk_matrix(m: np.ndarray) -> Any:
    import vtk

    vm = vtk.vtkMatrix4x4()
    for r in range(4):
        for c in range(4):
            vm.SetElement(r, c, float(m[r, c]))
    return vm


def matrix_from_vtk(vm: Any) -> np.ndarray:
    return np.array([[vm.GetElement(r, c) for c in range(4)] for r in range(4)])


def create_overlay_volume(
    scene: Any,
    heatmap: np.ndarray,
    geometry: Geometry,
    name: str = "Grad-CAM",
    color_node: Any = None,
    node: Any = None,
) -> Any:
    """A scalar volume holding ``heatmap`` (slices × rows × columns, 0..1) on the series' voxel grid.

    ``node`` is updated in place when given (switching head or class keeps one overlay node).
    """
    import slicer
    import vtk
    from vtk.util import numpy_support

    heatmap = np.asarray(heatmap, dtype=np.float32)
    expected = (len(geometry.positions), int(geometry.rows), int(geometry.columns))
    if heatmap.shape != expected:
        raise ValueError(
            f"heat map shape {heatmap.shape} does not match the series grid {expected} (slices, rows, columns)"
        )
    if node is None:
        node = slicer.vtkMRMLScalarVolumeNode()
        node.SetName(name)
        scene.AddNode(node)
    image = vtk.vtkImageData()
    image.SetDimensions(expected[2], expected[1], expected[0])
    scalars = numpy_support.numpy_to_vtk(np.ascontiguousarray(heatmap).ravel(), deep=True, array_type=vtk.VTK_FLOAT)
    scalars.SetName("heat")
    image.GetPointData().SetScalars(scalars)
    node.SetAndObserveImageData(image)
    node.SetIJKToRASMatrix(_vtk_matrix(ijk_to_ras(geometry)))
    if node.GetDisplayNode() is None:
        node.CreateDefaultDisplayNodes()
    display = node.GetDisplayNode()
    color_node = color_node or create_heat_color_table(scene)
    display.SetAndObserveColorNodeID(color_node.GetID())
    # A fixed window keeps colours comparable between series and classes; the ramp spans the drawn heat.
    display.AutoWindowLevelOff()
    display.SetWindowLevelMinMax(HEAT_THRESHOLD, 1.0)
    # Cold voxels transparent: the threshold, not the table's alpha (see HEAT_THRESHOLD).
    display.AutoThresholdOff()
    display.SetThreshold(HEAT_THRESHOLD, max(1.0, float(heatmap.max()) if heatmap.size else 1.0))
    display.ApplyThresholdOn()
    display.SetInterpolate(True)
    node.SetAttribute("SeriesClassifier.Role", "gradcam")
    return node


def volume_array(node: Any) -> np.ndarray:
    """The voxels of a scalar volume node as a [k, j, i] array (a copy)."""
    from vtk.util import numpy_support

    image = node.GetImageData()
    i, j, k = image.GetDimensions()
    return numpy_support.vtk_to_numpy(image.GetPointData().GetScalars()).reshape(k, j, i).copy()


def set_foreground(scene: Any, volume_node: Any, opacity: float = 0.5, background_node: Any = None) -> None:
    """Show ``volume_node`` as the foreground layer of every slice view (background too when given)."""
    for composite in _slice_composite_nodes(scene):
        if background_node is not None:
            composite.SetBackgroundVolumeID(background_node.GetID())
        composite.SetForegroundVolumeID(volume_node.GetID() if volume_node is not None else None)
        composite.SetForegroundOpacity(float(opacity))


def clear_foreground(scene: Any, volume_node: Any) -> int:
    """Take ``volume_node`` out of the foreground of the views that show it; other views' layers (the
    user's own choices) stay as they are. Returns how many views changed."""
    if volume_node is None:
        return 0
    changed = 0
    for composite in _slice_composite_nodes(scene):
        if composite.GetForegroundVolumeID() == volume_node.GetID():
            composite.SetForegroundVolumeID(None)
            changed += 1
    return changed


def set_foreground_opacity(scene: Any, opacity: float, volume_node: Any = None) -> None:
    """The foreground opacity of the views showing ``volume_node`` (all views when None)."""
    for composite in _slice_composite_nodes(scene):
        if volume_node is None or composite.GetForegroundVolumeID() == volume_node.GetID():
            composite.SetForegroundOpacity(float(opacity))


def _slice_composite_nodes(scene: Any) -> list[Any]:
    """The slice composite nodes, without ``GetNodesByClass``: that returns a new vtkCollection the
    caller owns (Python then holds a second reference, so each call leaks one unless it is
    UnRegister'ed, as slicer.util.getNodesByClass does)."""
    cls = "vtkMRMLSliceCompositeNode"
    return [scene.GetNthNodeByClass(i, cls) for i in range(scene.GetNumberOfNodesByClass(cls))]


# --------------------------------------------------------------------------- results table


@dataclass(frozen=True)
class Column:
    name: str
    kind: str  # "string" | "int" | "double" | "bool"
    title: str


def result_columns() -> list[Column]:
    """Results table columns: identity, predictions, one pair per auxiliary attribute, review state."""
    columns = [
        Column("series_uid", "string", "Series UID"),
        Column("series_number", "int", "#"),
        Column("series_description", "string", "Description"),
        Column("n_images", "int", "Images"),
        Column("sequence", "string", "Sequence"),
        Column("sequence_probability", "double", "P(seq)"),
        Column("orientation", "string", "Orientation"),
        Column("orientation_probability", "double", "P(orient)"),
    ]
    for attribute in load_vocabulary().attributes:
        columns.append(Column(f"attr_{attribute.code}", "string", attribute.name))
        columns.append(Column(f"attr_{attribute.code}_probability", "double", f"P({attribute.code})"))
    columns += [
        Column("forest_sequence", "string", "Forest"),
        Column("cnn_sequence", "string", "CNN"),
        Column("agreement", "string", "Agree"),
        Column("needs_review", "bool", "Review?"),
        Column("outcome", "string", "Outcome"),
        Column("reasons", "string", "Why"),
        Column("label_sequence", "string", "Corrected sequence"),
        Column("label_orientation", "string", "Corrected orientation"),
        Column("review_state", "string", "State"),
        Column("model_version", "string", "Model"),
        Column("error", "string", "Error"),
    ]
    return columns


def _label_field(label: Any, key: str) -> Any:
    if label is None:
        return None
    if isinstance(label, Mapping):
        return label.get(key)
    return getattr(label, key, None)


def agreement(prediction: SeriesPrediction) -> str:
    """``yes``/``no`` when forest and CNN both gave a sequence, else which one ran alone."""
    seqs = {name: m.sequence.label for name, m in prediction.models.items() if m.sequence is not None}
    if "forest" in seqs and "cnn" in seqs:
        return "yes" if seqs["forest"] == seqs["cnn"] else "no"
    if len(seqs) == 1:
        return f"{next(iter(seqs))} only"
    return ""


def result_row(prediction: SeriesPrediction, label: Any = None) -> dict[str, Any]:
    """One results-table row. ``label`` is the store's current label (mapping or object) with
    ``sequence``, ``orientation`` and ``state`` (unreviewed/accepted/corrected); None = unreviewed."""
    row: dict[str, Any] = {
        "series_uid": prediction.series_uid,
        "series_number": prediction.series_number if prediction.series_number is not None else -1,
        "series_description": prediction.series_description,
        "n_images": prediction.n_images,
        "sequence": prediction.sequence.label if prediction.sequence else "",
        "sequence_probability": prediction.sequence.probability if prediction.sequence else math.nan,
        "orientation": prediction.orientation.label if prediction.orientation else "",
        "orientation_probability": prediction.orientation.probability if prediction.orientation else math.nan,
    }
    for attribute in load_vocabulary().attributes:
        value = prediction.attributes.get(attribute.code)
        row[f"attr_{attribute.code}"] = value.label if value else ""
        row[f"attr_{attribute.code}_probability"] = value.probability if value else math.nan
    forest, cnn = prediction.models.get("forest"), prediction.models.get("cnn")
    row["forest_sequence"] = forest.sequence.label if forest and forest.sequence else ""
    row["cnn_sequence"] = cnn.sequence.label if cnn and cnn.sequence else ""
    row["agreement"] = agreement(prediction)
    row["needs_review"] = bool(prediction.needs_review)
    row["outcome"] = prediction.outcome
    row["reasons"] = "; ".join(prediction.reasons)
    row["label_sequence"] = _label_field(label, "sequence") or ""
    row["label_orientation"] = _label_field(label, "orientation") or ""
    row["review_state"] = _label_field(label, "state") or "unreviewed"
    row["model_version"] = prediction.model_version
    row["error"] = prediction.error or ""
    return row


def result_rows(predictions: Iterable[SeriesPrediction], labels: Mapping[str, Any] | None = None) -> list[dict]:
    labels = labels or {}
    return [result_row(p, labels.get(p.series_uid)) for p in predictions]


def _new_array(kind: str) -> Any:
    import vtk

    classes = {
        "string": vtk.vtkStringArray, "int": vtk.vtkIntArray, "double": vtk.vtkDoubleArray, "bool": vtk.vtkBitArray
    }
    return classes[kind]()


def create_results_table(scene: Any, rows: Sequence[Mapping[str, Any]], name: str = "SeriesClassifier results",
                         node: Any = None) -> Any:
    """A table node with one row per series (``result_rows``); ``node`` is refilled when given."""
    import slicer
    import vtk

    if node is None:
        node = slicer.vtkMRMLTableNode()
        node.SetName(name)
        scene.AddNode(node)
    table = vtk.vtkTable()
    for column in result_columns():
        array = _new_array(column.kind)
        array.SetName(column.name)
        for row in rows:
            value = row.get(column.name)
            if column.kind == "string":
                array.InsertNextValue("" if value is None else str(value))
            elif column.kind == "double":
                array.InsertNextValue(math.nan if value is None else float(value))
            else:
                array.InsertNextValue(int(value or 0))
        table.AddColumn(array)
    node.SetAndObserveTable(table)
    for column in result_columns():
        node.SetColumnTitle(column.name, column.title)
    node.SetAttribute("SeriesClassifier.Role", "results")
    return node


def table_rows(node: Any) -> list[dict[str, Any]]:
    """Read a results table node back into row dicts (typed as ``result_columns`` says)."""
    table = node.GetTable()
    kinds = {c.name: c.kind for c in result_columns()}
    out = []
    for r in range(table.GetNumberOfRows()):
        row: dict[str, Any] = {}
        for c in range(table.GetNumberOfColumns()):
            column = table.GetColumn(c)
            name = column.GetName()
            kind = kinds.get(name, "string")
            raw = column.GetValue(r)
            if kind == "double":
                row[name] = float(raw)
            elif kind == "int":
                row[name] = int(raw)
            elif kind == "bool":
                row[name] = bool(int(raw))
            else:
                row[name] = str(raw)
        out.append(row)
    return out


# --------------------------------------------------------------------------- saving


def save_nodes(scene: Any, nodes: Iterable[Any], directory: str, scene_file: str = "scene.mrml") -> str:
    """Write each node's data with its default storage node into ``directory`` and the scene file.

    Returns the scene file path. Used by tests and by "save results"; inside Slicer the normal Save
    dialog does the same through the application logic.
    """
    import os

    extensions = {
        "vtkMRMLScalarVolumeNode": ".nrrd",
        "vtkMRMLColorTableNode": ".csv",
        "vtkMRMLTableNode": ".tsv",
    }
    os.makedirs(directory, exist_ok=True)
    scene.SetRootDirectory(directory)
    for node in nodes:
        storage = node.GetStorageNode()
        if storage is None:
            storage = node.CreateDefaultStorageNode()
            scene.AddNode(storage)
            node.SetAndObserveStorageNodeID(storage.GetID())
        ext = extensions.get(node.GetClassName(), "")
        safe = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in node.GetName())
        storage.SetFileName(os.path.join(directory, safe + ext))
        if not storage.WriteData(node):
            raise OSError(f"could not write {node.GetName()} to {storage.GetFileName()}")
    path = os.path.join(directory, scene_file)
    scene.SetURL(path)
    if not scene.Commit():
        raise OSError(f"could not write the scene file {path}")
    return path


def load_scene(path: str) -> Any:
    """Read a scene file and every storable node's data (what Slicer's application logic does on load)."""
    import slicer

    scene = slicer.vtkMRMLScene()
    scene.SetURL(path)
    if not scene.Connect():
        raise OSError(f"could not read the scene file {path}")
    for i in range(scene.GetNumberOfNodes()):
        node = scene.GetNthNode(i)
        storage = node.GetStorageNode() if node.IsA("vtkMRMLStorableNode") else None
        if storage is not None and not storage.ReadData(node):
            raise OSError(f"could not read data of {node.GetName()} from {storage.GetFileName()}")
    return scene
