from __future__ import annotations

import io
import re
import shutil
import subprocess
from html.parser import HTMLParser

import numpy as np
import pytest
from dicom_factory import AXIAL, recipe_headers, write_classic_series, write_enhanced_series
from PIL import Image
from pydicom.data import get_testdata_file

from SeriesClassifierLib.commands.cli import main
from SeriesClassifierLib.labels.report import ReportItem, agreement, build_report, report_items
from SeriesClassifierLib.labels.store import LabelStore, derive_record
from SeriesClassifierLib.labels.thumbnail import middle_image, render_png
from SeriesClassifierLib.prediction import ModelOutput, SeriesPrediction, TaskPrediction

CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--no-first-run", "--disable-sync", "--host-resolver-rules=MAP * ~NOTFOUND",
]


def prediction(uid, sequence, p, forest=None, cnn=None, needs_review=False, number=1, study="S1", error=None):
    models = {}
    if forest:
        models["forest"] = ModelOutput("forest", sequence=TaskPrediction.from_probabilities({forest: 0.9, "PD": 0.1}))
    if cnn:
        models["cnn"] = ModelOutput("cnn", sequence=TaskPrediction.from_probabilities({cnn: 0.8, "PD": 0.2}))
    return SeriesPrediction(
        uid, study, "PAT-9", number, f"series <{number}>",
        sequence=TaskPrediction.from_probabilities({sequence: p, "OTHER": (1 - p) / 2, "PD": (1 - p) / 2}),
        orientation=TaskPrediction.from_probabilities({"AXIAL": 0.97, "SAGITTAL": 0.03}),
        needs_review=needs_review, reasons=["models disagree"] if needs_review else [], models=models, error=error,
    )


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """A folder with classic, enhanced multi-frame, real pydicom MR files and one broken series."""
    root = tmp_path_factory.mktemp("report_study")
    rng = np.random.default_rng(1)
    uid_classic, _ = write_classic_series(root / "t2", recipe_headers("T2_2D", rng), n=5, iop=AXIAL,
                                          study_uid="1.2.3.1")
    uid_enhanced = write_enhanced_series(root / "flair" / "mf.dcm", recipe_headers("FLAIR_2D", rng), frames=6,
                                         study_uid="1.2.3.1")
    (root / "real").mkdir()
    shutil.copy(get_testdata_file("MR_small.dcm"), root / "real" / "mr.dcm")
    (root / "broken").mkdir()
    data = (root / "real" / "mr.dcm").read_bytes()
    (root / "broken" / "cut.dcm").write_bytes(data[: len(data) - 3000])  # header intact, pixels cut
    return root, {"classic": uid_classic, "enhanced": uid_enhanced}


def test_middle_image_single_multi_frame_and_failure(folder):
    root, _ = folder
    image, note = middle_image(sorted((root / "t2").glob("*.dcm")))
    assert note == "" and image.shape == (8, 8)
    image, note = middle_image([root / "flair" / "mf.dcm"])
    assert note == "" and image.shape == (8, 8)
    image, note = middle_image([root / "real" / "mr.dcm"])
    assert image.shape == (64, 64) and image.std() > 0
    image, note = middle_image([root / "broken" / "cut.dcm"])
    assert image is None and "broken" in note and "cut.dcm" in note and "but the file has" in note
    # a series whose middle image is broken falls back to a neighbour
    for files in ([root / "broken" / "cut.dcm", root / "real" / "mr.dcm"],
                  [root / "real" / "mr.dcm", root / "broken" / "cut.dcm"]):
        image, note = middle_image(files)
        assert image is not None and image.shape == (64, 64)
    assert middle_image([]) == (None, "no files")
    image, note = middle_image([root / "nothing.dcm"])
    assert image is None and note


def test_render_png_windows_and_overlays():
    image = np.zeros((40, 80), np.float32)
    image[:, 40:] = 1000
    image[0, 0] = 1e6  # a hot pixel must not flatten the window
    plain = Image.open(io.BytesIO(render_png(image, max_size=100)))
    assert plain.size == (100, 50)
    grey = np.asarray(plain)
    assert grey[25, 90].tolist() == [255, 255, 255] and grey[25, 10].tolist() == [0, 0, 0]
    heat = np.zeros((10, 10), np.float32)
    heat[:, :5] = 1.0
    over = np.asarray(Image.open(io.BytesIO(render_png(image, heat, max_size=100))))
    assert over[25, 10, 0] != over[25, 10, 2]  # coloured where hot
    assert over[25, 95].tolist() == [255, 255, 255]  # untouched where cold


def test_agreement_text():
    rec = derive_record("1", prediction("1", "T2_2D", 0.9, forest="T2_2D", cnn="T2_2D"), "", [])
    assert agreement(rec) == ("agree", "forest and CNN agree")
    rec = derive_record("1", prediction("1", "T2_2D", 0.9, forest="T2_2D", cnn="PD"), "", [])
    assert agreement(rec) == ("disagree", "cnn: PD vs forest: T2_2D")
    rec = derive_record("1", prediction("1", "T2_2D", 0.9, forest="T2_2D"), "", [])
    assert agreement(rec)[0] == "single"


class _Cards(HTMLParser):
    def __init__(self):
        super().__init__()
        self.cards, self.images, self.scripts = [], 0, 0

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if "card" in (a.get("class") or "").split():
            self.cards.append(a)
        if tag == "img":
            self.images += 1
            assert a["src"].startswith("data:image/png;base64,")
        if tag == "script":
            assert "src" not in a
            self.scripts += 1


def _items():
    records = [
        derive_record("u1", prediction("u1", "T2_2D", 0.93, "T2_2D", "T2_2D", number=1), "", []),
        derive_record("u2", prediction("u2", "FLAIR_2D", 0.51, "FLAIR_2D", "T2_2D", True, 2), "", []),
        derive_record("u3", prediction("u3", "PD", 0.6, "PD", None, True, 3, study="S2"), "", []),
        derive_record("u4", prediction("u4", "SWI", 0.0, error="no pixels", number=4, study="S2"), "", []),
    ]
    image = np.outer(np.arange(32), np.ones(32)).astype(np.float32)
    heat = np.zeros((32, 32), np.float32)
    heat[8:16, 8:16] = 1
    return [ReportItem(records[0], image, heat), ReportItem(records[1], image), ReportItem(records[2], image),
            ReportItem(records[3], None, None, "cannot read an image: truncated")]


def test_report_html_is_self_contained_and_shows_every_series():
    text = build_report(_items(), title="Ward <3>")
    assert not re.search(r"https?://", text), "the report must work offline"
    assert "<title>Ward &lt;3&gt;</title>" in text and "series &lt;2&gt;" in text
    parser = _Cards()
    parser.feed(text)
    assert [c["data-uid"] for c in parser.cards] == ["u1", "u2", "u3", "u4"]
    assert parser.images == 4 and parser.scripts == 1  # u1 plain + overlay, u2, u3
    assert ["needs-review" in c["class"] for c in parser.cards] == [False, True, True, False]
    assert text.count("<section") == 2 and "cannot read an image: truncated" in text
    assert "cnn: T2_2D vs forest: FLAIR_2D" in text and "show Grad-CAM" in text
    anonymous = build_report(_items(), anonymise=True)
    assert "PAT-9" not in anonymous and "Subject 01" in anonymous


def test_report_items_survive_a_failing_provider():
    records = [item.record for item in _items()[:2]]
    errors = []

    def provider(r):
        if r.series_uid == "u1":
            raise RuntimeError("disk on fire")
        return np.ones((4, 4)), None, ""

    items = report_items(records, provider, on_error=errors.append)
    assert items[0].image is None and "disk on fire" in items[0].image_note and items[1].image is not None
    assert errors == ["u1: RuntimeError: disk on fire"]


def _chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    assert found, "headless Chromium is needed: apt-get install chromium (.ci/run does it)"
    return found


def _dump_dom(html_path, tmp_path, fragment="") -> str:
    result = subprocess.run(
        [_chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'chromium-profile'}", "--dump-dom",
         html_path.as_uri() + fragment],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


@pytest.mark.slow
def test_report_command_renders_in_headless_chromium(folder, tmp_path):
    root, uids = folder
    store_path = tmp_path / "labels.sqlite"
    with LabelStore(store_path) as store:
        store.record_predictions([
            prediction(uids["classic"], "T2_2D", 0.9, "T2_2D", "T2_2D", number=1),
            prediction(uids["enhanced"], "FLAIR_2D", 0.55, "FLAIR_2D", "T2_2D", True, 2),
            prediction("1.3.6.1.4.1.5962.1.3.4.1.20040826185059.5457", "T1_2D_PRE", 0.7, "T1_2D_PRE", None, True, 3),
            prediction("9.9.9", "PD", 0.8, number=4),  # no files under the folder
        ])
        store.correct(uids["classic"], sequence="T2_3D", user="ann")
    out = tmp_path / "report.html"
    assert main(["report", str(root), "--store", str(store_path), "--out", str(out)]) == 0
    text = out.read_text()
    assert not re.search(r"https?://", text)
    assert "corrected → <b>T2_3D</b>" in text and "files not found under PATH" in text
    dom = _dump_dom(out, tmp_path)
    for uid in [*uids.values(), "9.9.9"]:
        assert f'data-uid="{uid}"' in dom
    assert "4 shown" in dom  # the script ran
    dom = _dump_dom(out, tmp_path, "#review-only")
    # MR_small.dcm and cut.dcm share a series UID: the series shows and needs review; the enhanced one too
    assert "2 shown" in dom and re.search(r'<body class="[^"]*review-only', dom)


@pytest.mark.torch
@pytest.mark.slow
def test_report_with_gradcam_from_a_cnn(folder, tmp_path, capsys):
    """--gradcam with a (small, untrained) CNN in the models folder: every readable series gets an overlay."""
    import torch

    from SeriesClassifierLib.models.cnn import CnnModel

    torch.manual_seed(0)
    models = tmp_path / "models"
    CnnModel.new().save(models)
    root, uids = folder
    store_path = tmp_path / "labels.sqlite"
    with LabelStore(store_path) as store:
        store.record_predictions([prediction(uids["classic"], "T2_2D", 0.9, "T2_2D", "PD", number=1),
                                  prediction(uids["enhanced"], "FLAIR_2D", 0.6, "FLAIR_2D", "T2_2D", True, 2)])
    out = tmp_path / "gradcam.html"
    assert main(["report", str(root), "--store", str(store_path), "--out", str(out), "--gradcam",
                 "--models", str(models)]) == 0
    assert "classifying 1 series" in capsys.readouterr().err  # the real MR series was not in the store
    parser = _Cards()
    parser.feed(out.read_text())
    cards = {c["data-uid"]: c["class"] for c in parser.cards}
    assert len(cards) == 3 and "has-heat" in cards[uids["classic"]] and "has-heat" in cards[uids["enhanced"]]
    # the source keeps one file per SOPInstanceUID, here the truncated copy: that card says why it has no image
    # (its pixels are refused before decoding: the header declares more than the file holds)
    assert parser.images == 4 and "show Grad-CAM" in out.read_text() and "but the file has" in out.read_text()


def test_slice_profile_is_drawn_when_the_cnn_gave_one():
    p = prediction("s1", "DWI", 0.8, "DWI", "DWI")
    p.slice_profile = [{"DWI": 0.9, "ADC": 0.1}, {"DWI": 0.4, "ADC": 0.6}, {"DWI": 0.95}]
    text = build_report([ReportItem(derive_record("s1", p, "", []), None, None, "no image")])
    svg = re.search(r'<svg class="profile".*?</svg>', text)
    assert svg and svg.group(0).count("<circle") == 3 and "slice 2: DWI 40%" in svg.group(0)
    assert "<svg" not in build_report([ReportItem(derive_record("s2", prediction("s2", "DWI", 0.8), "", []))])
