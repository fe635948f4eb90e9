"""``vila2 finetune SPECIALIST``: fine-tune a domain specialist (LoRA by default)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from vila2.cli import plugin_option


def _setting(text: str) -> tuple[str, Any]:
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise click.BadParameter(f"{text!r} is not KEY=VALUE", param_hint="--set")
    try:
        return key.strip(), json.loads(value)
    except ValueError:
        return key.strip(), value


@click.command("finetune")
@click.argument("specialist")
@click.option("--model", "-m", required=True, help="Base model folder (the self-augmented generalist).")
@click.option("--out", "-o", required=True, type=click.Path(file_okay=False), help="Output folder.")
@click.option("--data", type=click.Path(exists=True), help="Domain data (LLaVA JSON or a dataset folder).")
@click.option("--world", type=click.Path(exists=True, file_okay=False),
              help="Embedded world folder the specialist takes its domain set from.")
@click.option("--lora-targets", "lora_targets", metavar="ROLES",
              help="What LoRA adapts, by role: language (default), projector, vision; comma-separated, "
                   "e.g. language,projector. Recorded in the adapter's vila2_lora.json.")
@click.option("--set", "settings", multiple=True, metavar="KEY=VALUE",
              help="LoRA/training setting, e.g. --set r=8 --set max_steps=50 (repeatable).")
@plugin_option
def command(specialist: str, model: str, out: str, data: str | None, world: str | None,
            lora_targets: str | None, settings: tuple[str, ...]) -> None:
    """Prepare SPECIALIST's domain data and fine-tune it from --model.

    The specialist comes from a plugin; the fine-tune is the `finetune_specialist` hook
    (built in: LoRA with peft). The result loads with `vila2.models.checkpoint.load`.
    """
    from vila2.models.lora import parse_targets
    from vila2.plugins import get_host

    values = dict(_setting(s) for s in settings)
    if lora_targets is not None:
        # checked before any data is prepared; the roles resolve to module names per model family
        values["targets"] = parse_targets(lora_targets)

    host = get_host()
    component = host.get("specialist", specialist)
    out_dir = Path(out)
    data_dir = out_dir / "data"
    click.echo(f"preparing {specialist} data in {data_dir}")
    prepared = component.prepare_data(data, world, str(data_dir))
    result = host.hook.finetune_specialist(
        specialist=component, base_model=model, data=str(prepared), out_dir=str(out_dir),
        settings=values,
    )
    if result is None:
        raise click.ClickException(f"no plugin fine-tuned specialist {specialist!r} (every finetune_specialist declined)")
    click.echo(f"specialist {specialist} saved to {result}")
