"""The plugin host: discovery, failure isolation, allow/block lists, strict mode, collisions."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import vila2
from vila2.plugins import Host, PluginError

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def make_distribution(root: Path, dist: str, entry: str, module: str, source: str) -> None:
    """A real installed distribution: a module plus a ``*.dist-info`` with ``entry_points.txt``."""
    (root / f"{module}.py").write_text(textwrap.dedent(source))
    info = root / f"{dist.replace('-', '_')}-1.2.3.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.2.3\n")
    (info / "entry_points.txt").write_text(f"[vila2]\n{entry} = {module}\n")


GOOD = """
import vila2

@vila2.hookimpl
def register_filters(register):
    register(vila2.Filter("short", check=lambda sample, text: len(text.split()) < 5))
"""
BROKEN_IMPORT = """
raise RuntimeError("needs a GPU driver")
"""
MISSPELT = """
import vila2

@vila2.hookimpl
def register_filter(register):
    pass
"""
DUPLICATE = """
import vila2

@vila2.hookimpl
def register_filters(register):
    register(vila2.Filter("short", check=lambda sample, text: True))
"""


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "site"
    root.mkdir()
    make_distribution(root, "vila2-good", "good", "vila2_good_mod", GOOD)
    make_distribution(root, "vila2-broken", "broken", "vila2_broken_mod", BROKEN_IMPORT)
    make_distribution(root, "vila2-misspelt", "misspelt", "vila2_misspelt_mod", MISSPELT)
    make_distribution(root, "vila2-dup", "dup", "vila2_dup_mod", DUPLICATE)
    monkeypatch.syspath_prepend(str(root))
    monkeypatch.delenv("VILA2_STRICT_PLUGINS", raising=False)
    monkeypatch.delenv("VILA2_DISABLE_PLUGINS", raising=False)
    return root


def allow(monkeypatch: pytest.MonkeyPatch, *names: str) -> None:
    monkeypatch.setenv("VILA2_LOAD_PLUGINS", ",".join(names))


def test_entry_point_discovery_finds_installed_distribution(site, monkeypatch):
    allow(monkeypatch, "good")
    host = Host(builtins=False)
    info = host.infos["good"]
    assert (info.status, info.distribution, info.version) == ("loaded", "vila2-good", "1.2.3")
    assert host.filters()["short"].plugin == "good"
    assert info.components == {"filter": ["short"]}
    assert info.hooks == ["register_filters"]


def test_import_error_is_reported_with_name_and_distribution_and_skipped(site, monkeypatch, capsys):
    allow(monkeypatch, "good", "broken")
    host = Host(builtins=False)
    err = capsys.readouterr().err
    assert "plugin 'broken' (distribution vila2-broken) failed" in err
    assert "needs a GPU driver" in err
    assert host.infos["broken"].status == "failed"
    assert "short" in host.filters()  # the others still load


def test_misspelt_hook_names_plugin_and_suggests(site, monkeypatch, capsys):
    allow(monkeypatch, "good", "misspelt")
    host = Host(builtins=False)
    info = host.infos["misspelt"]
    assert info.status == "failed"
    assert "unknown hook 'register_filter'" in info.reason
    assert "did you mean 'register_filters'" in info.reason
    assert "plugin 'misspelt'" in capsys.readouterr().err
    assert "short" in host.filters()
    host.check_pending()  # the misspelt plugin was refused whole, so nothing is pending


def test_duplicate_component_names_both_plugins(site, monkeypatch, capsys):
    allow(monkeypatch, "good", "dup")
    host = Host(builtins=False)
    filters = host.filters()
    err = capsys.readouterr().err
    assert "filter name 'short' is registered by both plugin 'dup' and plugin 'good'" in err or (
        "filter name 'short' is registered by both plugin 'good' and plugin 'dup'" in err
    )
    assert list(filters) == ["short"]  # the first plugin's component stays usable


@pytest.mark.parametrize("name", ["broken", "misspelt", "dup"])
def test_strict_mode_makes_each_failure_fatal(site, monkeypatch, name):
    allow(monkeypatch, "good", name)
    monkeypatch.setenv("VILA2_STRICT_PLUGINS", "1")
    with pytest.raises(PluginError, match=f"'{name}'|plugin {name!r}|'good'"):
        Host(builtins=False).filters()


@pytest.mark.parametrize("selector", ["good", "vila2-good"])
def test_allow_list_by_entry_point_or_distribution_name(site, monkeypatch, selector):
    allow(monkeypatch, selector)
    host = Host(builtins=False)
    assert host.infos["good"].status == "loaded"
    assert host.infos["broken"].status == "blocked"
    assert host.infos["dup"].status == "blocked"


def test_empty_allow_list_loads_nothing_installed(site, monkeypatch):
    allow(monkeypatch)
    host = Host(builtins=False)
    assert all(i.status == "blocked" for i in host.infos.values())
    assert host.filters() == {}


@pytest.mark.parametrize("selector", ["broken", "vila2-broken"])
def test_block_list_by_entry_point_or_distribution_name(site, monkeypatch, selector):
    allow(monkeypatch, "good", "broken")
    monkeypatch.setenv("VILA2_DISABLE_PLUGINS", selector)
    host = Host(builtins=False)
    assert host.infos["broken"].status == "blocked"
    assert host.infos["good"].status == "loaded"


def test_block_list_applies_to_builtins(monkeypatch):
    builtins = Host(entry_points=False).plugin_infos(include_builtins=True)
    assert builtins, "vila2 ships built-in plugins"
    name = builtins[0].name
    monkeypatch.setenv("VILA2_DISABLE_PLUGINS", name)
    assert Host(entry_points=False).infos[name].status == "blocked"


def test_register_validates_and_stamps(fresh_host, plugin_registered):
    class Plugin:
        @vila2.hookimpl
        def register_captioners(self, register):
            register(vila2.Captioner("echo", load=lambda model, settings: lambda images, prompts: list(prompts)))

        @vila2.hookimpl
        def register_evaluators(self, register):
            register(vila2.Evaluator("toy", benchmarks=("toy",), run=lambda model, benchmark, **kw:
                                     vila2.EvalResult(benchmark, {"accuracy": 1.0}, "accuracy", n=1)))

    plugin_registered(Plugin(), name="toy-plugin")
    captioner = fresh_host.get("captioner", "echo")
    assert captioner.plugin == "toy-plugin"
    assert captioner.load(None, {})([None], ["hi"]) == ["hi"]
    assert fresh_host.find_evaluator("toy").run("m", "toy").score == 1.0
    with pytest.raises(PluginError, match=r"no captioner named 'ech'.*Did you mean 'echo'"):
        fresh_host.get("captioner", "ech")
    with pytest.raises(PluginError, match="no evaluator for benchmark 'nope'"):
        fresh_host.find_evaluator("nope")


def test_register_hook_as_a_pluggy_wrapper_registers(fresh_host, plugin_registered):
    """Contribution hooks are called through pluggy, so a ``wrapper=True`` implementation works."""

    class Wrapping:
        @vila2.hookimpl(wrapper=True)
        def register_filters(self, register):
            register(vila2.Filter("wrapped", check=lambda sample, text: True))
            return (yield)

    plugin_registered(Wrapping(), name="wrapping-plugin")
    assert fresh_host.get("filter", "wrapped").plugin == "wrapping-plugin"


def test_components_are_collected_in_registration_order(fresh_host, plugin_registered):
    """The first-registered plugin's 'any benchmark' evaluator is the fallback, as documented."""

    def plugin(name):
        class Plugin:
            @vila2.hookimpl
            def register_evaluators(self, register):
                register(vila2.Evaluator(name, run=lambda model, benchmark, **kw: None))

        return Plugin()

    plugin_registered(plugin("first"), name="first-plugin")
    plugin_registered(plugin("second"), name="second-plugin")
    mine = [n for n in fresh_host.evaluators() if n in {"first", "second"}]
    assert mine == ["first", "second"]
    assert fresh_host.find_evaluator("anything-else", "builtin").name == "first"


def test_wrong_component_type_names_the_plugin(fresh_host, plugin_registered):
    class Plugin:
        @vila2.hookimpl
        def register_specialists(self, register):
            register({"name": "spatial"})

    with pytest.raises(PluginError, match="plugin 'bad-plugin' registered dict as a specialist"):
        plugin_registered(Plugin(), name="bad-plugin")
        fresh_host.specialists()


def test_bad_hookimpl_signature_is_refused_with_plugin_name(fresh_host):
    class Plugin:
        @vila2.hookimpl
        def register_filters(self, register, extra):
            pass

    with pytest.raises(PluginError, match="plugin 'sig-plugin'"):
        fresh_host.register(Plugin(), name="sig-plugin")


def test_plain_function_is_a_filter(fresh_host, plugin_registered):
    class Plugin:
        @vila2.hookimpl
        def register_filters(self, register):
            def mentions_colour(sample, text):
                """Keep captions that name a colour."""
                return "red" in text

            register(mentions_colour)

    plugin_registered(Plugin(), name="fn-plugin")
    flt = fresh_host.get("filter", "mentions_colour")
    assert flt.apply({"id": "a"}, "a red circle") == ("a red circle", 1.0, True)
    assert flt.description == "Keep captions that name a colour."


def test_custom_filter_example_loads_with_plugin_flag_and_filters(fresh_host):
    source = (EXAMPLES / "custom_filter.py").read_text()
    assert len(source.strip().splitlines()) <= 10
    fresh_host.load_file(EXAMPLES / "custom_filter.py")
    flt = fresh_host.get("filter", "no_stock_words")
    samples = [({"id": "1"}, "a red circle on the left"), ({"id": "2"}, "red circle stock photo free download")]
    kept = [sample["id"] for sample, text in samples if flt.apply(sample, text)[2]]
    assert kept == ["1"]


def run_cli(*args: str, env_extra: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    import os

    env = {**os.environ, "VILA2_LOAD_PLUGINS": "", **(env_extra or {})}
    return subprocess.run([sys.executable, "-m", "vila2", *args], capture_output=True, text=True,
                          env=env, timeout=120)


def test_cli_plugin_flag_and_json_listing():
    result = run_cli("--plugin", str(EXAMPLES / "custom_filter.py"), "plugins", "--json")
    assert result.returncode == 0, result.stderr
    listed = {p["name"]: p for p in json.loads(result.stdout)}
    (entry,) = [p for name, p in listed.items() if name.endswith("custom_filter.py")]
    assert entry["components"] == {"filter": ["no_stock_words"]}
    assert entry["status"] == "loaded"
    # per-command form works too
    again = run_cli("plugins", "--json", "--plugin", str(EXAMPLES / "custom_filter.py"))
    assert again.returncode == 0, again.stderr


def test_cli_plugins_all_shows_builtins_and_plain_listing():
    result = run_cli("plugins", "--all", "--json")
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    builtins = [r for r in rows if r["builtin"]]
    assert builtins and all(r["status"] == "loaded" for r in builtins)
    assert all(r["status"] == "blocked" for r in rows if not r["builtin"])  # VILA2_LOAD_PLUGINS=''
    assert {"filter", "captioner"} <= {kind for r in builtins for kind in r["components"]}
    assert run_cli("plugins").returncode == 0


def test_cli_missing_or_broken_plugin_file_is_a_clear_error(tmp_path):
    missing = run_cli("--plugin", str(tmp_path / "nope.py"), "plugins")
    assert missing.returncode == 2 and "nope.py" in missing.stderr and "Traceback" not in missing.stderr
    bad = tmp_path / "bad.py"
    bad.write_text("import vila2\n@vila2.hookimpl\ndef register_filtrs(register):\n    pass\n")
    result = run_cli("--plugin", str(bad), "plugins")
    assert result.returncode == 2
    assert "register_filtrs" in result.stderr and "register_filters" in result.stderr
    assert "Traceback" not in result.stderr


def test_help_and_plugins_do_not_import_torch():
    code = (
        "import sys\n"
        "from vila2.cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "try:\n    main(['plugins', '--all'])\nexcept SystemExit:\n    pass\n"
        "heavy = [m for m in ('torch', 'transformers', 'lm_eval', 'peft') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


def test_register_commands_hook_adds_a_subcommand(tmp_path):
    plugin = tmp_path / "hello.py"
    plugin.write_text(textwrap.dedent("""
        import click
        import vila2

        @vila2.hookimpl
        def register_commands(cli):
            @cli.command()
            def hello():
                click.echo("hello from a plugin")
    """))
    result = run_cli("--plugin", str(plugin), "hello")
    assert result.returncode == 0, result.stderr
    assert "hello from a plugin" in result.stdout


def test_progress_bars_in_a_log_update_every_few_seconds(tmp_path):
    """Written to a file, a bar of 2,000 quick steps is a few frames, not one per step."""
    import subprocess
    import sys

    code = ("import time; from vila2.cli import quiet_progress_in_logs; quiet_progress_in_logs(); "
            "from tqdm import tqdm\nfor _ in tqdm(range(2000)): time.sleep(0.0005)")
    log = tmp_path / "log.txt"
    with open(log, "w") as handle:
        subprocess.run([sys.executable, "-c", code], stderr=handle, check=True,
                       env={k: v for k, v in __import__("os").environ.items() if k != "TQDM_MININTERVAL"})
    frames = log.read_bytes().count(b"\r")
    assert 1 <= frames <= 5, frames
