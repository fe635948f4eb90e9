"""Tiny random vision-language models, built locally from configs (no download).

Each preset is an ordinary Hugging Face folder — ``config.json``, ``model.safetensors``, a
tokenizer trained with ``tokenizers`` on the given texts, an image processor and a chat
template — so it goes through exactly the code path of a real checkpoint::

    from vila2.models.presets import build
    build("llava-tiny", "models/llava-tiny", texts=my_captions, seed=0, hidden_size=256)

Presets: ``llava-tiny`` (SigLIP vision tower + MLP projector + Llama decoder), ``qwen2vl-tiny``
(Qwen2-VL: window-free ViT with 2x2 patch merging + Qwen2 decoder with M-RoPE) and
``idefics3-tiny`` (SigLIP-style tower + pixel-shuffle connector + Llama decoder). All three turn a
64x64 image into 16 image tokens by default.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: Sizes every preset accepts as ``build(..., **overrides)``; the defaults train in about a
#: minute on two CPU cores (docs/DEMO.md).
DEFAULT_SIZES: dict[str, int] = {
    "vocab_size": 1024,
    "hidden_size": 128,
    "num_layers": 2,
    "num_heads": 4,
    "num_kv_heads": 4,
    "intermediate_size": 512,
    "vision_hidden_size": 64,
    "vision_layers": 2,
    "vision_heads": 2,
    "vision_intermediate_size": 128,
    "image_size": 64,
    "patch_size": 16,
    "max_position_embeddings": 512,
}

# Words of each template that are not special tokens; they join the tokenizer's training text so
# that the role names become single tokens.
_TEMPLATE_WORDS = ("user", "assistant", "system", "User", "Assistant", "System")


@dataclass(frozen=True)
class _Preset:
    special_tokens: tuple[str, ...]
    tokens: dict[str, str]  # role -> token: bos, eos, pad, image
    chat_template: str
    make: Callable[[Any, dict[str, int]], tuple[Any, Any]]  # (tokenizer, sizes) -> (config, processor)


def _content(image: str) -> str:
    """Jinja for a message's content: a string, or a list of image/text items."""
    return (
        "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
        "{% for item in message['content'] %}"
        f"{{% if item['type'] == 'image' %}}{image}"
        "{% elif item['type'] == 'text' %}{{ item['text'] }}{% endif %}{% endfor %}{% endif %}"
    )


_LLAVA_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{% if message['role'] == 'user' %}<|user|>{% elif message['role'] == 'assistant' %}<|assistant|>"
    "{% else %}<|system|>{% endif %}" + _content("<image>\n")
    + "{% if message['role'] == 'assistant' %}{{ eos_token }}{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)

_QWEN2VL_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    + _content("<|vision_start|><|image_pad|><|vision_end|>")
    + "<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

_IDEFICS3_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}{{ message['role'] | capitalize }}:"
    + _content("<image>")
    + "<end_of_utterance>\n{% endfor %}{% if add_generation_prompt %}Assistant:{% endif %}"
)


def _llama_text(tok: Any, sizes: dict[str, int], **extra: Any) -> Any:
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=len(tok),
        hidden_size=sizes["hidden_size"],
        intermediate_size=sizes["intermediate_size"],
        num_hidden_layers=sizes["num_layers"],
        num_attention_heads=sizes["num_heads"],
        num_key_value_heads=sizes["num_kv_heads"],
        max_position_embeddings=sizes["max_position_embeddings"],
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        tie_word_embeddings=True,
        **extra,
    )


def _make_llava(tok: Any, sizes: dict[str, int]) -> tuple[Any, Any]:
    from transformers import LlavaConfig, LlavaProcessor, SiglipImageProcessor, SiglipVisionConfig

    side = sizes["image_size"] // sizes["patch_size"]
    vision = SiglipVisionConfig(
        hidden_size=sizes["vision_hidden_size"],
        intermediate_size=sizes["vision_intermediate_size"],
        num_hidden_layers=sizes["vision_layers"],
        num_attention_heads=sizes["vision_heads"],
        image_size=sizes["image_size"],
        patch_size=sizes["patch_size"],
    )
    config = LlavaConfig(
        vision_config=vision,
        text_config=_llama_text(tok, sizes),
        image_token_index=tok.convert_tokens_to_ids("<image>"),
        image_seq_length=side * side,
        # SigLIP has no CLS token: keep every patch, from the last layer
        vision_feature_select_strategy="full",
        vision_feature_layer=-1,
        tie_word_embeddings=True,
    )
    image_processor = SiglipImageProcessor(size={"height": sizes["image_size"], "width": sizes["image_size"]})
    processor = LlavaProcessor(
        image_processor=image_processor,
        tokenizer=tok,
        patch_size=sizes["patch_size"],
        vision_feature_select_strategy="full",
        chat_template=_LLAVA_TEMPLATE,
        image_token="<image>",
    )
    return config, processor


def _make_qwen2vl(tok: Any, sizes: dict[str, int]) -> tuple[Any, Any]:
    from transformers import (
        Qwen2VLConfig,
        Qwen2VLImageProcessor,
        Qwen2VLProcessor,
        Qwen2VLVideoProcessor,
    )
    from transformers.models.qwen2_vl.configuration_qwen2_vl import (
        Qwen2VLTextConfig,
        Qwen2VLVisionConfig,
    )

    merge = 2
    # patches are merged 2x2, so half the patch size gives the same token count as LLaVA
    patch = max(1, sizes["patch_size"] // merge)
    half = sizes["hidden_size"] // sizes["num_heads"] // 2  # rotary pairs per head
    # M-RoPE shares the rotary pairs between (time, height, width) like Qwen2-VL's 16:24:24
    height = width = (half - half // 4) // 2
    mrope = [half - height - width, height, width]
    text = Qwen2VLTextConfig(
        vocab_size=len(tok),
        hidden_size=sizes["hidden_size"],
        intermediate_size=sizes["intermediate_size"],
        num_hidden_layers=sizes["num_layers"],
        num_attention_heads=sizes["num_heads"],
        num_key_value_heads=sizes["num_kv_heads"],
        max_position_embeddings=sizes["max_position_embeddings"],
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": mrope},
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    vision = Qwen2VLVisionConfig(
        depth=sizes["vision_layers"],
        embed_dim=sizes["vision_hidden_size"],
        hidden_size=sizes["hidden_size"],
        num_heads=sizes["vision_heads"],
        mlp_ratio=max(1, sizes["vision_intermediate_size"] // sizes["vision_hidden_size"]),
        patch_size=patch,
        spatial_merge_size=merge,
        temporal_patch_size=2,
    )
    config = Qwen2VLConfig(
        text_config=text,
        vision_config=vision,
        image_token_id=tok.convert_tokens_to_ids("<|image_pad|>"),
        video_token_id=tok.convert_tokens_to_ids("<|video_pad|>"),
        vision_start_token_id=tok.convert_tokens_to_ids("<|vision_start|>"),
        vision_end_token_id=tok.convert_tokens_to_ids("<|vision_end|>"),
        tie_word_embeddings=True,
    )
    pixels = sizes["image_size"] ** 2
    image_processor = Qwen2VLImageProcessor(
        size={"shortest_edge": pixels, "longest_edge": pixels},
        patch_size=patch,
        merge_size=merge,
        temporal_patch_size=2,
    )
    # the processor requires a video processor; videos are not used, but keep it consistent
    video_processor = Qwen2VLVideoProcessor(
        size={"shortest_edge": pixels, "longest_edge": pixels},
        patch_size=patch,
        merge_size=merge,
        temporal_patch_size=2,
        cap_pixels_per_frame=True,
    )
    processor = Qwen2VLProcessor(image_processor=image_processor, tokenizer=tok, video_processor=video_processor,
                                 chat_template=_QWEN2VL_TEMPLATE)
    return config, processor


def _make_idefics3(tok: Any, sizes: dict[str, int]) -> tuple[Any, Any]:
    from transformers import Idefics3Config, Idefics3ImageProcessor, Idefics3Processor
    from transformers.models.idefics3.configuration_idefics3 import Idefics3VisionConfig

    scale = 2
    patch = max(1, sizes["patch_size"] // scale)  # pixel shuffle merges scale x scale patches
    side = sizes["image_size"] // patch
    vision = Idefics3VisionConfig(
        hidden_size=sizes["vision_hidden_size"],
        intermediate_size=sizes["vision_intermediate_size"],
        num_hidden_layers=sizes["vision_layers"],
        num_attention_heads=sizes["vision_heads"],
        image_size=sizes["image_size"],
        patch_size=patch,
    )
    config = Idefics3Config(
        vision_config=vision,
        text_config=_llama_text(tok, sizes),
        image_token_id=tok.convert_tokens_to_ids("<image>"),
        scale_factor=scale,
        tie_word_embeddings=True,
    )
    image_processor = Idefics3ImageProcessor(
        size={"longest_edge": sizes["image_size"]},
        max_image_size={"longest_edge": sizes["image_size"]},
        do_image_splitting=False,
    )
    processor = Idefics3Processor(
        image_processor=image_processor,
        tokenizer=tok,
        image_seq_len=(side * side) // (scale * scale),
        chat_template=_IDEFICS3_TEMPLATE,
    )
    return config, processor


PRESETS: dict[str, _Preset] = {
    "llava-tiny": _Preset(
        special_tokens=("<pad>", "<s>", "</s>", "<image>", "<|user|>", "<|assistant|>", "<|system|>"),
        tokens={"pad": "<pad>", "bos": "<s>", "eos": "</s>", "image": "<image>"},
        chat_template=_LLAVA_TEMPLATE,
        make=_make_llava,
    ),
    "qwen2vl-tiny": _Preset(
        special_tokens=(
            "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
            "<|image_pad|>", "<|video_pad|>",
        ),
        tokens={"pad": "<|endoftext|>", "bos": "<|endoftext|>", "eos": "<|im_end|>", "image": "<|image_pad|>"},
        chat_template=_QWEN2VL_TEMPLATE,
        make=_make_qwen2vl,
    ),
    "idefics3-tiny": _Preset(
        special_tokens=(
            "<pad>", "<s>", "<end_of_utterance>", "<fake_token_around_image>", "<image>", "<global-img>",
        ),
        tokens={"pad": "<pad>", "bos": "<s>", "eos": "<end_of_utterance>", "image": "<image>"},
        chat_template=_IDEFICS3_TEMPLATE,
        make=_make_idefics3,
    ),
}


def train_tokenizer(texts: Iterable[str], special_tokens: Iterable[str], tokens: dict[str, str],
                    vocab_size: int, max_length: int) -> Any:
    """A byte-level BPE tokenizer trained on ``texts`` (deterministic for the same texts),
    wrapped as a ``PreTrainedTokenizerFast`` with bos/eos/pad and an ``image_token``."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    specials = list(dict.fromkeys(special_tokens))
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    corpus = itertools.chain((str(t) for t in texts), _TEMPLATE_WORDS * 4)
    tokenizer.train_from_iterator(corpus, trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token=tokens["bos"],
        eos_token=tokens["eos"],
        pad_token=tokens["pad"],
        extra_special_tokens={"image_token": tokens["image"]},
        model_max_length=max_length,
        # generation pads on the left; training collates its own (right-padded) batches
        padding_side="left",
    )


def build(name: str, out: str | Path, *, texts: Iterable[str], seed: int = 0, **overrides: int) -> Path:
    """Build the tiny preset ``name`` with random weights and save it to ``out``; return ``out``.

    ``texts`` train the tokenizer (captions and questions of the data the model will see).
    ``overrides`` change sizes (see :data:`DEFAULT_SIZES`), e.g. ``hidden_size=256, num_layers=4``.
    The same texts, seed and sizes give the same folder, byte for byte in the weights.
    """
    import torch
    from transformers import AutoModelForImageTextToText

    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {', '.join(sorted(PRESETS))}")
    unknown = sorted(set(overrides) - set(DEFAULT_SIZES))
    if unknown:
        raise ValueError(f"preset {name!r}: unknown size override(s) {unknown}; known: {sorted(DEFAULT_SIZES)}")
    sizes = {**DEFAULT_SIZES, **{k: int(v) for k, v in overrides.items()}}
    if sizes["hidden_size"] % sizes["num_heads"] or sizes["vision_hidden_size"] % sizes["vision_heads"]:
        raise ValueError(f"preset {name!r}: hidden sizes must divide by their head counts ({sizes})")
    if sizes["image_size"] % sizes["patch_size"]:
        raise ValueError(f"preset {name!r}: image_size must be a multiple of patch_size ({sizes})")
    texts = list(texts)
    if not texts:
        raise ValueError(f"preset {name!r}: texts is empty; the tokenizer needs text to learn from")

    preset = PRESETS[name]
    tokenizer = train_tokenizer(texts, preset.special_tokens, preset.tokens, sizes["vocab_size"],
                                sizes["max_position_embeddings"])
    config, processor = preset.make(tokenizer, sizes)
    torch.manual_seed(seed)
    model = AutoModelForImageTextToText.from_config(config, dtype=torch.float32)
    gen = model.generation_config
    gen.bos_token_id, gen.eos_token_id, gen.pad_token_id = (
        tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id)

    from vila2.models.checkpoint import save

    return save(model, processor, out)


__all__ = ["DEFAULT_SIZES", "PRESETS", "build", "train_tokenizer"]
