"""Meta-tests, as datasette has them: every hook is documented and every hook is tested."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest

import vila2
from vila2 import hookspecs
from vila2.plugins import Host

HOOKS = sorted(
    name for name, obj in vars(hookspecs).items()
    if inspect.isfunction(obj) and hasattr(obj, "vila2_spec")
)


def test_hooks_are_found():
    assert {"register_captioners", "register_filters", "register_specialists",
            "register_evaluators", "register_commands", "finetune_specialist",
            "on_round_end"} <= set(HOOKS)
    assert Host(entry_points=False, builtins=False).hook_names() == HOOKS


@pytest.mark.parametrize("hook", HOOKS)
def test_every_hook_is_documented_with_an_example(hook):
    doc = inspect.getdoc(getattr(hookspecs, hook)) or ""
    assert len(doc.splitlines()[0]) > 20, f"{hook} needs a one-line summary"
    assert "Example::" in doc and "@vila2.hookimpl" in doc, f"{hook} needs an example"


def _call_through_the_host(hook: str, host: Host, tmp_path: Path) -> None:
    """Drive the host code that calls ``hook`` — the same code a real run goes through."""
    from vila2.pipeline.recipe import parse_recipe
    from vila2.pipeline.run import Run, Sources

    kinds = {"register_captioners": "captioner", "register_filters": "filter",
             "register_specialists": "specialist", "register_evaluators": "evaluator",
             "register_executors": "executor"}
    if hook in kinds:
        host.components(kinds[hook])
        return
    if hook == "register_commands":
        from vila2 import cli
        from vila2.plugins import set_host

        previous = set_host(host)
        try:
            cli.main(["--help"])
        finally:
            set_host(previous)
        return
    recipe = parse_recipe({"data": {"world": {"seed": 0, "size": "tiny"}}, "model": {"preset": "llava-tiny"},
                           "training": {"stages": [{"name": "sft", "data": ["sft"], "steps": 1}]},
                           "specialists": {"names": []}, "evaluators": ["vqa"]},
                          source="r.yaml", base_dir=tmp_path)
    run = Run(recipe, tmp_path / "run", host=host, log=lambda _: None)
    if hook == "on_step_end":
        run.folder.run("a-step", {}, lambda out: {"n": 1})
    elif hook == "on_round_end":
        run.round_ended(0, "round0/model", {})
    elif hook == "on_run_end":
        from vila2.pipeline.report import collect

        run.finish(collect(run.root, [], name="r", run_dir=str(run.root), stop=None, best_round=None, errors=[]))
    elif hook == "finetune_specialist":
        spec = vila2.Specialist("toy", prepare_data=lambda source, world, out: out, prompts=("Describe.",))
        run.folder.fingerprints["round0.train"] = "0"
        src = Sources(pretrain="p", alt="alt", sft=(), world=None)
        run.finetune_specialist(spec, src, "start-model", "round0.train")
    else:
        raise AssertionError(f"no host path known for the hook {hook}: add one here")


@pytest.mark.parametrize("hook", HOOKS)
def test_every_hook_is_called_by_the_host(hook, tmp_path):
    """Each hook, implemented by a plugin, is really called by the host's own code path."""
    calls: list[dict] = []
    spec = getattr(hookspecs, hook)
    params = list(inspect.signature(spec).parameters)

    def record(**kwargs):
        calls.append(kwargs)
        return str(tmp_path / "adapter") if hook == "finetune_specialist" else None

    # pluggy passes the arguments an implementation names, so name them all
    namespace = {"record": record}
    exec(f"def impl({', '.join(params)}):\n    return record({', '.join(f'{p}={p}' for p in params)})", namespace)
    impl = namespace["impl"]
    plugin = type("Recorder", (), {hook: staticmethod(vila2.hookimpl(impl, specname=hook))})()
    host = Host(entry_points=False)
    host.register(plugin, name="recorder")
    _call_through_the_host(hook, host, tmp_path)
    assert calls, f"the host never called {hook}"
    assert set(calls[0]) == set(params)


def test_finetune_specialist_is_firstresult():
    assert hookspecs.finetune_specialist.vila2_spec["firstresult"] is True
