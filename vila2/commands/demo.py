"""``vila2 demo``: the whole VILA² loop on the embedded synthetic world, then the table."""

from __future__ import annotations

from pathlib import Path

import click

from vila2.cli import plugin_option


@click.command("demo")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Run folder (default: vila2-demo, or vila2-demo-quick with --quick).")
@click.option("--quick", is_flag=True, help="A tiny world and brief training: every step in under 3 minutes (the full demo: about 9 on 2 cores).")
@click.option("--rerun-changed", is_flag=True, help="Rerun steps whose recipe changed since an earlier demo.")
@plugin_option
def command(out: Path | None, quick: bool, rerun_changed: bool) -> None:
    """Write the embedded world, run self-augment rounds and the installed specialists on it,
    and print the table (report.md and plots/ in the run folder).

    No download: the world's images, captions and benchmarks are generated locally. The
    specialist rows follow what is installed (`vila2 plugins`). Rerunning resumes.
    """
    from vila2.commands.run import run_in_folder
    from vila2.pipeline.recipe import packaged_recipe

    name = "demo-quick" if quick else "demo"
    run_in_folder(packaged_recipe(name), out or Path(f"vila2-{name}"), rerun_changed=rerun_changed)
