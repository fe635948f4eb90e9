"""The ``vllm`` captioner's settings: parsed and checked before any model loads.

A recipe gives them under ``self_augment.settings`` (or ``caption_dataset(settings=...)``); the
recaption engine adds ``batch_size`` and ``max_new_tokens``. Misspelt names are refused with a
suggestion, like the built-in ``self`` captioner's.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

#: settings and what they mean (README "Settings" lists the same)
DOCS: dict[str, str] = {
    "batch_size": "accepted for compatibility; vLLM schedules its own batches (engine.max_num_seqs caps them)",
    "max_new_tokens": "at most this many new tokens per caption (vLLM max_tokens)",
    "min_new_tokens": "at least this many new tokens (vLLM min_tokens; EOS is held back until then)",
    "do_sample": "sample instead of greedy decoding",
    "temperature": "sampling temperature (with do_sample)",
    "top_p": "nucleus sampling (with do_sample)",
    "top_k": "top-k sampling, 0 = off (with do_sample)",
    "repetition_penalty": "vLLM's repetition penalty (1.0 = off)",
    "stop": "stop strings: generation stops at the first one, and the caption is cut there",
    "n": "candidates generated per image (needs do_sample when > 1); the best one is kept",
    "best_by": "the filter whose score picks the best of n candidates: a name or {name, settings...}",
    "best": "'max' (default) or 'min': which end of best_by's score wins",
    "seed": "sampling seed; each request's seed also mixes in a hash of its image and prompt",
    "dtype": "weights' dtype: auto, float32, bfloat16, float16 (default: float32 on CPU, auto on GPU)",
    "lora": "'auto': serve adapters through LoRARequest where vLLM can; 'merge': always merge first",
    "cache_dir": "where prepared (renamed or merged) model folders go (default $VILA2_VLLM_CACHE or ~/.cache/vila2/vllm)",
    "engine": "extra keyword arguments for vllm.LLM (max_num_seqs, gpu_memory_utilization, tensor_parallel_size, ...)",
    "device": "accepted for compatibility with the self captioner; vLLM picks its platform itself",
}
#: ``vllm.LLM`` arguments a recipe may not set: they run code from a folder, or the plugin owns them
REFUSED_ENGINE = {
    "trust_remote_code": "runs code from a model folder or the hub",
    "model": "is the captioner's model (--model)",
    "tokenizer": "comes with the model folder",
    "enable_lora": "is decided by the plugin (setting lora)",
}
_DTYPES = {"auto": "auto", "float32": "float32", "fp32": "float32", "bfloat16": "bfloat16",
           "bf16": "bfloat16", "float16": "float16", "fp16": "float16", None: None}


@dataclass(frozen=True)
class VllmSettings:
    """The ``vllm`` captioner's settings (see :data:`DOCS`)."""

    batch_size: int = 32
    max_new_tokens: int = 128
    min_new_tokens: int = 0
    do_sample: bool = False
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    repetition_penalty: float = 1.0
    stop: tuple[str, ...] = ()
    n: int = 1
    best_by: str | Mapping[str, Any] | None = None
    best: str = "max"
    seed: int = 0
    dtype: str | None = None
    lora: str = "auto"
    cache_dir: str | None = None
    engine: Mapping[str, Any] = field(default_factory=dict)
    device: Any = None

    @classmethod
    def parse(cls, settings: Mapping[str, Any]) -> VllmSettings:
        """Check ``settings`` and build the record; a ``ValueError`` names the setting at fault."""
        known = [f.name for f in fields(cls)]
        unknown = [k for k in settings if k not in known]
        if unknown:
            said = ", ".join(
                f"{k!r}" + (f" (did you mean {h[0]!r}?)" if (h := difflib.get_close_matches(k, known, n=1)) else "")
                for k in unknown
            )
            raise ValueError(f"captioner 'vllm' has no setting {said}; its settings: {', '.join(known)}")
        values = dict(settings)
        stop = values.get("stop", ())
        if isinstance(stop, str):
            stop = (stop,)
        if not isinstance(stop, Sequence) or not all(isinstance(s, str) for s in stop):
            raise ValueError(f"setting 'stop' must be a string or a list of strings, got {stop!r}")
        values["stop"] = tuple(s for s in stop if s)
        if values.get("dtype") not in _DTYPES:
            raise ValueError(f"setting 'dtype' must be one of {sorted(k for k in _DTYPES if k)}, got {values['dtype']!r}")
        values["dtype"] = _DTYPES[values.get("dtype")]
        engine = values.get("engine") or {}
        if not isinstance(engine, Mapping):
            raise ValueError(f"setting 'engine' must be a mapping of vllm.LLM arguments, got {engine!r}")
        for key in engine:
            if key in REFUSED_ENGINE:
                raise ValueError(f"engine setting {key!r} is not allowed: it {REFUSED_ENGINE[key]}")
        values["engine"] = dict(engine)
        parsed = cls(**values)
        parsed._check()
        return parsed

    def _check(self) -> None:
        for name in ("batch_size", "max_new_tokens", "n"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"setting {name!r} must be at least 1, got {getattr(self, name)!r}")
        if self.min_new_tokens < 0 or self.min_new_tokens > self.max_new_tokens:
            raise ValueError(f"setting 'min_new_tokens' must be between 0 and max_new_tokens "
                             f"({self.max_new_tokens}), got {self.min_new_tokens!r}")
        if self.n > 1 and not self.do_sample:
            raise ValueError("setting 'n' > 1 needs do_sample: true (greedy candidates are all the same)")
        if self.n > 1 and self.best_by is None:
            raise ValueError("setting 'n' > 1 needs best_by: the filter whose score picks the kept candidate")
        if self.best not in ("max", "min"):
            raise ValueError(f"setting 'best' must be 'max' or 'min', got {self.best!r}")
        if self.lora not in ("auto", "merge"):
            raise ValueError(f"setting 'lora' must be 'auto' or 'merge', got {self.lora!r}")
        if self.do_sample and (self.temperature <= 0 or not 0 < self.top_p <= 1):
            raise ValueError(f"sampling needs temperature > 0 and 0 < top_p <= 1 "
                             f"(got temperature={self.temperature}, top_p={self.top_p})")
        if self.best_by is not None and not isinstance(self.best_by, (str, Mapping)):
            raise ValueError(f"setting 'best_by' must be a filter name or a mapping with 'name', got {self.best_by!r}")

    def sampling_kwargs(self) -> dict[str, Any]:
        """``vllm.SamplingParams`` arguments (without the per-request ``seed``)."""
        kwargs: dict[str, Any] = {
            "n": self.n,
            "max_tokens": self.max_new_tokens,
            "min_tokens": self.min_new_tokens,
            "repetition_penalty": self.repetition_penalty,
            "stop": list(self.stop) or None,
            "skip_special_tokens": True,
        }
        if self.do_sample:
            kwargs.update(temperature=self.temperature, top_p=self.top_p, top_k=self.top_k)
        else:
            kwargs.update(temperature=0.0)
        return kwargs


__all__ = ["DOCS", "REFUSED_ENGINE", "VllmSettings"]
