"""``vila2 caption``: recaption a dataset's images into a new caption layer."""

from __future__ import annotations

import json
import re
from typing import Any

import click

from vila2.cli import plugin_option

_PAIR_SPLIT = re.compile(r",(?=\s*[A-Za-z_][\w.\-]*\s*=)")


def _value(text: str) -> Any:
    """``8`` -> 8, ``true`` -> True, ``[".", "!"]`` -> list; anything else stays a string."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def _pairs(text: str, what: str) -> dict[str, Any]:
    """``a=1,b=[1,2]`` -> ``{"a": 1, "b": [1, 2]}``: a comma starts a new pair only before ``KEY=``."""
    out: dict[str, Any] = {}
    for part in filter(None, (p.strip() for p in _PAIR_SPLIT.split(text))):
        key, sep, value = part.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(f"{part!r} is not KEY=VALUE", param_hint=what)
        out[key.strip()] = _value(value.strip())
    return out


def parse_filter(spec: str) -> str | dict[str, Any]:
    """``word_count`` or ``word_count:min=8,max=300`` -> a recipe filter entry."""
    name, sep, settings = spec.partition(":")
    if not sep:
        return name
    return {"name": name, **_pairs(settings, "--filter")}


@click.command("caption")
@click.argument("dataset", type=click.Path(exists=True, file_okay=False))
@click.option("--model", "-m", default=None,
              help="Model folder the captioner loads (the self captioner needs one).")
@click.option("--layer", "-l", required=True, help="Name of the caption layer to write (or resume).")
@click.option("--captioner", default="self", show_default=True, help="Registered captioner name.")
@click.option("--prompts", default="long", show_default=True,
              help="Prompt set: long, brief, or a file with one prompt per line.")
@click.option("--filter", "filters", multiple=True, metavar="NAME[:KEY=VALUE,...]",
              help="Apply a filter, e.g. --filter word_count:min=8 (repeatable, applied in order).")
@click.option("--batch-size", "-b", default=32, show_default=True, type=click.IntRange(min=1))
@click.option("--max-new-tokens", default=128, show_default=True, type=click.IntRange(min=1))
@click.option("--round", "round_", type=int, default=None, help="Self-augment round (provenance).")
@click.option("--set", "settings", multiple=True, metavar="KEY=VALUE",
              help="Captioner setting, e.g. --set do_sample=true --set temperature=0.7 (repeatable).")
@click.option("--seed", default=0, show_default=True, help="Seed for prompt choice and sampling.")
@click.option("--on-error", type=click.Choice(["skip", "stop"]), default="skip", show_default=True,
              help="skip: record a failing sample and go on; stop: stop the run.")
@click.option("--executor", default="local", show_default=True,
              help="Where the shards run: local (this process; each rank's share under accelerate "
                   "launch) or a plugin's executor, e.g. ray (pip install vila2-ray).")
@click.option("--address", default=None,
              help="The executor's cluster address (ray: host:6379 or ray://host:10001; "
                   "default: RAY_ADDRESS, else a local cluster).")
@click.option("--executor-set", "executor_settings", multiple=True, metavar="KEY=VALUE",
              help="Executor setting, e.g. --executor-set actors=8 (repeatable).")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@plugin_option
def command(dataset: str, model: str | None, layer: str, captioner: str, prompts: str, filters: tuple[str, ...],
            batch_size: int, max_new_tokens: int, round_: int | None, settings: tuple[str, ...],
            seed: int, on_error: str, executor: str, address: str | None,
            executor_settings: tuple[str, ...], as_json: bool) -> None:
    """Caption every image of DATASET into the layer --layer; a rerun resumes an unfinished layer.

    Runs on many processes with `accelerate launch -m vila2 caption ...`: each takes its shards.
    With `--executor ray [--address ADDR]` (vila2-ray) a Ray cluster's actors take them.
    """
    from vila2.captioning.engine import CaptionError, caption_dataset
    from vila2.data import StoreError
    from vila2.distributed import process_state

    captioner_settings: dict[str, Any] = {}
    for item in settings:
        captioner_settings.update(_pairs(item, "--set"))
    run_settings: dict[str, Any] = {}
    for item in executor_settings:
        run_settings.update(_pairs(item, "--executor-set"))
    if address is not None:
        run_settings["address"] = address
    try:
        summary = caption_dataset(
            dataset, model=model, layer=layer, captioner=captioner, prompts=prompts,
            filters=[parse_filter(f) for f in filters], round=round_, batch_size=batch_size,
            max_new_tokens=max_new_tokens, settings=captioner_settings, on_error=on_error, seed=seed,
            executor=executor, executor_settings=run_settings,
        )
    except (CaptionError, StoreError, ValueError, FileNotFoundError) as exc:
        raise click.ClickException(str(exc)) from exc
    if process_state().is_main_process:
        click.echo(json.dumps(summary.to_dict(), indent=2, sort_keys=True) if as_json else str(summary))
