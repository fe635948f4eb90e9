"""``vila2 dedup``: the command line of :func:`vila2_dedup.dedup.dedup`."""

from __future__ import annotations

import json

import click

from vila2.cli import plugin_option
from vila2_dedup.captions import THRESHOLD
from vila2_dedup.images import RADIUS, THUMB_DISTANCE


@click.command("dedup")
@click.argument("dataset", type=click.Path(file_okay=False))
@click.option("--out-layer", required=True, help="Name of the layer to write.")
@click.option("--images", is_flag=True, help="Find near-duplicate images (perceptual hash).")
@click.option("--captions", metavar="LAYER", default=None,
              help="Find near-duplicate captions of this caption layer (MinHash LSH); the new "
                   "layer carries its texts.")
@click.option("--radius", type=click.IntRange(0, 64), default=RADIUS, show_default=True,
              help="Hamming radius on the 64-bit pHash.")
@click.option("--thumb-distance", type=click.FloatRange(min=0), default=THUMB_DISTANCE,
              show_default=True,
              help="Largest colour distance of the 8x8 thumbnails (brightness-normalised, any "
                   "pixel, best of +-1 pixel shifts) that confirms an image pair (0: hash only).")
@click.option("--colour-check/--no-colour-check", default=True, show_default=True,
              help="A pair whose thumbnails are not close must also agree in colour (background "
                   "up to a brightness change, amount of saturated colour, hues).")
@click.option("--threshold", type=click.FloatRange(0, 1, min_open=True), default=THRESHOLD,
              show_default=True, help="Jaccard similarity (character 5-grams) of duplicate captions.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@plugin_option
def command(dataset: str, out_layer: str, images: bool, captions: str | None, radius: int,
            thumb_distance: float, colour_check: bool, threshold: float, as_json: bool) -> None:
    """Mark near-duplicate images and/or captions across all shards of DATASET.

    Writes layer --out-layer: each duplicate has kept = false and names the id it duplicates
    (meta "duplicate_of"); the smallest id of each group is kept.
    """
    from vila2_dedup.dedup import DedupError, dedup

    try:
        report = dedup(dataset, out_layer, images=images, captions=captions, radius=radius,
                       threshold=threshold, thumb_distance=thumb_distance,
                       colour_check=colour_check, log=lambda line: click.echo(line, err=True))
    except DedupError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(json.dumps(report.to_dict(), indent=2) if as_json else report.summary())
