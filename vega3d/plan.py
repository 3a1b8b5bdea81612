"""``vega3d plan``: per-GPU memory of a training setting before launch, and the first setting that fits.

Model sizes come from the model built on the meta device (no weights read): Ψ parameters in all, Ψ_t of them
trainable (``train.trainable``), L the largest module's own parameters (DeepSpeed's "largest layer"), and the
frozen generative encoder's parameters when it runs online (built from the config of its checkpoint folder when
that exists, else from the shipped paper config). N = gpus per node x nodes data-parallel ranks,
b = 2 bytes (bf16) or 4 (fp32) per element of ``train.precision``.

Model states per GPU (the accounting of DeepSpeed's estimators, split into rows):
  weights      ZeRO-2: b Ψ (replicated)       ZeRO-3: b Ψ / N + 4 L (the gathered largest layer)   offload: 4 L
  gradients    (b + 4) Ψ_t / N (low-precision and fp32 partitions)                                  offload: 0
  optimizer    12 Ψ_t / N (fp32 master weights, Adam m and v)                                       offload: 0
  generative   b x the frozen encoder's parameters (online mode only; offline features cost nothing)
Offloaded states live in CPU memory: 18 Ψ x 1.5 / nodes per node (DeepSpeed's zero_init estimate).

Activations per GPU (``activation_elements``; elements x b x micro-batch), per sample with V frames, P x P
vision patches per frame of p x p pixels, g x g pooled tokens per frame, a SigLIP tower of l_v layers of width
c and MLP width i_v, a Qwen2 LLM of l layers of width d, MLP width i, key/value width k, generative width C,
T = min(V x g(g+1) + text, max_length) sequence tokens and A answer tokens with vocabulary U:
  without checkpointing
    vision     V P^2 (l_v (12 c + 2 i_v) + 3 p^2 + c)     projector  V P^2 (c + 2 d)
    generative V g^2 (C + 8 d)                            llm        T (l (8.5 d + 2 k + 4 i) + 2 d)
    loss       A U x 3 (logits, their fp32 copy and its gradient, counted at b)
    geometry   4 V S^2 fp32 elements (4 bytes whatever b): the world-map pooling's temporaries of S x S frames
  with gradient checkpointing (every SigLIP and Qwen2 layer recomputed in the backward)
    the layer inputs V P^2 l_v c + T l d, the embeddings, projector, generative, loss terms as above, and one
    layer's activations alive while it is recomputed: max(V P^2 (12 c + 2 i_v), T (8.5 d + 2 k + 4 i)).
The per-token coefficients are the tensors the transformers layers keep for the backward under SDPA (no
attention matrix), counted with torch.autograd.graph.saved_tensors_hooks on single layers of several widths:
the norms' inputs and outputs (Qwen2's RMSNorm keeps fp32 intermediates too, hence 8.5 d), q, k, v, the
attention output and its contiguous copy, the MLP's gate, up, activation and product (Qwen2: 4 i; SigLIP: fc1
output and GELU output, 2 i_v), the patch embedding's pixel input (3 p^2);
``tests/test_plan.py`` checks the total against the peak measured with torch's MemTracker on the tiny model.

A setting fits when weights + gradients + optimizer + generative + activations + a fixed reserve (CUDA context
and allocator fragmentation, ``RESERVE_GIB``) is at most the GPU memory. Settings are tried from the fastest:
ZeRO-2, ZeRO-2 + checkpointing, ZeRO-3, ZeRO-3 + checkpointing, ZeRO-3 + offload + checkpointing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from vega3d.config import Vega3DConfig

GIB = 1024**3
RESERVE_GIB = 3.0  # CUDA context (~0.5 GiB), NCCL buffers and allocator fragmentation
OFFLOAD_BUFFER = 1.5  # DeepSpeed's additional_buffer_factor of the CPU estimate
TEXT_TOKENS = 256  # prompt + answer tokens of a sample on top of its visual tokens (the records' typical length)
ANSWER_TOKENS = 64  # supervised tokens whose logits the loss computes
SETTINGS: tuple[tuple[str, int, bool, bool], ...] = (  # name, ZeRO stage, offload, gradient checkpointing
    ("ZeRO-2", 2, False, False),
    ("ZeRO-2 + ckpt", 2, False, True),
    ("ZeRO-3", 3, False, False),
    ("ZeRO-3 + ckpt", 3, False, True),
    ("ZeRO-3 + offload + ckpt", 3, True, True),
)


@dataclass(frozen=True)
class ModelSizes:
    """Parameter counts of the model built on the meta device."""

    total: int  # Ψ
    trainable: int  # Ψ_t
    largest_layer: int  # L: the most parameters one module holds itself
    generative: int  # frozen encoder parameters held on every GPU (online mode), else 0
    generative_channels: int  # C


@dataclass(frozen=True)
class Cluster:
    """The GPUs a run gets."""

    gpus_per_node: int
    nodes: int
    gpu_memory_gib: float

    @property
    def world(self) -> int:
        """Data-parallel ranks N."""
        return self.gpus_per_node * self.nodes


@dataclass(frozen=True)
class SettingPlan:
    """Per-GPU bytes of one setting."""

    name: str
    weights: float
    gradients: float
    optimizer: float
    generative: float
    activations: float
    deepspeed_estimate: float  # DeepSpeed's own model-state estimate for this setting
    cpu_per_node: float

    @property
    def total(self) -> float:
        """Per-GPU bytes including the fixed reserve."""
        reserve = RESERVE_GIB * GIB
        return self.weights + self.gradients + self.optimizer + self.generative + self.activations + reserve


@dataclass(frozen=True)
class Plan:
    """Every setting of one preset on one cluster."""

    preset: str
    cluster: Cluster
    sizes: ModelSizes
    tokens: int
    micro_batch: int
    global_batch: int
    settings: tuple[SettingPlan, ...]

    @property
    def first_fit(self) -> SettingPlan | None:
        """The fastest setting whose total fits the GPU memory, None when none does."""
        budget = self.cluster.gpu_memory_gib * GIB
        return next((s for s in self.settings if s.total <= budget), None)


def element_bytes(precision: str) -> int:
    """b: bytes per weight/activation element of ``train.precision``."""
    return 2 if precision == "bf16" else 4


def model_sizes(cfg: Vega3DConfig) -> ModelSizes:
    """Ψ, Ψ_t, L and the online generative encoder's size from the meta-device model of ``cfg``."""
    import torch

    from vega3d.model.configuration import build_hf_config
    from vega3d.model.modeling_vega3d import Vega3DModel
    from vega3d.train.trainable import set_trainable

    encoder_params, channels = 0, 0
    if cfg.generative.backbone != "none":
        from vega3d.generative.registry import PAPER_CHANNELS, build_encoder

        channels = PAPER_CHANNELS[cfg.generative.backbone]
        if cfg.generative.mode == "online":
            encoder = build_encoder(cfg.with_paths_under_root().generative, cfg.model.pooled_grid, "meta")
            channels = encoder.channels
            modules = [m for m in vars(encoder).values() if isinstance(m, torch.nn.Module)]
            encoder_params = sum(p.numel() for m in modules for p in m.parameters())
    with torch.device("meta"):
        model = Vega3DModel(build_hf_config(cfg.model, channels))
    set_trainable(model, list(cfg.train.trainable))
    return ModelSizes(
        total=sum(p.numel() for p in model.parameters()),
        trainable=sum(p.numel() for p in model.parameters() if p.requires_grad),
        largest_layer=max(sum(p.numel() for p in m.parameters(recurse=False)) for m in model.modules()),
        generative=encoder_params,
        generative_channels=channels,
    )


def sequence_tokens(cfg: Vega3DConfig, text_tokens: int = TEXT_TOKENS) -> int:
    """T: visual tokens of ``data.frames_upbound`` frames plus ``text_tokens``, capped at ``model.max_length``."""
    from vega3d.model.fusion import frames_multiplier

    grid = cfg.model.pooled_grid
    mult = frames_multiplier(cfg.model.fusion) if cfg.generative.backbone != "none" else 1
    visual = mult * cfg.data.frames_upbound * grid * (grid + 1)
    return min(visual + text_tokens, cfg.model.max_length)


def activation_bytes(
    cfg: Vega3DConfig, channels: int, tokens: int, checkpointing: bool, answer_tokens: int = ANSWER_TOKENS
) -> dict[str, int]:
    """Bytes of one sample's activations at the peak, by part (formula: module docstring)."""
    b = element_bytes(cfg.train.precision)
    vision, llm = cfg.model.vision, cfg.model.llm
    frames, patches, grid = cfg.data.frames_upbound, vision.grid**2, cfg.model.pooled_grid
    c, iv, lv = vision.hidden_size, vision.intermediate_size, vision.num_hidden_layers - int(vision.drop_last_layer)
    d, i, layers = llm.hidden_size, llm.intermediate_size, llm.num_hidden_layers
    k = d // llm.num_attention_heads * llm.num_key_value_heads
    pixels = frames * patches
    vision_layer = pixels * (12 * c + 2 * iv)
    llm_layer = int(tokens * (8.5 * d + 2 * k + 4 * i))
    elements = {
        "projector": pixels * (c + 2 * d),
        "generative": frames * grid * grid * (channels + 8 * d) if channels else 0,
        "loss": 3 * answer_tokens * llm.vocab_size,
    }
    embeddings = pixels * (3 * vision.patch_size**2 + c)
    if checkpointing:
        elements["vision"] = pixels * lv * c + embeddings
        elements["llm"] = tokens * (layers + 2) * d
        elements["recompute"] = max(vision_layer, llm_layer)
    else:
        elements["vision"] = lv * vision_layer + embeddings
        elements["llm"] = layers * llm_layer + tokens * 2 * d
    parts = {name: count * b for name, count in elements.items()}
    parts["geometry"] = 4 * frames * vision.image_size**2 * 4  # fp32 world x weight [V, 3, S, S] + weight [V, 1, S, S]
    return parts


def _deepspeed_estimate(sizes: ModelSizes, cluster: Cluster, stage: int, offload: bool) -> tuple[float, float]:
    """(GPU bytes, CPU bytes per node) of DeepSpeed's model-state estimators (all parameters trainable)."""
    from deepspeed.runtime.zero.stage3 import estimate_zero3_model_states_mem_needs
    from deepspeed.runtime.zero.stage_1_and_2 import estimate_zero2_model_states_mem_needs

    if stage == 2:
        cpu, gpu = estimate_zero2_model_states_mem_needs(
            sizes.total, cluster.gpus_per_node, cluster.nodes, cpu_offload=offload)
    else:
        cpu, gpu, _ = estimate_zero3_model_states_mem_needs(
            sizes.total, sizes.largest_layer, cluster.gpus_per_node, cluster.nodes, cpu_offload=offload,
            cpu_offload_params=offload)
    return float(gpu), float(cpu)


def plan_for(cfg: Vega3DConfig, cluster: Cluster, sizes: ModelSizes | None = None,
             text_tokens: int = TEXT_TOKENS) -> Plan:
    """Per-GPU memory of every setting of ``cfg`` on ``cluster`` (see the module docstring)."""
    sizes = sizes or model_sizes(cfg)
    b = element_bytes(cfg.train.precision)
    n = cluster.world
    tokens = sequence_tokens(cfg, text_tokens)
    micro = cfg.train.per_device_batch_size
    rows = []
    for name, stage, offload, checkpointing in SETTINGS:
        acts = sum(activation_bytes(cfg, sizes.generative_channels, tokens, checkpointing).values()) * micro
        if offload:
            weights, grads, optim = 4.0 * sizes.largest_layer, 0.0, 0.0
        else:
            weights = b * sizes.total if stage == 2 else b * sizes.total / n + 4.0 * sizes.largest_layer
            grads, optim = (b + 4) * sizes.trainable / n, 12.0 * sizes.trainable / n
        ds_gpu, ds_cpu = _deepspeed_estimate(sizes, cluster, stage, offload)
        rows.append(SettingPlan(name, weights, grads, optim, float(b * sizes.generative), float(acts), ds_gpu,
                                18.0 * sizes.total * OFFLOAD_BUFFER / cluster.nodes if offload else 0.0))
    global_batch = micro * cfg.train.gradient_accumulation_steps * n
    return Plan(cfg.preset, cluster, sizes, tokens, micro, global_batch, tuple(rows))


def plan_table(plan: Plan) -> str:
    """The plan as Markdown: one row per memory part, one column per setting, GiB per GPU."""
    c, s = plan.cluster, plan.sizes
    head = "| per GPU (GiB) | " + " | ".join(r.name for r in plan.settings) + " |"
    lines = [
        f"Preset `{plan.preset}` on {c.nodes} node(s) x {c.gpus_per_node} GPU(s) of {c.gpu_memory_gib:g} GiB; "
        f"{s.total:,} parameters ({s.trainable:,} trainable, largest layer {s.largest_layer:,}), "
        f"frozen generative encoder {s.generative:,} (online); sequence {plan.tokens} tokens; micro-batch "
        f"{plan.micro_batch}; global batch {plan.global_batch}.",
        "",
        head,
        "|" + "---|" * (len(plan.settings) + 1),
    ]
    fields = [("weights", "weights"), ("gradients", "gradients"), ("optimizer states", "optimizer"),
              ("generative encoder", "generative"), ("activations", "activations")]
    for label, attr in fields:
        lines.append(f"| {label} | " + " | ".join(f"{getattr(r, attr) / GIB:.2f}" for r in plan.settings) + " |")
    lines.append("| reserve | " + " | ".join(f"{RESERVE_GIB:.2f}" for _ in plan.settings) + " |")
    lines.append("| **total** | " + " | ".join(f"**{r.total / GIB:.2f}**" for r in plan.settings) + " |")
    lines.append("| DeepSpeed estimate (model states) | "
                 + " | ".join(f"{r.deepspeed_estimate / GIB:.2f}" for r in plan.settings) + " |")
    lines.append("| CPU per node (offload) | " + " | ".join(f"{r.cpu_per_node / GIB:.1f}" for r in plan.settings) + " |")
    fit = plan.first_fit
    lines += ["", f"First setting that fits: **{fit.name}**" if fit else
              f"**No setting fits {c.gpu_memory_gib:g} GiB GPUs**: add GPUs or nodes, shorten the sequence "
              "(data.frames_upbound) or use larger GPUs."]
    return "\n".join(lines)


def chosen_setting(cfg: Vega3DConfig) -> str:
    """The name in ``SETTINGS`` of the run's own setting (ZeRO-0 holds at least ZeRO-2's states)."""
    if cfg.train.offload:
        return SETTINGS[-1][0]
    stage = 3 if cfg.train.zero_stage == 3 else 2
    return f"ZeRO-{stage}" + (" + ckpt" if cfg.model.gradient_checkpointing else "")


def fit_warning(cfg: Vega3DConfig, cluster: Cluster) -> str | None:
    """Markdown warning with the plan when the run's own setting does not fit ``cluster``; None when it fits."""
    plan = plan_for(cfg, cluster)
    chosen = next(r for r in plan.settings if r.name == chosen_setting(cfg))
    if chosen.total <= cluster.gpu_memory_gib * GIB:
        return None
    return (f"## Warning: this setting will not fit the GPUs\n\n`{chosen.name}` needs about "
            f"{chosen.total / GIB:.1f} GiB per GPU; the GPUs have {cluster.gpu_memory_gib:g} GiB.\n\n"
            + plan_table(plan))


def run_memory_markdown(config_yaml: str, nodes: int, gpu_memory_gib: float) -> str:
    """Markdown for the Kubeflow UI of a resolved run config (GPUs per node = its ``train.nproc``): the warning
    with the plan when the run's setting will not fit the GPUs, else one line saying it fits."""
    from vega3d.runs import config_from_yaml

    cfg = config_from_yaml(config_yaml)
    gpus_per_node = cfg.train.nproc
    cluster = Cluster(gpus_per_node, nodes, gpu_memory_gib)
    warning = fit_warning(cfg, cluster)
    return warning or (f"`{chosen_setting(cfg)}` fits {nodes} node(s) x {gpus_per_node} GPU(s) of "
                       f"{gpu_memory_gib:g} GiB (`vega3d plan` for the details).")
