"""Figures made from results (nothing in genmem imports plots; only the CLI does).

Every function draws into matplotlib Axes it is given (or into a new figure)
and returns them; none changes the backend or saves a file: that is the
caller's choice (the command line uses Agg and writes PNG files).
"""
from .embedding import embed_2d, plot_embedding
from .grid import plot_examples
from .report import plot_report
from .sweep import plot_tau_sweep
from .top import plot_top

__all__ = ["embed_2d", "plot_embedding", "plot_examples", "plot_report", "plot_tau_sweep", "plot_top"]
