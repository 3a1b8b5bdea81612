"""ChatML prompts with the spatial instruction switch, assistant-only labels, the tiny BPE tokenizer."""

import pytest
from transformers import AutoTokenizer

from tests.model.helpers import tiny_model, tiny_model_config
from vega3d.model.prompts import (
    IGNORE_INDEX,
    SPATIAL_INSTRUCTION,
    encode_record,
    use_spatial_instruction,
)
from vega3d.model.tokenizer import add_special_tokens
from vega3d.testing.tiny_llava import default_corpus, train_tiny_tokenizer

QA = {"id": "scanqa_0", "task": "scanqa", "conversations": [
    {"from": "human", "value": "<image>\nWhat is on the table? Answer the question simply."},
    {"from": "gpt", "value": "a lamp"}]}
REFER = {"id": "scanrefer_0", "task": "scanrefer", "conversations": [
    {"from": "human", "value": "<image>\nIdentify the object according to the following description.\nthe red chair"},
    {"from": "gpt", "value": "<ground>"}]}


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tok")
    train_tiny_tokenizer(default_corpus(), 1024, folder)
    tok = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    add_special_tokens(tok, tiny_model())
    return tok


def test_tiny_tokenizer_is_a_qwen2_tokenizer(tokenizer):
    assert type(tokenizer).__name__ == "Qwen2Tokenizer"
    assert tokenizer.eos_token == "<|im_end|>" and tokenizer.pad_token == "<|endoftext|>"
    assert len(tokenizer) <= 1024
    text = "<|im_start|>user\n<image>\nWhere is the blue sofa? 42<|im_end|>"
    ids = tokenizer(text, add_special_tokens=False).input_ids
    assert tokenizer.decode(ids) == text
    for token in ("<image>", "<ground>", "<coord>", "<|im_start|>", "<|im_end|>"):
        assert tokenizer(token, add_special_tokens=False).input_ids == [tokenizer.convert_tokens_to_ids(token)]


def test_train_prompt_layout_and_labels(tokenizer):
    enc = encode_record(tokenizer, QA, "train", spatial_instruction=True)
    assert enc.text == (
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
        f"<|im_start|>user\n<image>\n{SPATIAL_INSTRUCTION}\nWhat is on the table? Answer the question simply."
        "<|im_end|>\n<|im_start|>assistant\na lamp<|im_end|>\n")
    assert tokenizer.decode(enc.input_ids) == enc.text
    trained = [t for t, lab in zip(enc.input_ids, enc.labels, strict=True) if lab != IGNORE_INDEX]
    assert tokenizer.decode(trained) == "a lamp<|im_end|>"
    assert all(lab in (IGNORE_INDEX, t) for t, lab in zip(enc.input_ids, enc.labels, strict=True))


def test_generation_and_ground_prompts_end_at_the_answer(tokenizer):
    gen = encode_record(tokenizer, QA, "generate", spatial_instruction=False)
    assert gen.text.endswith("<|im_start|>assistant\n") and SPATIAL_INSTRUCTION not in gen.text
    assert gen.text.count("<image>") == 1 and "<image>\nWhat is on" in gen.text
    ground = encode_record(tokenizer, REFER, "ground", spatial_instruction=True)
    assert ground.input_ids[-1] == tokenizer.convert_tokens_to_ids("<ground>")
    train = encode_record(tokenizer, REFER, "train", spatial_instruction=True)
    assert train.input_ids[: len(ground.input_ids)] == ground.input_ids  # same query position in both


def test_spatial_instruction_switches():
    cfg = tiny_model_config()
    assert use_spatial_instruction(cfg, training=True) and use_spatial_instruction(cfg, training=False)
    original = cfg.model_copy(update={"spatial_instruction_at_eval": False})
    assert use_spatial_instruction(original, training=True) and not use_spatial_instruction(original, training=False)
    off = cfg.model_copy(update={"spatial_instruction": False})
    assert not use_spatial_instruction(off, training=True)


def test_bad_record_names_the_record(tokenizer):
    with pytest.raises(ValueError, match="scanqa_9"):
        encode_record(tokenizer, {"id": "scanqa_9", "conversations": [{"from": "human", "value": "x"}]}, "train", True)


WHERE = {"id": "scanqa_1", "task": "scanqa", "conversations": [
    {"from": "human", "value": "<image>\nWhere is the lamp?"}, {"from": "gpt", "value": "on the table"}]}
# The tiny tokenizer's pieces of WHERE's training prompt (no spatial instruction), position by position.
WHERE_TOKENS = ["<|im_start|>", "s", "y", "s", "te", "m", "\n", "You", " are", " a", " helpful", " assistant", ".",
                "<|im_end|>", "\n", "<|im_start|>", "us", "er", "\n", "<image>", "\n", "W", "here", " is", " the",
                " lamp", "?", "<|im_end|>", "\n", "<|im_start|>", "as", "s", "istant", "\n", "on", " the", " table",
                "<|im_end|>", "\n"]


@pytest.mark.parametrize(("loss_tokens", "trained"), [
    # released: <|im_start|> 0 15 29, "\n" 6 14 18 20 28, <|im_end|> 13 27, and the whole assistant turn 29-38
    ("released", [0, 6, 13, 14, 15, 18, 20, 27, 28, *range(29, 39)]),
    # ours: "on the table<|im_end|>"
    ("answer_only", [34, 35, 36, 37]),
])
def test_loss_mask_marks_the_hand_listed_positions(tokenizer, loss_tokens, trained):
    enc = encode_record(tokenizer, WHERE, "train", spatial_instruction=False, loss_tokens=loss_tokens)
    assert [tokenizer.decode([t]) for t in enc.input_ids] == WHERE_TOKENS
    assert [i for i, label in enumerate(enc.labels) if label != IGNORE_INDEX] == trained
    assert all(enc.labels[i] == enc.input_ids[i] for i in trained)


def test_released_loss_mask_leaves_generation_prompts_unchanged(tokenizer):
    for mode in ("generate", "ground"):
        ours = encode_record(tokenizer, WHERE, mode, False, "answer_only")
        released = encode_record(tokenizer, WHERE, mode, False, "released")
        assert released.input_ids == ours.input_ids and set(released.labels) == {IGNORE_INDEX}
