"""``vila2 preset``: list the tiny model presets, or build one as an ordinary HF folder."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import click

from vila2.cli import plugin_option

# Used when neither --world nor --texts is given: enough for a tokenizer that spells any text.
_DEFAULT_TEXTS = (
    "Describe the image in detail.",
    "A small red circle is on the left of a large blue square.",
    "The green triangle is above the yellow star.",
    'The word "map" is written at the top left of the image.',
    "What color is the shape in the middle? Answer with a single word.",
    "How many objects are there? There are three objects.",
)


@click.group("preset")
def command() -> None:
    """Tiny random vision-language models of each family, built from configs (no download)."""


@command.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@plugin_option
def list_presets(as_json: bool) -> None:
    """List the presets: name, transformers model_type and what the family is."""
    from vila2.models.presets import PRESETS

    rows = [{"name": p.name, "family": p.family, "description": p.description} for p in PRESETS.values()]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    width = max(len(r["name"]) for r in rows)
    family = max(len(r["family"]) for r in rows)
    for row in rows:
        click.echo(f"{row['name'].ljust(width)}  {row['family'].ljust(family)}  {row['description']}")


def _size(text: str) -> tuple[str, int]:
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise click.BadParameter(f"{text!r} is not KEY=VALUE", param_hint="--set")
    try:
        return key.strip(), int(value)
    except ValueError:
        raise click.BadParameter(f"{text!r}: sizes are integers", param_hint="--set") from None


@command.command("build")
@click.argument("name")
@click.option("--out", "-o", required=True, type=click.Path(file_okay=False), help="Folder to write the model to.")
@click.option("--set", "sizes", multiple=True, metavar="KEY=VALUE",
              help="Size override, e.g. --set hidden_size=256 --set num_layers=4 (repeatable).")
@click.option("--seed", default=0, show_default=True, type=int, help="Weight seed.")
@click.option("--world", type=click.Path(exists=True, file_okay=False),
              help="Train the tokenizer on this embedded world's texts.")
@click.option("--texts", "texts_file", type=click.Path(exists=True, dir_okay=False),
              help="Train the tokenizer on this file's lines.")
@plugin_option
def build_preset(name: str, out: str, sizes: tuple[str, ...], seed: int, world: str | None,
                 texts_file: str | None) -> None:
    """Build preset NAME with random weights into --out (AutoModelForImageTextToText + AutoProcessor
    load it). --set changes the sizes of vila2.models.presets.DEFAULT_SIZES."""
    from vila2.models.presets import DEFAULT_SIZES, PRESETS, build, check_request

    overrides = dict(_size(s) for s in sizes)
    try:
        check_request(name, overrides)
    except ValueError as exc:
        known = ", ".join(f"{k}={v}" for k, v in DEFAULT_SIZES.items())
        hint = f" (presets: {', '.join(PRESETS)})" if name not in PRESETS else f" (sizes: {known})"
        raise click.ClickException(f"{exc}{hint}") from None
    if world and texts_file:
        raise click.UsageError("give --world or --texts, not both")
    if world:
        from vila2.world import world_texts

        texts = list(world_texts(world))
    elif texts_file:
        texts = [line for line in Path(texts_file).read_text(encoding="utf-8").splitlines() if line.strip()]
    else:
        texts = list(_DEFAULT_TEXTS)
    folder = build(name, out, texts=texts, seed=seed, **overrides)
    click.echo(f"{name} ({PRESETS[name].family}) saved to {folder}")


@command.command("tower")
@click.option("--out", "-o", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Folder for tower.safetensors + tower.json.")
@click.option("--short", is_flag=True, help="A seconds-long tower (tests), not the shipped one.")
@plugin_option
def build_tower(out: Path, short: bool) -> None:
    """Pretrain the starting point's vision tower on world images of its own split.

    This is the command that built the tower shipped as `vila2/recipes/world-tower` (a recipe
    names it with `model: {vision_tower: world-tower}`); rerun it to rebuild it (about 3 minutes
    on one free core). Its images share no scene seed with any pretraining, SFT, domain or
    benchmark split of the world.
    """
    import torch

    from vila2.training.tower import TowerSettings, pretrain_tower

    torch.set_num_threads(1)
    folder = pretrain_tower(out, TowerSettings.short() if short else TowerSettings())
    info = json.loads((Path(folder) / "tower.json").read_text())
    accuracy = info["held_out_accuracy"]
    click.echo(f"tower written to {folder}: held-out cell accuracy colour {accuracy['color_on_objects']:.3f}, "
               f"shape {accuracy['shape_on_objects']:.3f} (on object cells)")


@command.command("start")
@click.option("--out", "-o", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Folder for the starting point (a model folder with start.json).")
@click.option("--tower", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="Pretrained tower folder (default: the shipped world-tower).")
@click.option("--short", is_flag=True, help="A seconds-long starting point (tests), not the shipped one.")
@click.option("--projector-lr", type=click.FloatRange(min=0, min_open=True), default=None,
              help="The projector's own learning rate (default: 5e-4, the shipped starting point's).")
@plugin_option
def build_start_command(out: Path, tower: Path | None, short: bool, projector_lr: float | None) -> None:
    """Build the demo's starting point: llava-tiny on the pretrained tower, its decoder and
    projector trained on the SFT set of a world of its own.

    This is the command that built the starting point shipped as `vila2/recipes/world-start`
    (a recipe names it with `model: {checkpoint: world-start}`); rerun it to rebuild it (about
    11 minutes on one free core). It never sees a scene of another world: no pretraining image,
    SFT or domain image or benchmark of the worlds recipes run on.
    """
    import torch

    from vila2.pipeline.recipe import PACKAGED
    from vila2.training.start import StartSettings, build_start, start_info

    torch.set_num_threads(1)
    settings = StartSettings.short() if short else StartSettings()
    if projector_lr is not None:
        settings = replace(settings, projector_lr=projector_lr)
    try:
        folder = build_start(out, tower or PACKAGED / "world-tower", settings)
    except ValueError as exc:  # no tower there, or a starting point built with other settings
        raise click.ClickException(str(exc)) from None
    seen = start_info(folder)["image_dependence"]
    click.echo(f"starting point written to {folder}: VQA {100 * seen['vqa']:.1f} with the right images, "
               f"{100 * seen['vqa_shuffled']:.1f} with shuffled ones ({seen['questions']} questions)")
