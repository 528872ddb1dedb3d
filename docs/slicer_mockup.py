"""Render the module panel from the real .ui file, offscreen, for the README and the extension screenshot.

    QT_QPA_PLATFORM=offscreen PYTHONPATH=<PySide6-Essentials> python docs/slicer_mockup.py \\
        --events worker.jsonl [--slice-view STUDY_DIR] --out Resources/Screenshots/panel.png

No Slicer here: the CTK/MRML widgets are stood in by their closest Qt widgets (collapsible button →
group box with an arrow, path line edit → line edit, slider widget → slider). The table, tree and combo
boxes are filled the way SeriesClassifierWidget fills them, from worker events (``--events``: the
JSON lines ``python -m SeriesClassifierLib.run.worker`` printed) or, without them, from a few illustrative
rows marked as such in the picture. With ``--slice-view STUDY_DIR`` a "slice view" of the current row
(its Grad-CAM from the events, the image from the DICOM files) is drawn beside the panel with the module's
heat colour table.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT / "SeriesClassifier"))

from SeriesClassifierLib.prediction import ModelOutput, SeriesPrediction, TaskPrediction  # noqa: E402
from SeriesClassifierLib.slicer.mrml import heat_colors, result_columns, result_row  # noqa: E402
from SeriesClassifierLib.vocabulary import load_vocabulary  # noqa: E402

UI_FILE = ROOT / "SeriesClassifier" / "Resources" / "UI" / "SeriesClassifier.ui"
# the widget's DISPLAY_COLUMNS (kept in step by test: SeriesClassifier.py is the source)
DISPLAY = re.search(r"DISPLAY_COLUMNS = \[(.*?)\]", (ROOT / "SeriesClassifier" / "SeriesClassifier.py").read_text(),
                    re.S).group(1)
DISPLAY_COLUMNS = re.findall(r'"([a-z_]+)"', DISPLAY)


def qt_only_ui() -> tuple[bytes, set[str]]:
    """The .ui with CTK/MRML classes replaced by plain Qt ones QUiLoader knows; and the collapsed boxes."""
    root = ET.parse(UI_FILE).getroot()
    collapsed_boxes = set()
    for w in root.iter("widget"):
        cls = w.get("class")
        if cls == "qMRMLWidget":
            w.set("class", "QWidget")
        elif cls == "ctkCollapsibleButton":
            w.set("class", "QGroupBox")
            collapsed = False
            for prop in list(w.findall("property")):
                if prop.get("name") == "text":
                    prop.set("name", "title")
                elif prop.get("name") == "collapsed":
                    collapsed = prop.findtext("bool") == "true"
                    w.remove(prop)
            title = w.find("property[@name='title']/string")
            title.text = ("▸ " if collapsed else "▾ ") + title.text
            if collapsed:
                collapsed_boxes.add(w.get("name"))
        elif cls == "ctkPathLineEdit":
            w.set("class", "QLineEdit")
            for prop in list(w.findall("property")):
                if prop.get("name") == "filters":
                    w.remove(prop)
        elif cls == "ctkSliderWidget":
            w.set("class", "QSlider")
            for prop in list(w.findall("property")):
                w.remove(prop)
            orient = ET.SubElement(w, "property", name="orientation")
            ET.SubElement(orient, "enum").text = "Qt::Horizontal"
    custom = root.find("customwidgets")
    if custom is not None:
        root.remove(custom)
    return ET.tostring(root, encoding="utf-8"), collapsed_boxes


def illustrative_predictions() -> list[SeriesPrediction]:
    """A plausible routine study, for when no worker output is given (the picture then says so)."""
    vocab = load_vocabulary()
    spec = [
        (1, "AAHead_Scout", 3, "SCOUT", 0.99, "MIXED", "SCOUT", "SCOUT"),
        (2, "t1_mprage_sag_p2", 176, "T1_3D_PRE", 0.97, "SAGITTAL", "T1_3D_PRE", "T1_3D_PRE"),
        (3, "t2_tse_tra", 25, "T2_2D", 0.95, "AXIAL", "T2_2D", "T2_2D"),
        (4, "t2_tirm_tra_dark-fluid", 25, "FLAIR_2D", 0.91, "AXIAL", "FLAIR_2D", "FLAIR_2D"),
        (5, "ep2d_diff_3scan_trace", 50, "DWI", 0.93, "AXIAL", "DWI", "DWI"),
        (6, "ep2d_diff_3scan_trace_ADC", 25, "ADC", 0.96, "AXIAL", "ADC", "ADC"),
        (7, "", 72, "SWI", 0.58, "AXIAL", "SWI_MAG", "SWI"),
        (8, "t1_mprage_sag_p2 +C", 176, "T1_3D_POST", 0.74, "SAGITTAL", "T1_3D_POST", "T1_3D_PRE"),
    ]
    out = []
    for number, desc, n, seq, p, ori, forest, cnn in spec:
        probs = {c: (p if c == seq else (1 - p) / (len(vocab.sequence_codes) - 1)) for c in vocab.sequence_codes}
        attrs = {a.code: TaskPrediction(a.values[0], 0.9) for a in vocab.attributes}
        if seq.endswith("_3D_PRE") or seq.endswith("_3D_POST"):
            attrs["acquisition"] = TaskPrediction("3D", 0.97)
        if seq.endswith("POST"):
            attrs["contrast"] = TaskPrediction("POST", 0.8)
        if seq in ("ADC",):
            attrs["derived"] = TaskPrediction("YES", 0.95)
        review = p < 0.7 or forest != cnn
        out.append(SeriesPrediction(
            series_uid=f"1.2.826.0.1.3680043.8.498.{number}", series_number=number, series_description=desc,
            n_images=n, sequence=TaskPrediction(seq, p, probs), orientation=TaskPrediction(ori, 0.99),
            attributes=attrs, needs_review=review,
            reasons=["forest and CNN disagree"] if forest != cnn else [],
            models={"forest": ModelOutput("forest", sequence=TaskPrediction(forest, 0.8)),
                    "cnn": ModelOutput("cnn", sequence=TaskPrediction(cnn, 0.8))},
            model_version="illustrative",
        ))
    return out


def read_events(path: Path) -> tuple[list[SeriesPrediction], dict, str]:
    predictions, gradcams, device = [], {}, ""
    for line in path.read_text(encoding="utf-8").splitlines():
        event = json.loads(line)
        if event["type"] == "prediction":
            predictions.append(SeriesPrediction.from_dict({k: v for k, v in event.items() if k != "type"}))
        elif event["type"] == "gradcam":
            gradcams[event["series_uid"]] = event["path"]
        elif event["type"] == "start":
            device = event.get("device", "")
    predictions.sort(key=lambda p: (p.series_number if p.series_number is not None else 10**6))
    return predictions, gradcams, device


def fill(ui, predictions, device: str, labels: dict, illustrative: bool, current: int, collapsed: set) -> None:
    """Put a classified study into the loaded panel, as the module's Widget would show it."""
    from PySide6 import QtCore

    _fill_browser(ui, predictions)
    _fill_controls(ui, predictions, device, illustrative)
    _fill_table(ui, predictions, labels, current)
    _fill_editor(ui, predictions[current])
    _collapse(ui, collapsed)
    QtCore.QCoreApplication.processEvents()


def _fill_browser(ui, predictions) -> None:
    """The DICOM browser: one patient, one study, its first series."""
    from PySide6 import QtWidgets

    tree = ui.findChild(QtWidgets.QTreeWidget, "studyTreeWidget")
    patient = QtWidgets.QTreeWidgetItem(tree, [predictions[0].patient_id or "SIM^PATIENT01", "", ""])
    study = QtWidgets.QTreeWidgetItem(patient, ["MR BRAIN", "", str(len(predictions))])
    for p in predictions[:4]:
        QtWidgets.QTreeWidgetItem(study, [f"{p.series_number}: {p.series_description or '(no description)'}", "", "MR"])
    tree.expandAll()
    study.setSelected(True)
    tree.resizeColumnToContents(0)
    tree.setMaximumHeight(120)


def _fill_controls(ui, predictions, device: str, illustrative: bool) -> None:
    """The combo boxes the module fills at start-up and the state a finished run leaves."""
    from PySide6 import QtWidgets

    from SeriesClassifierLib.slicer.results_view import REVIEW_FILTERS

    vocab = load_vocabulary()
    for name, value in (("seq", "sequenceComboBox"), ("ori", "orientationComboBox")):
        combo = ui.findChild(QtWidgets.QComboBox, value)
        items = vocab.sequences if name == "seq" else vocab.orientations
        for item in items:
            combo.addItem(f"{item.code} — {item.name}", item.code)
    review = ui.findChild(QtWidgets.QComboBox, "filterComboBox")
    for review_filter in REVIEW_FILTERS:  # as the Widget's setup fills it
        review.addItem(review_filter.title, review_filter.name)
    head = ui.findChild(QtWidgets.QComboBox, "gradcamHeadComboBox")
    head.addItem("sequence")
    cls = ui.findChild(QtWidgets.QComboBox, "gradcamClassComboBox")
    cls.addItem("(predicted)")
    ui.findChild(QtWidgets.QLabel, "deviceLabel").setText(device or "cpu (2 threads)")
    bar = ui.findChild(QtWidgets.QProgressBar, "progressBar")
    bar.setMaximum(len(predictions))
    bar.setValue(len(predictions))
    status = ui.findChild(QtWidgets.QLabel, "statusLabel")
    status.setText(f"Done: {len(predictions)} series classified."
                   + ("  [illustrative rows: no worker output given]" if illustrative else ""))
    ui.findChild(QtWidgets.QLabel, "countLabel").setText(f"{len(predictions)} series")
    ui.findChild(QtWidgets.QPushButton, "classifyButton").setEnabled(True)
    slider = ui.findChild(QtWidgets.QSlider, "opacitySlider")
    slider.setRange(0, 100)
    slider.setValue(50)
    ui.findChild(QtWidgets.QLineEdit, "userLineEdit").setText("reviewer")


def _cell_text(value) -> str:
    if isinstance(value, bool):
        return "yes" if value else ""
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.2f}"
    return str(value)


def _fill_table(ui, predictions, labels: dict, current: int) -> None:
    """The results table with the Widget's columns, colours and emphasis (slicer/results_view.py)."""
    from PySide6 import QtGui, QtWidgets

    from SeriesClassifierLib.slicer.results_view import awaits_review, sequence_colour

    titles = {c.name: c.title for c in result_columns()}
    table = ui.findChild(QtWidgets.QTableWidget, "resultsTable")
    table.setColumnCount(len(DISPLAY_COLUMNS))
    table.setHorizontalHeaderLabels([titles[c] for c in DISPLAY_COLUMNS])
    table.setRowCount(len(predictions))
    for r, p in enumerate(predictions):
        values = result_row(p, labels.get(p.series_uid))
        color = QtGui.QColor(*sequence_colour(values))
        for c, name in enumerate(DISPLAY_COLUMNS):
            item = QtWidgets.QTableWidgetItem(_cell_text(values[name]))
            if name in ("sequence", "sequence_probability"):
                item.setBackground(QtGui.QBrush(color))
            if awaits_review(values):
                font = item.font()
                font.setBold(True)
                item.setFont(font)
            table.setItem(r, c, item)
    table.verticalHeader().setVisible(False)
    table.verticalHeader().setDefaultSectionSize(22)
    table.resizeColumnsToContents()
    table.resizeRowsToContents()
    table.setCurrentCell(current, 0)
    table.selectRow(current)


def _fill_editor(ui, p) -> None:
    """The label editor and details line of the current series."""
    from PySide6 import QtWidgets

    seq = ui.findChild(QtWidgets.QComboBox, "sequenceComboBox")
    seq.setCurrentIndex(seq.findData(p.sequence.label if p.sequence else ""))
    ori = ui.findChild(QtWidgets.QComboBox, "orientationComboBox")
    ori.setCurrentIndex(ori.findData(p.orientation.label if p.orientation else ""))
    details = []
    if p.sequence:
        details.append("Top 3: " + ", ".join(f"{c} {v:.2f}" for c, v in p.sequence.top(3)))
    details += [f"{n}: {m.sequence.label} {m.sequence.probability:.2f}" for n, m in p.models.items() if m.sequence]
    if p.reasons:
        details.append("Reasons: " + "; ".join(p.reasons))
    ui.findChild(QtWidgets.QLabel, "detailsLabel").setText(" · ".join(details))


def _collapse(ui, collapsed: set) -> None:
    """Collapsed sections show their title bar only."""
    from PySide6 import QtWidgets

    for box in ui.findChildren(QtWidgets.QGroupBox):
        if box.objectName() in collapsed:
            for child in box.findChildren(QtWidgets.QWidget):
                child.hide()
            box.setMaximumHeight(28)


def slice_view(heatmap_file: str, study: Path, size: int):
    """The most-heated slice of a series with its Grad-CAM map blended as Slicer's foreground layer does
    (the module's heat colour table, opacity 0.5); the image is the DICOM file at that slice's position."""
    import numpy as np
    import pydicom
    from PIL import Image

    from SeriesClassifierLib.run.worker import load_heatmap

    heat, geometry, meta = load_heatmap(heatmap_file)
    k = int(np.argmax(heat.reshape(len(heat), -1).max(axis=1)))
    target = np.asarray(geometry.positions[k])
    best, best_frame, best_d = None, 0, np.inf
    for path in study.rglob("*"):
        if not path.is_file():
            continue
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True)
        except Exception:  # noqa: BLE001 - labels.csv and friends
            continue
        if ds.get("SeriesInstanceUID") != meta["series_uid"]:
            continue
        if "ImagePositionPatient" in ds:
            positions = [ds.ImagePositionPatient]
        else:  # enhanced multi-frame: one position per frame
            positions = [f.PlanePositionSequence[0].ImagePositionPatient
                         for f in ds.get("PerFrameFunctionalGroupsSequence", []) if "PlanePositionSequence" in f]
        for frame, position in enumerate(positions):
            d = float(np.linalg.norm(np.asarray(position, float) - target))
            if d < best_d:
                best, best_frame, best_d = path, frame, d
    base = pydicom.dcmread(best).pixel_array.astype(float)
    if base.ndim == 3:
        base = base[best_frame]
    lo, hi = np.percentile(base, (1, 99.5))
    grey = np.clip((base - lo) / max(hi - lo, 1e-6), 0, 1)
    rgba = heat_colors(256)[np.clip((heat[k] * 255).astype(int), 0, 255)]
    alpha = rgba[..., 3:] * 0.5  # the module's default foreground opacity
    rgb = grey[..., None] * (1 - alpha) + rgba[..., :3] * alpha
    return Image.fromarray((rgb * 255).astype("uint8")).resize((size, size), Image.BILINEAR), meta


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=Path, help="worker output (JSON lines)")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--current", type=int, default=-1, help="row shown as current (default: first needing review)")
    parser.add_argument("--note", default="", help="text added under the slice view's title (e.g. which models)")
    parser.add_argument("--slice-view", type=Path, metavar="STUDY",
                        help="add a slice view of the current row's Grad-CAM (STUDY: the classified DICOM folder)")
    args = parser.parse_args()

    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6 import QtCore, QtWidgets
    from PySide6.QtUiTools import QUiLoader

    app = QtWidgets.QApplication.instance() or QtWidgets.QApplication([])
    app.setStyle("Fusion")
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        form = Path(tmp) / "form.ui"
        xml, collapsed = qt_only_ui()
        form.write_bytes(xml)
        file = QtCore.QFile(str(form))
        file.open(QtCore.QIODevice.ReadOnly)
        loader = QUiLoader()
        ui = loader.load(file)
        file.close()
        if ui is None:
            raise RuntimeError(f"QUiLoader could not build the form: {loader.errorString()}")
    if args.events:
        predictions, gradcams, device = read_events(args.events)
    else:
        predictions, gradcams, device = illustrative_predictions(), {}, ""
    current = args.current if args.current >= 0 else next(
        (i for i, p in enumerate(predictions) if p.needs_review), 0)
    labels = {predictions[0].series_uid: {"sequence": predictions[0].sequence.label if predictions[0].sequence
                                          else "", "orientation": "", "state": "accepted"}}
    fill(ui, predictions, device, labels, not args.events, current, collapsed)
    ui.resize(640, 1060)
    ui.show()
    app.processEvents()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    panel_path = args.out if not args.slice_view else args.out.with_suffix(".panel.png")
    ui.grab().save(str(panel_path))
    if args.slice_view and gradcams:
        from PIL import Image, ImageDraw

        uid = predictions[current].series_uid
        view, meta = slice_view(gradcams.get(uid) or next(iter(gradcams.values())), args.slice_view, 600)
        panel = Image.open(panel_path).convert("RGB")
        canvas = Image.new("RGB", (panel.width + view.width + 20, max(panel.height, view.height + 60)), (0, 0, 0))
        canvas.paste(panel, (0, 0))
        canvas.paste(view, (panel.width + 10, 40))
        ImageDraw.Draw(canvas).text((panel.width + 14, 12), f"Grad-CAM {meta['head']} = {meta['target']} "
                                    f"(series {predictions[current].series_number}), opacity 0.5",
                                    fill=(230, 230, 230))
        if args.note:
            ImageDraw.Draw(canvas).text((panel.width + 14, 24), args.note, fill=(200, 200, 120))
        canvas.save(args.out)
        panel_path.unlink()
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
