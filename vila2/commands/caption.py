"""``vila2 caption``: not built yet."""

from __future__ import annotations

import click


@click.command("caption", context_settings={"ignore_unknown_options": True})
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def command(args: tuple[str, ...]) -> None:
    """(not built yet)"""
    raise click.ClickException("`vila2 caption` is not built yet")
