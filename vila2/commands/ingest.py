"""``vila2 ingest``: bring a corpus into a vila2 dataset, checking every image and caption."""

from __future__ import annotations

import click

from vila2.cli import plugin_option

FORMATS = ("auto", "webdataset", "llava", "parquet", "folder")


@click.command("ingest")
@click.argument("src", type=click.Path(exists=True))
@click.option("--out", "out", required=True, type=click.Path(file_okay=False),
              help="Dataset folder to create (or an interrupted ingest of SRC to resume).")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="auto", show_default=True,
              help="Input format; auto guesses from the file names.")
@click.option("--shard-size", type=click.IntRange(min=1), default=1000, show_default=True,
              help="Samples per image shard.")
@click.option("--max-pixels", type=click.IntRange(min=1), default=None,
              help="Refuse larger images (decompression bombs). Default: about 89.5 megapixels.")
@click.option("--image-root", type=click.Path(exists=True, file_okay=False), default=None,
              help="LLaVA/Parquet: the folder image paths are relative to.")
@click.option("--image-column", default=None, help="Parquet: the image column.")
@click.option("--caption-column", default=None, help="Parquet: the caption column.")
@click.option("--id-column", default=None, help="Parquet: the id column.")
@click.option("--caption-layer", default="original", show_default=True,
              help="Name of the caption layer the source's captions go to.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@plugin_option
def command(src: str, out: str, fmt: str, shard_size: int, max_pixels: int | None,
            image_root: str | None, image_column: str | None, caption_column: str | None,
            id_column: str | None, caption_layer: str, quiet: bool) -> None:
    """Ingest SRC: WebDataset tars (img2dataset), LLaVA JSON + images, Parquet / HF datasets,
    or a folder of images with optional .txt captions.

    Captions go to the layer `original` (or --caption-layer), LLaVA conversations to
    `conversations`. Bad inputs are
    skipped or normalised, with their reasons in OUT/rejects.jsonl. Rerun the same command after
    an interruption to resume.
    """
    from vila2.data import DEFAULT_MAX_PIXELS, StoreError
    from vila2.data.ingester import ingest

    try:
        report = ingest(src, out, fmt, shard_size=shard_size,
                        max_pixels=max_pixels or DEFAULT_MAX_PIXELS, image_root=image_root,
                        image_column=image_column, caption_column=caption_column,
                        id_column=id_column, caption_layer=caption_layer, progress=not quiet)
    except StoreError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(report.summary())
