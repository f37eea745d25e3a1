"""Figures made from results (imported by the CLI only; nothing imports plots)."""
from .grid import plot_examples

__all__ = ["plot_examples"]
