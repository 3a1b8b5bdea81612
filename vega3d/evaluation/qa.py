"""Exact-match metrics for ScanQA and SQA3D (SPEC.md section 4).

SQA3D's EM compares answers after :func:`normalize_answer`: lower-case, punctuation stripped (apostrophes
and hyphens kept, so "o'clock" and "twenty-three" survive), numbers 0-99 written as words ("none" counts as
"zero"), the articles a/an/the dropped and whitespace collapsed. ScanQA reports a raw EM (the stripped
prediction equals one reference verbatim) and the same normalised EM.
"""

from __future__ import annotations

import string
from collections import defaultdict
from collections.abc import Sequence

SQA3D_QUESTION_TYPES: tuple[str, ...] = ("what", "is", "how", "can", "which", "others")

_ONES = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
    "seventeen eighteen nineteen"
).split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()
_PUNCTUATION = "".join(ch for ch in string.punctuation if ch not in "'-")
_PUNCT_TABLE = str.maketrans({ch: " " for ch in _PUNCTUATION})
_ARTICLES = {"a", "an", "the"}


def number_to_words(value: int) -> str:
    """0..99 -> English words (23 -> "twenty-three"); other values are returned as digits."""
    if 0 <= value < 20:
        return _ONES[value]
    if 20 <= value < 100:
        tens, ones = divmod(value, 10)
        return _TENS[tens] if ones == 0 else f"{_TENS[tens]}-{_ONES[ones]}"
    return str(value)


def normalize_answer(text: str) -> str:
    """SPEC.md normalisation: lower-case, strip punctuation, numbers to words, drop articles."""
    text = text.lower().replace("\u2019", "'")
    text = text.translate(_PUNCT_TABLE)
    words = []
    for word in text.split():
        word = word.strip("'-")
        if not word or word in _ARTICLES:
            continue
        if word.isdigit():
            word = number_to_words(int(word))
        elif word == "none":
            word = "zero"
        words.append(word)
    return " ".join(words)


def exact_match(prediction: str, references: Sequence[str], normalize: bool = False) -> bool:
    """True when the prediction equals any reference (after :func:`normalize_answer` if ``normalize``).

    Without normalisation only surrounding whitespace is stripped (the raw ScanQA EM).
    """
    if normalize:
        target = normalize_answer(prediction)
        return any(target == normalize_answer(ref) for ref in references)
    target = prediction.strip()
    return any(target == ref.strip() for ref in references)


def exact_match_by_type(
    predictions: Sequence[str],
    references: Sequence[Sequence[str]],
    types: Sequence[str],
    normalize: bool = True,
) -> tuple[float, dict[str, float]]:
    """Percent EM overall and per type: (overall, {type: EM}) over aligned lists of equal length."""
    if not (len(predictions) == len(references) == len(types)):
        raise ValueError(
            f"predictions ({len(predictions)}), references ({len(references)}) and types ({len(types)}) "
            "must have the same length"
        )
    if not predictions:
        raise ValueError("exact_match_by_type needs at least one prediction")
    hits: dict[str, list[bool]] = defaultdict(list)
    overall = []
    for pred, refs, kind in zip(predictions, references, types, strict=True):
        hit = exact_match(pred, refs, normalize=normalize)
        overall.append(hit)
        hits[kind].append(hit)
    per_type = {kind: 100.0 * sum(v) / len(v) for kind, v in sorted(hits.items())}
    return 100.0 * sum(overall) / len(overall), per_type
