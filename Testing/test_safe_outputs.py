"""Exports safe by construction (issue 17, items 6 and 9): no formula, no glob, no escape sequence, no leak.

The test study lives in a folder named after its (invented) patient, as archives often are; anonymised
outputs are searched for every identifier of it.
"""

from __future__ import annotations

import csv
import fnmatch
import io
import json
from pathlib import Path

import pydicom
import pytest
from dicom_factory import write_series

from SeriesClassifierLib.commands.cli import main
from SeriesClassifierLib.labels.bids import BidsName, dcm2bids_config
from SeriesClassifierLib.labels.review import ReviewSession
from SeriesClassifierLib.labels.safe_text import csv_cell, printable, scrub_paths
from SeriesClassifierLib.labels.store import LabelStore
from SeriesClassifierLib.models.bundle import load_bundle
from SeriesClassifierLib.pydicom_compat import save_dataset
from SeriesClassifierLib.run.pipeline import classify

NAME, PATIENT_ID, BIRTH = "DOE^JOHN", "PID12345", "19600101"
IDENTIFIERS = ("DOE", "JOHN", PATIENT_ID, BIRTH)


def _hostile_study(root: Path, description: str = "=HYPERLINK(\"http://x\")\x1b[31m") -> Path:
    """Two series under a folder named after the patient; one description is a formula with an escape."""
    folder = root / f"{NAME}_{PATIENT_ID}_{BIRTH}"
    write_series(folder / "t2", "T2", n_slices=3, size=8)
    write_series(folder / "evil", "evil", n_slices=3, size=8, number=2)
    for f in sorted(folder.rglob("*.dcm")):
        ds = pydicom.dcmread(f)
        ds.PatientID, ds.PatientName, ds.PatientBirthDate = PATIENT_ID, NAME, BIRTH
        if "evil" in str(f):
            ds.SeriesDescription = description
        save_dataset(ds, f)
    broken = sorted((folder / "evil").glob("*.dcm"))
    for f in broken:  # headers kept, pixels cut: the report cannot show an image and says why
        f.write_bytes(f.read_bytes()[:-60])
    return folder


def _store_with_predictions(folder: Path, store: Path) -> None:
    with LabelStore(store) as s:
        s.record_predictions(classify(folder, load_bundle(load_cnn=False), use_cnn=False))


def test_csv_cells_never_start_a_formula():
    for text in ("=1+1", "+1", "-1", "@SUM(A1)", "\t=1", "\r=1"):
        assert csv_cell(text).startswith("'")
    assert csv_cell("T2 axial") == "T2 axial" and csv_cell(-1.5) == -1.5 and csv_cell(None) is None


@pytest.mark.parametrize("anonymise", [False, True])
def test_export_csv_neutralises_formulas(tmp_path, anonymise):
    folder = _hostile_study(tmp_path)
    store = tmp_path / "labels.sqlite"
    _store_with_predictions(folder, store)
    out = tmp_path / "labels.csv"
    args = ["export", "--store", str(store), "--format", "csv", "--out", str(out)]
    assert main(args + (["--anonymise"] if anonymise else [])) == 0
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    descriptions = {r["series_description"] for r in rows}
    assert any(d.startswith("'=HYPERLINK") for d in descriptions)
    assert not any(cell.startswith(("=", "+", "@")) for r in rows for cell in r.values())


def test_classify_csv_neutralises_formulas(tmp_path):
    folder = _hostile_study(tmp_path)
    out = tmp_path / "results.csv"
    assert main(["classify", str(folder), "--out", str(out), "--no-cnn", "--quiet"]) == 0
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    assert not any(cell.startswith(("=", "+", "@")) for r in rows for cell in r.values())


def test_a_glob_in_a_series_uid_matches_only_itself():
    name = BidsName(series_uid="*", subject="01", session=None, datatype="anat", suffix="T2w")
    patterns = dcm2bids_config({"*": name})["descriptions"][0]["criteria"]["SidecarFilename"]["any"]
    assert not any(fnmatch.fnmatch("sub-01_2_T1w_1.2.3.json", p) for p in patterns)
    assert any(fnmatch.fnmatch("x_*.json", p) for p in patterns)


def test_printed_text_carries_no_escape_sequences():
    text = "T2\x1b[31m red\x1b[0m \x1b]0;owned\x07 bell\x07 nul\x00 c1\x9b2J"
    assert printable(text) == "T2 red  bell nul c1"
    assert "\n" in printable("a\nb") and printable("a\nb", keep_newlines=False) == "a b"


def test_review_shows_a_hostile_description_without_its_escapes(tmp_path):
    folder = _hostile_study(tmp_path, description="T2\x1b[2J\x1b]0;owned\x07")
    store = tmp_path / "labels.sqlite"
    _store_with_predictions(folder, store)
    out = io.StringIO()
    with LabelStore(store) as s:
        ReviewSession(s, s.records(), io.StringIO("q\n"), out).run()
    assert "\x1b" not in out.getvalue() and "\x07" not in out.getvalue()


def test_anonymised_report_and_exports_carry_no_identifier_or_path(tmp_path):
    folder = _hostile_study(tmp_path)
    store = tmp_path / "labels.sqlite"
    _store_with_predictions(folder, store)
    outputs = {fmt: tmp_path / f"out.{fmt}" for fmt in ("csv", "json", "bids", "dcm2bids", "heudiconv")}
    for fmt, out in outputs.items():
        assert main(["export", "--store", str(store), "--format", fmt, "--out", str(out), "--anonymise"]) == 0
    report = tmp_path / "report.html"
    assert main(["report", str(folder), "--store", str(store), "--out", str(report), "--anonymise"]) == 0
    page = report.read_text()
    assert "&lt;file&gt;" in page  # the broken series' note is there, without its path
    for out in [*outputs.values(), report]:
        text = out.read_text()
        for secret in (*IDENTIFIERS, str(tmp_path)):
            assert secret not in text, f"{secret} in {out.name}"
    json.loads(outputs["json"].read_text())


def test_scrub_paths_keeps_the_reason():
    text = "cannot read an image of /data/DOE^JOHN/evil: ValueError: short; C:\\x\\y.dcm: bad; IM1.dcm"
    assert scrub_paths(text) == "cannot read an image of <file>: ValueError: short; <file>: bad; <file>"
