"""Bad configuration: fuzzed recipe files are refused with one message naming the key, never a
traceback — through the recipe loader and through `vila2 run` itself."""

from __future__ import annotations

import copy
import tempfile
from pathlib import Path
from typing import Any

import yaml
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vila2.cli import cli
from vila2.pipeline.recipe import RecipeError, load_recipe

VALID: dict[str, Any] = {
    "name": "fuzz",
    "data": {"world": {"seed": 0, "size": "tiny"}},
    "model": {"preset": "llava-tiny"},
    "training": {"batch_size": 8, "stages": [{"name": "sft", "data": ["captions", "sft"], "steps": 2}]},
    "self_augment": {"rounds": 1, "filters": ["repeated_sentence"], "stop_when": {"benchmark": "vqa"}},
    "evaluators": [{"name": "vqa", "limit": 4}],
}
# the mappings whose keys are fixed, by path (a list index as an int)
STRICT: list[tuple[Any, ...]] = [(), ("data",), ("data", "world"), ("model",), ("training",),
                                 ("training", "stages", 0), ("self_augment",),
                                 ("self_augment", "stop_when"), ("evaluators", 0)]
INTEGERS = [("seed",), ("data", "world", "seed"), ("data", "world", "image_size"), ("training", "batch_size"),
            ("training", "stages", 0, "steps"), ("self_augment", "rounds"), ("evaluators", 0, "limit")]
TEXTS = [("name",), ("model", "preset"), ("self_augment", "captioner"), ("evaluators", 0, "name"),
         ("self_augment", "stop_when", "benchmark")]
LISTS = [("plugins",), ("evaluators",), ("training", "stages"), ("self_augment", "filters"),
         ("training", "stages", 0, "data")]
CHOICES = [("on_error",), ("self_augment", "template"), ("training", "stages", 0, "name")]
#: (path, a value out of range)
RANGES = [(("self_augment", "rounds"), 21), (("training", "batch_size"), 0), (("evaluators", 0, "limit"), 0),
          (("data", "world", "image_size"), 8), (("training", "lr"), -1.0), (("training", "warmup_ratio"), 2.0)]
REQUIRED = [("data",), ("model",), ("training",), ("evaluators",), ("training", "stages"),
            ("training", "stages", 0, "name"), ("evaluators", 0, "name")]
PATHS = [("self_augment", "prompts"), ("plugins", 0)]  # must name an existing file (or a prompt set)


def dotted(path: tuple[Any, ...]) -> str:
    """``("training", "stages", 0, "steps")`` -> ``training.stages[0].steps`` (as errors write it)."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _set(recipe: dict[str, Any], path: tuple[Any, ...], value: Any) -> None:
    node: Any = recipe
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = value


def _delete(recipe: dict[str, Any], path: tuple[Any, ...]) -> None:
    node: Any = recipe
    for part in path[:-1]:
        node = node[part]
    del node[path[-1]]


def _node(recipe: dict[str, Any], path: tuple[Any, ...]) -> Any:
    for part in path:
        recipe = recipe[part]
    return recipe


keys = st.one_of(
    st.text(min_size=1, max_size=20),
    # names a schema library might treat specially
    st.sampled_from(["int", "str", "list", "dict", "bool", "none", "float", "a[0]", "__class__", "base_dir",
                     "model_config", "-", "0"]),
)
scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=30))
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
    st.text(max_size=8), inner, max_size=3), max_leaves=8)
containers = st.one_of(st.lists(scalars, min_size=1, max_size=3),
                       st.dictionaries(st.text(max_size=5), scalars, min_size=1, max_size=2))
bad_paths = st.one_of(st.text(min_size=1, max_size=300).filter(lambda t: t not in ("long", "brief")),
                      st.builds(lambda a, b: f"{a}\x00{b}", st.text(max_size=5), st.text(max_size=5)),
                      st.integers(min_value=256, max_value=5000).map(lambda n: "p" * n))


def _parses_as_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


# booleans too: YAML reads `limit: yes` as true, which must not become a limit of 1
not_numbers = st.one_of(containers, st.booleans(),
                        st.text(min_size=1, max_size=20).filter(lambda t: not _parses_as_number(t)))


@st.composite
def bad_recipes(draw: st.DrawFn) -> tuple[dict[str, Any], str, str]:
    """``(recipe, what was broken, the key path its error must name)``."""
    recipe = copy.deepcopy(VALID)
    kind = draw(st.sampled_from(["unknown key", "not a number", "not text", "not a list", "not a choice",
                                 "out of range", "missing", "bad path", "bad bool"]))
    if kind == "unknown key":
        where = draw(st.sampled_from(STRICT))
        node = _node(recipe, where)
        key = draw(keys.filter(lambda k: k not in node and k not in _accepted(where)))
        node[key] = draw(values)
        return recipe, kind, dotted((*where, key))
    if kind == "not a number":
        path = draw(st.sampled_from(INTEGERS))
        _set(recipe, path, draw(not_numbers))
    elif kind == "not text":
        path = draw(st.sampled_from(TEXTS))
        _set(recipe, path, draw(containers))
    elif kind == "not a list":
        path = draw(st.sampled_from(LISTS))
        _set(recipe, path, draw(st.one_of(st.integers(), st.floats(allow_nan=False), st.booleans(),
                                          containers.filter(lambda v: isinstance(v, dict)))))
    elif kind == "not a choice":
        path = draw(st.sampled_from(CHOICES))
        _set(recipe, path, draw(st.text(max_size=20).filter(
            lambda t: t not in {"skip", "stop", "concat", "replace", "qa", "align", "pretrain", "sft"})))
    elif kind == "out of range":
        path, value = draw(st.sampled_from(RANGES))
        _set(recipe, path, value)
    elif kind == "missing":
        path = draw(st.sampled_from(REQUIRED))
        _delete(recipe, path)
    elif kind == "bad bool":
        path = ("model", "trust_remote_code")
        _set(recipe, path, draw(st.one_of(st.text(min_size=2, max_size=10).filter(lambda t: t.lower() not in {
            "true", "false", "yes", "no", "on", "off"}), st.lists(st.booleans(), min_size=1, max_size=2))))
    else:
        path = draw(st.sampled_from(PATHS))
        if path[0] == "plugins":
            recipe["plugins"] = [None]  # the one entry the fuzzed path goes into
        _set(recipe, path, draw(bad_paths))
    return recipe, kind, dotted(path)


def _accepted(where: tuple[Any, ...]) -> set[str]:
    """Keys the strict mapping at ``where`` accepts (a fuzzed key must not be one of them)."""
    from vila2.pipeline.recipe import Recipe, _model_in

    model: Any = Recipe
    for part in where:
        if isinstance(part, int):
            continue
        model = _model_in(model.model_fields[part].annotation)
    return set(model.model_fields)


def _refused(text: str, folder: Path) -> str:
    """The error ``vila2 run`` gives for a recipe file holding ``text``; it must be clean."""
    file = folder / "recipe.yaml"
    file.write_text(text, encoding="utf-8")
    try:
        load_recipe(file)
    except RecipeError as exc:
        loader = str(exc)
    else:
        raise AssertionError(f"accepted:\n{text}")
    result = CliRunner().invoke(cli, ["run", str(file), "--out", str(folder / "run")])
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), (
        f"{result.exception!r}\n{result.output}")
    assert "Error:" in result.output and "Traceback" not in result.output
    assert not (folder / "run" / "steps").exists()
    assert loader.startswith(str(file))
    return loader


FUZZ = settings(derandomize=True, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])


def test_fuzzed_recipe_values_are_refused_naming_the_key(fresh_host: Any, tally: Any) -> None:
    seen: dict[str, int] = {}

    @settings(FUZZ, max_examples=300)
    @given(case=bad_recipes())
    def check(case: tuple[dict[str, Any], str, str]) -> None:
        recipe, kind, key = case
        with tempfile.TemporaryDirectory() as folder:
            message = _refused(yaml.safe_dump(recipe, allow_unicode=True), Path(folder))
        assert key in message, f"{kind}: the error does not name {key!r}:\n{message}"
        seen[kind] = seen.get(kind, 0) + 1

    check()
    tally("fuzzed recipe values (unknown keys, wrong types, out of range, missing, bad paths)",
          sum(seen.values()), "refused with one message naming the key; no traceback", 0)


def test_yaml_garbage_is_refused_naming_the_file(fresh_host: Any, tally: Any) -> None:
    count = [0]

    @settings(FUZZ, max_examples=200)
    @given(text=st.one_of(
        st.text(max_size=200),
        st.binary(max_size=80).map(lambda b: b.decode("latin-1")),
        st.lists(st.sampled_from(["data:", "  world:", "- ", "{", "}", "[", "]", ": :", "&a", "*a", "!!str",
                                  "'", '"', "\t", "---", "...", "%YAML 1.1", "? x", "model: {preset: ",
                                  "evaluators: [vqa", "\x00", "\ufeff"]), max_size=12).map("\n".join),
        values.map(lambda v: yaml.safe_dump(v, allow_unicode=True)),
    ))
    def check(text: str) -> None:
        with tempfile.TemporaryDirectory() as folder:
            _refused(text, Path(folder))
        count[0] += 1

    check()
    tally("YAML garbage and non-mapping recipe files", count[0],
          "refused with one message naming the file (and line); no traceback", 0)
