"""Greedy decoding with a KV cache: a left-padded batch decodes exactly like each sample alone."""

import torch

from tests.model.helpers import IMAGE, collate, frames, sharpen, tiny_model

PROMPTS = [[5, 17, IMAGE, 33, 41], [9, IMAGE, 12], [7, 8, 19, 23, IMAGE, 50, 61, 70]]


def left_pad(rows: list[list[int]], pad: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(r) for r in rows)
    ids = torch.tensor([[pad] * (width - len(r)) + r for r in rows])
    mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows])
    return ids, mask


def decode(model, rows, samples, eos, steps=8):
    ids, mask = left_pad(rows)
    return model.generate_greedy(ids, mask, eos_token_id=eos, pad_token_id=0, max_new_tokens=steps,
                                 **collate(samples))


def test_batched_left_padded_greedy_equals_per_sample():
    model = tiny_model()
    sharpen(model)
    samples = [frames(model, v, seed=10 + v) for v in (1, 2, 3)]
    singles = [decode(model, [row], [s], eos=1023)[0].tolist() for row, s in zip(PROMPTS, samples, strict=True)]
    assert len({tuple(s) for s in singles}) == 3, "the samples must decode differently for the test to mean anything"
    # stop sample 0 early: its 3rd token becomes the end-of-sequence token
    eos = singles[0][2]
    singles = [decode(model, [row], [s], eos=eos)[0].tolist() for row, s in zip(PROMPTS, samples, strict=True)]
    batch = decode(model, PROMPTS, samples, eos=eos)
    for i, single in enumerate(singles):
        assert batch[i, : len(single)].tolist() == single
        assert (batch[i, len(single):] == 0).all()  # padded after its end
    assert singles[0][-1] == eos and len(singles[0]) == 3


def test_cached_decoding_equals_full_recompute():
    model = tiny_model()
    sharpen(model)
    sample = frames(model, 2, seed=20)
    tokens = decode(model, [PROMPTS[0]], [sample], eos=1023, steps=5)[0].tolist()
    # recompute without a cache: the argmax of the full forward after each prefix
    prefix = list(PROMPTS[0])
    for token in tokens:
        ids = torch.tensor([prefix])
        logits = model(ids, torch.ones_like(ids), **collate([sample])).logits
        assert int(logits[0, -1].argmax()) == token
        prefix.append(token)
