"""The τ sweep of memorization rejection: FD_f against C_T (Bai et al. 2022, Figure 6)."""
import numpy as np


def plot_tau_sweep(table, *, ax=None):
    """FD_f (x) against C_T (y), one point per τ: the mean over seeds with ±1 sd bars, runs as dots.

    Parameters
    ----------
    table : dict
        The table returned by :func:`genmem.gan.sweep_tau` (or read back from its JSON file).
    ax : matplotlib Axes, optional
        Where to draw; default: a new figure.

    Returns
    -------
    Axes
    """
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(5.5, 4.2))
    colours = plt.get_cmap("viridis")(np.linspace(0, 0.9, len(table["summary"])))
    for colour, row in zip(colours, table["summary"]):
        runs = [r for r in table["runs"] if r["tau_spec"] == row["tau_spec"]]
        ax.scatter([r["fd_f"] for r in runs], [r["c_t"] for r in runs], color=colour, s=12, alpha=0.45)
        ax.errorbar(row["fd_f_mean"], row["c_t_mean"], xerr=row["fd_f_std"] or 0, yerr=row["c_t_std"] or 0,
                    fmt="o", color=colour, capsize=3, label=f"τ = {row['tau_spec']} ({row['tau']:.3g})")
    ax.axhline(0.0, color="grey", lw=0.8, ls="--")
    ax.set_xlabel("FD_f (generated vs test, bank features)")
    ax.set_ylabel("C_T (< 0: copying)")
    ax.set_title(f"Memorization rejection: {len(table['seeds'])} seed(s) per τ", fontsize=10)
    ax.legend(fontsize=7)
    return ax
