"""One training run of a VLM on a mixture, with accelerate (1 CPU, many GPUs, DDP or FSDP).

``train(TrainConfig(...))`` loads the start checkpoint, freezes what the stage keeps fixed,
builds the mixture's conversations, and trains with AdamW, warm-up + cosine decay, gradient
accumulation, mixed precision and length-grouped batches. The loss covers answer tokens only,
averaged over a batch's answer tokens (``loss_weighting="token"``, what ``model(...).loss``
computes), over its conversations (``"sample"``), or with each conversation's tokens weighted by
one over the square root of their number (``"square"``), the three averagings InternVL 2.5
compares: with token averaging, one long caption outweighs a dozen short answers.
The same call runs unchanged under ``accelerate launch``.

The output folder is a model folder (or a PEFT adapter folder for LoRA) plus ``training/``:
``config.json`` (the run's settings), ``log.jsonl`` (loss per logged step), ``checkpoints/``
(``accelerator.save_state``) and ``done.json``. Calling ``train`` again with the same settings
resumes from the last checkpoint, or returns at once when the run is finished; different
settings for the same folder are refused.
"""

from __future__ import annotations

import functools
import inspect
import json
import math
import shutil
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from vila2.data.atomic import write_json
from vila2.data.mixture import MixtureEntry
from vila2.errors import TrainError
from vila2.models.lora import LoraSettings

# Settings that do not change what is learned: a rerun may change them freely.
_COSMETIC = ("out", "log_every", "save_every", "num_workers", "cache_mb")
# Settings added after run folders existed, with the value those runs had: left out of the
# fingerprint at that value, so such a folder still resumes (the recipe's LATER_FIELDS, here).
_LATER_DEFAULTS: dict[str, Any] = {"projector_lr": None, "vision_lr": None, "loss_weighting": "token"}

LossWeighting = Literal["token", "sample", "square"]



class TrainConfig(BaseModel):
    """Everything one training run needs. A YAML file of these fields drives ``vila2 train``."""

    model_config = ConfigDict(extra="forbid")

    model: str
    out: str
    mixture: list[MixtureEntry] = Field(min_length=1)
    stage: Literal["align", "pretrain", "sft"] = "sft"
    epochs: float = Field(default=1.0, gt=0)
    max_steps: int | None = Field(default=None, ge=1)
    lr: float = Field(default=1e-3, gt=0)
    # learning rates of their own for the projector and the vision tower (None: ``lr``), as
    # LLaVA's and VILA's trainers allow (``mm_projector_lr``, ``vision_tower_lr``)
    projector_lr: float | None = Field(default=None, gt=0)
    vision_lr: float | None = Field(default=None, gt=0)
    batch_size: int = Field(default=16, ge=1)
    grad_accum: int = Field(default=1, ge=1)
    warmup_ratio: float = Field(default=0.03, ge=0, le=1)
    weight_decay: float = Field(default=0.0, ge=0)
    max_grad_norm: float = Field(default=1.0, gt=0)
    # how answer tokens are averaged into the loss (see the module docstring)
    loss_weighting: LossWeighting = "token"
    seed: int = 0
    mixed_precision: Literal["auto", "no", "bf16", "fp16"] = "auto"
    group_by_length: bool = True
    max_length: int = Field(default=512, ge=8)
    save_every: int = Field(default=200, ge=0)
    log_every: int = Field(default=10, ge=1)
    num_workers: int = Field(default=0, ge=0)
    # encoded examples kept in memory for the next epoch (0: encode every time; see EncodedExamples)
    cache_mb: int = Field(default=1024, ge=0)
    train_vision: bool = False
    gradient_checkpointing: bool = False
    attn_implementation: str | None = None
    lora: LoraSettings | None = None

    @field_validator("model", "out")
    @classmethod
    def _not_empty(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be empty")
        return value

    @classmethod
    def parse(cls, values: Mapping[str, Any], where: str = "training config") -> TrainConfig:
        """Validate a dict (e.g. a YAML file); errors name ``where`` and every key at fault."""
        try:
            return cls.model_validate(dict(values))
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc']) or 'config'}: {err['msg']}" for err in exc.errors()
            )
            raise TrainError(f"{where}: {problems}") from None

    def fingerprint(self) -> dict[str, Any]:
        """The settings that decide the result (for resume checks)."""
        values = self.model_dump(mode="json", exclude=set(_COSMETIC))
        return {k: v for k, v in values.items() if not (k in _LATER_DEFAULTS and v == _LATER_DEFAULTS[k])}


def _mixed_precision(choice: str) -> str:
    import torch

    if choice != "auto":
        return choice
    return "bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "no"


def _last_checkpoint(folder: Path) -> Path | None:
    """The newest complete checkpoint: ``vila2_state.json`` is written last, so a save that was
    killed half-way is ignored."""
    found = [p for p in folder.glob("step-*") if (p / "vila2_state.json").is_file()] if folder.is_dir() else []
    return max(found, key=lambda p: int(p.name.split("-")[1]), default=None)


def _truncate_log(log: Path, step: int) -> None:
    """Drop log lines a killed run wrote after its last checkpoint; the resumed run rewrites them."""
    if log.is_file():
        lines = [line for line in log.read_text().splitlines() if json.loads(line)["step"] <= step]
        log.write_text("".join(line + "\n" for line in lines))


def _check_previous(config: TrainConfig, run: Path) -> bool:
    """True when ``run`` holds this very run finished; refuses a different run's folder."""
    recorded = run / "config.json"
    if not recorded.is_file():
        return False
    previous = json.loads(recorded.read_text())
    current = config.fingerprint()
    # a key one side lacks is a later field at its default (``_LATER_DEFAULTS``): no difference
    keys = sorted(k for k in set(previous) | set(current)
                  if previous.get(k, _LATER_DEFAULTS.get(k)) != current.get(k, _LATER_DEFAULTS.get(k)))
    if keys:
        raise TrainError(
            f"{config.out} holds a training run with other settings (differing: {', '.join(keys)}); "
            "use another output folder or delete this one"
        )
    return (run / "done.json").is_file()


def answer_loss(logits: Any, labels: Any, weighting: LossWeighting) -> Any:
    """Next-token cross-entropy over the answer tokens (``labels`` not -100), weighted per
    conversation (one row of the batch) as ``weighting`` says: ``"token"`` gives every answer
    token the same weight (as ``model(...).loss``), ``"sample"`` every conversation, ``"square"``
    each token ``1 / sqrt(n)`` in a conversation of ``n`` answer tokens."""
    return _weighted_cross_entropy(logits[:, :-1], labels[:, 1:], weighting)


def _weighted_cross_entropy(logits: Any, targets: Any, weighting: LossWeighting) -> Any:
    """:func:`answer_loss` on logits already aligned with their targets (``-100``: no target)."""
    import torch

    answer = targets != -100
    per_token = torch.nn.functional.cross_entropy(
        logits.float().transpose(1, 2), targets, ignore_index=-100, reduction="none")
    counts = answer.sum(dim=1, keepdim=True).clamp(min=1).float()
    per_row = {"token": torch.ones_like(counts), "sample": 1 / counts, "square": counts.rsqrt()}[weighting]
    weights = answer * per_row
    return (per_token * weights).sum() / weights.sum().clamp(min=1e-12)


def answer_positions(labels: Any) -> Any:
    """The sequence positions whose next token is an answer token in some row of the batch."""
    return (labels[:, 1:] != -100).any(dim=0).nonzero().squeeze(1)


def keeps_logits(model: Any) -> bool:
    """Whether ``model``'s forward takes ``logits_to_keep`` (as every transformers generation
    model does), so the language-model head can skip the positions that predict no answer."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return "logits_to_keep" in inspect.signature(base.forward).parameters


def training_loss(model: Any, batch: Mapping[str, Any], weighting: LossWeighting, *,
                  answers_only: bool) -> Any:
    """The loss of one batch, as :func:`answer_loss` weighs it.

    With ``answers_only`` the model computes logits only at the positions that predict an answer
    token (``logits_to_keep``): the image tokens and prompts, most of a VLM's sequence, never
    reach the head over the vocabulary nor the softmax. The loss is the same; a demo training
    step takes about a tenth less time (``benchmarks/RESULTS.md``, "Training throughput").
    """
    labels = batch["labels"]
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    if not answers_only:
        return answer_loss(model(**inputs, use_cache=False).logits, labels, weighting)
    positions = answer_positions(labels)
    logits = model(**inputs, use_cache=False, logits_to_keep=positions).logits
    return _weighted_cross_entropy(logits, labels[:, positions + 1], weighting)


def cosine_schedule(optimizer: Any, warmup: int, total: int) -> Any:
    """Linear warm-up over ``warmup`` steps, then cosine decay to 0 at ``total``."""
    import torch

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        progress = (step - warmup) / max(1, total - warmup)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def _optimizer(model: Any, config: TrainConfig) -> Any:
    import torch

    from vila2.training.stages import part_of

    params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if not params:
        raise TrainError(f"stage {config.stage!r} leaves no trainable parameter in {config.model}")
    rates = {"language": config.lr, "projector": config.projector_lr or config.lr,
             "vision": config.vision_lr or config.lr}
    # no weight decay on biases and norm weights (1-D), as usual for transformers; a group per
    # part only where the rates differ, so a run with one rate keeps the optimizer state layout
    # its checkpoints were written with. LoRA adapters take the rate of the part they adapt.
    one_rate = len(set(rates.values())) == 1
    by_part: dict[str, list[Any]] = {}
    for name, param in params:
        by_part.setdefault("language" if one_rate else part_of(name), []).append(param)
    groups = []
    for part, lr in rates.items():  # a fixed order of groups, whatever order the parameters come in
        mine = by_part.get(part, [])
        groups += [
            {"params": [p for p in mine if p.dim() >= 2], "weight_decay": config.weight_decay, "lr": lr},
            {"params": [p for p in mine if p.dim() < 2], "weight_decay": 0.0, "lr": lr},
        ]
    return torch.optim.AdamW([g for g in groups if g["params"]], lr=config.lr)


def _prepare_model(config: TrainConfig) -> tuple[Any, Any]:
    import torch

    from vila2.models.checkpoint import load
    from vila2.models.lora import apply_lora
    from vila2.training.stages import freeze_for_stage

    start = Path(config.model)
    # absolute, so a LoRA adapter records a base path that works from anywhere
    source = str(start.resolve()) if start.exists() else config.model
    model, processor = load(source, dtype=torch.float32, attn_implementation=config.attn_implementation,
                            merge=True)
    freeze_for_stage(model, config.stage, config.train_vision)
    if config.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.enable_input_require_grads()
    if config.lora is not None:
        model = apply_lora(model, config.lora)
    return model, processor


def _save_final(accelerator: Any, model: Any, processor: Any, config: TrainConfig) -> None:
    from vila2.models.checkpoint import save

    out = Path(config.out)
    state = accelerator.get_state_dict(model)
    unwrapped = accelerator.unwrap_model(model)
    if not accelerator.is_main_process:
        return
    if config.lora is not None and config.lora.merge:
        unwrapped.save_pretrained(str(out / "adapter"), state_dict=state)
        processor.save_pretrained(str(out / "adapter"))
        save(unwrapped.merge_and_unload(), processor, out)
    else:
        unwrapped.save_pretrained(str(out), state_dict=state, safe_serialization=True)
        processor.save_pretrained(str(out))


def train(config: TrainConfig | Mapping[str, Any], *,
          on_step: Callable[[int, float], None] | None = None) -> Path:
    """Run (or resume, or skip when finished) one training run; return the saved model folder.

    ``on_step(step, loss)`` is called on every process after each optimizer step (for progress
    reporting; an exception it raises stops the run, which a later call resumes).
    """
    import torch
    from accelerate import Accelerator
    from accelerate.utils import set_seed

    from vila2.data.mixture import build_examples
    from vila2.models.checkpoint import trainable_summary
    from vila2.progress import progress_bar
    from vila2.training.batching import LengthGroupedBatches
    from vila2.training.collate import EncodedExamples, ExampleEncoder, collate

    if not isinstance(config, TrainConfig):
        config = TrainConfig.parse(config)
    out = Path(config.out)
    run = out / "training"
    if _check_previous(config, run):
        return out

    accelerator = Accelerator(
        # without a GPU, processes started by torchrun (`accelerate launch --multi_gpu`) talk gloo
        cpu=not torch.cuda.is_available(),
        gradient_accumulation_steps=config.grad_accum,
        mixed_precision=_mixed_precision(config.mixed_precision),
        step_scheduler_with_optimizer=False,
    )
    main = accelerator.is_main_process
    set_seed(config.seed)
    if main:
        run.mkdir(parents=True, exist_ok=True)
        (run / "config.json").write_text(json.dumps(config.fingerprint(), indent=2))

    model, processor = _prepare_model(config)
    encoder = ExampleEncoder(processor, config.max_length)
    examples = build_examples(config.mixture, seed=config.seed)
    lengths = encoder.lengths(examples)
    sampler = LengthGroupedBatches(lengths, config.batch_size, seed=config.seed,
                                   group_by_length=config.group_by_length)
    tokenizer = getattr(processor, "tokenizer", processor)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    loader = torch.utils.data.DataLoader(
        EncodedExamples(examples, encoder, cache_bytes=config.cache_mb * 2**20), batch_sampler=sampler,
        collate_fn=functools.partial(collate, pad_token_id=pad_id), num_workers=config.num_workers,
    )
    optimizer = _optimizer(model, config)
    model, optimizer, loader = accelerator.prepare(model, optimizer, loader)
    answers_only = keeps_logits(accelerator.unwrap_model(model))

    per_epoch = max(1, math.ceil(len(loader) / config.grad_accum))
    total = config.max_steps or max(1, math.ceil(config.epochs * per_epoch))
    scheduler = cosine_schedule(optimizer, round(config.warmup_ratio * total), total)
    scheduler = accelerator.prepare(scheduler)

    step, epoch, done_in_epoch = 0, 0, 0
    checkpoint = _last_checkpoint(run / "checkpoints")
    if checkpoint is not None:
        accelerator.load_state(str(checkpoint))
        state = json.loads((checkpoint / "vila2_state.json").read_text())
        step, epoch, done_in_epoch = state["step"], state["epoch"], state["batches_in_epoch"]
        if main:
            _truncate_log(run / "log.jsonl", step)
    if main:
        resumed = f", resuming at step {step}" if step else ""
        print(f"[vila2 train] {config.stage}: {len(examples)} examples, {total} steps of "
              f"{config.batch_size}x{config.grad_accum}x{accelerator.num_processes}, "
              f"{trainable_summary(model)}{resumed}", flush=True)

    log = (run / "log.jsonl").open("a") if main else None
    bar = progress_bar(total=total, initial=step, desc=f"train {config.stage}", disable=not main)
    started, seen, tokens, window = time.perf_counter(), 0, 0, []
    model.train()
    while step < total:
        sampler.epoch = epoch
        batches = accelerator.skip_first_batches(loader, done_in_epoch) if done_in_epoch else loader
        for batch in batches:
            with accelerator.accumulate(model):
                # no KV cache while training: it would only cost memory
                loss = training_loss(model, batch, config.loss_weighting, answers_only=answers_only)
                accelerator.backward(loss)
                if accelerator.sync_gradients:
                    accelerator.clip_grad_norm_(model.parameters(), config.max_grad_norm)
                    optimizer.step()
                    scheduler.step()
                    optimizer.zero_grad()
            done_in_epoch += 1
            seen += len(batch["input_ids"])
            tokens += int(batch["attention_mask"].sum())
            window.append(loss.detach())
            if not accelerator.sync_gradients:
                continue
            step += 1
            mean = accelerator.reduce(torch.stack(window).mean(), "mean").item()
            window = []
            bar.update(1)
            bar.set_postfix(loss=f"{mean:.3f}", refresh=False)  # the bar redraws on its own clock
            if log is not None and (step % config.log_every == 0 or step == total):
                log.write(json.dumps({"step": step, "epoch": epoch, "loss": round(mean, 5),
                                      "lr": scheduler.get_last_lr()[0],
                                      "elapsed": round(time.perf_counter() - started, 2)}) + "\n")
                log.flush()
            if config.save_every and step % config.save_every == 0 and step < total:
                _checkpoint(accelerator, run / "checkpoints", step, epoch, done_in_epoch)
            if on_step is not None:
                on_step(step, mean)
            if step >= total:
                break
        else:
            epoch, done_in_epoch = epoch + 1, 0
    bar.close()
    if log is not None:
        log.close()

    accelerator.wait_for_everyone()
    _save_final(accelerator, model, processor, config)
    if main:
        seconds = max(time.perf_counter() - started, 1e-9)
        # rank 0's counts times the number of processes: batches are the same size on every rank
        (run / "done.json").write_text(json.dumps({
            "steps": step, "seconds": round(seconds, 2), "processes": accelerator.num_processes,
            "samples_per_second": round(seen * accelerator.num_processes / seconds, 2),
            "tokens_per_second": round(tokens * accelerator.num_processes / seconds, 1),
        }, indent=2))
        shutil.rmtree(run / "checkpoints", ignore_errors=True)
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return out


def _checkpoint(accelerator: Any, folder: Path, step: int, epoch: int, batches_in_epoch: int) -> None:
    """Save the full training state; keep only the newest checkpoint."""
    target = folder / f"step-{step}"
    accelerator.save_state(str(target))
    if accelerator.is_main_process:
        # atomic: a kill while it is written must not leave a checkpoint that looks complete
        write_json(target / "vila2_state.json", {"step": step, "epoch": epoch, "batches_in_epoch": batches_in_epoch})
        for old in folder.glob("step-*"):
            if old != target:
                shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()


def finetune_lora(base_model: str, data: str, out_dir: str, settings: Mapping[str, Any] | None = None) -> Path:
    """LoRA-tune ``base_model`` on the ``conversations`` layer of the dataset ``data``.

    ``settings`` mixes LoRA fields (``r``, ``alpha``, ``dropout``, ``target_modules``,
    ``modules_to_save``, ``merge``) and training fields (``max_steps``, ``epochs``, ``lr``,
    ``batch_size``...). Returns ``out_dir``: a PEFT adapter folder, or with ``merge=True`` a full
    model folder (the adapter kept in ``out_dir/adapter``). Either loads with ``vila2.models.checkpoint.load``.
    """
    settings = dict(settings or {})
    lora = {k: settings.pop(k) for k in list(settings) if k in LoraSettings.model_fields}
    layer = settings.pop("layer", "conversations")
    values = {"stage": "sft", "lr": 5e-4, **settings, "model": str(base_model), "out": str(out_dir),
              "mixture": [{"dataset": str(data), "layers": [layer], "template": "conversation"}],
              "lora": lora}
    return train(TrainConfig.parse(values, f"LoRA settings for {out_dir}"))


__all__ = ["TrainConfig", "TrainError", "finetune_lora", "train"]
