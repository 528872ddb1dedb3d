"""run/incremental.py: the store flow of ``classify`` — fresh predictions merged in the source's order with
the stored ones, recorded in the store as they pass, and the counts of the summary line."""

from __future__ import annotations

from SeriesClassifierLib.labels.store import LabelStore
from SeriesClassifierLib.prediction import SeriesPrediction, TaskPrediction
from SeriesClassifierLib.run.incremental import Recorder, Tally, merge_with_store, model_key
from SeriesClassifierLib.series import SeriesRef


def _prediction(uid: str, sequence: str, version: str, needs_review: bool = False) -> SeriesPrediction:
    return SeriesPrediction(uid, "1.9", "PAT", int(uid), f"series {uid}",
                            sequence=TaskPrediction.from_probabilities({sequence: 0.9, "PD": 0.1}),
                            needs_review=needs_review, model_version=version)


def test_fresh_and_stored_predictions_come_in_source_order_and_the_fresh_are_recorded(tmp_path):
    refs = [SeriesRef(uid, [tmp_path / f"{uid}.dcm"], "1.9") for uid in ("1", "2", "3", "4")]
    for ref in refs:
        ref.files[0].write_bytes(b"x" * int(ref.series_uid))
    key = model_key("toy-1", ["forest"])
    with LabelStore(tmp_path / "labels.sqlite") as store:
        store.record_predictions([_prediction("2", "T2_2D", "old"), _prediction("4", "PD", "old")])
        todo = [refs[0], refs[2], refs[3]]  # 4 was to be classified again but its run gave nothing: the old one
        fresh = iter([_prediction("1", "FLAIR_2D", "new", needs_review=True), _prediction("3", "DWI", "new")])
        recorder = Recorder(store, todo, key)
        tally = Tally(merge_with_store(refs, todo, fresh, store, recorder))

        merged = [(p.series_uid, p.model_version) for p in tally]

        assert merged == [("1", "new"), ("2", "old"), ("3", "new"), ("4", "old")]
        assert (tally.n, tally.review) == (4, 1)
        keys = store.prediction_keys()
        assert keys["1"] == (refs[0].content_key(), key) and keys["3"] == (refs[2].content_key(), key)
        assert store.predictions(["3"])["3"].sequence.label == "DWI"


def test_without_a_store_only_the_fresh_predictions_pass():
    refs = [SeriesRef(uid, [], "1.9") for uid in ("1", "2")]
    recorder = Recorder(None, refs, "k")
    merged = list(merge_with_store(refs, refs, iter([_prediction("2", "T2_2D", "new")]), None, recorder))
    assert [p.series_uid for p in merged] == ["2"]
    assert recorder.pending == []  # nothing held for a store that is not there
