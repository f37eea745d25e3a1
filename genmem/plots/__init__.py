"""Figures made from results (imported by the CLI only; nothing imports plots)."""
from .grid import plot_examples
from .report import plot_report
from .sweep import plot_tau_sweep

__all__ = ["plot_examples", "plot_report", "plot_tau_sweep"]
