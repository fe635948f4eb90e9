"""``vila2 train``: not built yet."""

from __future__ import annotations

import click


@click.command("train", context_settings={"ignore_unknown_options": True})
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def command(args: tuple[str, ...]) -> None:
    """(not built yet)"""
    raise click.ClickException("`vila2 train` is not built yet")
