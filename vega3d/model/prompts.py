"""ChatML prompts of the processed llava-style records (contracts.md), tokenised with label masks.

    <|im_start|>system\nYou are a helpful assistant.<|im_end|>\n
    <|im_start|>user\n<image>\n[spatial instruction\n]{prompt}<|im_end|>\n
    <|im_start|>assistant\n{answer}<|im_end|>\n

Trained tokens (labels elsewhere = -100), ``model.loss_tokens``:
- ``answer_only`` (ours): the assistant answers and their ``<|im_end|>``;
- ``released`` (SPEC.md Parity 6): every assistant turn whole, ``<|im_start|>assistant\n{answer}<|im_end|>\n``,
  plus every ``\n`` token, ``<|im_start|>`` and ``<|im_end|>`` anywhere in the sequence (system and user turns).
The spatial instruction is added after ``<image>`` by this builder, never stored in the records.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from vega3d.model.configuration import IGNORE_INDEX, QWEN_IM_END, QWEN_IM_START
from vega3d.model.tokenizer import GROUND_TOKEN, IMAGE_TOKEN

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

    from vega3d.config import ModelConfig

SYSTEM_PROMPT = "You are a helpful assistant."
SPATIAL_INSTRUCTION = (
    "The video captures 3D spatial information of a scene. Please focus on the spatial relationships in the "
    "video and answer the following questions."
)
Mode = Literal["train", "generate", "ground"]
LossTokens = Literal["released", "answer_only"]


@dataclass
class EncodedPrompt:
    """Token ids of one record and the training labels (-100 where not trained)."""

    input_ids: list[int]
    labels: list[int]
    text: str


def use_spatial_instruction(model_cfg: ModelConfig, training: bool) -> bool:
    """Whether the spatial instruction is added: always when training (if enabled), at evaluation only
    with ``spatial_instruction_at_eval`` (False reproduces the original evaluation)."""
    return model_cfg.spatial_instruction and (training or model_cfg.spatial_instruction_at_eval)


def add_spatial_instruction(human: str) -> str:
    """Insert the spatial instruction right after the ``<image>`` line of the first user turn."""
    if IMAGE_TOKEN not in human:
        raise ValueError(f"the first human turn must contain {IMAGE_TOKEN}: {human[:80]!r}")
    head, tail = human.split(IMAGE_TOKEN, 1)
    tail = tail[1:] if tail.startswith("\n") else tail
    return f"{head}{IMAGE_TOKEN}\n{SPATIAL_INSTRUCTION}\n{tail}"


def _turns(record: dict[str, Any]) -> list[tuple[str, str]]:
    conversations = record.get("conversations")
    if not conversations or len(conversations) % 2:
        raise ValueError(f"record {record.get('id')!r}: 'conversations' must hold human/gpt pairs")
    pairs = []
    for k in range(0, len(conversations), 2):
        human, gpt = conversations[k], conversations[k + 1]
        if human.get("from") != "human" or gpt.get("from") != "gpt":
            raise ValueError(f"record {record.get('id')!r}: turn {k} must be human then gpt")
        pairs.append((human["value"], gpt["value"]))
    return pairs


def released_unmasked_ids(tokenizer: PreTrainedTokenizerBase) -> set[int]:
    """Ids the released loss trains wherever they occur: ``<|im_start|>``, ``<|im_end|>`` and the "\n" token."""
    newline = tokenizer("\n", add_special_tokens=False).input_ids
    if len(newline) != 1:
        raise ValueError(f"the tokenizer splits '\\n' into {len(newline)} tokens; the released loss mask needs one")
    return {tokenizer.convert_tokens_to_ids(QWEN_IM_START), tokenizer.convert_tokens_to_ids(QWEN_IM_END), newline[0]}


def prompt_pieces(record: dict[str, Any], mode: Mode, spatial_instruction: bool,
                  loss_tokens: LossTokens = "answer_only") -> list[tuple[str, bool]]:
    """The text pieces of a record's prompt and whether each is trained (see :func:`encode_record`)."""
    released = loss_tokens == "released"
    pairs = _turns(record)
    if mode != "train":
        pairs = pairs[:1]
    pieces: list[tuple[str, bool]] = [(f"{QWEN_IM_START}system\n{SYSTEM_PROMPT}{QWEN_IM_END}\n", False)]
    for index, (human, answer) in enumerate(pairs):
        if index == 0 and spatial_instruction:
            human = add_spatial_instruction(human)
        pieces.append((f"{QWEN_IM_START}user\n{human}{QWEN_IM_END}\n", False))
        pieces.append((f"{QWEN_IM_START}assistant\n", mode == "train" and released))
        if mode == "train":
            pieces += [(f"{answer}{QWEN_IM_END}", True), ("\n", released)]
    if mode == "ground":
        pieces.append((GROUND_TOKEN, False))
    return pieces


def encode_record(
    tokenizer: PreTrainedTokenizerBase, record: dict[str, Any], mode: Mode, spatial_instruction: bool,
    loss_tokens: LossTokens = "answer_only",
) -> EncodedPrompt:
    """Record -> token ids and labels.

    ``train``: every turn with its answer, labels by ``loss_tokens`` (module docstring); ``generate``: the
    first question, ending with the assistant header; ``ground``: that plus ``<ground>`` (the query token of
    the grounding head, for evaluation of ScanRefer / Multi3DRefer).
    """
    released = loss_tokens == "released"
    pieces = prompt_pieces(record, mode, spatial_instruction, loss_tokens)
    input_ids: list[int] = []
    labels: list[int] = []
    for text, trained in pieces:
        ids = tokenizer(text, add_special_tokens=False).input_ids
        input_ids += ids
        labels += ids if trained else [IGNORE_INDEX] * len(ids)
    if mode == "train" and released:
        unmasked = released_unmasked_ids(tokenizer)
        labels = [t if t in unmasked else label for t, label in zip(input_ids, labels, strict=True)]
    return EncodedPrompt(input_ids, labels, "".join(text for text, _ in pieces))
