"""``model.max_length`` enforced before training or evaluation starts (issue 16).

A sample's sequence is its prompt's tokens with ``<image>`` replaced by the visual tokens of its frames. A
record whose sequence would exceed ``model.max_length`` is refused up front, naming the record, instead of
running as a huge prompt (a 100k-character description ran as a 25k-token prompt). Cheap first: a byte-level
BPE token covers at least one UTF-8 byte, so a prompt of fewer bytes than the budget is never tokenised.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from vega3d.model.prompts import Mode, encode_record, prompt_pieces


class PromptTooLongError(ValueError):
    """Records whose sequence would exceed model.max_length; ``over`` lists (record id, tokens)."""

    def __init__(self, source: str, over: list[tuple[str, int]], max_length: int) -> None:
        self.over = over
        shown = ", ".join(f"{rid} ({n} tokens)" for rid, n in over[:10])
        super().__init__(
            f"{source}: {len(over)} record(s) would exceed model.max_length={max_length} (visual tokens included): "
            f"{shown}{' ...' if len(over) > 10 else ''}. Shorten or drop these records (re-run `vega3d data prep` "
            "on fixed benchmark files), or raise model.max_length")


def over_length(tokenizer: Any, records: Sequence[dict[str, Any]], mode: Mode, spatial_instruction: bool,
                max_length: int, visual_tokens: int) -> list[tuple[str, int]]:
    """(record id, sequence length) of every record longer than ``max_length`` with ``visual_tokens``."""
    budget = max_length - visual_tokens + 1  # <image> (one token) is replaced by the visual tokens
    over = []
    for record in records:
        text = "".join(piece for piece, _ in prompt_pieces(record, mode, spatial_instruction))
        if len(text.encode("utf-8", errors="replace")) <= budget:
            continue
        tokens = len(encode_record(tokenizer, record, mode, spatial_instruction).input_ids)
        if tokens > budget:
            over.append((str(record.get("id")), tokens - 1 + visual_tokens))
    return over


def enforce_max_length(tokenizer: Any, records: Sequence[dict[str, Any]], mode: Mode, spatial_instruction: bool,
                       max_length: int, visual_tokens: int, source: str) -> None:
    """Raise PromptTooLongError when any record's sequence exceeds ``max_length``."""
    if visual_tokens >= max_length:
        raise PromptTooLongError(source, [("(every record)", visual_tokens)], max_length)
    over = over_length(tokenizer, records, mode, spatial_instruction, max_length, visual_tokens)
    if over:
        raise PromptTooLongError(source, over, max_length)
