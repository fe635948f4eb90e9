"""``vila2 run``: not built yet."""

from __future__ import annotations

import click


@click.command("run", context_settings={"ignore_unknown_options": True})
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def command(args: tuple[str, ...]) -> None:
    """(not built yet)"""
    raise click.ClickException("`vila2 run` is not built yet")
