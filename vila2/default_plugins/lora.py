"""Built-in ``finetune_specialist``: LoRA with peft (``vila2.training.trainer.finetune_lora``).

It runs last, so any installed plugin that answers the hook (say, a full fine-tune) wins.
"""

from __future__ import annotations

from typing import Any

import vila2


@vila2.hookimpl(trylast=True)
def finetune_specialist(specialist: Any, base_model: str, data: str, out_dir: str,
                        settings: dict[str, Any]) -> str:
    """LoRA-tune ``base_model`` on the specialist's conversations; ``settings`` override the
    specialist's ``lora`` defaults (LoRA and training fields alike)."""
    from vila2.training.trainer import finetune_lora

    return str(finetune_lora(base_model, data, out_dir, {**specialist.lora, **settings}))
