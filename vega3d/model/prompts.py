"""ChatML prompts of the processed llava-style records (contracts.md), tokenised with label masks.

    <|im_start|>system\nYou are a helpful assistant.<|im_end|>\n
    <|im_start|>user\n<image>\n[spatial instruction\n]{prompt}<|im_end|>\n
    <|im_start|>assistant\n{answer}<|im_end|>\n

Only the assistant answers and their ``<|im_end|>`` are trained (labels elsewhere = -100). The
spatial instruction is added after ``<image>`` by this builder, never stored in the records.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from vega3d.model.configuration import QWEN_IM_END, QWEN_IM_START
from vega3d.model.tokenizer import GROUND_TOKEN, IMAGE_TOKEN

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

    from vega3d.config import ModelConfig

IGNORE_INDEX = -100
SYSTEM_PROMPT = "You are a helpful assistant."
SPATIAL_INSTRUCTION = (
    "The video captures 3D spatial information of a scene. Please focus on the spatial relationships in the "
    "video and answer the following questions."
)
GROUNDING_TASKS = ("scanrefer", "multi3drefer")
Mode = Literal["train", "generate", "ground"]


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


def prompt_pieces(record: dict[str, Any], mode: Mode, spatial_instruction: bool) -> list[tuple[str, bool]]:
    """The text pieces of a record's prompt and whether each is trained (see :func:`encode_record`)."""
    pairs = _turns(record)
    if mode != "train":
        pairs = pairs[:1]
    pieces: list[tuple[str, bool]] = [(f"{QWEN_IM_START}system\n{SYSTEM_PROMPT}{QWEN_IM_END}\n", False)]
    for index, (human, answer) in enumerate(pairs):
        if index == 0 and spatial_instruction:
            human = add_spatial_instruction(human)
        pieces.append((f"{QWEN_IM_START}user\n{human}{QWEN_IM_END}\n{QWEN_IM_START}assistant\n", False))
        if mode == "train":
            pieces += [(f"{answer}{QWEN_IM_END}", True), ("\n", False)]
    if mode == "ground":
        pieces.append((GROUND_TOKEN, False))
    return pieces


def encode_record(
    tokenizer: PreTrainedTokenizerBase, record: dict[str, Any], mode: Mode, spatial_instruction: bool
) -> EncodedPrompt:
    """Record -> token ids and labels.

    ``train``: every turn with its answer (answers + <|im_end|> trained); ``generate``: the first
    question, ending with the assistant header; ``ground``: that plus ``<ground>`` (the query token of
    the grounding head, for evaluation of ScanRefer / Multi3DRefer).
    """
    pieces = prompt_pieces(record, mode, spatial_instruction)
    input_ids: list[int] = []
    labels: list[int] = []
    for text, trained in pieces:
        ids = tokenizer(text, add_special_tokens=False).input_ids
        input_ids += ids
        labels += ids if trained else [IGNORE_INDEX] * len(ids)
    return EncodedPrompt(input_ids, labels, "".join(text for text, _ in pieces))


def is_grounding(record: dict[str, Any]) -> bool:
    """Grounding records (ScanRefer, Multi3DRefer) train the grounding head, not the LM."""
    return record.get("task") in GROUNDING_TASKS
