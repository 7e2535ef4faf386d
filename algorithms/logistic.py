"""The logistic model's plain maths, shared by ``lr``'s methods: losses,
penalties, and the held-out scores (log-loss, AUC, accuracy)."""

import numpy as np
from scipy.special import expit
from scipy.stats import rankdata


def log_losses(z, y):
    """Per-example log-loss ``log(1 + exp(-s z))`` for 0/1 labels ``y`` (s = 2y - 1)."""
    return np.logaddexp(0.0, z) - y * z


def residuals(z, y):
    """The log-loss's derivative in the margin: ``sigmoid(z) - y``."""
    return expit(z) - y


def penalty_value(w, penalty):
    """``r(w)``: ``||w||^2 / 2`` (l2), ``||w||_1`` (l1) or 0."""
    if penalty == "l2":
        return 0.5 * float(w @ w)
    if penalty == "l1":
        return float(np.abs(w).sum())
    return 0.0


def auc(scores, labels):
    """The area under the ROC curve of ``scores`` for 0/1 ``labels``, ties
    counting one half (the Mann-Whitney statistic; scikit-learn's
    ``roc_auc_score``); NaN when one class is missing."""
    positives = int(np.count_nonzero(labels > 0))
    negatives = labels.size - positives
    if not positives or not negatives:
        return float("nan")
    ranks = rankdata(scores)
    return float((ranks[labels > 0].sum() - positives * (positives + 1) / 2.0)
                 / (positives * negatives))
