"""Caption metrics of Scan2Cap and ScanQA through pycocoevalcap itself (SPEC.md section 4).

Tokenisation: pycocoevalcap's PTBTokenizer (a Java CoreNLP call) is NOT used. Like the original
Video-3D-LLM evaluation, strings are tokenised by whitespace after our own normalisation:
- Scan2Cap, :func:`normalize_caption`: lower-case, "." and "," surrounded by spaces, wrapped in
  "sos ... eos", double spaces kept as the released code leaves them (ROUGE-L's ``split(" ")`` sees them
  as empty tokens);
- ScanQA, :func:`normalize_qa_text`: whitespace collapsed and a trailing "." removed from the prediction
  (the original's ``rstrip(".")``); references as given.
The BLEU, METEOR, ROUGE-L and CIDEr scorers are pycocoevalcap's own; METEOR runs pycocoevalcap's jar once per
call under a deadline (:mod:`vega3d.evaluation.meteor`; SPICE is left out: it downloads models). Scores are
percentages. Before scoring, every string is bounded (:func:`bound_text`: at most 512 words of at most 64
characters, the decoding limit): a runaway answer cannot stall or kill the scorers.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

logger = logging.getLogger(__name__)

EMPTY_CAPTION = "sos eos"
MAX_WORDS = 512  # greedy decoding stops at 512 new tokens (SPEC section 4): no real answer has more words
MAX_WORD_CHARS = 64


def bound_text(text: str) -> str:
    """``text`` itself when it has at most MAX_WORDS words of at most MAX_WORD_CHARS characters (its spacing
    kept: the released Scan2Cap captions carry double spaces), else its first MAX_WORDS words, each cut to
    MAX_WORD_CHARS characters, joined by single spaces."""
    words = text.split()
    if len(words) <= MAX_WORDS and all(len(word) <= MAX_WORD_CHARS for word in words):
        return text
    return " ".join(word[:MAX_WORD_CHARS] for word in words[:MAX_WORDS])


def normalize_caption(text: str | None) -> str:
    """Scan2Cap normalisation as released: "A chair. It is red" -> "sos a chair .  it is red eos" (the space
    after "." stays, so ". " becomes " .  "); None -> "sos eos"."""
    if text is None:
        return EMPTY_CAPTION
    return f"sos {text.replace('.', ' . ').replace(',', ' , ').lower()} eos"


def normalize_qa_text(text: str) -> str:
    """ScanQA candidate normalisation: collapse whitespace, drop a trailing "."."""
    return " ".join(text.split()).rstrip(".").rstrip()


@dataclass
class CaptionScores:
    """Corpus scores {"cider": %, "bleu1".."bleu4", "meteor", "rouge_l"} and per-item scores in key order."""

    corpus: dict[str, float]
    per_item: dict[str, list[float]]
    keys: list[str]


def coco_scores(references: Mapping[str, Sequence[str]], candidates: Mapping[str, str], meteor: bool = True,
                meteor_timeout_s: float = 600.0) -> CaptionScores:
    """BLEU-1..4, METEOR, ROUGE-L and CIDEr of already-normalised strings with pycocoevalcap's scorers.

    ``references``: id -> non-empty list of reference strings; ``candidates``: id -> one string; same ids.
    Strings are bounded by :func:`bound_text` first; METEOR raises MeteorError past ``meteor_timeout_s``.
    """
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge

    keys = list(candidates)
    if set(keys) != set(references):
        missing = sorted(set(references) - set(keys))[:5]
        extra = sorted(set(keys) - set(references))[:5]
        raise ValueError(f"captions and references must share ids (missing {missing}, unknown {extra})")
    empty = [k for k in keys if not references[k]]
    if empty:
        raise ValueError(f"every id needs at least one reference; none for {empty[:5]}")
    if not keys:
        raise ValueError("coco_scores needs at least one caption")
    gts = {k: [bound_text(r) for r in references[k]] for k in keys}
    res = {k: [bound_text(candidates[k])] for k in keys}
    cut = sum(res[k][0] != candidates[k] for k in keys)
    if cut:
        logger.warning("%d of %d candidates were longer than %d words of %d characters and were cut before "
                       "scoring", cut, len(keys), MAX_WORDS, MAX_WORD_CHARS)

    corpus: dict[str, float] = {}
    per_item: dict[str, list[float]] = {}
    bleu, bleu_items = Bleu(4).compute_score(gts, res, verbose=0)
    for n in range(4):
        corpus[f"bleu{n + 1}"] = 100.0 * float(bleu[n])
        per_item[f"bleu{n + 1}"] = [100.0 * float(v) for v in bleu_items[n]]
    for name, scorer in (("cider", Cider()), ("rouge_l", Rouge())):
        score, items = scorer.compute_score(gts, res)
        corpus[name] = 100.0 * float(score)
        per_item[name] = [100.0 * float(v) for v in items]
    if meteor:
        from vega3d.evaluation.meteor import meteor_score

        score, items = meteor_score(gts, res, timeout_s=meteor_timeout_s)
        corpus["meteor"] = 100.0 * float(score)
        per_item["meteor"] = [100.0 * float(v) for v in items]
    return CaptionScores(corpus=corpus, per_item=per_item, keys=keys)


def scan2cap_scores(
    references: Mapping[str, Sequence[str]], captions: Mapping[str, str | None], meteor: bool = True
) -> CaptionScores:
    """Scan2Cap scores: every object in ``references`` counts; a caption that is None or missing (no
    proposal with IoU >= 0.5) is scored as the empty caption "sos eos"."""
    refs = {k: [normalize_caption(r) for r in refs] for k, refs in references.items()}
    cands = {k: normalize_caption(captions.get(k)) for k in references}
    return coco_scores(refs, cands, meteor=meteor)


def scanqa_scores(
    references: Mapping[str, Sequence[str]], answers: Mapping[str, str], meteor: bool = True
) -> CaptionScores:
    """ScanQA caption-style scores of the predicted answers against all reference answers."""
    cands = {k: normalize_qa_text(answers.get(k, "")) for k in references}
    refs = {k: [" ".join(r.split()) for r in rs] for k, rs in references.items()}
    return coco_scores(refs, cands, meteor=meteor)
