"""Model preparation: turn a vila2 model folder into what vLLM loads.

Two things can stand between a folder that transformers opens and one that vLLM opens:

* **SigLIP/CLIP tower keys.** transformers 5 saves a LLaVA-style model's vision tower as
  ``vision_tower.embeddings.*``, ``vision_tower.encoder.*``, ``vision_tower.post_layernorm.*``;
  vLLM's ``SiglipVisionModel``/``CLIPVisionModel`` keep them one level down, under
  ``vision_tower.vision_model.*``, and its LLaVA loader does not map the two. :func:`prepare`
  writes a prepared copy whose safetensors headers carry the vLLM names: only the header is
  rewritten, the tensor bytes are copied as they are, so the weights are bit for bit the same.
* **LoRA adapters.** A specialist is a PEFT adapter folder. vLLM serves an adapter through
  ``LoRARequest`` when its architecture supports LoRA and the adapter touches only the language
  model (vLLM's multimodal LoRA covers the decoder, not the vision tower or the projector);
  otherwise (``modules_to_save``, DoRA, adapted tower/projector/embeddings, an architecture
  without LoRA, or ``lora: merge``) the adapter is merged into its base first and the log says so.

Prepared folders live in a cache (``VILA2_VLLM_CACHE``, else ``~/.cache/vila2/vllm``), one per
source folder content (its :func:`vila2.models.checkpoint.model_hash`), written to a temporary
name and renamed when complete, so a killed preparation leaves nothing that is reused.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import struct
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger("vila2.vllm")

#: bump when a prepared folder's layout changes, so old cache entries are not reused
PREPARE_VERSION = 1
#: vision tower configs whose vLLM module nests the weights under ``vision_model.``
_NESTED_TOWERS = frozenset({"siglip_vision_model", "clip_vision_model"})
#: a tower key saved without the ``vision_model.`` level (``model.`` prefix optional)
_FLAT_TOWER_KEY = re.compile(r"^((?:model\.)?vision_tower\.)(?!vision_model\.)")
#: adapter weights vLLM's multimodal LoRA can serve: the decoder's layers
_LANGUAGE_MODULE = re.compile(r"(^|\.)(language_model|text_model)\.")
_LANGUAGE_EXCLUDED = re.compile(r"(embed_tokens|lm_head)")
#: files copied into a prepared folder (others are linked): configs, tokenizer, templates
_COPY_BELOW = 64 << 20
_MARKER = "vila2_vllm_prepared.json"


@dataclass(frozen=True)
class PreparedModel:
    """What the captioner hands vLLM.

    ``path``: the folder vLLM loads (the source itself when nothing needed changing);
    ``processor``: where the chat template and processor come from; ``adapter``: a PEFT folder to
    serve with ``LoRARequest`` (``None``: no adapter, or it was merged); ``lora_rank``: its ``r``;
    ``notes``: what preparation did, in words (also logged).
    """

    path: str
    processor: str
    adapter: str | None = None
    lora_rank: int | None = None
    notes: tuple[str, ...] = field(default_factory=tuple)


def cache_root(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """Where prepared folders go: ``cache_dir``, ``$VILA2_VLLM_CACHE``, or ``~/.cache/vila2/vllm``."""
    if cache_dir is not None:
        return Path(cache_dir)
    if os.environ.get("VILA2_VLLM_CACHE"):
        return Path(os.environ["VILA2_VLLM_CACHE"])
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "vila2" / "vllm"


# ----------------------------------------------------------------------------- safetensors headers
def read_header(file: str | os.PathLike[str]) -> tuple[dict[str, Any], int]:
    """The JSON header of a safetensors file and the offset where its tensor bytes start."""
    with open(file, "rb") as handle:
        (length,) = struct.unpack("<Q", handle.read(8))
        header = json.loads(handle.read(length))
    return header, 8 + length


def tensor_names(folder: str | os.PathLike[str]) -> list[str]:
    """Every tensor name in the folder's ``*.safetensors`` files, sorted."""
    names: list[str] = []
    for file in sorted(Path(folder).glob("*.safetensors")):
        header, _ = read_header(file)
        names += [k for k in header if k != "__metadata__"]
    return sorted(names)


def rename_tensors(src: str | os.PathLike[str], dst: str | os.PathLike[str],
                   rename: Callable[[str], str]) -> int:
    """Copy the safetensors file ``src`` to ``dst`` with its tensors renamed by ``rename``.

    Only the header changes (names; offsets stay valid because the data block is copied byte
    for byte). Returns how many names changed.
    """
    header, start = read_header(src)
    renamed: dict[str, Any] = {}
    changed = 0
    for name, entry in header.items():
        new = name if name == "__metadata__" else rename(name)
        changed += new != name
        if new in renamed:
            raise ValueError(f"{src}: renaming gives two tensors the name {new!r}")
        renamed[new] = entry
    blob = json.dumps(renamed, separators=(",", ":")).encode()
    blob += b" " * (-len(blob) % 8)  # the format pads the header to 8 bytes with spaces
    with open(src, "rb") as inp, open(dst, "wb") as out:
        out.write(struct.pack("<Q", len(blob)))
        out.write(blob)
        inp.seek(start)
        shutil.copyfileobj(inp, out, 16 << 20)
    return changed


# ----------------------------------------------------------------------------- what needs doing
def _config(folder: str | os.PathLike[str]) -> dict[str, Any]:
    file = Path(folder) / "config.json"
    try:
        return json.loads(file.read_text())
    except (OSError, ValueError) as exc:
        raise ValueError(f"{file}: not a readable model config ({exc})") from exc


def architecture(folder: str | os.PathLike[str]) -> str:
    """The folder's first ``architectures`` entry (``config.json``)."""
    archs = _config(folder).get("architectures") or []
    if not archs:
        raise ValueError(f"{Path(folder) / 'config.json'} names no architectures")
    return str(archs[0])


def vision_rename(folder: str | os.PathLike[str]) -> Callable[[str], str] | None:
    """The tensor renaming vLLM needs for this folder, or ``None`` when its names already fit.

    A SigLIP or CLIP tower saved flat (``vision_tower.embeddings...``) gets the ``vision_model.``
    level vLLM's tower modules expect (``vision_tower.vision_model.embeddings...``).
    """
    vision = _config(folder).get("vision_config") or {}
    if vision.get("model_type") not in _NESTED_TOWERS:
        return None
    if not any(_FLAT_TOWER_KEY.match(name) for name in tensor_names(folder)):
        return None

    def rename(name: str) -> str:
        return _FLAT_TOWER_KEY.sub(r"\1vision_model.", name, count=1)

    return rename


def adapter_blockers(adapter: str | os.PathLike[str]) -> list[str]:
    """Why vLLM could not serve this PEFT adapter as a LoRA (empty: it can).

    vLLM's multimodal LoRA adapts the language model's linear layers; an adapter that also
    trains other modules, changes the tower/projector/embeddings, or uses DoRA needs merging.
    """
    folder = Path(adapter)
    config = json.loads((folder / "adapter_config.json").read_text())
    reasons = []
    if str(config.get("peft_type", "LORA")).upper() != "LORA":
        reasons.append(f"it is a {config.get('peft_type')} adapter, not LoRA")
    if config.get("modules_to_save"):
        reasons.append(f"it trains whole modules too (modules_to_save={config['modules_to_save']})")
    if config.get("use_dora"):
        reasons.append("it is a DoRA adapter")
    weights = folder / "adapter_model.safetensors"
    if not weights.is_file():
        reasons.append("it has no adapter_model.safetensors")
        return reasons
    outside = sorted({
        _module_of(name) for name in tensor_names(folder)
        if not _LANGUAGE_MODULE.search(name) or _LANGUAGE_EXCLUDED.search(name)
    })
    if outside:
        shown = ", ".join(outside[:3]) + (f" and {len(outside) - 3} more" if len(outside) > 3 else "")
        reasons.append(f"it adapts modules outside the language model's layers ({shown}), and vLLM's "
                       "multimodal LoRA covers the language model only")
    return reasons


def _module_of(tensor: str) -> str:
    name = re.sub(r"^base_model\.model\.", "", tensor)
    return re.sub(r"\.(lora_[AB]|lora_embedding_[AB]|lora_magnitude_vector)(\..*)?$", "", name)


def lora_rank(adapter: str | os.PathLike[str]) -> int:
    """The adapter's rank: the largest of ``r`` and any ``rank_pattern`` entry."""
    config = json.loads((Path(adapter) / "adapter_config.json").read_text())
    ranks = [int(config.get("r", 8)), *(int(v) for v in (config.get("rank_pattern") or {}).values())]
    return max(ranks)


# ----------------------------------------------------------------------------- the prepared folders
def _cache_entry(kind: str, source: str, cache_dir: str | os.PathLike[str] | None) -> Path:
    from vila2.models.checkpoint import model_hash

    key = hashlib.sha256(
        f"{PREPARE_VERSION}\0{kind}\0{Path(source).resolve()}\0{model_hash(source)}".encode()
    ).hexdigest()[:20]
    return cache_root(cache_dir) / f"{Path(source).name or 'model'}-{kind}-{key}"


def _atomic_folder(target: Path, write: Callable[[Path], None], record: Mapping[str, Any]) -> Path:
    """``target`` if a complete one exists; otherwise ``write(tmp)`` then rename ``tmp`` to it."""
    if (target / _MARKER).is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        write(tmp)
        (tmp / _MARKER).write_text(json.dumps(dict(record), indent=1))
        if target.exists() and not (target / _MARKER).is_file():  # a leftover without its marker
            shutil.rmtree(target, ignore_errors=True)
        try:
            os.replace(tmp, target)
        except OSError:
            if not (target / _MARKER).is_file():  # not another process finishing first
                raise
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def write_renamed(source: str | os.PathLike[str], out: str | os.PathLike[str],
                  rename: Callable[[str], str]) -> int:
    """Fill ``out`` with ``source``'s files, tensors renamed: weights rewritten (header only),
    a sharded checkpoint's index rewritten, small files copied, large others linked. Returns the
    number of renamed tensors."""
    src, dst = Path(source).resolve(), Path(out)
    changed = 0
    for file in sorted(src.iterdir()):
        if file.name == _MARKER or file.name.startswith("."):
            continue
        target = dst / file.name
        if file.is_dir():
            shutil.copytree(file, target, symlinks=True)
        elif file.suffix == ".safetensors":
            changed += rename_tensors(file, target, rename)
        elif file.name.endswith(".safetensors.index.json"):
            index = json.loads(file.read_text())
            index["weight_map"] = {rename(k): v for k, v in index.get("weight_map", {}).items()}
            target.write_text(json.dumps(index, indent=2))
        elif file.stat().st_size < _COPY_BELOW:
            shutil.copy2(file, target)
        else:
            target.symlink_to(file)
    return changed


def renamed_copy(source: str, rename: Callable[[str], str], cache_dir: str | os.PathLike[str] | None) -> Path:
    """The cached prepared copy of ``source`` with its tensors renamed (made once)."""
    def write(tmp: Path) -> None:
        write_renamed(source, tmp, rename)

    return _atomic_folder(_cache_entry("vllm", source, cache_dir), write,
                          {"source": str(Path(source).resolve()), "kind": "renamed tensors",
                           "version": PREPARE_VERSION})


def merged_copy(adapter: str, cache_dir: str | os.PathLike[str] | None) -> Path:
    """The cached full model: ``adapter`` folded into its base weights (peft ``merge_and_unload``)."""
    from vila2.models.checkpoint import load, save

    def write(tmp: Path) -> None:
        model, processor = load(adapter, merge=True)
        save(model, processor, tmp)

    return _atomic_folder(_cache_entry("merged", adapter, cache_dir), write,
                          {"source": str(Path(adapter).resolve()), "kind": "merged adapter",
                           "version": PREPARE_VERSION})


def _has_processor(folder: str | os.PathLike[str]) -> bool:
    names = ("processor_config.json", "preprocessor_config.json", "tokenizer_config.json")
    return any((Path(folder) / n).is_file() for n in names)


def prepare(
    model: str,
    *,
    lora: str = "auto",
    cache_dir: str | os.PathLike[str] | None = None,
    supports_lora: Callable[[str], bool | None] | None = None,
) -> PreparedModel:
    """Prepare ``model`` (a model folder, a PEFT adapter folder or a hub id) for vLLM.

    ``lora="auto"`` serves an adapter as a LoRA when :func:`adapter_blockers` finds nothing and
    ``supports_lora(architecture)`` is not ``False``; ``lora="merge"`` always merges.
    """
    from vila2.models.checkpoint import adapter_base, is_adapter

    if lora not in ("auto", "merge"):
        raise ValueError(f"lora must be 'auto' or 'merge', got {lora!r}")
    notes: list[str] = []
    adapter: str | None = None
    rank: int | None = None
    processor = model
    if not Path(model).exists():
        if Path(model).is_absolute() or model.startswith("."):
            raise FileNotFoundError(f"model folder {model} does not exist")
        return PreparedModel(model, model)  # a hub id: vLLM resolves it
    if is_adapter(model):
        base = adapter_base(model)
        reasons = [] if lora == "auto" else ["the captioner setting lora is 'merge'"]
        reasons += adapter_blockers(model)
        arch = architecture(base)
        if not reasons and supports_lora is not None and supports_lora(arch) is False:
            reasons.append(f"this vLLM has no LoRA support for {arch}")
        if reasons:
            merged = merged_copy(model, cache_dir)
            note = (f"merged the LoRA adapter {model} into its base {base} before loading it in vLLM, "
                    f"because {'; '.join(reasons)} (merged model: {merged})")
            log.warning("%s", note)
            notes.append(note)
            processor = str(merged)
            model = str(merged)
        else:
            adapter, rank = model, lora_rank(model)
            processor = model if _has_processor(model) else base
            notes.append(f"serving the LoRA adapter {model} (rank {rank}) on {base} through vLLM's LoRARequest")
            model = base
    rename = vision_rename(model)
    if rename is not None:
        copy = renamed_copy(model, rename, cache_dir)
        note = f"renamed the vision tower's tensors of {model} to vLLM's names (vision_tower.vision_model.*) in {copy}"
        log.info("%s", note)
        notes.append(note)
        if processor == model:
            processor = str(copy)
        model = str(copy)
    return PreparedModel(model, processor, adapter, rank, tuple(notes))


__all__ = [
    "PREPARE_VERSION", "PreparedModel", "adapter_blockers", "architecture", "cache_root", "lora_rank",
    "merged_copy", "prepare", "read_header", "rename_tensors", "renamed_copy", "tensor_names",
    "vision_rename", "write_renamed",
]
