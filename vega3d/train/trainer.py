"""The training loop: DeepSpeed engine, task-grouped batches, checkpoints, rank-0 logging (SPEC.md section 6).

Why a lean loop around ``deepspeed.initialize`` instead of transformers' ``Trainer``: the loop is ~100 lines and
everything the recipe needs is explicit here -- one task group per optimiser step (HF Trainer re-wraps the sampler
per process and shards it itself), a per-step record of per-task losses and throughput, checkpoints written
atomically to local paths or S3 with the sampler position and RNG states (HF writes local folders only and resumes
its own data order), and identical behaviour on CPU (gloo) and GPU (nccl) without ``use_cpu`` special cases.
DeepSpeed itself does the distributed work: ZeRO-2/3 sharding, gradient accumulation, clipping, bf16, the
scheduler step and the engine checkpoint format.

Gradient checkpointing (``model.gradient_checkpointing``) is switched on by the model loader
(``vega3d.model.loading.load_model``), so the loop runs the model as loaded.

Per step the loss is averaged over micro-batches and ranks, so 1 process with accumulation ``k*a`` and ``k``
processes with accumulation ``a`` log the same curve (the sampler gives them the same micro-batches).
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
import torch.distributed as dist

from vega3d import storage
from vega3d.config import Vega3DConfig
from vega3d.train.checkpoints import CheckpointManager
from vega3d.train.collator import model_inputs
from vega3d.train.deepspeed_config import build_deepspeed_config, global_batch_size
from vega3d.train.optim import build_optimizer, build_scheduler
from vega3d.train.sampler import TASK_GROUPS, TaskGroupedSampler, task_group
from vega3d.train.zero3_grads import clear_stale_zero3_gradients

logger = logging.getLogger(__name__)

HISTORY_FILE = "train_history.json"
SaveModelFn = Callable[[torch.nn.Module, dict[str, torch.Tensor], str], None]


class TrainTracker(Protocol):
    """What the loop reports to (an MLflow run, called on rank 0 only)."""

    def log_params(self, config: Vega3DConfig) -> None: ...
    def log_metrics(self, metrics: dict[str, float], step: int) -> None: ...
    def log_model(self, model_uri: str) -> None: ...


@dataclass
class StepRecord:
    """What one optimiser step did (identical on every rank)."""

    step: int
    group: str
    loss: float
    lr: float
    task_losses: dict[str, float]
    samples_per_s: float
    grad_norm: float | None = None  # global gradient norm before clipping (None where DeepSpeed reports none)


@dataclass
class TrainResult:
    """The final model's URI and the per-step history (of this process's run; empty steps when resumed at the end)."""

    model_uri: str
    history: list[StepRecord] = field(default_factory=list)
    resumed_from_step: int = 0

    def summary_metrics(self, last: int = 5) -> dict[str, float]:
        """Final numbers: steps, mean loss of the last ``last`` steps overall and per task, mean samples/s."""
        if not self.history:
            return {}
        tail = self.history[-last:]
        metrics = {
            "train/steps": float(self.history[-1].step),
            "train/final_loss": sum(r.loss for r in tail) / len(tail),
            "train/mean_samples_per_s": sum(r.samples_per_s for r in self.history) / len(self.history),
        }
        per_task: dict[str, list[float]] = {}
        for record in self.history:
            for task, value in record.task_losses.items():
                per_task.setdefault(task, []).append(value)
        metrics.update({f"train/final_loss_{t}": sum(v[-last:]) / len(v[-last:]) for t, v in per_task.items()})
        return metrics


def dist_env() -> tuple[int, int, int]:
    """(rank, world size, local rank) from the torchrun environment."""
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)), int(os.environ.get("LOCAL_RANK", 0))


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (all devices)."""
    import random

    import numpy as np

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def gradient_norm(module: torch.nn.Module) -> float | None:
    """L2 norm over every parameter gradient of ``module`` (None when no parameter has one)."""
    norms = [p.grad.detach().float().norm() for p in module.parameters() if p.grad is not None]
    return float(torch.linalg.vector_norm(torch.stack(norms))) if norms else None


def move_to(value: Any, device: torch.device, float_dtype: torch.dtype) -> Any:
    """Tensors (also inside lists) to ``device``; floating tensors except coordinates to ``float_dtype``."""
    if isinstance(value, torch.Tensor):
        if value.is_floating_point():
            return value.to(device=device, dtype=float_dtype)
        return value.to(device)
    if isinstance(value, list):
        return [move_to(v, device, float_dtype) for v in value]
    return value


# Inputs that stay float32 whatever the training precision (metric coordinates, box geometry).
_FP32_INPUTS = ("world_coords", "proposals", "coord_boxes")


def prepare_inputs(batch: dict[str, Any], device: torch.device, dtype: torch.dtype) -> dict[str, Any]:
    """Collated batch -> forward kwargs on ``device`` (images/features in ``dtype``, geometry in float32)."""
    return {
        key: move_to(value, device, torch.float32 if key in _FP32_INPUTS else dtype)
        for key, value in model_inputs(batch).items()
    }


def default_save_model(model: torch.nn.Module, state_dict: dict[str, torch.Tensor], folder: str) -> None:
    """``save_pretrained`` for transformers models, else one ``model.safetensors`` file."""
    if hasattr(model, "save_pretrained"):
        model.save_pretrained(folder, state_dict=state_dict, safe_serialization=True)
        return
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in state_dict.items()}, os.path.join(folder, "model.safetensors"))


MODEL_STAGING_PREFIX = ".model-tmp-"


def model_staging_dir(uri: str) -> str:
    """A fresh local folder to write the final model into before :func:`publish_folder`.

    Local outputs stage next to ``uri`` (same filesystem, so publishing is a rename); staging folders left
    there by a run killed during its final save are removed first (rank 0 is the only writer at that point).
    """
    if storage.is_remote(uri):
        return tempfile.mkdtemp(prefix=MODEL_STAGING_PREFIX)
    parent = Path(uri).parent
    parent.mkdir(parents=True, exist_ok=True)
    for orphan in parent.glob(f"{MODEL_STAGING_PREFIX}*"):
        logger.warning("removing %s, left by a run killed during its final save", orphan)
        shutil.rmtree(orphan, ignore_errors=True)
    return tempfile.mkdtemp(prefix=MODEL_STAGING_PREFIX, dir=parent)


def publish_folder(local: str, uri: str) -> None:
    """Make a finished local folder appear at ``uri``: a rename locally, an upload to object stores.

    A local folder gets the usual permissions of a new folder (mkdtemp makes it 0700): 0777 minus the umask.
    """
    if storage.is_remote(uri):
        for path in sorted(p for p in Path(local).rglob("*") if p.is_file()):
            storage.upload_file(path, storage.join(uri, path.relative_to(local).as_posix()))
        shutil.rmtree(local, ignore_errors=True)
        return
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(local, 0o777 & ~umask)
    shutil.rmtree(uri, ignore_errors=True)
    os.replace(local, uri)


def init_single_process_group(backend: str) -> None:
    """Initialise torch.distributed for a world of one without any socket beyond loopback: an in-memory store
    (torch's env:// rendezvous would bind its TCP store on every interface) and loopback for gloo/NCCL."""
    import torch.distributed as dist

    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    os.environ.setdefault("NCCL_SOCKET_IFNAME", "lo")
    dist.init_process_group(backend, store=dist.HashStore(), rank=0, world_size=1)


class Trainer:
    """Trains ``model`` on ``dataset`` (which exposes ``tasks``: the task of every sample) with DeepSpeed."""

    def __init__(
        self,
        cfg: Vega3DConfig,
        model: torch.nn.Module,
        dataset: torch.utils.data.Dataset,
        collate_fn: Callable[[list[dict[str, Any]]], dict[str, Any]],
        tasks: Sequence[str],
        save_model: SaveModelFn = default_save_model,
        tracker: TrainTracker | None = None,
    ) -> None:
        self.cfg = cfg
        self.model = model
        self.dataset = dataset
        self.collate_fn = collate_fn
        self.tasks = list(tasks)
        self.save_model = save_model
        self.tracker = tracker
        self.rank, self.world_size, self.local_rank = dist_env()
        self.on_gpu = torch.cuda.is_available()

    # --- setup -------------------------------------------------------------------------------------------
    def _init_distributed(self) -> None:
        import deepspeed

        if self.on_gpu:
            torch.cuda.set_device(self.local_rank)
        backend = "nccl" if self.on_gpu else "gloo"
        if not dist.is_initialized() and self.world_size == 1:  # one process: no rendezvous beyond loopback
            init_single_process_group(backend)
        if not dist.is_initialized():
            deepspeed.init_distributed(dist_backend=backend)

    def _build_engine(self, total_steps: int) -> Any:
        import deepspeed

        train = self.cfg.train
        optimizer = build_optimizer(self.model, train)
        scheduler = build_scheduler(optimizer, train, total_steps)
        config = build_deepspeed_config(train, self.world_size, self.on_gpu)
        engine, _, _, _ = deepspeed.initialize(
            model=self.model, optimizer=optimizer, lr_scheduler=scheduler, config=config
        )
        return engine

    # --- loop --------------------------------------------------------------------------------------------
    def train_step(self, engine: Any, batch: dict[str, Any], dtype: torch.dtype, boundary: bool) -> tuple[Any, float, float | None]:
        """One micro-batch: forward, backward and the engine's step (an optimiser update when ``boundary`` ends
        a gradient-accumulation window). Returns the model output, the learning rate this update uses and,
        without ZeRO (where DeepSpeed clips but keeps no norm), the gradient norm before clipping."""
        output = engine(**prepare_inputs(batch, engine.device, dtype))
        engine.backward(output.loss)
        own_norm = gradient_norm(engine.module) if boundary and engine.zero_optimization_stage() == 0 else None
        lr = engine.get_lr()[0]
        engine.step()
        return output, lr, own_norm

    def train(self) -> TrainResult:
        """Run (or resume) training to the end and save the final model; returns its URI and the history."""
        train = self.cfg.train
        seed_everything(train.seed)
        self._init_distributed()
        sampler = TaskGroupedSampler(
            self.tasks, train.per_device_batch_size, train.gradient_accumulation_steps,
            self.world_size, self.rank, train.seed, drop_last=train.last_step == "drop",
        )
        steps_per_epoch = sampler.steps_per_epoch()
        total_steps = train.max_steps if train.max_steps > 0 else math.ceil(train.epochs * steps_per_epoch)
        engine = self._build_engine(total_steps)
        checkpoints = CheckpointManager(train.output_uri, train.save_total_limit, self.rank)
        state = checkpoints.resume(engine) or {"global_step": 0}
        step = start_step = int(state["global_step"])
        earlier = self._earlier_history(start_step)
        if self.rank == 0:
            logger.info(
                "training %d steps (%d per epoch), global batch %d on %d process(es), ZeRO-%d, %s%s",
                total_steps, steps_per_epoch, global_batch_size(train, self.world_size), self.world_size,
                train.zero_stage, train.precision, f", resumed at step {step}" if step else "",
            )
        if self.tracker is not None and self.rank == 0 and start_step == 0:
            self.tracker.log_params(self.cfg)
        history: list[StepRecord] = []
        progress = _progress(total_steps, step, enabled=self.rank == 0)
        dtype = torch.bfloat16 if train.precision == "bf16" else torch.float32
        while step < total_steps:
            epoch, in_epoch = divmod(step, steps_per_epoch)
            sampler.set_position(epoch, in_epoch)
            loader = torch.utils.data.DataLoader(
                self.dataset, batch_size=train.per_device_batch_size, sampler=sampler,
                collate_fn=self.collate_fn, num_workers=train.num_workers,
            )
            groups = iter(sampler.step_groups())
            accumulator = _StepAccumulator()
            started = time.perf_counter()
            for micro, batch in enumerate(loader):
                boundary = (micro + 1) % train.gradient_accumulation_steps == 0
                output, lr, own_norm = self.train_step(engine, batch, dtype, boundary)
                accumulator.add(output, batch, self.cfg.model.ground_temperature)
                if not boundary:
                    continue
                clear_stale_zero3_gradients(engine)  # DeepSpeed 0.19 workaround, see vega3d.train.zero3_grads
                step += 1
                reported = engine.get_global_grad_norm()
                record = accumulator.finish(
                    step, next(groups), lr,
                    global_batch_size(train, self.world_size) / (time.perf_counter() - started),
                    float(reported) if reported is not None else own_norm,
                )
                history.append(record)
                self._report(record, progress)
                if step % train.save_steps == 0 or step == total_steps:
                    checkpoints.save(engine, step, {"global_step": step})
                    self._write_history(earlier, history)
                if step >= total_steps:
                    break
                accumulator = _StepAccumulator()
                started = time.perf_counter()
        progress.close()
        model_uri = self._save_final(engine)
        self._write_history(earlier, history)
        if self.tracker is not None and self.rank == 0:
            self.tracker.log_model(model_uri)
        engine.destroy()  # releases ZeRO-3 hooks and parameter prefetching before the process group goes
        if dist.is_initialized():
            dist.barrier()
        return TrainResult(model_uri=model_uri, history=history, resumed_from_step=start_step)

    def _earlier_history(self, start_step: int) -> list[dict[str, Any]]:
        """Rank 0 (the only writer): the records of earlier runs into this output up to the step this run
        resumes from (none when fresh)."""
        path = storage.join(self.cfg.train.output_uri, HISTORY_FILE)
        if self.rank != 0 or start_step == 0 or not storage.exists(path):
            return []
        return [r for r in storage.read_json(path) if r["step"] <= start_step]

    def _write_history(self, earlier: list[dict[str, Any]], history: list[StepRecord]) -> None:
        """Rank 0: every step's record so far, beside the checkpoints (``train_history.json``). Written at each
        checkpoint too, so a resumed run (even one resumed at its last step) keeps the steps before it."""
        if self.rank == 0:
            records = earlier + [asdict(r) for r in history]
            storage.write_json(storage.join(self.cfg.train.output_uri, HISTORY_FILE), records, indent=1)

    def _report(self, record: StepRecord, progress: Any) -> None:
        if self.rank != 0:
            return
        progress.update(1)
        progress.set_postfix(loss=f"{record.loss:.4f}", group=record.group)
        if self.tracker is not None and record.step % self.cfg.train.logging_steps == 0:
            metrics = {"train/loss": record.loss, "train/lr": record.lr, "train/samples_per_s": record.samples_per_s}
            if record.grad_norm is not None:
                metrics["train/grad_norm"] = record.grad_norm
            metrics[f"train/loss_{record.group}"] = record.loss
            metrics.update({f"train/loss_{task}": value for task, value in record.task_losses.items()})
            self.tracker.log_metrics(metrics, step=record.step)

    def _save_final(self, engine: Any) -> str:
        """Gather the full weights (16-bit gathered under ZeRO-3) and write them to ``<output_uri>/model``."""
        if engine.zero_optimization_partition_weights():
            state_dict = engine._zero3_consolidated_16bit_state_dict()  # full dict on rank 0, collective
        else:
            state_dict = engine.module.state_dict()
        uri = storage.join(self.cfg.train.output_uri, "model")
        if self.rank == 0:
            local = model_staging_dir(uri)
            self.save_model(engine.module, {k: v.detach().cpu() for k, v in state_dict.items()}, local)
            publish_folder(local, uri)
            logger.info("final model saved to %s", uri)
        if dist.is_initialized():
            dist.barrier()
        return uri


@torch.no_grad()
def per_sample_losses(output: Any, batch: dict[str, Any], temperature: float) -> torch.Tensor | None:
    """[B] loss of each sample, for per-task curves: the model's ``sample_losses`` when it gives them, else
    token-mean cross-entropy of the returned logits/labels for LM samples and the InfoNCE loss of the returned
    ground scores for grounding samples; None when the output carries neither."""
    given = getattr(output, "sample_losses", None)
    if given is not None:
        return given.detach().float().cpu()
    logits, labels = getattr(output, "logits", None), getattr(output, "labels", None)
    if logits is None or labels is None:
        return None
    from vega3d.model.grounding import infonce_loss

    targets = labels[:, 1:]  # [B, L'-1]
    token_loss = torch.nn.functional.cross_entropy(
        logits[:, :-1].float().transpose(1, 2), targets, ignore_index=-100, reduction="none"
    )  # [B, L'-1]
    losses = token_loss.sum(1) / (targets != -100).sum(1).clamp(min=1)  # [B]
    scores, positives = getattr(output, "ground_scores", None), batch.get("ground_positives")
    for i in range(len(losses)):
        if scores is not None and scores[i] is not None and positives is not None and positives[i] is not None:
            losses[i] = infonce_loss(scores[i], positives[i].to(scores[i].device), temperature)
    return losses.cpu()


class _StepAccumulator:
    """Sums micro-batch losses (and per-task losses) of one optimiser step, reduced over ranks at the end."""

    def __init__(self) -> None:
        self.loss_sum = 0.0
        self.micro_batches = 0
        self.task_sums: dict[str, list[float]] = {}  # task -> [loss sum, samples]

    def add(self, output: Any, batch: dict[str, Any], temperature: float) -> None:
        self.loss_sum += float(output.loss.detach())
        self.micro_batches += 1
        losses = per_sample_losses(output, batch, temperature)
        for index, task in enumerate(batch["tasks"]):
            value = float(losses[index]) if losses is not None else float(output.loss.detach())
            entry = self.task_sums.setdefault(task, [0.0, 0.0])
            entry[0] += value
            entry[1] += 1

    def finish(
        self, step: int, group: str, lr: float, samples_per_s: float, grad_norm: float | None = None
    ) -> StepRecord:
        names = sorted(t for tasks in TASK_GROUPS.values() for t in tasks)
        values = [self.loss_sum, float(self.micro_batches)]
        for name in names:
            values.extend(self.task_sums.get(name, [0.0, 0.0]))
        totals = torch.tensor(values, dtype=torch.float64)
        if dist.is_initialized():
            dist.all_reduce(totals)
        task_losses = {
            name: float(totals[2 + 2 * i] / totals[3 + 2 * i]) for i, name in enumerate(names) if totals[3 + 2 * i] > 0
        }
        if any(task_group(t) != group for t in task_losses):
            raise RuntimeError(f"step {step} mixed task groups {sorted(task_losses)}; the sampler is broken")
        return StepRecord(step, group, float(totals[0] / totals[1]), lr, task_losses, samples_per_s, grad_norm)


def _progress(total: int, initial: int, enabled: bool) -> Any:
    from vega3d.logs import progress as progress_bar

    return progress_bar(total=total, initial=initial, desc="train", unit="step", disable=not enabled)
