"""Leave-out memorization: folds, the K-fold runner and the estimators."""
from .checks import ScoreWarning
from .estimators import ESTIMATORS, estimate, jackknife_stderr, memorization_scores
from .folds import make_folds, unit_seed
from .merge import merge
from .runner import kfold

__all__ = ["ScoreWarning", "kfold", "merge", "make_folds", "unit_seed", "estimate", "jackknife_stderr", "memorization_scores", "ESTIMATORS"]
