"""The one exception type genmem raises for bad input or bad state.

A :class:`GenmemError` message is one line that names the problem and the fix;
the command line prints it without a traceback and exits non-zero.
"""


class GenmemError(ValueError):
    """Bad input, a bad file or a bad state, with a message that says how to fix it."""
