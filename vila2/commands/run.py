"""``vila2 run RECIPE``: the whole VILA² loop from a recipe; a rerun resumes finished steps."""

from __future__ import annotations

from pathlib import Path

import click

from vila2.cli import plugin_option


def resolve_recipe(recipe: str) -> Path:
    """A recipe file, or the name of a packaged recipe (``demo``, ``demo-quick``)."""
    from vila2.pipeline.recipe import RecipeError, packaged_recipe

    path = Path(recipe)
    if path.exists() or path.suffix in {".yaml", ".yml"} or "/" in recipe:
        return path
    try:
        return packaged_recipe(recipe)
    except RecipeError as exc:
        raise click.ClickException(f"{recipe}: no such recipe file, and {exc}") from None


def run_in_folder(recipe_file: Path, out: Path, *, rerun_changed: bool) -> dict:
    """Load, check and run a recipe; user-fixable problems become one clear error line."""
    import time

    from vila2.errors import RecipeError, StepChanged, Vila2Error
    from vila2.pipeline.loop import run_recipe
    from vila2.pipeline.recipe import load_recipe

    started = time.perf_counter()
    recipe = load_recipe(recipe_file)  # a bad recipe is one line from the entry point
    click.echo(f"vila2 run: recipe {recipe_file} -> {out}")
    try:
        results = run_recipe(recipe, out, rerun_changed=rerun_changed, log=click.echo)
    except (RecipeError, StepChanged):
        raise
    except Vila2Error as exc:
        # the failed step is already named in the log; finished steps are kept for a rerun
        raise click.ClickException(f"{exc}\nFix the cause and rerun the same command to resume.") from None
    click.echo(f"finished in {time.perf_counter() - started:.0f} s")
    return results


def check_recipe(recipe_file: Path) -> None:
    """Everything a run would read, checked without running a step or writing a file."""
    import tempfile

    from vila2.pipeline.recipe import load_recipe
    from vila2.pipeline.run import Run

    recipe = load_recipe(recipe_file)
    with tempfile.TemporaryDirectory() as scratch:
        run = Run(recipe, scratch, log=click.echo)
        specialists = run.check()
        for line in run.check_inputs():
            click.echo(f"  ok  {line}")
    names = ", ".join(s.name for s in specialists) or "none"
    click.echo(f"recipe {recipe_file}: ok (specialists: {names}; evaluators: "
               f"{', '.join(e.name for e in recipe.evaluators)})")


@click.command("run")
@click.argument("recipe")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Run folder (default: runs/<recipe name>). An existing run resumes.")
@click.option("--rerun-changed", is_flag=True,
              help="Rerun the steps whose recipe parts changed since the run folder was made.")
@click.option("--check", is_flag=True,
              help="Only check the recipe: its plugins, components, datasets, layers and paths.")
@plugin_option
def command(recipe: str, out: Path | None, rerun_changed: bool, check: bool) -> None:
    """Run the VILA² loop of RECIPE (a YAML file, or a packaged recipe: demo, demo-quick).

    Round 0 trains on the original data; each round recaptions the pretraining images with the
    previous model and retrains from the starting point; then the specialists add their answers
    and the generalist is trained once more. Every model is evaluated; report.md, results.json
    and plots/ land in the run folder. Rerunning the same command resumes after the last
    finished step.
    """
    file = resolve_recipe(recipe)
    if check:
        check_recipe(file)
        return
    run_in_folder(file, out or Path("runs") / file.stem, rerun_changed=rerun_changed)
