"""``vila2 world``: write the embedded synthetic world as datasets and benchmarks."""

from __future__ import annotations

import json

import click

from vila2.cli import plugin_option


@click.command("world")
@click.option("--out", "out", required=True, type=click.Path(file_okay=False),
              help="Folder to write the world to (empty, or a world written with the same settings).")
@click.option("--seed", default=0, show_default=True, type=int, help="World seed.")
@click.option("--size", default="default", show_default=True,
              help="tiny, demo, default, or a number of pretraining images.")
@click.option("--image-size", default=64, show_default=True, type=int, help="Image side in pixels.")
@click.option("--stats", "show_stats", is_flag=True,
              help="Print the world's statistics (caption lengths, objects per image, alt-text coverage).")
@plugin_option
def command(out: str, seed: int, size: str, image_size: int, show_stats: bool) -> None:
    """Write the embedded world: pretrain/ (web alt-text), sft/, spatial/, grounding/, ocr/ and
    held-out bench/ datasets, plus bench/mmmu/validation.parquet in MMMU's schema."""
    from vila2.world import write_world
    from vila2.world.stats import format_stats

    try:
        root = write_world(out, seed=seed, size=size, image_size=image_size)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc
    info = json.loads((root / "world.json").read_text())
    counts = info["stats"]["datasets"]
    click.echo(f"world in {root}: {counts['pretrain']} pretraining pairs, "
               f"{len([k for k in counts if k.startswith('bench/')])} benchmarks")
    if show_stats:
        click.echo(format_stats(info))
