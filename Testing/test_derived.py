"""Derived series tied to their source (header time) and restricted to the source's family (decide time)."""

from __future__ import annotations

import csv
import json

import pydicom
import pytest
from dicom_factory import write_classic_series
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import generate_uid

from SeriesClassifierLib.commands.classify import write_results
from SeriesClassifierLib.models.bundle import ModelBundle
from SeriesClassifierLib.models.context import apply_derived_context
from SeriesClassifierLib.models.derived import LINK_KEY
from SeriesClassifierLib.models.ensemble import EnsembleParams
from SeriesClassifierLib.prediction import ModelOutput, SeriesPrediction, TaskPrediction
from SeriesClassifierLib.resources import resource_path
from SeriesClassifierLib.run.pipeline import decide, read_all_series, resolve_refs
from SeriesClassifierLib.series import Series
from SeriesClassifierLib.vocabulary import load_vocabulary

CORONAL = (1.0, 0.0, 0.0, 0.0, 0.0, -1.0)
ADC_TYPE = ["DERIVED", "PRIMARY", "DIFFUSION", "ADC", "ND"]
MIP_TYPE = ["DERIVED", "SECONDARY", "PROJECTION IMAGE", "MIP"]


def _epi(frame: str, time: str, number: int, **more) -> dict:
    return {"FrameOfReferenceUID": frame, "SeriesTime": time, "SeriesNumber": number, "RepetitionTime": 4000.0,
            "EchoTime": 80.0, "ScanningSequence": "EP", "MRAcquisitionType": "2D", **more}


def _study(tmp_path, write) -> dict[str, Series]:
    """Write a study with ``write(folder, study_uid, frame_uid)``; read it back as the pipeline does, by number."""
    study, frame = generate_uid(), generate_uid()
    write(tmp_path, study, frame)
    return {str(s.series_number): s for s in read_all_series(resolve_refs(tmp_path))}


def _dwi_and_adc(folder, study, frame, adc_frame=None, adc_spacing=5.0, adc_time="100500"):
    write_classic_series(folder / "dwi", _epi(frame, "100000", 5, b_values=[0, 1000]), n=10, study_uid=study)
    write_classic_series(folder / "adc", _epi(adc_frame or frame, adc_time, 6, ImageType=ADC_TYPE), n=5,
                         study_uid=study, spacing=adc_spacing)


def test_an_adc_on_its_dwi_grid_is_linked_with_the_dwi_facts(tmp_path):
    series = _study(tmp_path, _dwi_and_adc)
    link = series["6"].header[LINK_KEY]
    assert link["series_uid"] == series["5"].series_uid and link["series_number"] == 5
    assert link["facts"] == ["diffusion"] and "b up to 1000" in link["evidence"]
    assert "same orientation and slice positions" in link["how"]
    assert LINK_KEY not in series["5"].header  # an original is nobody's derived series


@pytest.mark.parametrize("change", [{"adc_frame": "1.2.3.999"}, {"adc_spacing": 4.0}, {"adc_time": "095900"}],
                         ids=["other frame of reference", "other slice positions", "acquired before its source"])
def test_a_derived_series_that_is_not_on_its_source_is_not_linked(tmp_path, change):
    series = _study(tmp_path, lambda f, s, fr: _dwi_and_adc(f, s, fr, **change))
    assert LINK_KEY not in series["6"].header


def test_a_mip_links_to_the_earlier_tof_volume_covering_it_in_another_plane(tmp_path):
    def write(folder, study, frame):
        tof = _epi(frame, "110000", 9, ScanningSequence="GR", MRAcquisitionType="3D", RepetitionTime=22.0,
                   EchoTime=3.6, AngioFlag="Y", SequenceVariant=["SP", "TOF"])
        write_classic_series(folder / "t1", _epi(frame, "100000", 3, ScanningSequence="GR", MRAcquisitionType="3D",
                                                 RepetitionTime=8.0, EchoTime=3.0), n=20, spacing=1.0,
                             study_uid=study)
        write_classic_series(folder / "tof", tof, n=20, spacing=1.0, study_uid=study)
        write_classic_series(folder / "mip", _epi(frame, "110500", 10, ImageType=MIP_TYPE), n=1, iop=CORONAL,
                             study_uid=study)

    series = _study(tmp_path, write)
    link = series["10"].header[LINK_KEY]
    assert link["series_number"] == 9 and link["facts"] == ["angio"]  # the nearest earlier, not the T1
    assert "AngioFlag" in link["evidence"]


def test_a_mip_naming_its_technique_links_to_a_source_of_that_kind_only(tmp_path):
    def write(folder, study, frame, with_tof):
        swi = _epi(frame, "110000", 8, ScanningSequence="GR", MRAcquisitionType="3D", RepetitionTime=27.0,
                   EchoTime=20.0, SequenceName="*swi3d1r", ImageType=["ORIGINAL", "PRIMARY", "M", "SWI"])
        if with_tof:
            write_classic_series(folder / "tof", _epi(frame, "100000", 4, ScanningSequence="GR", RepetitionTime=22.0,
                                                      MRAcquisitionType="3D", EchoTime=3.6, SequenceName="3dtof"),
                                 n=20, spacing=1.0, study_uid=study)
        write_classic_series(folder / "swi", swi, n=20, spacing=1.0, study_uid=study)
        write_classic_series(folder / "mip", _epi(frame, "110500", 10, ImageType=MIP_TYPE, SequenceName="3dtof"),
                             n=1, iop=CORONAL, study_uid=study)

    series = _study(tmp_path / "both", lambda f, s, fr: write(f, s, fr, True))
    link = series["10"].header[LINK_KEY]
    assert link["series_number"] == 4 and link["facts"] == ["angio"]  # not the later SWI beside it
    series = _study(tmp_path / "swi only", lambda f, s, fr: write(f, s, fr, False))
    assert LINK_KEY not in series["10"].header  # its own header says TOF: no SWI source


def test_a_derived_series_alone_in_its_study_has_no_link(tmp_path):
    def write(folder, study, frame):
        write_classic_series(folder / "adc", _epi(frame, "100000", 6, ImageType=ADC_TYPE), study_uid=study)

    series = _study(tmp_path, write)
    assert LINK_KEY not in series["6"].header


def _reference(uid: str) -> Sequence:
    item = Dataset()
    item.ReferencedSOPClassUID = "1.2.840.10008.5.1.4.1.1.4"
    item.ReferencedSOPInstanceUID = uid
    return Sequence([item])


def test_source_image_sequence_links_across_geometry_but_a_localizer_reference_does_not(tmp_path):
    """SourceImageSequence says what a series was made from; ReferencedImageSequence often names the scout."""

    def write(folder, study, frame):
        _, scout = write_classic_series(folder / "scout", _epi(frame, "095000", 1), n=3, study_uid=study)
        scout_sop = pydicom.dcmread(scout[0]).SOPInstanceUID
        _, dwi = write_classic_series(folder / "dwi", _epi(frame, "100000", 5, b_values=[0, 1000]), n=10,
                                      study_uid=study)
        dwi_sop = pydicom.dcmread(dwi[3]).SOPInstanceUID
        write_classic_series(folder / "adc", _epi(frame, "100500", 6, ImageType=ADC_TYPE,
                                                  SourceImageSequence=_reference(dwi_sop)),
                             n=4, spacing=6.0, study_uid=study)  # resampled: no longer on the DWI's grid
        write_classic_series(folder / "mpr", _epi(frame, "100600", 7, ImageType=["DERIVED", "PRIMARY", "MPR"],
                                                  ReferencedImageSequence=_reference(scout_sop)),
                             n=4, spacing=6.0, study_uid=study)

    series = _study(tmp_path, write)
    assert series["6"].header[LINK_KEY]["series_number"] == 5
    assert "SourceImageSequence" in series["6"].header[LINK_KEY]["how"]
    assert LINK_KEY not in series["7"].header


# ---------------------------------------------------------------------------------------------- decide time


def _linked(facts: list[str], number: int = 5) -> Series:
    link = {"series_uid": "1.5", "series_number": number, "how": "same orientation and slice positions",
            "facts": facts, "evidence": "diffusion-weighted, b up to 1000"}
    return Series(series_uid="1.6", study_uid="s", files=[], header={LINK_KEY: link, "RepetitionTime": 4000.0,
                                                                   "EchoTime": 80.0})


def test_an_answer_outside_the_source_family_is_restricted_to_it_and_says_why():
    pooled = TaskPrediction.from_probabilities({"T2_2D": 0.6, "ADC": 0.3, "DWI": 0.1})
    answer, why, confirm = apply_derived_context(pooled, _linked(["diffusion"]))
    assert answer.label == "ADC" and answer.probability == pytest.approx(0.75)
    assert set(answer.probabilities) == set(load_vocabulary().derived_family(["diffusion"]))
    assert confirm and why.startswith("derived from series 5 (diffusion-weighted")


def test_an_answer_inside_the_family_or_without_a_known_source_stays():
    pooled = TaskPrediction.from_probabilities({"ADC": 0.6, "T2_2D": 0.4})
    assert apply_derived_context(pooled, _linked(["diffusion"])) == (pooled, None, False)
    other = TaskPrediction.from_probabilities({"T2_2D": 0.6, "ADC": 0.4})
    assert apply_derived_context(other, _linked([])) == (other, None, False)


def test_no_mass_on_the_family_leaves_its_members_equal():
    pooled = TaskPrediction.from_probabilities({"T1_3D_PRE": 1.0})
    answer, _, confirm = apply_derived_context(pooled, _linked(["angio"]))
    assert answer.label == "MRA_MIP" and answer.probability == pytest.approx(1.0) and confirm


def _forest(label: str, p: float) -> ModelOutput:
    rest = {"T2_2D": 1 - p} if label != "T2_2D" else {"ADC": 1 - p}
    return ModelOutput("forest", sequence=TaskPrediction.from_probabilities({label: p, **rest}))


def test_decide_restricts_sends_to_review_and_the_link_reaches_csv_and_json(tmp_path):
    bundle = ModelBundle(ensemble=EnsembleParams(review_threshold=0.5), version="t")
    series = _linked(["diffusion"])
    p = decide(series, {"forest": _forest("T2_2D", 0.9)}, bundle)
    assert p.sequence.label == "ADC" and p.needs_review
    assert any(r.startswith("derived from series 5") for r in p.reasons)
    assert (p.source_series_uid, p.source_series_number) == ("1.5", 5)
    assert SeriesPrediction.from_dict(json.loads(json.dumps(p.to_dict()))).source_series_number == 5
    kept = decide(series, {"forest": _forest("ADC", 0.9)}, bundle)  # already in the family: only the link
    assert kept.sequence.label == "ADC" and not kept.needs_review and kept.source_series_uid == "1.5"
    write_results([p], tmp_path / "r.csv")
    with open(tmp_path / "r.csv", encoding="utf-8") as f:
        row = next(csv.DictReader(f))
    assert (row["source_series_uid"], row["source_series_number"]) == ("1.5", "5")
    write_results([p], tmp_path / "r.json")
    assert json.loads((tmp_path / "r.json").read_text())["series"][0]["source_series_uid"] == "1.5"


def test_the_family_is_vocabulary_data_and_checked(tmp_path):
    vocabulary = load_vocabulary()
    assert vocabulary.derived_family(["angio"]) == ["MRA_MIP"]
    assert vocabulary.derived_family(["no such fact"]) == []
    with open(resource_path("vocabulary.json"), encoding="utf-8") as f:
        data = json.load(f)
    data["sequence"][0]["derivatives"] = ["NOT_A_CLASS"]
    (tmp_path / "site.json").write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(ValueError, match="NOT_A_CLASS"):
        load_vocabulary(tmp_path / "site.json")


def test_the_generator_writes_maps_and_projections_its_linker_ties_to_their_source(tmp_path):
    """Generated studies as the benchmark reads them: an ADC lies on its DWI's grid, a MIP inside its TOF."""
    from SeriesClassifierLib.synth.header_corpus import header_studies

    checked = 0
    for folder, rows in header_studies(1, seed=3, profiles=["holdout"], study_type="stroke", scratch=tmp_path):
        label = {r.series_uid: r.sequence for r in rows}
        for s in read_all_series(resolve_refs(folder)):
            wanted = {"ADC": ("DWI", ["diffusion"]), "MRA_MIP": ("TOF_MRA", ["angio"])}.get(label[s.series_uid])
            if wanted is not None:
                link = s.header[LINK_KEY]
                assert (label[link["series_uid"]], link["facts"]) == wanted
                checked += 1
    assert checked >= 2


def test_the_link_reaches_predictions_in_one_process_and_in_worker_processes(tmp_path):
    """Links are made at read time, per study: a local worker's partition sees the same siblings."""
    from SeriesClassifierLib.run.stream import classify_stream

    series = _study(tmp_path, _dwi_and_adc)
    for workers in (0, 1):
        by_number = {p.series_number: p for p in classify_stream(tmp_path, None, use_cnn=False, workers=workers)}
        assert (by_number[6].source_series_uid, by_number[6].source_series_number) == (series["5"].series_uid, 5)
        assert by_number[5].source_series_uid == ""
