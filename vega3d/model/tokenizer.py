"""Tokenizers: the Qwen2 tokenizer of the checkpoint folder and the
VEGA-3D special tokens ``<image>``, ``<ground>``, ``<coord>`` (embedding rows = mean of existing rows).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from vega3d.model.configuration import QWEN_IM_END, QWEN_PAD_TOKEN

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

    from vega3d.model.modeling_vega3d import Vega3DModel

logger = logging.getLogger(__name__)

IMAGE_TOKEN = "<image>"
GROUND_TOKEN = "<ground>"
COORD_TOKEN = "<coord>"
SPECIAL_TOKENS: dict[str, str] = {"image": IMAGE_TOKEN, "ground": GROUND_TOKEN, "coord": COORD_TOKEN}
# Room kept in a tiny model's vocabulary for the tokens added after training the tokenizer.
RESERVED_ROWS = len(SPECIAL_TOKENS)


def load_tokenizer(path: str | Path) -> PreTrainedTokenizerBase:
    """The tokenizer saved in a checkpoint folder (Qwen2 for LLaVA-Video), offline.

    The class named by tokenizer_config.json is used directly, so the folder's model config.json
    (LLaVA's, not a transformers model type) is never parsed.
    """
    import transformers

    config_file = Path(path) / "tokenizer_config.json"
    name = json.loads(config_file.read_text()).get("tokenizer_class") if config_file.exists() else None
    cls = getattr(transformers, name, None) if name else None
    if cls is None:
        cls = transformers.AutoTokenizer
    tokenizer = cls.from_pretrained(str(path), local_files_only=True)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = QWEN_PAD_TOKEN
    return tokenizer


def add_special_tokens(tokenizer: PreTrainedTokenizerBase, model: Vega3DModel) -> dict[str, int]:
    """Add ``<image>``, ``<ground>``, ``<coord>`` to the tokenizer and record their ids in the model config.

    Rows of tokens added here start (input embeddings and LM head) as the mean of the rows of the
    tokens that existed before; the embedding matrix grows only when the tokenizer outgrows it.
    Tokens the tokenizer already had (our own saved models) keep their trained rows.
    """
    from tokenizers import AddedToken

    before = len(tokenizer)
    missing = [tok for tok in SPECIAL_TOKENS.values() if tok not in tokenizer.get_vocab()]
    if missing:
        tokenizer.add_special_tokens(
            {"additional_special_tokens": [AddedToken(t, special=True, normalized=False) for t in missing]},
            replace_extra_special_tokens=False,
        )
    ids = {name: tokenizer.convert_tokens_to_ids(tok) for name, tok in SPECIAL_TOKENS.items()}
    new_ids = [tokenizer.convert_tokens_to_ids(tok) for tok in missing]
    embeddings = model.get_input_embeddings()
    if len(tokenizer) > embeddings.num_embeddings:
        model.language_model.resize_token_embeddings(len(tokenizer), mean_resizing=False)
        model.config.text_config.vocab_size = len(tokenizer)
    if new_ids:
        with torch.no_grad():
            for matrix in {model.get_input_embeddings().weight, model.get_output_embeddings().weight}:
                mean = matrix[:before].float().mean(dim=0).to(matrix.dtype)
                matrix[new_ids] = mean
        logger.info("added tokens %s with ids %s (rows = mean of %d existing rows)", missing, new_ids, before)
    model.config.image_token_id = ids["image"]
    model.config.ground_token_id = ids["ground"]
    model.config.coord_token_id = ids["coord"]
    if QWEN_IM_END in tokenizer.get_vocab():
        ids["im_end"] = model.config.im_end_token_id = tokenizer.convert_tokens_to_ids(QWEN_IM_END)
    return ids
