"""What every preset shares: the size table, the preset record, template pieces and the tokenizer."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable
from dataclasses import dataclass
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
TEMPLATE_WORDS = ("user", "assistant", "system", "User", "Assistant", "System")

Make = Callable[[Any, dict[str, int]], tuple[Any, Any]]


@dataclass(frozen=True)
class Preset:
    """One tiny preset of a model family.

    ``tokens`` maps roles to tokens: ``bos``, ``eos`` and ``pad`` become the tokenizer's own;
    every other role ``r`` becomes the tokenizer attribute ``r_token`` (``image`` ->
    ``image_token``), which is how the family's processor finds its markers.
    ``make(tokenizer, sizes) -> (config, processor)`` builds the family's own classes.
    """

    name: str
    family: str  # the transformers model_type
    description: str
    special_tokens: tuple[str, ...]
    tokens: dict[str, str]
    chat_template: str
    make: Make


def content(image: str) -> str:
    """Jinja for a message's content: a string, or a list of image/text items."""
    return (
        "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
        "{% for item in message['content'] %}"
        f"{{% if item['type'] == 'image' %}}{image}"
        "{% elif item['type'] == 'text' %}{{ item['text'] }}{% endif %}{% endfor %}{% endif %}"
    )


def chatml(image: str) -> str:
    """The ChatML template (Qwen, InternVL, LLaVA-OneVision) with ``image`` where an image goes."""
    return (
        "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
        + content(image)
        + "<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
    )


CHATML_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")


def text_sizes(tok: Any, sizes: dict[str, int]) -> dict[str, Any]:
    """The keyword arguments every decoder config shares (Llama, Qwen2, Mistral, Gemma...)."""
    return {
        "vocab_size": len(tok),
        "hidden_size": sizes["hidden_size"],
        "intermediate_size": sizes["intermediate_size"],
        "num_hidden_layers": sizes["num_layers"],
        "num_attention_heads": sizes["num_heads"],
        "num_key_value_heads": sizes["num_kv_heads"],
        "max_position_embeddings": sizes["max_position_embeddings"],
        "bos_token_id": tok.bos_token_id,
        "eos_token_id": tok.eos_token_id,
        "pad_token_id": tok.pad_token_id,
    }


def llama_text(tok: Any, sizes: dict[str, int], **extra: Any) -> Any:
    """A tiny Llama decoder config."""
    from transformers import LlamaConfig

    return LlamaConfig(**text_sizes(tok, sizes), tie_word_embeddings=True, **extra)


def siglip_vision(sizes: dict[str, int], **extra: Any) -> Any:
    """A tiny SigLIP vision tower config."""
    from transformers import SiglipVisionConfig

    values: dict[str, Any] = {
        "hidden_size": sizes["vision_hidden_size"],
        "intermediate_size": sizes["vision_intermediate_size"],
        "num_hidden_layers": sizes["vision_layers"],
        "num_attention_heads": sizes["vision_heads"],
        "image_size": sizes["image_size"],
        "patch_size": sizes["patch_size"],
    }
    return SiglipVisionConfig(**{**values, **extra})


def token_id(tok: Any, token: str) -> int:
    """The id of a special token of ``tok``."""
    return int(tok.convert_tokens_to_ids(token))


def train_tokenizer(texts: Iterable[str], special_tokens: Iterable[str], tokens: dict[str, str],
                    vocab_size: int, max_length: int) -> Any:
    """A byte-level BPE tokenizer trained on ``texts`` (deterministic for the same texts),
    wrapped as a ``PreTrainedTokenizerFast`` with bos/eos/pad and one ``<role>_token`` per
    other role of ``tokens`` (``image_token``...)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    specials = list(dict.fromkeys([*special_tokens, *tokens.values()]))
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    corpus = itertools.chain((str(t) for t in texts), TEMPLATE_WORDS * 4)
    tokenizer.train_from_iterator(corpus, trainer)
    extra = {f"{role}_token": token for role, token in tokens.items() if role not in ("bos", "eos", "pad")}
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token=tokens["bos"],
        eos_token=tokens["eos"],
        pad_token=tokens["pad"],
        extra_special_tokens=extra,
        model_max_length=max_length,
        # generation pads on the left; training collates its own (right-padded) batches
        padding_side="left",
    )
