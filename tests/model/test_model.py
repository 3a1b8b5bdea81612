"""Vega3DModel forward/backward on mixed batches, coord conditioning, trainable parts, parameter groups."""

import pytest
import torch

from tests.model.helpers import COORD, GROUND, IMAGE, collate, frames, tiny_model
from vega3d.model.modeling_vega3d import enable_gradient_checkpointing
from vega3d.model.position_encoding import encode_positions
from vega3d.train.trainable import PARTS, parameter_groups, set_trainable


def left_pad(prompts: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Token lists -> (ids, mask) left-padded with 0."""
    length = max(len(p) for p in prompts)
    ids = torch.tensor([[0] * (length - len(p)) + p for p in prompts])
    mask = torch.tensor([[0] * (length - len(p)) + [1] * len(p) for p in prompts])
    return ids, mask


def mixed_batch(model):
    """Sample 0: QA with 2 frames (right padded); sample 1: grounding with 3 frames and 2 proposals."""
    ids = torch.tensor([[5, IMAGE, 7, 8, 9, 0, 0], [5, 6, IMAGE, 7, GROUND, 11, 12]])
    mask = torch.tensor([[1, 1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1, 1]])
    labels = torch.tensor([[-100, -100, -100, 8, 9, -100, -100], [-100, -100, -100, -100, GROUND, 11, -100]])
    inputs = collate([frames(model, 2, seed=1), frames(model, 3, seed=2)])
    proposals = [None, torch.tensor([[1.0, 1.0, 1.0, 2.0, 2.0, 2.0], [3.0, 3.0, 1.0, 1.0, 1.0, 1.0]])]
    positives = [None, torch.tensor([True, False])]
    return ids, mask, labels, inputs, proposals, positives


def test_two_samples_different_frames_and_tasks_forward_backward():
    model = tiny_model().train()
    ids, mask, labels, inputs, proposals, positives = mixed_batch(model)
    out = model(ids, mask, labels=labels, proposals=proposals, ground_positives=positives, **inputs)
    tpf = model.config.tokens_per_frame
    assert out.logits.shape == (2, 6 + 3 * tpf, model.config.text_config.vocab_size)
    assert out.attention_mask.sum(1).tolist() == [4 + 2 * tpf, 6 + 3 * tpf]  # left padded
    assert out.attention_mask[0, : 2 + tpf].sum() == 0
    assert out.ground_scores[0] is None and out.ground_scores[1].shape == (3,)
    # grounding samples train only the grounding loss: none of their labels survive
    assert (out.labels[1] != -100).sum() == 0 and (out.labels[0] != -100).sum() == 2
    torch.testing.assert_close(out.loss, out.lm_loss + out.ground_loss)
    torch.testing.assert_close(out.sample_losses, torch.stack([out.lm_loss, out.ground_loss]).detach())
    out.loss.backward()
    for part, names in PARTS.items():
        grads = [p.grad for n, p in model.named_parameters() if n.split(".")[0] in names]
        assert grads and all(g is not None for g in grads), part
        assert sum(g.abs().sum() for g in grads) > 0, part


def test_batched_grounding_equals_each_sample_alone_and_encodes_a_shared_scene_once():
    model = tiny_model()
    scene, other = frames(model, 2, seed=1), frames(model, 3, seed=2)
    boxes = torch.tensor([[1.0, 1.0, 1.0, 2.0, 2.0, 2.0], [3.0, 3.0, 1.0, 1.0, 1.0, 1.0], [9.0, 9.0, 0.0, 1.0, 1.0, 1.0]])
    # samples 0, 1, 3 share one scene's tensor objects (as an evaluation batch of one scene does)
    samples = [(scene, boxes), (scene, boxes[:2]), (other, boxes[1:]), (scene, boxes)]
    prompts = [[5, IMAGE, 7, GROUND], [5, 6, IMAGE, 7, 8, GROUND], [IMAGE, 9, GROUND], [6, IMAGE, GROUND]]
    positives = [torch.tensor([True, False, False]), torch.tensor([False, False]), torch.tensor([False, True]),
                 torch.tensor([False, True, True])]
    seen = []
    model.vision_tower.register_forward_hook(lambda module, args, output: seen.append(output[0].shape[0]))
    ids, mask = left_pad(prompts)
    out = model(ids, mask, proposals=[b for _, b in samples], ground_positives=positives,
                **collate([s for s, _ in samples]))
    assert seen == [2 + 3]  # the shared scene's 2 frames once, the other scene's 3
    for i, ((inputs, b), prompt) in enumerate(zip(samples, prompts, strict=True)):
        one_ids, one_mask = left_pad([prompt])
        alone = model(one_ids, one_mask, proposals=[b], ground_positives=[positives[i]], **collate([inputs]))
        assert out.ground_scores[i].shape == (b.shape[0] + 1,)
        torch.testing.assert_close(out.ground_scores[i], alone.ground_scores[0], rtol=0, atol=1e-5)
        torch.testing.assert_close(out.sample_losses[i], alone.ground_loss, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out.ground_loss, out.sample_losses.mean())


def test_lm_loss_equals_cross_entropy_on_assistant_tokens():
    model = tiny_model()
    ids = torch.tensor([[5, IMAGE, 7, 8, 9]])
    labels = torch.tensor([[-100, -100, -100, 8, 9]])
    inputs = collate([frames(model, 1, seed=3)])
    out = model(ids, torch.ones_like(ids), labels=labels, **inputs)
    logits = out.logits[0]
    n = logits.shape[0]  # tokens 8 and 9 are the last two; they are predicted from the two before them
    expected = torch.nn.functional.cross_entropy(logits[n - 3 : n - 1], torch.tensor([8, 9]))
    torch.testing.assert_close(out.lm_loss, expected)


def test_sample_losses_are_per_sample_token_means():
    model = tiny_model()
    ids = torch.tensor([[5, IMAGE, 7, 8, 9], [5, IMAGE, 7, 8, 9]])
    labels = torch.tensor([[-100, -100, -100, 8, 9], [-100, -100, -100, -100, 9]])  # 2 tokens, then 1
    inputs = collate([frames(model, 1, seed=3), frames(model, 1, seed=4)])
    out = model(ids, torch.ones_like(ids), labels=labels, **inputs)
    n = out.logits.shape[1]
    first = torch.nn.functional.cross_entropy(out.logits[0, n - 3 : n - 1], torch.tensor([8, 9]))
    second = torch.nn.functional.cross_entropy(out.logits[1, n - 2 : n - 1], torch.tensor([9]))
    torch.testing.assert_close(out.sample_losses, torch.stack([first, second]).detach())
    torch.testing.assert_close(out.lm_loss, (2 * first + second) / 3)  # mean over all trained tokens


def test_padding_side_does_not_change_results():
    model = tiny_model()
    inputs = collate([frames(model, 1, seed=4), frames(model, 2, seed=5)])
    left = model(torch.tensor([[0, 5, IMAGE, 7], [5, IMAGE, 7, 9]]), torch.tensor([[0, 1, 1, 1], [1, 1, 1, 1]]),
                 **inputs)
    right = model(torch.tensor([[5, IMAGE, 7, 0], [5, IMAGE, 7, 9]]), torch.tensor([[1, 1, 1, 0], [1, 1, 1, 1]]),
                  **inputs)
    assert torch.equal(left.logits, right.logits)


def test_coord_token_gets_sin3d_of_the_box_centre():
    model = tiny_model()
    box = torch.tensor([1.0, -2.0, 0.5, 1.0, 1.0, 1.0])
    captured = []
    hook = model.language_model.model.register_forward_pre_hook(
        lambda mod, args, kwargs: captured.append(kwargs["inputs_embeds"]), with_kwargs=True)
    inputs = collate([frames(model, 1, seed=6)])
    ids = torch.tensor([[5, IMAGE, COORD, 9]])
    model(ids, torch.ones_like(ids), coord_boxes=[box], **inputs)
    model(ids, torch.ones_like(ids), coord_boxes=[None], **inputs)
    hook.remove()
    at = 1 + model.config.tokens_per_frame  # the <coord> token follows the visual tokens
    diff = captured[0][0, at] - captured[1][0, at]
    torch.testing.assert_close(diff, encode_positions(box[:3], model.config.hidden_size))
    assert torch.equal(captured[0][0, at + 1], captured[1][0, at + 1])


def test_input_errors_name_the_problem():
    model = tiny_model()
    inputs = collate([frames(model, 1, seed=7)])
    with pytest.raises(ValueError, match="exactly one <image>"):
        model(torch.tensor([[5, 6]]), torch.ones(1, 2, dtype=torch.long), **inputs)
    with pytest.raises(ValueError, match="no <ground> token"):
        model(torch.tensor([[5, IMAGE]]), torch.ones(1, 2, dtype=torch.long), proposals=[torch.zeros(1, 6)], **inputs)
    inputs["generative_features"] = [torch.zeros(1, 3, 2, 2)]
    with pytest.raises(ValueError, match="generative_features must be"):
        model(torch.tensor([[5, IMAGE]]), torch.ones(1, 2, dtype=torch.long), **inputs)


def test_baseline_without_generative_branch():
    model = tiny_model(generative_channels=0)
    inputs = collate([frames(model, 2, seed=8, with_generative=False)])
    out = model(torch.tensor([[5, IMAGE, 7]]), torch.ones(1, 3, dtype=torch.long), **inputs)
    assert out.logits.shape[1] == 2 + 2 * model.config.tokens_per_frame
    with pytest.raises(ValueError, match="no generative branch"):
        model(torch.tensor([[5, IMAGE, 7]]), torch.ones(1, 3, dtype=torch.long),
              generative_features=[torch.zeros(2, 8, 4, 4)], **inputs)


def test_set_trainable_and_parameter_groups():
    model = tiny_model()
    counts = set_trainable(model, ["projector", "fusion", "vision"])
    assert counts["projector"] == sum(p.numel() for p in model.mm_projector.parameters())
    assert set(counts) == {"projector", "fusion", "vision"}
    assert not any(p.requires_grad for p in model.language_model.parameters())
    assert all(p.requires_grad for p in model.vision_tower.parameters())
    groups = parameter_groups(model, lr=1e-5, vision_lr=2e-6)
    by_name = {g["name"]: g for g in groups}
    assert by_name["vision"]["lr"] == 2e-6 and by_name["default"]["lr"] == 1e-5
    assert sum(p.numel() for p in by_name["vision"]["params"]) == counts["vision"]
    assert sum(p.numel() for p in by_name["default"]["params"]) == counts["projector"] + counts["fusion"]
    with pytest.raises(ValueError, match="unknown trainable parts"):
        set_trainable(model, ["everything"])


def test_grounding_head_gets_its_own_group_only_with_head_lr():
    model = tiny_model()
    counts = set_trainable(model, ["projector", "ground_head", "vision"])
    shared = {g["name"]: g["lr"] for g in parameter_groups(model, lr=1e-3, vision_lr=2e-4)}
    assert shared == {"default": 1e-3, "vision": 2e-4}
    groups = {g["name"]: g for g in parameter_groups(model, lr=1e-3, vision_lr=2e-4, head_lr=1e-4)}
    assert {name: g["lr"] for name, g in groups.items()} == {"default": 1e-3, "vision": 2e-4, "ground_head": 1e-4}
    assert sum(p.numel() for p in groups["ground_head"]["params"]) == counts["ground_head"]
    assert sum(p.numel() for p in groups["default"]["params"]) == counts["projector"]


def test_gradient_checkpointing_gives_the_same_gradients():
    grads = []
    for checkpointing in (False, True):
        model = tiny_model().train()
        if checkpointing:
            enable_gradient_checkpointing(model)
            assert model.language_model.model.gradient_checkpointing
        ids, mask, labels, inputs, proposals, positives = mixed_batch(model)
        model(ids, mask, labels=labels, proposals=proposals, ground_positives=positives, **inputs).loss.backward()
        grads.append(model.mm_projector[0].weight.grad.clone())
    torch.testing.assert_close(grads[0], grads[1])


def test_bf16_forward_backward_keeps_geometry_in_fp32():
    model = tiny_model().to(torch.bfloat16).train()
    ids, mask, labels, inputs, proposals, positives = mixed_batch(model)
    out = model(ids, mask, labels=labels, proposals=proposals, ground_positives=positives, **inputs)
    assert out.logits.dtype == torch.bfloat16 and out.ground_scores[1].dtype == torch.float32
    assert torch.isfinite(out.loss)
    out.loss.backward()
    assert model.generative_projector[0].weight.grad.dtype == torch.bfloat16


def test_eager_and_sdpa_attention_agree():
    model = tiny_model()
    inputs = collate([frames(model, 1, seed=9), frames(model, 2, seed=10)])
    ids = torch.tensor([[0, 5, IMAGE, 7], [5, IMAGE, 7, 9]])
    mask = torch.tensor([[0, 1, 1, 1], [1, 1, 1, 1]])
    sdpa = model(ids, mask, **inputs)
    model.config._attn_implementation = "eager"
    eager = model(ids, mask, **inputs)
    real = sdpa.attention_mask.bool()
    torch.testing.assert_close(sdpa.logits[real], eager.logits[real], atol=1e-5, rtol=1e-4)


def test_flash_attention_requested_without_the_package_fails_clearly():
    from importlib.util import find_spec

    from tests.model.helpers import tiny_model_config
    from vega3d.model.configuration import build_hf_config

    cfg = tiny_model_config(attn_implementation="flash_attention_2")
    if find_spec("flash_attn") is not None:
        assert build_hf_config(cfg)._attn_implementation == "flash_attention_2"
    else:
        with pytest.raises(ValueError, match="flash-attn"):
            build_hf_config(cfg)
    assert build_hf_config(tiny_model_config())._attn_implementation == "sdpa"
