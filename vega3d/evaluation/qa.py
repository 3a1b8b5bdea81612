"""Exact-match metrics for ScanQA and SQA3D (SPEC.md section 4 and Parity 3).

SQA3D's EM (``sqa3d/em``) compares answers after :func:`normalize_sqa3d_released`, the released
normalisation (typo fixes, numbers 0-20 and 23 as words, glued digits and articles dropped...). Our own
:func:`normalize_answer` (lower-case, punctuation stripped with apostrophes and hyphens kept, numbers 0-99
as words, "none" as "zero", articles dropped, whitespace collapsed) stays as the extra metric
``sqa3d/em_vega3d_norm``. ScanQA reports a raw EM (the stripped prediction equals one reference verbatim)
and the EM after :func:`normalize_answer`.
"""

from __future__ import annotations

import re
import string
from collections import defaultdict
from collections.abc import Callable, Sequence

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


_RELEASED_TYPOS: tuple[tuple[str, str], ...] = (
    (r"\bletf\b", "left"), (r"\blet\b", "left"), (r"\btehre\b", "there"), (r"\brigth\b", "right"),
    (r"\brght\b", "right"), (r"\bbehine\b", "behind"), (r"\btv\b", "TV"), (r"\bchai\b", "chair"),
    (r"\bwasing\b", "washing"), (r"\bwaslked\b", "walked"), (r"\boclock\b", "o'clock"),
    (r"\bo'[ ]+clock\b", "o'clock"),
)
_RELEASED_NUMBERS: dict[str, str] = {**{str(n): _ONES[n] for n in range(20)}, "20": "twenty", "23": "twenty-three",
                                     "none": "zero"}
_RELEASED_NUMBER_RE = re.compile(r"\b(" + "|".join(sorted(_RELEASED_NUMBERS, key=len, reverse=True)) + r")\b")


def normalize_sqa3d_released(text: str) -> str:
    """The released SQA3D answer normalisation (SPEC.md Parity 3), step by step in its order.

    lower-case; strip; collapse runs of spaces; keep only letters, digits, ``,`` ``'`` whitespace ``-`` ``:``;
    typo fixes (letf/let -> left, tehre -> there, rigth/rght -> right, behine -> behind, tv -> TV,
    chai -> chair, wasing -> washing, waslked -> walked, oclock / "o' clock" -> o'clock); whole-word numbers
    0-20 and 23 to words and none -> zero; one digit glued to the end of a word dropped (no1 -> no);
    a/an/the dropped before a word; backwards -> backward.
    """
    text = re.sub(r" {2,}", " ", text.lower().strip())
    text = re.sub(r"[^a-zA-Z0-9,'\s\-:]+", "", text)
    for pattern, fixed in _RELEASED_TYPOS:
        text = re.sub(pattern, fixed, text)
    text = _RELEASED_NUMBER_RE.sub(lambda m: _RELEASED_NUMBERS[m.group(1)], text)
    text = re.sub(r"\b([a-zA-Z]+)[0-9]\b", r"\1", text)
    for article in ("a", "an", "the"):  # one pass each, in this order: "the a chair" -> "the chair" -> "chair"
        text = re.sub(rf"\b{article}\b ([a-zA-Z]+)", r"\1", text)
    return re.sub(r"\bbackwards\b", "backward", text)


Normalizer = Callable[[str], str]


def exact_match(prediction: str, references: Sequence[str], normalize: bool | Normalizer = False) -> bool:
    """True when the prediction equals any reference, both normalised by ``normalize`` (a function, or True
    for :func:`normalize_answer`).

    Without normalisation only surrounding whitespace is stripped (the raw ScanQA EM).
    """
    if normalize:
        norm = normalize_answer if normalize is True else normalize
        target = norm(prediction)
        return any(target == norm(ref) for ref in references)
    target = prediction.strip()
    return any(target == ref.strip() for ref in references)


def exact_match_by_type(
    predictions: Sequence[str],
    references: Sequence[Sequence[str]],
    types: Sequence[str],
    normalize: bool | Normalizer = True,
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
