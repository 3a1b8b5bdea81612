"""Tiny LLaVA-Video checkpoints for tests and the demo: a byte-level BPE Qwen2 tokenizer trained offline and
random models of any ``ModelConfig`` written in the published LLaVA-Video layout (loaded back by
``vega3d.model.loading`` exactly like the real weights).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from vega3d.config import ModelConfig
from vega3d.model.configuration import QWEN_IM_END, QWEN_IM_START, QWEN_PAD_TOKEN, build_hf_config
from vega3d.model.loading import INDEX_FILE, llava_video_config, to_llava
from vega3d.model.modeling_vega3d import Vega3DModel
from vega3d.model.tokenizer import RESERVED_ROWS

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

logger = logging.getLogger(__name__)

# write_tiny_llava_video: std of the random projector's output layer (see there).
TINY_PROJECTOR_OUTPUT_STD = 0.6


def train_tiny_tokenizer(texts: Iterable[str], vocab_size: int, out_dir: str | Path) -> PreTrainedTokenizerBase:
    """Train a byte-level BPE (Qwen2 pre-tokenizer) on ``texts`` and save it as a Qwen2 tokenizer folder.

    The result has ``vocab_size - RESERVED_ROWS`` entries (the ChatML tokens included) so that adding
    ``<image>``, ``<ground>``, ``<coord>`` later fits the model's ``vocab_size`` rows.
    """
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import Qwen2Tokenizer
    from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX

    size = vocab_size - RESERVED_ROWS
    if size < 256 + 3:
        raise ValueError(f"vocab_size {vocab_size} is too small for a byte-level BPE (needs >= {256 + 3 + RESERVED_ROWS})")
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=size,
        special_tokens=[QWEN_PAD_TOKEN, QWEN_IM_START, QWEN_IM_END],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(list(texts), trainer=trainer)
    model = json.loads(bpe.to_str())["model"]
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in model["merges"]]
    tokenizer = Qwen2Tokenizer(
        vocab=model["vocab"], merges=merges, eos_token=QWEN_IM_END, pad_token=QWEN_PAD_TOKEN,
        unk_token=None, additional_special_tokens=[QWEN_IM_START, QWEN_IM_END],
    )
    tokenizer.model_max_length = 32768
    tokenizer.padding_side = "right"
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    tokenizer.save_pretrained(str(out_dir))
    return tokenizer


def default_corpus() -> list[str]:
    """Text the tiny tokenizer is trained on when no corpus is given: the prompts of SPEC.md."""
    from vega3d.model.prompts import SPATIAL_INSTRUCTION, SYSTEM_PROMPT

    words = ("chair table bed sofa door window cabinet desk lamp shelf sink toilet towel pillow picture curtain "
             "red green blue yellow white black brown gray left right front behind near next to above below "
             "the a of on in is what where which how many can color shape object room wall floor").split()
    sentences = [
        SYSTEM_PROMPT, SPATIAL_INSTRUCTION,
        "Identify the object according to the following description.",
        "There may be no corresponding object, or there may be one or more objects.",
        "Given an object located at <coord> , describe the object in detail.",
        "Answer the question simply.", "Answer the question using a single word or phrase.",
    ]
    sentences += [f"the {a} {b} is {c} the {d} ." for a, b, c, d in zip(words, words[5:], words[10:], words[15:], strict=False)]
    return sentences * 4 + [" ".join(words)] * 4 + [str(n) for n in range(100)]


def write_llava_video(
    model: Vega3DModel,
    path: str | Path,
    model_cfg: ModelConfig,
    corpus: Iterable[str] | None = None,
    num_shards: int = 2,
) -> Path:
    """Write ``model``'s LLaVA-Video part in the published layout: config.json with the published fields,
    ``num_shards`` safetensors + index, the (unused) post-layernorm keys, and a Qwen2 tokenizer trained on
    ``corpus``. The VEGA-3D additions are not written (LLaVA-Video has none)."""
    import shutil

    from safetensors.torch import save_file

    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    tensors = {}
    for name, tensor in model.state_dict().items():
        key = to_llava(name)
        if key is not None:
            tensors[key] = tensor.detach().clone().contiguous()
    prefix = "model.vision_tower.vision_tower.vision_model.post_layernorm."
    tensors[prefix + "weight"] = torch.ones(model_cfg.vision.hidden_size)
    tensors[prefix + "bias"] = torch.zeros(model_cfg.vision.hidden_size)

    keys = sorted(tensors)
    shard_names = [f"model-{i + 1:05d}-of-{num_shards:05d}.safetensors" for i in range(num_shards)]
    weight_map = {key: shard_names[min(i * num_shards // len(keys), num_shards - 1)] for i, key in enumerate(keys)}
    for shard in shard_names:
        save_file({k: tensors[k] for k in keys if weight_map[k] == shard}, str(tmp / shard), metadata={"format": "pt"})
    total = sum(t.numel() * t.element_size() for t in tensors.values())
    (tmp / INDEX_FILE).write_text(json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}, indent=2))
    (tmp / "config.json").write_text(json.dumps(llava_video_config(model_cfg), indent=2))
    train_tiny_tokenizer(corpus if corpus is not None else default_corpus(), model_cfg.llm.vocab_size, tmp)
    if path.exists():
        shutil.rmtree(path)
    tmp.rename(path)
    logger.info("wrote a LLaVA-Video checkpoint (%d tensors, %d shards) to %s", len(keys), num_shards, path)
    return path


def write_tiny_llava_video(
    path: str | Path,
    model_cfg: ModelConfig,
    corpus: Iterable[str] | None = None,
    seed: int = 0,
    num_shards: int = 2,
    projector_output_std: float = TINY_PROJECTOR_OUTPUT_STD,
) -> Path:
    """A random model of ``model_cfg``'s sizes written in the LLaVA-Video layout (tests and the demo).

    Everything is initialised as transformers does (normal, std ``initializer_range`` = 0.02) except the
    projector's output layer, drawn with std ``projector_output_std``: at tiny widths the default makes the
    visual features E ~50x smaller than the sin3d code added to them (token norm 0.07 vs 5.5 at d = 64), so an
    object feature is ~98% box position and the grounding head cannot learn appearance (measured: val accuracy
    on ground-truth proposals 18% with the default, 45% with 0.6 after 1,200 grounding steps).
    """
    torch.manual_seed(seed)
    model = Vega3DModel(build_hf_config(model_cfg, 0))
    with torch.no_grad():
        model.mm_projector[-1].weight.normal_(0.0, projector_output_std)
    return write_llava_video(model, path, model_cfg, corpus, num_shards)
