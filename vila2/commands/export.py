"""``vila2 export``: not built yet."""

from __future__ import annotations

import click


@click.command("export", context_settings={"ignore_unknown_options": True})
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def command(args: tuple[str, ...]) -> None:
    """(not built yet)"""
    raise click.ClickException("`vila2 export` is not built yet")
