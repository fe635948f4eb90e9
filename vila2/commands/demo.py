"""``vila2 demo``: not built yet."""

from __future__ import annotations

import click


@click.command("demo", context_settings={"ignore_unknown_options": True})
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def command(args: tuple[str, ...]) -> None:
    """(not built yet)"""
    raise click.ClickException("`vila2 demo` is not built yet")
