"""The VEGA-3D model (SPEC.md section 2): SigLIP + mlp2x_gelu + Qwen2 from transformers, plus the
generative projector, fusion, sin3d position encoding, row newlines and the grounding head.

Per sample i with V_i frames (paper sizes: S = 384, P = 27 patches per side, g = 14, d = 3584):
    pixel_values [V, 3, S, S] -> SigLIP (last layer dropped, no post-LN) [V, P*P, 1152]
    -> mm_projector = E [V, P*P, d] -> bilinear P -> g: [V, g, g, d]
    generative_features [V, C, g, g] -> generative_projector [V, g, g, d] -> fusion [V', g, g, d]
    + sin3d(world map pooled to g x g) -> + image_newline after each row [V' * g * (g + 1), d]
The visual tokens replace the single ``<image>`` token of the prompt. The generative tower is not
part of this model: its features come in as tensors.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel, Qwen2ForCausalLM, SiglipVisionModel
from transformers import initialization as init
from transformers.cache_utils import DynamicCache
from transformers.utils import ModelOutput

from vega3d.model.configuration import IGNORE_INDEX, Vega3DConfigHF
from vega3d.model.fusion import WeightedFusion, build_fusion, frames_multiplier, uses_context
from vega3d.model.grounding import InfoNCEGroundHead, batch_ground_scores, infonce_loss
from vega3d.model.position_encoding import Sin3DPositionEncoding, encode_positions


def mlp2x_gelu(in_dim: int, out_dim: int) -> nn.Sequential:
    """LLaVA's ``mlp2x_gelu`` projector: Linear(in -> d) GELU Linear(d -> d) (keys 0 and 2)."""
    return nn.Sequential(nn.Linear(in_dim, out_dim), nn.GELU(), nn.Linear(out_dim, out_dim))


@dataclass
class Vega3DOutput(ModelOutput):
    """Forward result. ``logits`` [B, L', vocab] cover the expanded sequence (visual tokens inserted);
    ``ground_scores[i]`` [K_i + 1] (last = zero-target) for grounding samples, else None;
    ``sample_losses`` [B] (detached): token-mean CE of an LM sample, InfoNCE of a grounding sample."""

    loss: torch.Tensor | None = None
    lm_loss: torch.Tensor | None = None
    ground_loss: torch.Tensor | None = None
    sample_losses: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    ground_scores: list[torch.Tensor | None] | None = None
    attention_mask: torch.Tensor | None = None
    labels: torch.Tensor | None = None
    past_key_values: DynamicCache | None = None


@dataclass
class _Sequence:
    """The LLM input of a batch after the visual tokens are inserted (always left-padded)."""

    embeds: torch.Tensor  # [B, L', d]
    attention_mask: torch.Tensor  # [B, L'] long
    position_ids: torch.Tensor  # [B, L'] long
    labels: torch.Tensor | None  # [B, L'] long
    ground_positions: list[int | None]  # index of the <ground> token in the padded row


class Vega3DPreTrainedModel(PreTrainedModel):
    """Weights init and transformers integration (SDPA / flash-attn, gradient checkpointing)."""

    config_class = Vega3DConfigHF
    config: Vega3DConfigHF
    base_model_prefix = ""
    supports_gradient_checkpointing = True
    _supports_sdpa = True
    _supports_flash_attn = True
    _no_split_modules = ["Qwen2DecoderLayer", "SiglipEncoderLayer"]

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        super()._init_weights(module)
        if isinstance(module, Vega3DModel):
            init.normal_(module.image_newline, mean=0.0, std=module.config.hidden_size**-0.5)
        elif isinstance(module, InfoNCEGroundHead):
            init.normal_(module.zero_target, mean=0.0, std=self.config.initializer_range)
            # An object no patch qualifies for has the zero feature; with zero biases the object MLP would map it
            # to exactly 0, where the cosine score is singular (a ~1e8 gradient). torch's default Linear bias
            # init (U(-1/sqrt(d), 1/sqrt(d))) makes the first layer map 0 to a proper vector.
            for first_layer in (module.object_mlp[0], module.query_mlp[0]):
                bound = first_layer.in_features**-0.5
                init.uniform_(first_layer.bias, -bound, bound)
        elif isinstance(module, WeightedFusion):
            init.constant_(module.w_sem, 0.5)
            init.constant_(module.w_gen, 0.5)


class Vega3DModel(Vega3DPreTrainedModel):
    """SigLIP + projector + (generative projector, fusion) + sin3d + newline + Qwen2 + grounding head."""

    def __init__(self, config: Vega3DConfigHF) -> None:
        super().__init__(config)
        vision, dim = config.vision_config, config.hidden_size
        self.vision_tower = SiglipVisionModel(vision)
        self.vision_tower.post_layernorm = nn.Identity()  # LLaVA-Video uses the pre-LN features
        self.mm_projector = mlp2x_gelu(vision.hidden_size, dim)
        if config.generative_channels > 0:
            self.generative_projector = mlp2x_gelu(config.generative_channels, dim)
            self.fusion = build_fusion(config.fusion, dim)
        else:
            self.generative_projector = None
            self.fusion = None
        self.position_encoding = (
            None
            if config.position_encoding == "none"
            else Sin3DPositionEncoding(
                dim, config.patch_grid * vision.patch_size, config.pooled_grid,
                discrete=config.position_encoding == "avg-discrete-sin3d",
            )
        )
        self.image_newline = nn.Parameter(torch.empty(dim))
        self.language_model = Qwen2ForCausalLM(config.text_config)
        self.ground_head = InfoNCEGroundHead(dim)
        self.post_init()

    # ----------------------------------------------------------------- embeddings
    def get_input_embeddings(self) -> nn.Embedding:
        return self.language_model.get_input_embeddings()

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.language_model.set_input_embeddings(value)

    def get_output_embeddings(self) -> nn.Linear:
        return self.language_model.get_output_embeddings()

    # ----------------------------------------------------------------- vision
    def encode_frames(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """pixel_values [N, 3, S, S] -> E [N, P*P, d] (projector output before pooling)."""
        dtype = self.mm_projector[0].weight.dtype
        feats = self.vision_tower(pixel_values=pixel_values.to(dtype)).last_hidden_state  # [N, P*P, Cv]
        return self.mm_projector(feats)

    def pool(self, patch_features: torch.Tensor) -> torch.Tensor:
        """E [N, P*P, d] -> bilinear resize to the token grid [N, g, g, d]."""
        frames, _, dim = patch_features.shape
        p, g = self.config.patch_grid, self.config.pooled_grid
        grid = patch_features.reshape(frames, p, p, dim).permute(0, 3, 1, 2)  # [N, d, P, P]
        pooled = F.interpolate(grid, size=(g, g), mode="bilinear", align_corners=False)  # [N, d, g, g]
        return pooled.permute(0, 2, 3, 1)

    def instruction_context(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> list[torch.Tensor]:
        """Per sample the mean input embedding [d] of its instruction: the tokens after ``<image>`` up to the
        first ``<|im_end|>`` after it (the end of the sequence when there is none)."""
        if self.config.im_end_token_id is None:
            raise ValueError(f"fusion {self.config.fusion!r} needs config.im_end_token_id: add the special tokens "
                             "with vega3d.model.tokenizer.add_special_tokens(tokenizer, model)")
        contexts = []
        for ids, keep in zip(input_ids, attention_mask.bool(), strict=True):
            ids = ids[keep]
            start = int((ids == self.config.image_token_id).nonzero().flatten()[0]) + 1
            ends = (ids[start:] == self.config.im_end_token_id).nonzero().flatten()
            end = start + int(ends[0]) if ends.numel() else ids.shape[0]
            if end <= start:
                raise ValueError("the instruction after <image> is empty: the context fusions need its tokens")
            contexts.append(self.get_input_embeddings()(ids[start:end]).mean(dim=0))
        return contexts

    def fuse(self, semantic: torch.Tensor, generative: torch.Tensor | None,
             context: torch.Tensor | None = None) -> torch.Tensor:
        """semantic [V, g, g, d], generative [V, C, g, g] | None (, instruction context [d]) -> [V', g, g, d]."""
        if self.generative_projector is None:
            if generative is not None:
                raise ValueError("generative_features given but the model has no generative branch "
                                 "(generative_channels = 0)")
            return semantic
        if generative is None:
            raise ValueError("this model fuses generative features: pass generative_features [V, C, g, g]")
        expected = (semantic.shape[0], self.config.generative_channels, *semantic.shape[1:3])
        if tuple(generative.shape) != expected:
            raise ValueError(f"generative_features must be {list(expected)}, got {list(generative.shape)}")
        gen = self.generative_projector(generative.permute(0, 2, 3, 1).to(semantic.dtype))  # [V, g, g, d]
        if uses_context(self.fusion):
            if context is None:
                raise ValueError(f"fusion {self.config.fusion!r} needs the instruction context")
            return self.fusion(semantic, gen, context)
        return self.fusion(semantic, gen)

    def visual_tokens(
        self,
        patch_features: torch.Tensor,
        world_coords: torch.Tensor,
        coord_valid: torch.Tensor,
        generative: torch.Tensor | None,
        context: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """One sample: E [V, P*P, d], world [V, S, S, 3], valid [V, S, S], gen [V, C, g, g] -> [V' g (g+1), d].

        The 3D position goes onto the first V frames: all of them, except for ``none`` whose appended
        generative frames get none (as released)."""
        fused = self.fuse(self.pool(patch_features), generative, context)  # [V', g, g, d]
        if self.position_encoding is not None:
            pos = self.position_encoding(world_coords, coord_valid)  # [V, g, g, d] fp32
            pos = pos.to(fused.dtype)
            fused = fused + pos if fused.shape[0] == pos.shape[0] else torch.cat([fused[: pos.shape[0]] + pos,
                                                                                  fused[pos.shape[0]:]])
        frames, g, _, dim = fused.shape
        newline = self.image_newline.to(fused.dtype).expand(frames, g, 1, dim)
        return torch.cat([fused, newline], dim=2).reshape(frames * g * (g + 1), dim)

    def tokens_for_frames(self, frames: int) -> int:
        """Number of visual tokens a sample with ``frames`` frames inserts at ``<image>``."""
        mult = frames_multiplier(self.config.fusion) if self.generative_projector is not None else 1
        return mult * frames * self.config.tokens_per_frame

    # ----------------------------------------------------------------- sequence
    def _build_sequence(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        labels: torch.Tensor | None,
        visual: list[torch.Tensor],
        coord_boxes: list[torch.Tensor | None] | None,
        grounding: list[bool],
    ) -> _Sequence:
        cfg = self.config
        if cfg.image_token_id is None:
            raise ValueError("config.image_token_id is unset: add the special tokens with "
                             "vega3d.model.tokenizer.add_special_tokens(tokenizer, model)")
        embed = self.get_input_embeddings()
        rows, row_labels, ground_at = [], [], []
        for i in range(input_ids.shape[0]):
            keep = attention_mask[i].bool()
            ids = input_ids[i][keep]  # [n] real tokens, whatever the padding side
            image_at = (ids == cfg.image_token_id).nonzero().flatten()
            if image_at.numel() != 1:
                raise ValueError(f"sample {i}: expected exactly one <image> token, found {image_at.numel()}")
            cut = int(image_at[0])
            tokens = embed(ids)  # [n, d]
            if coord_boxes is not None and coord_boxes[i] is not None and cfg.coord_token_id is not None:
                at = ids == cfg.coord_token_id
                centre = coord_boxes[i].to(tokens.device).reshape(6)[:3]
                pos = encode_positions(centre, tokens.shape[-1], cfg.position_encoding != "avg-sin3d")
                tokens = tokens + at.unsqueeze(-1).to(tokens.dtype) * pos.to(tokens.dtype)
            rows.append(torch.cat([tokens[:cut], visual[i].to(tokens.dtype), tokens[cut + 1:]]))
            ground = None
            if grounding[i]:
                hits = (ids == cfg.ground_token_id).nonzero().flatten()
                if hits.numel() == 0:
                    raise ValueError(f"sample {i}: proposals given but the input has no <ground> token")
                g_at = int(hits[-1])
                ground = g_at + visual[i].shape[0] - 1 if g_at > cut else g_at
            ground_at.append(ground)
            if labels is not None:
                lab = labels[i][keep]
                if grounding[i]:  # grounding samples train on the grounding loss only
                    lab = torch.full_like(lab, IGNORE_INDEX)
                fill = lab.new_full((visual[i].shape[0],), IGNORE_INDEX)
                row_labels.append(torch.cat([lab[:cut], fill, lab[cut + 1:]]))
        length = max(r.shape[0] for r in rows)
        batch, dim = len(rows), rows[0].shape[-1]
        embeds = rows[0].new_zeros(batch, length, dim)
        mask = torch.zeros(batch, length, dtype=torch.long, device=embeds.device)
        out_labels = (torch.full((batch, length), IGNORE_INDEX, dtype=torch.long, device=embeds.device)
                      if labels is not None else None)
        for i, row in enumerate(rows):
            pad = length - row.shape[0]
            embeds[i, pad:] = row
            mask[i, pad:] = 1
            if out_labels is not None:
                out_labels[i, pad:] = row_labels[i]
            if ground_at[i] is not None:
                ground_at[i] += pad
        position_ids = (mask.cumsum(-1) - 1).clamp_min(0)
        return _Sequence(embeds, mask, position_ids, out_labels, ground_at)

    def _visual_batch(
        self,
        pixel_values: list[torch.Tensor],
        world_coords: list[torch.Tensor],
        coord_valid: list[torch.Tensor],
        generative_features: list[torch.Tensor] | None,
        contexts: list[torch.Tensor] | None = None,
    ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """-> (visual tokens per sample [T_i, d], E per sample [V_i, P*P, d]); one tower call for all frames.

        Samples whose inputs are the same tensor objects (an evaluation batch of one scene) are encoded once
        and share the result objects (the grounding head groups them by identity, see ``batch_ground_scores``).
        """
        for i, (p, w, v) in enumerate(zip(pixel_values, world_coords, coord_valid, strict=True)):
            if w.shape[:3] != (p.shape[0], p.shape[2], p.shape[3]) or v.shape != w.shape[:3]:
                raise ValueError(f"sample {i}: world_coords {list(w.shape)} / coord_valid {list(v.shape)} do not "
                                 f"match pixel_values {list(p.shape)}")
        gens = generative_features if generative_features is not None else [None] * len(pixel_values)
        ctxs = contexts if contexts is not None else [None] * len(pixel_values)
        keys = [tuple(map(id, inputs))
                for inputs in zip(pixel_values, world_coords, coord_valid, gens, ctxs, strict=True)]
        unique = list(dict.fromkeys(keys))  # first occurrence order
        firsts = [keys.index(key) for key in unique]
        encoded = self.encode_frames(torch.cat([pixel_values[i] for i in firsts]))
        patch_features = encoded.split([pixel_values[i].shape[0] for i in firsts])  # [V_i, P*P, d] each
        visual = [self.visual_tokens(feats, world_coords[i], coord_valid[i], gens[i], ctxs[i])
                  for feats, i in zip(patch_features, firsts, strict=True)]
        slot = [unique.index(key) for key in keys]
        return [visual[u] for u in slot], [patch_features[u] for u in slot]

    # ----------------------------------------------------------------- forward
    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        labels: torch.Tensor | None = None,
        pixel_values: list[torch.Tensor] | None = None,
        world_coords: list[torch.Tensor] | None = None,
        coord_valid: list[torch.Tensor] | None = None,
        generative_features: list[torch.Tensor] | None = None,
        proposals: list[torch.Tensor | None] | None = None,
        ground_positives: list[torch.Tensor | None] | None = None,
        coord_boxes: list[torch.Tensor | None] | None = None,
        return_logits: bool = True,
        use_cache: bool = False,
    ) -> Vega3DOutput:
        """input_ids/attention_mask/labels [B, L] (either padding side); per-sample lists of frames
        (pixel_values [V_i, 3, S, S], world_coords [V_i, S, S, 3], coord_valid [V_i, S, S] are required).

        Loss = mean CE over supervised (assistant) tokens of non-grounding samples + mean InfoNCE over
        grounding samples (those with ``proposals[i]``; their answer is ``<ground>``).
        ``return_logits=False`` skips the [B, L', vocab] logits (the loss only needs the trained positions).
        """
        if pixel_values is None or world_coords is None or coord_valid is None:
            raise ValueError("pixel_values, world_coords and coord_valid are required (one tensor per sample)")
        batch = input_ids.shape[0]
        grounding = [proposals is not None and proposals[i] is not None for i in range(batch)]
        contexts = self.instruction_context(input_ids, attention_mask) if uses_context(self.fusion) else None
        visual, patch_features = self._visual_batch(pixel_values, world_coords, coord_valid, generative_features,
                                                    contexts)
        seq = self._build_sequence(input_ids, attention_mask, labels, visual, coord_boxes, grounding)
        out = self.language_model.model(
            inputs_embeds=seq.embeds, attention_mask=seq.attention_mask, position_ids=seq.position_ids,
            use_cache=use_cache,
        )
        hidden = out.last_hidden_state  # [B, L', d]
        head = self.language_model.lm_head

        lm_loss = None
        sample_losses = hidden.new_zeros(batch, dtype=torch.float32)  # [B]
        if seq.labels is not None:
            targets = seq.labels[:, 1:]  # [B, L'-1]
            chosen = targets != IGNORE_INDEX
            if chosen.any():
                picked = head(hidden[:, :-1][chosen])  # [n, vocab] only where a label is trained
                token_losses = F.cross_entropy(picked.float(), targets[chosen], reduction="none")  # [n]
                lm_loss = token_losses.mean()
                rows = chosen.nonzero()[:, 0]  # sample of each trained token
                counts = torch.bincount(rows, minlength=batch).clamp_min(1)
                sample_losses = sample_losses.index_add(0, rows, token_losses.detach()) / counts

        scores: list[torch.Tensor | None] = [None] * batch
        ground_loss = None
        rows = [i for i in range(batch) if grounding[i]]
        if rows:  # every grounding sample of the batch at once (vega3d.model.grounding.batch_ground_scores)
            at = torch.tensor([seq.ground_positions[i] for i in rows], device=hidden.device)
            padded, real = batch_ground_scores(
                self.ground_head, [patch_features[i] for i in rows], [world_coords[i] for i in rows],
                [coord_valid[i] for i in rows], [proposals[i].to(hidden.device) for i in rows],
                hidden[torch.tensor(rows, device=hidden.device), at], self.config.vision_config.patch_size,
                discrete=self.config.position_encoding != "avg-sin3d", margin=self.config.ground_box_margin,
            )  # [G, K_max + 1], [G, K_max]
            for g, i in enumerate(rows):
                scores[i] = torch.cat([padded[g, : proposals[i].shape[0]], padded[g, -1:]])  # [K_i + 1]
            trained = [g for g, i in enumerate(rows) if ground_positives is not None and ground_positives[i] is not None]
            if trained:
                positives = nn.utils.rnn.pad_sequence(
                    [ground_positives[rows[g]].to(hidden.device).bool() for g in trained], batch_first=True)
                losses = infonce_loss(padded[trained], F.pad(positives, (0, real.shape[1] - positives.shape[1])),
                                      self.config.ground_temperature, real[trained])  # [G']
                sample_losses[[rows[g] for g in trained]] = losses.detach()
                ground_loss = losses.mean()

        loss = None
        if labels is not None or ground_loss is not None:
            parts = [x for x in (lm_loss, ground_loss) if x is not None]
            loss = sum(parts) if parts else hidden.sum() * 0.0  # keeps the graph when nothing is supervised
        return Vega3DOutput(
            loss=loss, lm_loss=lm_loss, ground_loss=ground_loss,
            sample_losses=sample_losses if loss is not None else None,
            logits=head(hidden) if return_logits else None,
            ground_scores=scores if any(grounding) else None,
            attention_mask=seq.attention_mask, labels=seq.labels,
            past_key_values=out.past_key_values if use_cache else None,
        )

    # ----------------------------------------------------------------- generation
    @torch.no_grad()
    def generate_greedy(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        pixel_values: list[torch.Tensor],
        world_coords: list[torch.Tensor],
        coord_valid: list[torch.Tensor],
        eos_token_id: int | list[int],
        pad_token_id: int,
        generative_features: list[torch.Tensor] | None = None,
        coord_boxes: list[torch.Tensor | None] | None = None,
        max_new_tokens: int = 512,
    ) -> torch.Tensor:
        """Greedy decoding with a KV cache -> new tokens [B, T] (pad after each row's end-of-sequence).

        The prompt rows may be left- or right-padded: they are re-packed left-padded with position ids
        from the attention mask, so a batch decodes exactly like each sample alone.
        """
        eos = torch.tensor([eos_token_id] if isinstance(eos_token_id, int) else list(eos_token_id),
                           device=input_ids.device)
        batch = input_ids.shape[0]
        contexts = self.instruction_context(input_ids, attention_mask) if uses_context(self.fusion) else None
        visual, _ = self._visual_batch(pixel_values, world_coords, coord_valid, generative_features, contexts)
        seq = self._build_sequence(input_ids, attention_mask, None, visual, coord_boxes, [False] * batch)
        model, head = self.language_model.model, self.language_model.lm_head
        cache = DynamicCache(config=self.config.text_config)
        mask, positions = seq.attention_mask, seq.position_ids
        out = model(inputs_embeds=seq.embeds, attention_mask=mask, position_ids=positions,
                    past_key_values=cache, use_cache=True)
        finished = torch.zeros(batch, dtype=torch.bool, device=input_ids.device)
        generated = []
        for _ in range(max_new_tokens):
            next_tokens = head(out.last_hidden_state[:, -1]).argmax(dim=-1)  # [B]
            next_tokens = torch.where(finished, torch.full_like(next_tokens, pad_token_id), next_tokens)
            generated.append(next_tokens)
            finished |= torch.isin(next_tokens, eos)
            if bool(finished.all()):
                break
            mask = torch.cat([mask, mask.new_ones(batch, 1)], dim=1)
            positions = positions[:, -1:] + 1
            out = model(inputs_embeds=self.get_input_embeddings()(next_tokens[:, None]), attention_mask=mask,
                        position_ids=positions, past_key_values=cache, use_cache=True)
        if not generated:
            return input_ids.new_zeros(batch, 0)
        return torch.stack(generated, dim=1)


def enable_gradient_checkpointing(model: Vega3DModel) -> None:
    """Recompute activations of the SigLIP and Qwen2 layers in the backward (non-reentrant)."""
    kwargs = {"use_reentrant": False}
    if hasattr(model, "activation_checkpointing_enable"):  # transformers >= 5.x name
        model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
