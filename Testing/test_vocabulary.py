from __future__ import annotations

import json

import pytest

from SeriesClassifierLib.resources import resource_path
from SeriesClassifierLib.vocabulary import load_vocabulary


def test_bundled_vocabulary_has_the_contract_codes():
    vocab = load_vocabulary()
    assert len(vocab.sequence_codes) == 27
    assert vocab.sequence_codes[0] == "SCOUT" and "OTHER" in vocab.sequence_codes
    assert vocab.orientation_codes == ["AXIAL", "SAGITTAL", "CORONAL", "OBLIQUE", "MIXED"]
    assert vocab.attribute_codes == ["contrast", "acquisition", "fat_suppressed", "derived"]
    assert vocab.oblique_threshold_degrees == 20.0


def test_bids_mapping_of_post_contrast_t1():
    bids = load_vocabulary().sequence("T1_3D_POST").bids
    assert (bids.datatype, bids.suffix, bids.entities["ce"]) == ("anat", "T1w", "gadolinium")
    assert load_vocabulary().sequence("SCOUT").bids is None


def test_unknown_codes_are_refused_with_the_valid_list():
    vocab = load_vocabulary()
    with pytest.raises(ValueError, match="T1_3D_PRE"):
        vocab.check_sequence("T1_MPRAGE")
    with pytest.raises(ValueError, match="SAGITTAL"):
        vocab.check_orientation("SAG")


def test_a_site_vocabulary_may_add_classes(tmp_path):
    data = json.loads(resource_path("vocabulary.json").read_text())
    data["sequence"].append({"code": "MRS_MAP", "name": "Spectroscopy map", "bids": None})
    path = tmp_path / "site.json"
    path.write_text(json.dumps(data))
    vocab = load_vocabulary(path)
    assert vocab.sequence_codes[-1] == "MRS_MAP" and len(vocab.sequence_codes) == 28


def test_duplicate_codes_are_rejected(tmp_path):
    data = json.loads(resource_path("vocabulary.json").read_text())
    data["sequence"].append(dict(data["sequence"][0]))
    path = tmp_path / "dup.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match="duplicate"):
        load_vocabulary(path)
