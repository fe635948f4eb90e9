"""``vila2 train CONFIG.yaml``: one training run from a YAML file of ``TrainConfig`` fields."""

from __future__ import annotations

from pathlib import Path

import click

from vila2.cli import plugin_option


def read_config(path: Path) -> dict:
    """The YAML mapping in ``path``; a clear error for anything else."""
    import yaml

    try:
        values = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise click.ClickException(f"{path}: cannot read YAML ({exc})") from exc
    if not isinstance(values, dict):
        raise click.ClickException(f"{path}: expected a mapping of training settings (see docs/TRAINING.md)")
    return values


@click.command("train")
@click.argument("config", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--out", help="Output folder (overrides `out:` in CONFIG).")
@click.option("--model", "-m", help="Start checkpoint (overrides `model:` in CONFIG).")
@click.option("--max-steps", type=click.IntRange(min=1), help="Stop after this many optimizer steps.")
@plugin_option
def command(config: Path, out: str | None, model: str | None, max_steps: int | None) -> None:
    """Train a model on a mixture of dataset layers (align, pretrain or sft stage).

    CONFIG is a YAML file of training settings (docs/TRAINING.md). A rerun with the same
    settings resumes from the last checkpoint. Runs on many processes with
    `accelerate launch -m vila2 train CONFIG`.
    """
    from vila2.training.trainer import TrainConfig, TrainError, train

    values = read_config(config)
    overrides = {"out": out, "model": model, "max_steps": max_steps}
    values.update({k: v for k, v in overrides.items() if v is not None})
    try:
        result = train(TrainConfig.parse(values, str(config)))
    except (TrainError, ValueError) as exc:
        raise click.ClickException(str(exc)) from exc
    from vila2.distributed import process_state

    if process_state().is_main_process:
        click.echo(f"model saved to {result}")
