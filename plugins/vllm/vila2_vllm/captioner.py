"""The ``vllm`` captioner: vila2's recaption contract on vLLM's offline ``LLM`` engine.

``load_vllm(model, settings)`` prepares the model folder (:mod:`vila2_vllm.prepare`), starts one
``vllm.LLM`` and returns a :class:`VllmCaptioner`, which turns ``(images, prompts)`` into
captions: each prompt goes through the model's own chat template (the text the built-in ``self``
captioner feeds ``generate``), each image rides along as multimodal data, and vLLM schedules the
whole call as one continuous batch. Greedy by default; with ``do_sample`` and ``n`` > 1 it
samples ``n`` candidates per image and keeps the one a filter scores best (``best_by``).
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from vila2_vllm.prepare import PreparedModel, prepare
from vila2_vllm.settings import VllmSettings

log = logging.getLogger("vila2.vllm")

#: set (unless already set) before vLLM starts on a machine without a GPU: the engine core runs
#: in this process (one process is faster for captioning on a few cores, and no worker has to
#: re-import vLLM), with a 1 GiB KV cache (enough for captions; raise it for long prompts)
CPU_ENVIRONMENT = {"VLLM_ENABLE_V1_MULTIPROCESSING": "0", "VLLM_CPU_KVCACHE_SPACE": "1"}


def _cpu_defaults() -> bool:
    """Set :data:`CPU_ENVIRONMENT` (where unset) when no GPU is visible; True when one is."""
    import torch

    gpu = bool(torch.cuda.is_available())
    if not gpu:
        for key, value in CPU_ENVIRONMENT.items():
            os.environ.setdefault(key, value)
    return gpu


def vllm_supports_lora(architecture: str) -> bool | None:
    """Whether this vLLM serves LoRA adapters for ``architecture`` (``None``: cannot tell)."""
    try:
        from vllm.model_executor.models import ModelRegistry
        from vllm.model_executor.models.interfaces import supports_lora

        cls = ModelRegistry._try_load_model_cls(architecture)  # the registry's own lookup
    except Exception:  # an older or newer vLLM without these names
        return None
    return None if cls is None else bool(supports_lora(cls))


def request_seed(seed: int, image: Any, prompt: str) -> int:
    """A request's sampling seed: ``seed`` mixed with a hash of the image's pixels and the prompt,
    so an image gets the same candidates however the engine chunks or resumes a layer."""
    digest = hashlib.blake2b(digest_size=8)
    digest.update(str(seed).encode())
    digest.update(prompt.encode())
    tobytes = getattr(image, "tobytes", None)
    if callable(tobytes):
        digest.update(repr(getattr(image, "size", None)).encode())
        digest.update(tobytes())
    return int.from_bytes(digest.digest(), "little") & 0x7FFFFFFF


def resolve_best_by(spec: str | Mapping[str, Any]) -> Any:
    """The :class:`vila2.captioning.filters.FilterStep` named by ``best_by``; it must score."""
    from vila2.captioning.filters import resolve_filters

    (step,) = resolve_filters([spec])
    if step.filter.score is None and step.filter.check is None:
        raise ValueError(f"best_by: filter {step.name!r} only cleans text; it gives no score to pick by")
    return step


def pick_best(candidates: Sequence[str], step: Any, sample: Mapping[str, Any], *, best: str = "max") -> int:
    """The index of the candidate ``step`` (a filter step) likes best: kept candidates first,
    then the highest score (lowest with ``best="min"``), then the earliest. Each candidate is
    judged on its own: a fresh ``shard_state`` each, so stateful filters do not compare siblings."""
    ranked = []
    for i, text in enumerate(candidates):
        _, score, kept = step.filter.apply({**sample, "candidate": i, "shard_state": {}}, text, **step.overrides)
        value = float("-inf") if score is None else (score if best == "max" else -score)
        ranked.append((bool(kept), value, -i))
    return -max(ranked)[2]


class VllmCaptioner:
    """Caption images with one ``vllm.LLM`` (see :func:`load_vllm`).

    Attributes: ``llm`` (the engine), ``prepared`` (:class:`vila2_vllm.prepare.PreparedModel`),
    ``settings`` (:class:`vila2_vllm.settings.VllmSettings`), ``notes`` (what preparation did).
    """

    def __init__(self, model: str, settings: VllmSettings, *,
                 llm_factory: Callable[..., Any] | None = None) -> None:
        self.settings = settings
        gpu = _cpu_defaults()
        import vllm
        from transformers import AutoProcessor

        self.prepared: PreparedModel = prepare(model, lora=settings.lora, cache_dir=settings.cache_dir,
                                               supports_lora=vllm_supports_lora)
        self.notes = self.prepared.notes
        engine: dict[str, Any] = {
            "dtype": settings.dtype or ("auto" if gpu else "float32"),
            "seed": settings.seed,
            "limit_mm_per_prompt": {"image": 1},
            # CPU: eager (torch.compile costs minutes there); GPU: CUDA graphs
            "enforce_eager": not gpu,
        }
        if self.prepared.adapter is not None:
            engine.update(enable_lora=True, max_loras=1, max_lora_rank=_vllm_rank(self.prepared.lora_rank))
        engine.update(settings.engine)
        factory = llm_factory or vllm.LLM
        self.llm = factory(model=self.prepared.path, tokenizer=self.prepared.path, **engine)
        self.lora_request = None
        if self.prepared.adapter is not None:
            from vllm.lora.request import LoRARequest

            self.lora_request = LoRARequest("vila2-adapter", 1, self.prepared.adapter)
        self.processor = AutoProcessor.from_pretrained(self.prepared.processor)
        self.tokenizer = getattr(self.processor, "tokenizer", self.processor)
        self._sampling = settings.sampling_kwargs()
        self._best = resolve_best_by(settings.best_by) if settings.best_by is not None else None
        self._chat: dict[str, str] = {}

    def _prompt(self, prompt: str) -> str:
        if prompt not in self._chat:
            from vila2.models.checkpoint import chat_prompt

            self._chat[prompt] = chat_prompt(self.processor, prompt)
        return self._chat[prompt]

    def generate(self, images: Sequence[Any], prompts: Sequence[str]) -> list[list[str]]:
        """Every candidate for every ``(image, prompt)`` pair (``n`` each), cut at the stop strings."""
        if len(images) != len(prompts):
            raise ValueError(f"got {len(images)} images but {len(prompts)} prompts")
        if not images:
            return []
        from vllm import SamplingParams

        from vila2.models.generation import cut_at_stop

        requests = []
        params = []
        for image, prompt in zip(images, prompts, strict=True):
            rgb = image.convert("RGB") if getattr(image, "mode", "RGB") != "RGB" else image
            requests.append({"prompt": self._prompt(prompt), "multi_modal_data": {"image": rgb}})
            seed = request_seed(self.settings.seed, rgb, prompt) if self.settings.do_sample else None
            params.append(SamplingParams(seed=seed, **self._sampling))
        outputs = self.llm.generate(requests, params, use_tqdm=False, lora_request=self.lora_request)
        # decode the token ids in one go, as the built-in engine does: vLLM's incremental
        # detokenizer holds back a trailing incomplete UTF-8 sequence that batch decoding shows as
        # U+FFFD, so its .text can differ from the built-in captions for the same tokens
        ids = [list(c.token_ids) for out in outputs for c in out.outputs]
        texts = iter(self.tokenizer.batch_decode(ids, skip_special_tokens=True))
        return [[cut_at_stop(next(texts), self.settings.stop).strip() for _ in out.outputs] for out in outputs]

    def __call__(self, images: Sequence[Any], prompts: Sequence[str]) -> list[str]:
        """One caption per ``(image, prompt)`` pair, in order (the best of ``n`` when ``n`` > 1)."""
        candidates = self.generate(images, prompts)
        if self._best is None:
            return [texts[0] for texts in candidates]
        captions = []
        for image, prompt, texts in zip(images, prompts, candidates, strict=True):
            best = pick_best(texts, self._best, {"id": None, "image": image, "prompt": prompt},
                             best=self.settings.best)
            captions.append(texts[best])
        return captions


def _vllm_rank(rank: int | None) -> int:
    """The smallest ``max_lora_rank`` vLLM accepts that fits ``rank``."""
    for allowed in (8, 16, 32, 64, 128, 256, 320, 512):
        if rank is None or rank <= allowed:
            return allowed
    raise ValueError(f"LoRA rank {rank} is larger than vLLM supports (512)")


def load_vllm(model: str | None, settings: Mapping[str, Any]) -> VllmCaptioner:
    """The ``vllm`` captioner's ``load``: check ``settings``, then prepare ``model`` and start vLLM."""
    if model is None:
        raise ValueError("captioner 'vllm' needs a model folder (--model)")
    parsed = VllmSettings.parse(settings)
    if parsed.best_by is not None:
        resolve_best_by(parsed.best_by)  # a misnamed filter fails before the engine starts
    _cpu_defaults()  # before vLLM reads its environment
    try:
        import vllm  # noqa: F401
    except ImportError as exc:
        raise ValueError(
            "captioner 'vllm' needs vLLM: pip install 'vila2-vllm[gpu]' (CUDA) or build the CPU "
            "environment with plugins/vllm/scripts/make_env.sh (README: Install)"
            f" [{type(exc).__name__}: {exc}]"
        ) from exc
    return VllmCaptioner(model, parsed)


__all__ = ["CPU_ENVIRONMENT", "VllmCaptioner", "load_vllm", "pick_best", "request_seed", "resolve_best_by",
           "vllm_supports_lora"]
