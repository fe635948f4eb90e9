"""``vila2 export``: dataset layers as LLaVA JSON + images, or as Parquet for ``datasets``."""

from __future__ import annotations

import click

from vila2.cli import plugin_option


def _names(values: tuple[str, ...]) -> list[str]:
    return [name.strip() for value in values for name in value.split(",") if name.strip()]


@click.command("export")
@click.argument("dataset", type=click.Path(exists=True, file_okay=False))
@click.option("--layers", "layers", multiple=True, required=True,
              help="Layers to export, comma-separated or repeated (e.g. original,recap-r1).")
@click.option("--format", "fmt", type=click.Choice(["llava", "parquet"]), default="llava",
              show_default=True)
@click.option("--out", "out", required=True, type=click.Path(file_okay=False),
              help="A new folder.")
@click.option("--template", type=click.Choice(["concat", "replace", "qa", "conversation"]),
              default=None, help="How layers become a conversation (default: conversation for a "
                                 "conversation layer, else concat).")
@click.option("--prompt", default=None, help="The caption question (default: drawn per sample).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--quiet", is_flag=True, help="No progress bar.")
@plugin_option
def command(dataset: str, layers: tuple[str, ...], fmt: str, out: str, template: str | None,
            prompt: str | None, seed: int, quiet: bool) -> None:
    """Export layers of DATASET as training data: LLaVA JSON + images folder, or Parquet that
    `datasets.load_dataset("parquet", data_dir=OUT)` reads."""
    from vila2.data.exporter import export

    # a missing layer or a malformed sample is a Vila2Error: the entry point prints it in one line
    report = export(dataset, out, layers=_names(layers), template=template, format=fmt,
                    prompt=prompt, seed=seed, progress=not quiet)
    click.echo(report.summary())
