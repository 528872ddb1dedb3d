"""Study context (contrast) and novelty (what the models cannot know) with their reasons."""

from __future__ import annotations

from SeriesClassifierLib.models.context import apply_contrast_context, contrast_evidence
from SeriesClassifierLib.models.features import add_study_context
from SeriesClassifierLib.models.novelty import class_ranges, not_brain_reason, out_of_range, unseen_terms
from SeriesClassifierLib.prediction import TaskPrediction
from SeriesClassifierLib.series import Series


def _series(uid="1", **header) -> Series:
    return Series(series_uid=uid, study_uid="study", files=[], header=dict(header))


T1_PRE = TaskPrediction.from_probabilities({"T1_3D_PRE": 0.8, "T1_3D_POST": 0.15, "FLAIR_3D": 0.05})


def test_a_contrast_marked_description_moves_pre_to_post_and_says_why():
    s = _series(SeriesDescription="sag 3d gre +c", ContrastBolusAgent="")
    moved, note, confirm = apply_contrast_context(T1_PRE, s)
    assert not confirm  # the description says so: a fact of the header
    assert moved.label == "T1_3D_POST" and abs(moved.probability - 0.8) < 1e-9
    assert "'sag 3d gre +c'" in note


def test_no_evidence_and_non_t1_classes_stay():
    assert apply_contrast_context(T1_PRE, _series(SeriesDescription="t1_mprage_sag")) == (T1_PRE, None, False)
    flair = TaskPrediction.from_probabilities({"FLAIR_2D": 0.9, "T2_2D": 0.1})
    assert apply_contrast_context(flair, _series(SeriesDescription="FLAIR post gad"))[1] is None


def test_a_description_the_study_s_agent_tags_contradict_goes_to_a_person():
    copied = _series("1", SeriesTime="100000", SeriesDescription="t1_mprage_sag +C")  # before any agent
    post = _series("2", SeriesTime="101000", SeriesDescription="t1_mprage_sag +C", ContrastBolusAgent="Gadovist")
    add_study_context([copied, post])
    moved, note, confirm = apply_contrast_context(T1_PRE, copied)
    assert moved.label == "T1_3D_POST" and confirm and "not on this one (a person should confirm)" in note
    assert apply_contrast_context(T1_PRE, post)[2] is False  # its own header names the agent
    alone = _series("3", SeriesTime="100000", SeriesDescription="t1_mprage_sag +C")
    add_study_context([alone])  # no agent anywhere in the study: the description is all there is
    assert apply_contrast_context(T1_PRE, alone)[2] is False


def test_a_pre_answer_nothing_in_the_headers_could_contradict_goes_to_a_person():
    stripped = _series("1", ContrastBolusAgent="ANONYMIZED")  # descriptions removed, agent blanked
    add_study_context([stripped])
    kept, note, confirm = apply_contrast_context(T1_PRE, stripped)
    assert kept == T1_PRE and confirm and "cannot be told from the headers" in note
    described = _series("2", ProtocolName="t1_mprage_sag")  # a description that could have said "+C"
    explicit_none = _series("3", ContrastBolusAgent="NONE")
    recorded = _series("4", SeriesTime="100000")
    elsewhere = _series("5", SeriesTime="101000", ContrastBolusAgent="Gadovist")
    add_study_context([described])
    add_study_context([explicit_none])
    add_study_context([recorded, elsewhere])  # the study records its agent, not on this series
    for s in (described, explicit_none, recorded):
        assert apply_contrast_context(T1_PRE, s) == (T1_PRE, None, False)


def test_an_earlier_series_naming_an_agent_makes_a_later_t1_post():
    first = _series("1", SeriesTime="100000", ContrastBolusAgent="Gadovist")
    later = _series("2", SeriesTime="101000", ContrastBolusAgent="")
    earlier = _series("0", SeriesTime="095000", ContrastBolusAgent="")
    add_study_context([first, later, earlier])
    assert "earlier series" in contrast_evidence(later)
    assert contrast_evidence(earlier) is None
    assert "'Gadovist'" in contrast_evidence(first)  # its own header names the agent


def _study_of_t1s(**agents):
    """Three series in time order: a T1 SE, a FLAIR, the same T1 SE again."""
    t1 = {"ScanningSequence": ["SE"], "MRAcquisitionType": "2D", "ImageType": ["ORIGINAL"], "SequenceName": "se2d1",
          "ProtocolName": "t1_se_tra"}
    first = _series("1", SeriesTime="100000", **t1, ContrastBolusAgent=agents.get("first", ""))
    flair = _series("2", SeriesTime="100500", ScanningSequence=["SE", "IR"], InversionTime=2500.0,
                    MRAcquisitionType="2D", ImageType=["ORIGINAL"], SequenceName="tir2d1")
    again = _series("3", SeriesTime="101000", **t1, ContrastBolusAgent=agents.get("again", ""))
    add_study_context([first, flair, again])
    return first, again


T1_2D = TaskPrediction.from_probabilities({"T1_2D_PRE": 0.9, "T1_2D_POST": 0.1})


def test_the_repeat_of_a_t1_protocol_is_post_contrast_for_a_person_to_confirm():
    first, again = _study_of_t1s()
    moved, note, confirm = apply_contrast_context(T1_2D, again)
    assert moved.label == "T1_2D_POST" and confirm and "a person should confirm" in note
    assert apply_contrast_context(T1_2D, first) == (T1_2D, None, False)  # the first of them stays pre


def test_a_named_agent_in_the_study_overrules_the_repeat_hint():
    first, again = _study_of_t1s(first="Gadovist")  # named on the first: it is post; the repeat is too
    assert apply_contrast_context(T1_2D, again)[2] is False
    _, again = _study_of_t1s(again="Gadovist")
    moved, _, confirm = apply_contrast_context(T1_2D, again)
    assert moved.label == "T1_2D_POST" and not confirm


def test_a_bold_run_before_the_t1_is_not_contrast():
    bold = _series("1", SeriesTime="100000", ScanningSequence=["EP"], NumberOfTemporalPositions=200)
    t1 = _series("2", SeriesTime="101000")
    add_study_context([bold, t1])
    assert contrast_evidence(t1) is None


def test_not_brain_from_body_part():
    assert "KNEE" in not_brain_reason(_series(BodyPartExamined="KNEE"))
    assert not_brain_reason(_series(BodyPartExamined="MR Lever")) is not None
    for head in ("HEAD", "BRAIN", "Kopf", "SKULL", ""):
        assert not_brain_reason(_series(BodyPartExamined=head)) is None
    assert not_brain_reason(_series()) is None


def test_unseen_defined_terms_only():
    known = {"ss:SE", "it:ORIGINAL"}
    # ImageType and ScanOptions words past the defined ones differ at every site: not news
    assert unseen_terms(["ss:SE", "ss:RM", "it:GDC", "so:S2_0", "sn:newname", "it:ORIGINAL"], known) == ["ss:RM"]


def test_a_value_outside_its_class_range_is_named():
    train = [_series(str(i), EchoTime=60.0 + i, RepetitionTime=4000.0 + 10 * i) for i in range(40)]
    ranges = class_ranges(train, ["DWI"] * 40)
    assert out_of_range({"EchoTime": 70.0, "RepetitionTime": 4100.0}, "DWI", ranges) == []
    strays = out_of_range({"EchoTime": 3.0, "RepetitionTime": 4100.0}, "DWI", ranges)
    assert len(strays) == 1 and strays[0].startswith("TE 3 ms (DWI in training: 60")
    assert out_of_range({"EchoTime": 3.0}, "SWI", ranges) == []  # no range known for the class
