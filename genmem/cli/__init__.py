"""The ``genmem`` command line: a thin layer over the library.

Results go to stdout; progress and logs go to stderr. Bad input ends with a
one-line ``Error: …`` that names the problem and the fix, and a non-zero exit;
the library's warnings appear once each, as one ``Warning: …`` line on stderr.
"""
import logging
import warnings

import click

from .. import __version__
from ..errors import GenmemError


class _Group(click.Group):
    """Turns genmem's errors into one-line messages instead of tracebacks."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except GenmemError as exc:
            raise click.ClickException(str(exc)) from None
        except OSError as exc:
            raise click.ClickException(f"{exc.strerror or exc}: {exc.filename or ''}".rstrip(": ")) from None


def _show_warning(message, category, filename, lineno, file=None, line=None):
    """Print a library warning as one line on stderr (Python's filters already show each one once)."""
    click.echo(f"Warning: {message}", err=True)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="genmem")
@click.option("-v", "--verbose", count=True, help="More log output on stderr (-vv for debug).")
@click.option("--threads", type=click.IntRange(min=1),
              help="CPU threads for torch (default: torch's; 1 is often faster on a busy machine).")
def main(verbose, threads):
    """Measure memorization in generative models."""
    logging.basicConfig(level=[logging.WARNING, logging.INFO, logging.DEBUG][min(verbose, 2)],
                        format="%(levelname)s %(name)s: %(message)s")
    warnings.showwarning = _show_warning
    if threads is not None:
        import torch

        torch.set_num_threads(threads)


from .export import export  # noqa: E402
from .gan import gan  # noqa: E402
from .influence import influence  # noqa: E402
from .info import info  # noqa: E402
from .kfold import kfold  # noqa: E402
from .neighbours import ct, neighbours  # noqa: E402
from .report import report  # noqa: E402
from .top import top  # noqa: E402

main.add_command(kfold)
main.add_command(top)
main.add_command(info)
main.add_command(influence)
main.add_command(neighbours)
main.add_command(ct)
main.add_command(gan)
main.add_command(report)
main.add_command(export)
