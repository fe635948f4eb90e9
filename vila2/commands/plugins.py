"""``vila2 plugins``: what is installed, what it registers, and what failed."""

from __future__ import annotations

import json

import click

from vila2.cli import plugin_option


@click.command("plugins")
@click.option("--all", "show_all", is_flag=True, help="Include built-in plugins.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@plugin_option
def command(show_all: bool, as_json: bool) -> None:
    """List plugins: name, distribution, version, hooks, components and status."""
    from vila2.plugins import get_host

    infos = get_host().plugin_infos(include_builtins=show_all)
    if as_json:
        click.echo(json.dumps([i.to_dict() for i in infos], indent=2))
        return
    if not infos:
        click.echo("No plugins installed. `vila2 plugins --all` shows the built-ins.")
        return
    for info in infos:
        dist = f"{info.distribution} {info.version or ''}".strip() if info.distribution else info.source
        status = info.status + (f": {info.reason}" if info.reason else "")
        click.echo(f"{info.name}  [{dist}]  {status}")
        if info.hooks:
            click.echo(f"  hooks: {', '.join(info.hooks)}")
        for kind, names in sorted(info.components.items()):
            click.echo(f"  {kind}s: {', '.join(names)}")
