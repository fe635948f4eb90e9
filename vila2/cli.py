"""The ``vila2`` command line.

Sub-commands live in ``vila2/commands/<name>.py`` and are imported only when used (or listed), so
``vila2 --help`` never imports torch. Plugins add commands through ``register_commands(cli)``.
Every command accepts ``--plugin FILE`` (repeatable); plugin files are loaded before the command
line is parsed, so their commands appear too.
"""

from __future__ import annotations

import errno
import importlib
import os
import re
import sys
from collections.abc import Callable, Sequence
from typing import Any

import click

from vila2 import __version__

# name -> module in vila2.commands that defines a click command called ``command``
COMMANDS: dict[str, str] = {
    "demo": "demo",
    "run": "run",
    "world": "world",
    "ingest": "ingest",
    "export": "export",
    "caption": "caption",
    "train": "train",
    "finetune": "finetune",
    "eval": "eval",
    "plugins": "plugins",
    "preset": "preset",
}


def plugin_option(func: Callable[..., Any]) -> Callable[..., Any]:
    """``--plugin FILE`` for a command; the files were already loaded by :func:`main`."""
    return click.option(
        "--plugin", "plugin_files", multiple=True, type=click.Path(dir_okay=False),
        expose_value=False, is_eager=True, help="Load a one-file plugin (repeatable).",
    )(func)


class LazyGroup(click.Group):
    """A click group whose built-in sub-commands are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(COMMANDS))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.commands:
            return self.commands[cmd_name]
        if cmd_name not in COMMANDS:
            return None
        module = importlib.import_module(f"vila2.commands.{COMMANDS[cmd_name]}")
        return module.command

    def invoke(self, ctx: click.Context) -> object:
        # every error a user can fix names its file, key, sample, step or plugin: print that one
        # line, here, so every command (and click's test runner) handles them the same way
        from vila2.errors import Vila2Error

        try:
            return super().invoke(ctx)
        except Vila2Error as exc:
            raise click.ClickException(str(exc)) from None


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="vila2")
@plugin_option
def cli() -> None:
    """vila2: improve a vision-language model's own training data (VILA²).

    Run `vila2 demo` for the whole loop on the embedded synthetic world.
    """


#: what a write fails with when the disk, a quota or a file-size limit is full
_NO_SPACE = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
# libraries written in Rust (safetensors, tokenizers) report the OS error in their message only
_NO_SPACE_TEXT = re.compile(rf"\(os error ({'|'.join(map(str, _NO_SPACE))})\)")


def no_space(exc: BaseException) -> str | None:
    """What ran out, when ``exc`` (or an exception it came from) is a write that found no space."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno in _NO_SPACE:
            where = f" writing {current.filename}" if current.filename else ""
            return f"{current.strerror or errno.errorcode[current.errno]}{where}"
        if _NO_SPACE_TEXT.search(str(current)):
            return str(current).splitlines()[0]
        current = current.__cause__ or current.__context__
    return None


def quiet_progress_in_logs(seconds: float | None = None) -> None:
    """Progress bars written to a file or a pipe update every ``seconds`` (default
    :data:`vila2.progress.LOG_INTERVAL`) instead of every step.

    vila2's own bars do so by themselves (:mod:`vila2.progress`); this covers the rest.
    tqdm reads ``TQDM_MININTERVAL`` from the environment, so one setting covers every bar,
    third-party and child processes' included, and a user's own value wins.
    """
    from vila2.progress import LOG_INTERVAL, writes_to_terminal

    if not writes_to_terminal(sys.stderr):
        os.environ.setdefault("TQDM_MININTERVAL", str(LOG_INTERVAL if seconds is None else seconds))


def _plugin_files(argv: Sequence[str]) -> list[str]:
    files: list[str] = []
    for i, arg in enumerate(argv):
        if arg == "--plugin" and i + 1 < len(argv):
            files.append(argv[i + 1])
        elif arg.startswith("--plugin="):
            files.append(arg.split("=", 1)[1])
    return files


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of the ``vila2`` console script and ``python -m vila2``."""
    from vila2.errors import PluginError, Vila2Error
    from vila2.plugins import get_host

    args = list(sys.argv[1:] if argv is None else argv)
    quiet_progress_in_logs()
    try:
        host = get_host()
        for file in _plugin_files(args):
            host.load_file(file)
        host.hook.register_commands(cli=cli)
        cli.main(args=args, prog_name="vila2", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except Vila2Error as exc:
        # every error a user can fix names its file, key, sample, step or plugin: one line is enough
        click.echo(f"Error: {exc}", err=True)
        sys.exit(2 if isinstance(exc, PluginError) else 1)
    except Exception as exc:
        full = no_space(exc)
        if full is None:
            raise
        # every write is atomic and every step resumable: nothing needs cleaning up by hand
        click.echo(f"Error: no space left on the device ({full}). Free some space and rerun the "
                   "same command: finished work is kept and the run resumes.", err=True)
        sys.exit(1)
