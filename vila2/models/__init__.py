"""Models: load, save and fingerprint any HF image-text-to-text folder (``checkpoint``), tiny
presets built from configs (``presets``), batched generation (``generation``), LoRA (``lora``).

``from vila2.models import load, save`` is the short form of ``vila2.models.checkpoint``; nothing
heavy is imported until a function is called.
"""

from vila2.models.checkpoint import chat_prompt, load, model_hash, save

__all__ = ["chat_prompt", "load", "model_hash", "save"]
