"""Running the genmem command line in tests, and checking its one-line errors."""
from click.testing import CliRunner

from genmem.cli import main


def run(args, **kwargs):
    """Invoke ``genmem ARGS`` (items are turned into strings) through click's CliRunner."""
    return CliRunner().invoke(main, [str(a) for a in args], **kwargs)


def assert_one_line_error(result, *words):
    """The command failed with exactly one ``Error: …`` line containing ``words``, and no traceback."""
    assert result.exit_code != 0
    assert isinstance(result.exception, SystemExit), result.exception  # no traceback
    lines = [line for line in result.output.strip().splitlines() if line.startswith("Error")]
    assert len(lines) == 1, result.output
    for word in words:
        assert word in lines[0], lines[0]
