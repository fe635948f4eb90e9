"""Every hook vila2 calls. Plugins implement them with ``@vila2.hookimpl``.

Hooks only grow by adding arguments (an implementation may take fewer); none is ever renamed.
"""

from __future__ import annotations

from typing import Any

from vila2 import hookspec


@hookspec
def register_captioners(register: Any) -> None:
    """Add captioners with ``register(vila2.Captioner(...))``.

    Example::

        @vila2.hookimpl
        def register_captioners(register):
            register(vila2.Captioner("upper", load=lambda model, settings: lambda images, prompts:
                                     ["A PICTURE"] * len(images)))
    """


@hookspec
def register_filters(register: Any) -> None:
    """Add caption filters with ``register(vila2.Filter(...))`` or ``register(fn)``.

    Example::

        @vila2.hookimpl
        def register_filters(register):
            register(vila2.Filter("no_urls", check=lambda sample, text: "http" not in text))
    """


@hookspec
def register_specialists(register: Any) -> None:
    """Add domain specialists with ``register(vila2.Specialist(...))``.

    Example::

        @vila2.hookimpl
        def register_specialists(register):
            register(vila2.Specialist("counting", prepare_data=make_counting_set,
                                      prompts=("Count every object in the image.",)))
    """


@hookspec
def register_evaluators(register: Any) -> None:
    """Add evaluators with ``register(vila2.Evaluator(...))``.

    Example::

        @vila2.hookimpl
        def register_evaluators(register):
            register(vila2.Evaluator("always-half", benchmarks=("toy",),
                                     run=lambda model, benchmark, **kw: vila2.EvalResult(
                                         benchmark, {"accuracy": 0.5}, "accuracy", n=1)))
    """


@hookspec
def register_executors(register: Any) -> None:
    """Add executors, the engines that run caption shards, with ``register(Executor(...))``.

    An executor's ``run(job, settings)`` captions ``job.pending()`` with one captioner per worker
    (``job.load()``) and ``job.caption_shard(shard, caption)`` per shard, and returns
    ``(samples captioned, seconds)``; see :class:`vila2.components.Executor`. It is chosen with
    ``vila2 caption --executor NAME`` or a recipe's ``self_augment.executor``; the built-in
    ``local`` runs in this process (each rank's shards under ``accelerate launch``).

    Example::

        from concurrent.futures import ProcessPoolExecutor
        from vila2.components import Executor

        loaded = None

        def start(job):  # one captioner per worker process
            global loaded
            loaded = job.load()

        def work(job, shard):
            return job.caption_shard(shard, loaded)

        def run_processes(job, settings):
            shards = job.pending()
            with ProcessPoolExecutor(settings["processes"], initializer=start, initargs=(job,)) as pool:
                return sum(pool.map(work, [job] * len(shards), shards)), 0.0

        @vila2.hookimpl
        def register_executors(register):
            register(Executor("processes", run=run_processes, settings={"processes": 4}))
    """


@hookspec
def register_commands(cli: Any) -> None:
    """Add sub-commands to the ``vila2`` click group.

    Example::

        @vila2.hookimpl
        def register_commands(cli):
            @cli.command()
            def hello():
                click.echo("hello")
    """


@hookspec(firstresult=True)
def finetune_specialist(
    specialist: Any, base_model: str, data: str, out_dir: str, settings: dict[str, Any]
) -> str | None:
    """Fine-tune ``specialist`` from ``base_model`` on the dataset folder ``data``; return the
    folder of a model that ``vila2.models.checkpoint.load`` opens (a PEFT adapter folder or a full model).

    The first non-``None`` answer wins; the built-in answer is LoRA with peft. A plugin returns
    ``None`` to decline (for example, for specialists it does not handle).

    Example::

        @vila2.hookimpl(tryfirst=True)
        def finetune_specialist(specialist, base_model, data, out_dir, settings):
            if specialist.name != "ocr":
                return None
            return my_full_finetune(base_model, data, out_dir)
    """


@hookspec
def on_step_end(step: str, run_dir: str, outputs: dict[str, Any]) -> None:
    """Observe the pipeline: called after each finished step (train, caption, evaluate...).

    Example::

        @vila2.hookimpl
        def on_step_end(step, run_dir, outputs):
            print("done:", step)
    """


@hookspec
def on_round_end(round: int, model: str, results: dict[str, Any], run_dir: str) -> None:
    """Observe the self-augment loop: called when round ``round`` is trained and evaluated.

    ``results`` maps benchmark name to its result dict (see ``vila2.EvalResult.to_dict``).

    Example::

        @vila2.hookimpl
        def on_round_end(round, model, results, run_dir):
            wandb.log({f"{k}/score": v["metrics"][v["primary"]] for k, v in results.items()})
    """


@hookspec
def on_run_end(run_dir: str, report: dict[str, Any]) -> None:
    """Observe the end of a ``vila2 run``: ``report`` is what ``results.json`` holds.

    Example::

        @vila2.hookimpl
        def on_run_end(run_dir, report):
            notify(f"VILA² run finished in {run_dir}")
    """
