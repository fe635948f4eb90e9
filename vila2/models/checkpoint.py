"""Load and save any Hugging Face image-text-to-text model with its processor.

A model is a folder that ``AutoModelForImageTextToText`` and ``AutoProcessor`` open (or a hub id
where a hub is reachable), or a PEFT adapter folder whose ``adapter_config.json`` names its base.
Weights are safetensors; pickled ``.bin`` weights load only with ``allow_pickle=True`` because
unpickling runs code from the file.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import struct
from pathlib import Path
from typing import Any

_DTYPES = {"fp32": "float32", "float32": "float32", "fp16": "float16", "float16": "float16",
           "bf16": "bfloat16", "bfloat16": "bfloat16"}
_PROCESSOR_FILES = ("processor_config.json", "preprocessor_config.json", "tokenizer_config.json")
# Above this size a weight file is hashed from evenly spaced chunks instead of in full.
_FULL_HASH_BYTES = 64 << 20
_CHUNK = 1 << 20


def is_adapter(path: str | Path) -> bool:
    """True when ``path`` is a PEFT adapter folder."""
    return (Path(path) / "adapter_config.json").is_file()


def adapter_base(path: str | Path) -> str:
    """The base model an adapter folder was trained from (resolved next to the adapter if the
    recorded path is relative and does not exist from the working directory)."""
    config_file = Path(path) / "adapter_config.json"
    try:
        base = json.loads(config_file.read_text())["base_model_name_or_path"]
    except (OSError, ValueError, KeyError) as exc:
        raise ValueError(f"{config_file}: not a readable PEFT adapter config ({exc})") from exc
    if base and not Path(base).exists() and (Path(path) / base).exists():
        return str(Path(path) / base)
    return base


def default_attn_implementation(dtype: Any = None) -> str:
    """``flash_attention_2`` when the package is installed, a GPU is present and the dtype is
    half precision; otherwise ``sdpa``."""
    import torch

    half = dtype in (torch.float16, torch.bfloat16, "float16", "bfloat16")
    if importlib.util.find_spec("flash_attn") and torch.cuda.is_available() and half:
        return "flash_attention_2"
    return "sdpa"


def _resolve_dtype(dtype: Any) -> Any:
    import torch

    if dtype is None:
        # a checkpoint's own dtype on GPU; float32 on CPU, where half precision is slow or unsupported
        return "auto" if torch.cuda.is_available() else torch.float32
    if isinstance(dtype, str) and dtype != "auto":
        if dtype not in _DTYPES:
            raise ValueError(f"unknown dtype {dtype!r}; use one of {sorted(_DTYPES)} or 'auto'")
        return getattr(torch, _DTYPES[dtype])
    return dtype


def check_safetensors(file: Path) -> None:
    """Refuse a safetensors file whose size is not what its header says: a write cut short by a
    kill or a full disk. Reads the header only."""
    size = file.stat().st_size
    try:
        with open(file, "rb") as handle:
            (length,) = struct.unpack("<Q", handle.read(8))
            header = json.loads(handle.read(length)) if 8 + length <= size else None
        end = max((t["data_offsets"][1] for k, t in header.items() if k != "__metadata__"), default=0)
        whole = 8 + length + end == size
    except (struct.error, ValueError, TypeError, KeyError, AttributeError):
        whole = False
    if not whole:
        raise ValueError(f"{file} is truncated or corrupt ({size} bytes, not what its header describes); "
                         "it was cut short (a kill or a full disk?): write it again")


def _check_weights(path: Path, allow_pickle: bool) -> None:
    if not path.is_dir():
        return  # a hub id: from_pretrained(use_safetensors=True) refuses pickles there
    tensors = sorted(path.glob("*.safetensors"))
    for file in tensors:
        check_safetensors(file)
    if tensors:
        return
    pickles = sorted(p.name for p in path.glob("*.bin"))
    if pickles and not allow_pickle:
        raise ValueError(
            f"{path} holds only pickled weights ({', '.join(pickles)}); loading them can run "
            "arbitrary code. Convert them to safetensors, or pass allow_pickle=True if you trust "
            "the files."
        )


def _load_processor(path: str, trust_remote_code: bool) -> Any:
    from transformers import AutoProcessor

    return AutoProcessor.from_pretrained(path, trust_remote_code=trust_remote_code)


def load(
    path: str | Path,
    *,
    dtype: Any = None,
    device: Any = None,
    attn_implementation: str | None = None,
    trust_remote_code: bool = False,
    adapter_ok: bool = True,
    allow_pickle: bool = False,
    merge: bool = False,
) -> tuple[Any, Any]:
    """Load ``(model, processor)`` from a model folder, a hub id or a PEFT adapter folder.

    * ``dtype``: a ``torch.dtype``, ``"bf16"``/``"fp16"``/``"fp32"`` or ``"auto"``; by default the
      checkpoint's dtype on GPU and float32 on CPU.
    * ``device``: where to move the model (``None`` leaves it on the CPU).
    * ``attn_implementation``: by default :func:`default_attn_implementation`; a model without SDPA
      support falls back to ``eager``.
    * An adapter folder loads its base (``adapter_config.json``) with the adapter on top;
      ``merge=True`` folds the adapter into the base weights. ``adapter_ok=False`` refuses
      adapters.
    """
    from transformers import AutoModelForImageTextToText

    path = str(path)
    local = Path(path)
    if is_adapter(local):
        if not adapter_ok:
            raise ValueError(f"{path} is a PEFT adapter folder, but a full model is required here")
        return _load_adapter(local, dtype=dtype, device=device, attn_implementation=attn_implementation,
                             trust_remote_code=trust_remote_code, allow_pickle=allow_pickle, merge=merge)
    if not local.exists() and (local.is_absolute() or path.startswith(".")):
        raise FileNotFoundError(f"model folder {path} does not exist")
    if local.is_dir() and not (local / "config.json").is_file():
        raise FileNotFoundError(f"{path} is not a model folder: no config.json (nor adapter_config.json)")
    _check_weights(local, allow_pickle)
    torch_dtype = _resolve_dtype(dtype)
    kwargs: dict[str, Any] = {"dtype": torch_dtype, "trust_remote_code": trust_remote_code,
                              "use_safetensors": None if allow_pickle else True}
    chosen = attn_implementation or default_attn_implementation(torch_dtype)
    try:
        model = AutoModelForImageTextToText.from_pretrained(path, attn_implementation=chosen, **kwargs)
    except ValueError as exc:
        if attn_implementation is not None or "attn" not in str(exc).lower():
            raise
        model = AutoModelForImageTextToText.from_pretrained(path, attn_implementation="eager", **kwargs)
    if device is not None:
        model = model.to(device)
    return model, _load_processor(path, trust_remote_code)


def _load_adapter(path: Path, *, dtype: Any, device: Any, attn_implementation: str | None,
                  trust_remote_code: bool, allow_pickle: bool, merge: bool) -> tuple[Any, Any]:
    from peft import PeftModel

    if not (path / "adapter_model.safetensors").is_file() and not allow_pickle:
        raise ValueError(f"{path} has no adapter_model.safetensors; pickled adapters need allow_pickle=True")
    if (path / "adapter_model.safetensors").is_file():
        check_safetensors(path / "adapter_model.safetensors")
    base = adapter_base(path)
    model, processor = load(base, dtype=dtype, attn_implementation=attn_implementation,
                            trust_remote_code=trust_remote_code, adapter_ok=False, allow_pickle=allow_pickle)
    model = PeftModel.from_pretrained(model, str(path))
    if merge:
        model = model.merge_and_unload()
    model.eval()
    if device is not None:
        model = model.to(device)
    if any((path / name).is_file() for name in _PROCESSOR_FILES):
        processor = _load_processor(str(path), trust_remote_code)
    return model, processor


def save(model: Any, processor: Any, path: str | Path) -> Path:
    """Save ``model`` (safetensors) and ``processor`` to the folder ``path``; return it.

    A PEFT model saves its adapter (PEFT format) next to the processor.
    """
    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(out), safe_serialization=True)
    if processor is not None:
        processor.save_pretrained(str(out))
    return out


def chat_prompt(processor: Any, prompt: str, answer: str | None = None) -> str:
    """The text of a one-image, one-turn chat in the processor's chat template.

    With ``answer=None`` the text ends where the model starts answering (generation prompt);
    otherwise it includes the answer and the end-of-turn marker. A leading ``<image>`` marker in
    ``prompt`` (the LLaVA data convention) is dropped: the image goes where the template puts it.
    """
    messages: list[dict[str, Any]] = [
        {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": strip_image_marker(prompt)}]}
    ]
    if answer is not None:
        messages.append({"role": "assistant", "content": [{"type": "text", "text": answer}]})
    return apply_template(processor, messages, add_generation_prompt=answer is None)


def strip_image_marker(text: str) -> str:
    """``"<image>\\nWhat is this?"`` -> ``"What is this?"`` (LLaVA data puts the marker in the text)."""
    text = text.strip()
    if text.startswith("<image>"):
        text = text[len("<image>"):].lstrip("\n ")
    elif text.endswith("<image>"):
        text = text[: -len("<image>")].rstrip("\n ")
    return text


def apply_template(processor: Any, messages: list[dict[str, Any]], *, add_generation_prompt: bool) -> str:
    """``processor.apply_chat_template`` as text, with a clear error when there is no template."""
    template = getattr(processor, "chat_template", None)
    if template is None:
        tokenizer = getattr(processor, "tokenizer", processor)
        if getattr(tokenizer, "chat_template", None) is None:
            raise ValueError(
                f"processor {type(processor).__name__} has no chat template; add a chat_template.jinja "
                "to the model folder"
            )
        return tokenizer.apply_chat_template(messages, add_generation_prompt=add_generation_prompt, tokenize=False)
    return processor.apply_chat_template(messages, add_generation_prompt=add_generation_prompt, tokenize=False)


def model_hash(path: str | Path) -> str:
    """A short, fast fingerprint of a model folder for provenance (16 hex digits).

    Covers ``config.json``/``adapter_config.json`` and every weight file: small files in full,
    large ones by size plus 16 evenly spaced 1 MiB chunks. Copying a folder keeps its hash. A
    name that is not a folder (a hub id) hashes the name.
    """
    root = Path(path)
    digest = hashlib.sha256()
    if not root.is_dir():
        digest.update(f"name:{path}".encode())
        return digest.hexdigest()[:16]
    for name in ("config.json", "adapter_config.json"):
        if (root / name).is_file():
            digest.update(name.encode())
            digest.update((root / name).read_bytes())
    weights = sorted(p for p in root.iterdir() if p.suffix in {".safetensors", ".bin"} and p.is_file())
    for file in weights:
        size = file.stat().st_size
        digest.update(f"{file.name}:{size}".encode())
        with open(file, "rb") as handle:
            if size <= _FULL_HASH_BYTES:
                digest.update(handle.read())
                continue
            for i in range(16):
                handle.seek((size - _CHUNK) * i // 15)
                digest.update(handle.read(_CHUNK))
    return digest.hexdigest()[:16]


def trainable_summary(model: Any) -> str:
    """``"trainable 1.2M / 3.4M parameters"`` for logs."""
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return f"trainable {trainable / 1e6:.2f}M / {total / 1e6:.2f}M parameters"


__all__ = [
    "adapter_base",
    "apply_template",
    "chat_prompt",
    "default_attn_implementation",
    "is_adapter",
    "load",
    "model_hash",
    "save",
    "strip_image_marker",
    "trainable_summary",
]
