"""QA exact-match metrics on hand-computed cases."""

import pytest

from vega3d.evaluation import qa


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("The Chair.", "chair"),
        ("  a  red   TABLE ", "red table"),
        ("2", "two"),
        ("23 chairs", "twenty-three chairs"),
        ("None", "zero"),
        ("It's on the left, near an oven!", "it's on left near oven"),
        ("o'clock", "o'clock"),
        ("100", "100"),
    ],
)
def test_normalize_answer(raw, expected):
    assert qa.normalize_answer(raw) == expected


def test_normalize_is_idempotent():
    for text in ["Twenty-three", "the 5 chairs.", "none", "An apple"]:
        once = qa.normalize_answer(text)
        assert qa.normalize_answer(once) == once


def test_number_to_words():
    assert [qa.number_to_words(v) for v in (0, 13, 20, 47, 99)] == ["zero", "thirteen", "twenty", "forty-seven", "ninety-nine"]


def test_exact_match_raw_and_normalised():
    assert qa.exact_match(" brown ", ["white", "brown"])
    assert not qa.exact_match("Brown.", ["white", "brown"])
    assert qa.exact_match("Brown.", ["white", "brown"], normalize=True)
    assert qa.exact_match("2", ["two"], normalize=True)
    assert not qa.exact_match("2", ["two"])


def test_exact_match_by_type_hand_values():
    preds = ["chair", "Two", "yes", "left"]
    refs = [["chair"], ["2"], ["no"], ["right"]]
    types = ["what", "how", "is", "what"]
    overall, per_type = qa.exact_match_by_type(preds, refs, types)
    assert overall == 50.0
    assert per_type == {"how": 100.0, "is": 0.0, "what": 50.0}


def test_exact_match_by_type_rejects_mismatched_lengths():
    with pytest.raises(ValueError, match="same length"):
        qa.exact_match_by_type(["a"], [["a"], ["b"]], ["what"])
