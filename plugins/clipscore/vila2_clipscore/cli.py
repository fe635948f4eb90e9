"""``vila2 clipscore``: train a CLIP on the embedded world, score a caption layer, measure AUC."""

from __future__ import annotations

import json
from typing import Any

import click


@click.group("clipscore")
def clipscore() -> None:
    """CLIP image-caption agreement (the vila2-clipscore plugin)."""


@clipscore.command("train")
@click.option("--world", "world", required=True, type=click.Path(exists=True, file_okay=False),
              help="A world folder written by `vila2 world` (its seed and image size; its scenes are excluded).")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Folder to save the CLIP to.")
@click.option("--steps", type=click.IntRange(min=1), default=None, help="Optimizer steps.")
@click.option("--images", type=click.IntRange(min=16), default=None, help="Training scenes to render.")
@click.option("--batch-size", type=click.IntRange(min=2), default=None, help="Images per step.")
@click.option("--hidden-size", type=click.IntRange(min=16), default=None, help="Width of both towers.")
@click.option("--layers", type=click.IntRange(min=1), default=None, help="Layers of each tower.")
@click.option("--seed", type=int, default=None, help="Training seed.")
@click.option("--pair-weight", type=click.FloatRange(min=0), default=None,
              help="Weight of the pairwise term: each image's true text must beat its own hard negative.")
@click.option("--init", type=click.Path(exists=True, file_okay=False), default=None,
              help="Continue from a CLIP folder trained by this command (its tokenizer and sizes).")
@click.option("--device", default=None, help="cpu, cuda... (default: cuda when there is a GPU).")
def train_command(world: str, out: str, **options: Any) -> None:
    """Train a small CLIP (transformers CLIPModel) on world scenes of its own seeds, disjoint from
    the world's splits and benchmarks, and save it as an ordinary Hugging Face folder."""
    from vila2_clipscore.train import TrainSettings, train_clip

    settings = TrainSettings(**{k: v for k, v in options.items() if v is not None})
    try:
        train_clip(world, out, settings, log=click.echo)
    except (FileExistsError, FileNotFoundError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None


@clipscore.command("score")
@click.argument("dataset", type=click.Path(exists=True, file_okay=False))
@click.option("--layer", required=True, help="Caption layer to score.")
@click.option("--out-layer", required=True, help="New layer: the same rows with clipscore scores.")
@click.option("-m", "--model", "clip", required=True, type=click.Path(exists=True, file_okay=False),
              help="CLIP/SigLIP/open_clip checkpoint folder.")
@click.option("--min", "minimum", type=str, default=None,
              help="Threshold of clipscore (mean over sentences): a number or 'auto'.")
@click.option("--min-sentence", type=str, default=None,
              help="Threshold of clipscore_min (worst sentence): a number or 'auto'.")
@click.option("-b", "--batch-size", type=click.IntRange(min=1), default=64, show_default=True)
@click.option("--device", default=None, help="cpu, cuda, cuda:1... (default: cuda when there is a GPU).")
def score_command(dataset: str, layer: str, out_layer: str, clip: str, minimum: str | None,
                  min_sentence: str | None, batch_size: int, device: str | None) -> None:
    """Score every caption of LAYER against its image, in batches, into a new layer whose stored
    scores let `rethreshold` pick thresholds later without a model."""
    from vila2_clipscore.layers import score_layer

    def parsed(value: str | None) -> float | str:
        return "auto" if value in (None, "auto") else float(value)

    thresholds = {}
    if minimum is not None:
        thresholds["clipscore"] = parsed(minimum)
    if min_sentence is not None:
        thresholds["clipscore_min"] = parsed(min_sentence)
    counts = score_layer(dataset, layer, out_layer, clip, thresholds=thresholds, batch_size=batch_size,
                         device=device)
    click.echo(json.dumps(counts))


def register(cli: click.Group) -> None:
    """Add ``vila2 clipscore`` to the ``vila2`` command group (once)."""
    if "clipscore" not in cli.commands:
        cli.add_command(clipscore)


__all__ = ["clipscore", "register"]
