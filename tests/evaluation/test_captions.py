"""Caption metrics: hand-computed values and equality with pycocoevalcap called directly."""

import math

import pytest
from pycocoevalcap.bleu.bleu import Bleu
from pycocoevalcap.cider.cider import Cider
from pycocoevalcap.meteor.meteor import Meteor
from pycocoevalcap.rouge.rouge import Rouge

from vega3d.evaluation import captions


def test_normalize_caption():
    # released: no whitespace collapse ("A Chair." + "  It" -> "a chair . " + "  it": four spaces)
    assert captions.normalize_caption("A Chair.  It is red,tall") == "sos a chair .   it is red , tall eos"
    assert captions.normalize_caption("") == "sos  eos"
    assert captions.EMPTY_CAPTION == "sos eos"
    assert captions.normalize_caption(None) == "sos eos"


def test_normalize_qa_text():
    assert captions.normalize_qa_text("  brown  wooden chair. ") == "brown wooden chair"


def test_bleu_rouge_hand_computed():
    refs = {"a": ["sos a red chair eos"]}
    cands = {"a": "sos a chair eos"}
    scores = captions.coco_scores(refs, cands, meteor=False)
    brevity = math.exp(1 - 5 / 4)  # candidate 4 tokens, reference 5
    assert scores.corpus["bleu1"] == pytest.approx(100 * brevity, rel=1e-6)  # 4/4 unigrams match
    assert scores.corpus["bleu2"] == pytest.approx(100 * brevity * math.sqrt(2 / 3), rel=1e-6)  # 2/3 bigrams
    # LCS 4: precision 1, recall 0.8, beta 1.2 -> (1 + 1.44) * 0.8 / (0.8 + 1.44)
    assert scores.corpus["rouge_l"] == pytest.approx(100 * 2.44 * 0.8 / 2.24, rel=1e-9)


def test_cider_identical_captions_score_ten():
    refs = {"a": ["sos a red chair eos"], "b": ["sos a blue table eos"]}
    cands = {"a": "sos a red chair eos", "b": "sos a blue table eos"}
    scores = captions.coco_scores(refs, cands, meteor=False)
    # identical TF-IDF vectors (cosine 1 for n = 1..4), no length penalty, x10 -> 10.0 per item = 1000 %
    assert scores.per_item["cider"] == pytest.approx([1000.0, 1000.0])
    assert scores.corpus["cider"] == pytest.approx(1000.0)
    assert scores.corpus["bleu4"] == pytest.approx(100.0, rel=1e-6)


def test_scan2cap_and_scanqa_equal_pycocoevalcap_directly():
    """Our scores (METEOR included, one java start each) equal pycocoevalcap on the same normalised strings."""
    references = {
        "s0|1": ["This is a brown chair. It is next to the table.", "A wooden chair, by a table."],
        "s0|2": ["The white door is on the left wall."],
        "s1|3": ["A black tv. It hangs above the cabinet."],
    }
    predicted = {"s0|1": "A brown chair next to the table.", "s0|2": "a white door", "s1|3": None}
    ours = captions.scan2cap_scores(references, predicted)
    gts = {k: [captions.normalize_caption(r) for r in v] for k, v in references.items()}
    res = {k: [captions.normalize_caption(v)] for k, v in predicted.items()}
    assert res["s1|3"] == ["sos eos"]
    assert gts["s0|1"][1] == "sos a wooden chair ,  by a table .  eos"
    bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
    meteor = Meteor()
    meteor_score, _ = meteor.compute_score(gts, res)
    del meteor
    direct = {
        "cider": Cider().compute_score(gts, res)[0],
        "rouge_l": Rouge().compute_score(gts, res)[0],
        "meteor": meteor_score,
        **{f"bleu{n + 1}": bleu[n] for n in range(4)},
    }
    assert set(ours.corpus) == set(direct)
    for name, value in direct.items():
        assert ours.corpus[name] == pytest.approx(100 * value, abs=1e-9), name
    assert 0 < ours.corpus["cider"] < 1000


def test_scanqa_scores_match_direct_without_meteor():
    references = {"q1": ["brown", "brown wooden"], "q2": ["two"], "q3": ["on the left side"]}
    answers = {"q1": "brown.", "q2": "three", "q3": "left side"}
    ours = captions.scanqa_scores(references, answers, meteor=False)
    res = {"q1": ["brown"], "q2": ["three"], "q3": ["left side"]}
    assert ours.corpus["cider"] == pytest.approx(100 * Cider().compute_score(references, res)[0])
    assert ours.corpus["rouge_l"] == pytest.approx(100 * Rouge().compute_score(references, res)[0])
    assert "meteor" not in ours.corpus


def test_coco_scores_rejects_mismatched_ids():
    with pytest.raises(ValueError, match="share ids"):
        captions.coco_scores({"a": ["x"]}, {"b": "x"}, meteor=False)


def test_scan2cap_double_spaces_reach_rouge_as_empty_tokens():
    """ROUGE-L splits on " ": the released double spaces are empty tokens. Reference "sos a chair ,  red eos"
    has 7 tokens (one empty), the candidate "sos a chair red eos" 5; LCS = 5 (sos a chair red eos), so
    P = 5/5, R = 5/7, ROUGE-L(beta 1.2) = (1 + 1.44) P R / (R + 1.44 P) = 2.44 * 5/7 / (5/7 + 1.44)."""
    scores = captions.scan2cap_scores({"o": ["A chair, red"]}, {"o": "A chair red"}, meteor=False)
    recall = 5 / 7
    assert scores.corpus["rouge_l"] == pytest.approx(100 * 2.44 * recall / (recall + 1.44), rel=1e-9)
