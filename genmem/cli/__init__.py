"""The ``genmem`` command line: a thin layer over the library.

Results go to stdout; progress and logs go to stderr. Bad input ends with a
one-line ``Error: …`` that names the problem and the fix, and a non-zero exit
(``genmem --debug`` keeps the traceback instead, as cooler's ``-d`` does);
the library's warnings appear once each, as one ``Warning: …`` line on stderr.
Ctrl-C and SIGTERM end a command the same way (temporary files removed, exit
130 and 143); a closed stdout (``genmem info FILE | head``) ends it quietly.
Subcommands are imported when they run, so an interruption while torch loads
is handled like any other.
"""
import errno
import importlib
import logging
import signal
import warnings

import click

from .. import __version__
from ..errors import GenmemError

#: Subcommand name -> (module of genmem.cli, function).
_COMMANDS = {"kfold": ("kfold", "kfold"), "top": ("top", "top"), "info": ("info", "info"),
             "influence": ("influence", "influence"), "neighbours": ("neighbours", "neighbours"),
             "ct": ("neighbours", "ct"), "gan": ("gan", "gan"), "report": ("report", "report"),
             "export": ("export", "export"), "merge": ("merge", "merge")}


#: Key in click's ``ctx.meta``: ``genmem --debug`` was given.
DEBUG = "genmem.debug"


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C so that the same clean-up runs."""


def _terminate(signum, frame):
    raise Terminated()


def interrupted_exit_code(exc):
    """The exit status after an interruption: 143 for SIGTERM, 130 for Ctrl-C."""
    return 143 if isinstance(exc, Terminated) else 130


class _Group(click.Group):
    """Loads subcommands lazily and turns genmem's errors into one-line messages instead of tracebacks."""

    def list_commands(self, ctx):
        return list(_COMMANDS)

    def get_command(self, ctx, name):
        if name not in _COMMANDS:
            return None
        module, function = _COMMANDS[name]
        return getattr(importlib.import_module(f"{__name__}.{module}"), function)

    def invoke(self, ctx):
        previous = signal.signal(signal.SIGTERM, _terminate)
        try:
            return super().invoke(ctx)
        except (GenmemError, MemoryError, OSError) as exc:
            if ctx.meta.get(DEBUG) or (isinstance(exc, OSError) and exc.errno == errno.EPIPE):
                raise  # --debug keeps the traceback; click leaves quietly when stdout is closed
            raise click.ClickException(_one_line(exc)) from None
        except KeyboardInterrupt as exc:
            click.echo("\ninterrupted", err=True)
            ctx.exit(interrupted_exit_code(exc))
        finally:
            signal.signal(signal.SIGTERM, previous)


def _one_line(exc):
    """The one-line message of a genmem error, running out of memory or a failed file operation."""
    if isinstance(exc, MemoryError):
        return ("out of memory; ask for less (fewer --repeats or --n-samples, a smaller --pad-to, --limit N) or use "
                "a machine with more memory")
    if isinstance(exc, OSError):
        return f"{exc.strerror or exc}: {exc.filename or ''}".rstrip(": ")
    return str(exc)


def _show_warning(message, category, filename, lineno, file=None, line=None):
    """Print a library warning as one line on stderr (Python's filters already show each one once)."""
    click.echo(f"Warning: {message}", err=True)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="genmem")
@click.option("-v", "--verbose", count=True, help="More log output on stderr (-vv for debug).")
@click.option("--threads", type=click.IntRange(min=1),
              help="CPU threads for torch (default: torch's; 1 is often faster on a busy machine).")
@click.option("-d", "--debug", is_flag=True, help="On an error, show the traceback instead of a one-line message.")
@click.pass_context
def main(ctx, verbose, threads, debug):
    """Measure memorization in generative models."""
    ctx.meta[DEBUG] = debug
    logging.basicConfig(level=[logging.WARNING, logging.INFO, logging.DEBUG][min(verbose, 2)],
                        format="%(levelname)s %(name)s: %(message)s")
    warnings.showwarning = _show_warning
    if threads is not None:
        import torch

        torch.set_num_threads(threads)
