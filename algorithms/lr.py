"""Binary logistic regression on sparse LIBSVM input (``lr``).

What it computes
----------------
Weights ``w`` (one per feature) and an intercept ``b`` that minimise

    F(w, b) = (1/n) * sum_i log(1 + exp(-y_i * (x_i . w + b)))  +  r(w) / (C * n)

over the ``n`` training examples, ``y_i`` in {-1, +1}, with ``r(w) = ||w||^2 / 2``
(``penalty: "l2"``), ``||w||_1`` (``"l1"``) or 0 (``"none"``); the intercept is
not penalised. This is scikit-learn's ``LogisticRegression(penalty=..., C=C)``
objective, ``C * sum_i loss_i + r(w)``, divided by ``C * n``: the same
minimiser, so ``C`` means what it means there (smaller ``C``, stronger
penalty). The solvers ``lbfgs`` and ``saga`` solve exactly this; ``liblinear``
also penalises the intercept (use a large ``intercept_scaling`` to compare).
Labels may be -1/+1 or 0/1 (and the predictions use the input's convention).

Methods
-------
``lbfgs`` is the default: on the click-log study (docs/ctr.md) it is the
only method that reaches scikit-learn's optimum, in as many iterations,
with the model kept by feature id; ``ftrl`` gets a good model in one pass;
``sgd`` and ``gd`` keep a dense vector of ``n_features`` weights.

``method: "sgd"`` -- mini-batch stochastic gradient under SSP. Each worker
shuffles its share every pass and cuts it into the same number of batches
as every other worker (so all workers do the same number of clocks). For each
batch it pulls only the weights of the features the batch touches
(``w.pull(features)``) and the intercept, computes the gradient of the
batch's log-loss, pushes a step for just those features
(``w.push(features, ...)``) and ends a clock (``iter_commit``): a read at
clock ``c`` sees every step of clocks ``<= c - s - 1``. The penalty is
applied on the server, atomically with the step, by a row update function,
so concurrent pushes never undo one another's shrinking:

* ``l2``: the step then a shrink by ``(1 + eta*lam)^(1/q_j)``, where
  ``lam = 1/(C n)`` and ``q_j`` is the chance that a batch touches feature
  ``j`` (from its document frequency): a feature is shrunk on the steps that
  touch it, as much as it would have been on every step in expectation
  (lazy regularisation for sparse data; ``q_j = 1`` for dense features).
* ``l1``: truncated gradient with the cumulative penalty of Tsuruoka, Tsujii
  and Ananiadou (ACL 2009): the servers keep, next to each weight, the
  signed total penalty applied to it; a push carries the step and the total
  penalty ``u`` that every weight should have received by now, and the
  weight moves towards zero by what it is still owed, never past it. ``u``
  is the sum of ``eta * lam`` over every worker's steps so far, kept on the
  servers next to the intercept (each step adds its own share), so it
  counts the steps actually made even when workers run far apart
  (asynchronous). Weights become exact zeros, and noise cannot
  keep a useless weight alive (plain proximal SGD keeps many tiny ones).
  This state lives in a ``(n_features, 2)`` matrix ``lr.l1``
  (weight, penalty applied), pulled and pushed like ``w``; its weight column
  is copied into ``w`` at the end.
* ``none``: the step is added (``add``).

The step size at progress ``e`` is ``eta / W`` for each batch of each of
the ``W`` workers, where ``eta`` is ``eta0`` (``lr_schedule:
"constant"``), ``eta0 / (1 + lr_decay * e)`` (``"inverse"``) or
``eta0 / sqrt(1 + lr_decay * e)`` (``"inverse_sqrt"``); ``eta0`` is
``learning_rate``, by default ``10 / L`` with
``L = (mean_i ||x_i||^2 + 1) / 4``, the mean per-example bound on the
log-loss curvature (``L`` about 8, ``eta0`` about 1.3, for 30 standardised
features). ``e`` is counted in epochs of the whole data set, from the steps
made by all workers together (a counter on the servers, read with the
intercept): with ``W`` workers a clock makes ``W`` steps and an epoch takes
about ``n / batch_size`` steps whatever ``W`` is, and a straggler
(``staleness`` large or null) steps as small as the workers ahead of it
instead of dragging the model towards its own share with early-epoch steps.

Why ``eta / W``: the ``W`` steps of a clock are computed from about the
same model (at staleness 0 a read sees every step of the earlier clocks and
few of its peers' steps of the same clock), so steps of ``eta`` each would
move the model by ``W * eta`` along the mean gradient of the clock's
batches: a step that grows with ``W`` until it overshoots the curvature and
oscillates, the more so with staleness (older gradients). Measured (100
epochs, ``tol: null``, staleness 0 and 2, log-loss above scikit-learn's
optimum) on heart_scale-like data (270 x 13, ``C = 1``, 2 seeds) with steps
of ``eta``: up to +0.8 % with 2 workers, +1.5 % with 4 and +1.3 % with 7,
against within 0.1 % with one; on a noisier set of that size (70 %
accuracy, 3 seeds) up to +60 % with 4 workers and +215 % with 7. With
``eta / W`` (3 seeds) a clock makes one step ``eta`` along the mean
gradient of ``W`` batches, which is one worker's step with a ``W`` times
larger batch, so a step that is stable for one worker is stable for any
``W``: within 0.1 % for 1 to 7 workers at staleness 0 and 2 on the first
set, within 1 % for 2 to 7 on the second (where one worker ends at +2 % on
one seed of three: ``eta0`` is too large for that set whatever ``W``). The
price: a pass makes ``W`` times fewer steps, so a problem that needs many
steps needs more passes with many workers (digits, l1, ``C = 0.1``, 4
workers at staleness 2: +2 % log-loss after 100 epochs, where steps of
``eta`` ended at -0.3 %); the noise is lower too, so a smaller ``lr_decay``
makes up for it (+0.9 % at 0.025).

Every example weighs the same: a batch's gradient is its summed gradient
over the mean batch size ``n / (batches per pass)`` (so a smaller share's
smaller batches count for less), times ``p_k / f_k``, clipped to
``[1/4, 4]``, where ``p_k`` is worker ``k``'s share of the steps of a pass
and ``f_k`` its share of the steps made so far (per-worker counters next to
the intercept, smoothed by one pass): a worker that runs faster than the
others (SSP, asynchronous) does not tilt the model towards its share. At
staleness 0 the factor stays about 1. Shares are contiguous slices of the
input, so a file sorted by label gives unlike shares; the correction keeps
them balanced on average, but under asynchrony a burst of one worker's steps
still moves the model towards its share for a while: shuffle such files.

How long: with ``tol: null`` every worker keeps taking batches (reshuffling
its share after each pass) until all workers together made ``epochs``
passes' worth of steps (``epochs`` times the number of non-empty batches of
all shares), read from the same counter; at staleness 0 that is exactly
``epochs`` passes each, and asynchronously the fast workers
take a few more steps instead of leaving a slow one to finish alone, whose
last steps would pull the model towards its own share (measured: +3 % to
+14 % log-loss on breast cancer with 4 asynchronous workers, against
within 1 % this way). With ``tol`` set, each worker makes ``epochs`` passes
at most, and at each pass's end the workers evaluate the objective ``F`` of
the current model exactly (two barriers: one so that every step of the pass
has landed, one so that nobody steps on before all have read): each worker
pulls the weights of its share's features and adds up its share's
log-loss, and the penalty of the blocks of ``w`` it owns; the sums are
added in worker order. Training stops when ``F`` has improved by less than
``tol`` (relative: ``F_then - F_now < tol * F_now``) since ``F_then``, its
value at the end of the latest pass whose step size was at least twice the
current one, at ``n_iter_no_change`` pass ends in a row. Why: SGD with a
step ``eta`` settles within a distance of the optimum that shrinks with
``eta`` (its noise floor); from a step twice as large the floor has halved,
so if ``F`` did not improve by ``tol * F`` meanwhile, both the floor and
what is left of the gap are below about ``tol * F``. Comparing
consecutive passes stops too early instead: the mean batch log-loss of a
pass (measured on each batch before its step, while the model moves) is
noisier than the improvements looked for (the rule that compared it with
the best so far, with the defaults on heart_scale-like data, 1, 2 and 4
workers, staleness 0 and 2, 3 seeds: all 18 runs stopped as converged
after 9 to 28 passes, 1.6 % to 50 % above the optimal objective), and even
the exact ``F`` improves by little per pass just because the steps are
small (with ``eta ~ 1 / e`` the gap shrinks by about ``gap / e`` a pass,
below ``tol * F`` once the gap is below ``e * tol * F``: 1 % after 100
passes at ``tol = 1e-4``). The price is time: with the default schedule
the step at pass 22 is half that of pass 1 (the first ``F`` known), at pass
64 half that of pass 22, and so on, so a run stops after 26 passes at the
earliest, and on the data above with 2 and 4 workers only after 128 to 290
passes (all within 0.01 % of the optimum): with the default ``epochs``
(100) such a run ends unconverged (``converged: false``, within 0.12 %). A
larger ``lr_decay`` stops sooner where a faster decay still converges.
With a constant step (``lr_schedule: "constant"`` or ``lr_decay: 0``) the
step never halves and ``tol`` never stops SGD: a constant step does not
converge, it stays at its noise floor. With more than one worker SGD is
not bit-reproducible even at staleness 0 (a read may or may not include a
peer's step of the same clock); with one it is.

``method: "downpour"`` -- DistBelief's Downpour SGD, in :mod:`downpour`
(see there, with what differs from Paracel's): local copies trained by
mini-batch SGD, fetched every ``n_fetch`` and pushed (the update since the
last push) every ``n_push`` steps, one clock a step. ``method: "ipm"`` --
iterative parameter mixing, in :mod:`ipm`: a local SGD epoch per worker,
the workers' models mixed on the servers each epoch (one clock). Both keep
the model in a row table keyed by feature id and run ``epochs`` passes
(no ``tol``).

``method: "gd"`` -- full-batch proximal gradient descent, accelerated
(FISTA with adaptive restart) unless ``acceleration`` is false. Each
iteration has two phases separated by barriers (``sync``), whatever the
staleness (a full gradient needs every share, so it is synchronous by
nature):

1. every worker pulls the current point ``y`` at the features its share
   touches, computes its share's log-loss and gradient, and writes the
   gradient (``push(..., "replace")``) into its own gradient vector
   ``lr.grad.<worker>`` on the servers, with its partial sums under
   ``("lr.gd", worker)``;
2. every worker owns a set of row blocks of ``w`` (block ``b`` belongs to
   worker ``b mod W``); for each it reads the block of every worker's
   gradient vector, sums them in worker order, and writes the new weights
   ``x = prox(y - eta * gradient)`` and the next point ``y`` back.

Summing in a fixed order instead of ``add`` on the servers (whose order of
arrival varies) makes GD bit-for-bit reproducible at any staleness, and the
same for any number of workers and servers up to float rounding. The step is
``learning_rate`` or, by default, ``1 / L`` with
``L = (||X||_F^2 + n) / (4 n)``, an upper bound of the gradient's Lipschitz
constant; the penalty is applied exactly by its proximal map (soft
threshold for l1, so weights are exact zeros). The restart test
(O'Donoghue and Candes, 2015) uses the previous iteration's sums, one
iteration late, so it costs no extra barrier. ``epochs`` bounds the
iterations; with ``tol`` set, GD stops when ``max |x_new - x| <= tol * max |x|``
(intercept included) for ``n_iter_no_change`` iterations in a row.

``method: "lbfgs"`` -- L-BFGS for ``l2`` and ``none``, OWL-QN (Andrew and
Gao, ICML 2007) for ``l1``, in :mod:`lbfgs` (see there). The model is not a
dense vector but a row table keyed by feature id (``self.rows``): only the
features that occur take memory, so ids may be hashed into ``2**32`` or be
any 64-bit number (``n_features`` is then only a bound). The weights, the
gradient, the direction and the ``memory`` most recent correction pairs
are columns of that table, spread over the servers with the features; the
two-loop recursion runs on the dot products among them (vector-free
L-BFGS), the servers do every vector operation, and the workers exchange
scalars only. An iteration: each worker pulls the weights and the
direction of its features once, the line search (strong Wolfe; OWL-QN:
backtracking along the projected path) costs one exchange of three
numbers per trial step, each worker pushes its share's gradient into its
own column, and the servers take the step, sum the gradient columns in
worker order and compute the new dot products. Iteration ``t`` is clock
``t``; all collective, so the staleness does not matter; bit-for-bit
reproducible. It stops when ``max |gradient|`` (OWL-QN: of the
pseudo-gradient; intercept included) is at most ``tol`` -- scikit-learn's
``gtol``, on the same objective, so the same ``tol`` means the same stop --
or when an iteration lowers the objective by less than 64 machine epsilons
(relative), or after ``epochs`` iterations. With ``admit: k`` only the
features that occur in at least ``k`` training examples (counted over all
shares on the servers before training) get a weight; the others are
dropped from the shares.

``method: "ftrl"`` -- FTRL-Proximal (McMahan et al., KDD 2013), in
:mod:`ftrl`: per-coordinate learning rates ``alpha / (beta + sqrt(n_j))``
(``alpha`` is ``learning_rate``, default 0.5; ``beta = 1``), L1 and L2, each
feature's ``z``, ``n`` and weight on the servers, updated there by a row
function so concurrent workers never overwrite each other. Mini-batches as
in SGD (every worker the same number a pass, one clock each, under SSP);
a batch pulls the weights of its features and pushes its summed gradient.
The penalty after ``e`` passes is ``e / C`` times ``r`` (FTRL's regulariser
against the losses summed over the examples seen: the batch objective
``F``). ``epochs`` passes exactly (no ``tol``). With ``admit: k`` a feature
becomes a row only with the ``k``-th mini-batch that contains it (counted
on its server); before, it reads as weight 0 and its gradients are dropped.

Held-out data and saved models
------------------------------
With ``test`` (a LIBSVM file, indices read with the training input's base)
every worker scores its share of it with the current model after every
iteration (lbfgs, gd) or pass (ftrl), and at the end (every method; sgd's
workers make different numbers of passes, so only there):
``test_log_loss``, ``test_auc`` (exact: every worker's margins gathered on
worker 0, ties counted one half, as ``roc_auc_score``) and
``test_accuracy``, in the clock's history and in ``metrics.json``.
``epochs: 0`` trains nothing: it applies ``init_model`` (a model keyed by
id, or a dense ``w``) to the input -- predictions with ``predict``, the
held-out scores of ``test``; labels of the input may then be placeholders.

Checkpoints and resume
----------------------
A worker's state (:meth:`LogisticRegression.state`) is its loop's progress.
SGD's (:class:`SGDProgress`): the pass and batch it is at, the pass's loss
sums so far, the ``tol`` test's objectives and count, and its generator's
state before the pass's shuffle, so a resumed job draws the same shuffle and
takes the next batch. GD's (:class:`GDProgress`): the intercept at ``x`` and
``y`` (kept by every worker), the momentum and restart terms, the ``tol``
count and the sums its last phase 2 found; iteration ``t`` is clock ``t``.
What a fresh job writes before clock 1 (the matrices' start, ``init_model``,
the document frequencies, the intercept's copy) a resumed one finds on the
servers; every later push is made within a clock that ``iter_commit`` ends.
The SGD ``tol`` test after a pass's last clock belongs to the next clock: a
job resumed there makes it. After the loop the trained intercept (and, for
l1 SGD, the weights) are copied into ``intercept`` and ``w`` with
``replace``, copies of values that no longer change, so a finished job that
is resumed makes the same copies and writes the same output. At staleness 0
a resumed GD job, or SGD with one worker, gives bitwise the results of an
uninterrupted run; SGD with several workers is not bit-reproducible anyway
(above). SGD without ``tol`` takes checkpoints at staleness 0 only: otherwise
each worker stops at its own clock, and a checkpoint needs them all at the
same one (:meth:`LogisticRegression.check_job` refuses the job).

Input, output, metrics
----------------------
Input: LIBSVM/svmlight files (``label idx:val ...``), indices 1-based unless
``zero_based``. Feature column ``j`` below is 0-based (LIBSVM index ``j + 1``
of a 1-based file).

Output: ``OUTPUT/model.h5`` (datasets ``w``, shape ``(n_features,)``, and
``intercept``, shape ``(1,)``, with the parameters as attributes; a job can
start from it with ``init_model``; lbfgs and ftrl write ``ids`` (uint64,
increasing, 0-based feature ids), ``w`` (their weights, every feature that
has a row) and ``intercept``, and the attribute ``zero_based``: whether the
input's indices were 0-based, ``ids`` being one less than a 1-based
file's), for sgd and gd ``OUTPUT/w_<worker>`` (``column\\tweight`` lines for
the worker's blocks of ``w``, every column exactly once over all workers),
and with ``predict`` ``OUTPUT/pred_<worker>`` (``row\\tlabel\\t
probability`` for the worker's share, rows numbered from 0 in input order).

Metrics (``metrics.json``): ``log_loss`` (mean over the training data),
``accuracy`` (threshold 0.5), ``objective`` (``F`` above), ``nonzeros``
(non-zero weights), ``intercept``, ``epochs`` (run), ``converged``,
``examples``, ``features`` (lbfgs, ftrl: features with a weight; with
``admit`` in lbfgs also ``features_seen``), ``learning_rate`` (sgd, gd:
``eta0``), and with ``test`` the held-out scores; each clock reports
``loss`` (SGD, FTRL: mean batch log-loss of worker 0 in the current epoch so
far; GD: the mean log-loss at the point where the gradient was taken; lbfgs
reports ``objective`` and ``gradient``, the largest gradient component),
and SGD with ``tol`` reports ``objective`` (``F`` of the model at a pass's
end) with the first clock of the next pass. With SGD every
worker also traces ``batch_loss`` (its batch's mean log-loss before the
step) in its ``worker_history``, and with ``trace_every: k`` every ``k``
clocks ``share_loss`` (its share's summed log-loss under the current model,
and the share's size), from which the training log-loss over time follows.
"""

from dataclasses import asdict, dataclass, field

import numpy as np
import scipy.sparse
from scipy.special import expit

import paracel
from paracel.algorithms import downpour, ftrl, ipm, lbfgs
from paracel.algorithms.logistic import auc, log_losses, penalty_value
from paracel.errors import ConfigError, DataError

#: Most row blocks per worker (or server) that ``w`` is cut into; more blocks
#: spread the model over the servers and the GD updates over the workers.
BLOCKS_PER_RANK = 4
#: The largest block (rows), as a distributed matrix's default (1 MiB of float64).
MAX_BLOCK_ROWS = 1 << 17
#: FTRL's alpha (without ``learning_rate``) and beta.
FTRL_ALPHA = 0.5
FTRL_BETA = 1.0
#: SGD's ``tol`` test compares the objective with its value when the step
#: size was at least this many times the current one (see the docstring).
STEP_RATIO = 2.0


# -- server-side row update functions (registered on every rank at import) --

def _rows_values(name, block, delta, width):
    rows, values = delta
    rows = np.asarray(rows, dtype=np.intp)
    values = np.asarray(values, dtype=np.float64)
    if not isinstance(block, np.ndarray) or values.shape != (len(rows), 2) or (
            block.ndim != width):
        raise paracel.UserError(f"{name} expects a dense block and (rows, values[k, 2])")
    return rows, values


@paracel.update_function("lr_sgd_l2")
def sgd_l2(block, delta):
    """``w[j] = (w[j] + step_j) / shrink_j`` for the pushed rows: an SGD step,
    then the L2 proximal shrink; ``delta = (rows, [[step, shrink], ...])``."""
    rows, values = _rows_values("lr_sgd_l2", block, delta, 1)
    block[rows] = (block[rows] + values[:, 0]) / values[:, 1]
    return block


@paracel.update_function("lr_sgd_l1")
def sgd_l1(block, delta):
    """Truncated gradient with cumulative L1 penalty (Tsuruoka et al., 2009).

    ``block`` rows are ``[weight, q]``, ``q`` the signed total penalty
    applied to the weight so far; ``delta = (rows, [[step, u], ...])``, ``u``
    the total penalty a weight should have received by now. After the step
    the weight moves towards zero by what it is still owed (``u + q`` for a
    positive weight, ``u - q`` for a negative one), never past zero.
    """
    rows, values = _rows_values("lr_sgd_l1", block, delta, 2)
    weight = block[rows, 0] + values[:, 0]
    applied = block[rows, 1]
    owed = values[:, 1]
    new = np.where(weight > 0, np.maximum(0.0, weight - np.maximum(owed + applied, 0.0)),
                   np.where(weight < 0,
                            np.minimum(0.0, weight + np.maximum(owed - applied, 0.0)), 0.0))
    block[rows, 1] = applied + (new - weight)
    block[rows, 0] = new
    return block


# -- plain helpers ----------------------------------------------------------

def prox(v, threshold, penalty):
    """The proximal map of ``threshold * r`` at ``v``."""
    if penalty == "l2":
        return v / (1.0 + threshold)
    if penalty == "l1":
        return np.sign(v) * np.maximum(np.abs(v) - threshold, 0.0)
    return v


def compact(X, columns):
    """``X`` restricted to ``columns`` (sorted, holding every column ``X`` uses),
    renumbered ``0 .. len(columns) - 1``."""
    return scipy.sparse.csr_matrix(
        (X.data, np.searchsorted(columns, X.indices), X.indptr),
        shape=(X.shape[0], len(columns)))


@dataclass
class SGDProgress:
    """Where this worker's SGD is between two clocks (its checkpoint state)."""

    epoch: int = 0          # passes begun
    batch: int = 0          # batches of the current pass done
    loss_sum: float = 0.0   # the pass's summed batch log-loss so far
    seen: int = 0           # the examples it covers
    objectives: list = field(default_factory=list)  # tol: F at the end of each pass
    stale: int = 0          # tol: passes in a row without improving by tol
    converged: bool = False
    done: bool = False      # the loop is over
    shuffle_rng: dict = None  # the generator's state before the pass's shuffle


@dataclass
class GDProgress:
    """Where this worker's GD is between two clocks (its checkpoint state):
    the intercept (kept by every worker), the momentum and restart terms, the
    stopping count, and the sums its phase 2 found for the next phase 1."""

    x_b: float
    y_b: float
    found: np.ndarray
    momentum: float = 1.0
    dot_b: float = 0.0
    change_b: float = np.inf
    within: int = 0
    converged: bool = False


class LogisticRegression(paracel.Algorithm):
    """Binary logistic regression, L2/L1/no penalty, by SGD under SSP or by GD."""

    summary = ("binary logistic regression (L2/L1) on LIBSVM data: SGD under SSP "
               "or accelerated full-batch GD")
    reads = ('LIBSVM lines: "label index:value ..." (labels +1/-1 or 1/0; indices 0- or 1-based, '
             'detected; ids up to 2**64-2 for the id-keyed methods)')
    parameters = {
        "method": paracel.Param(str, "lbfgs", "lbfgs: L-BFGS (l2, none) or OWL-QN (l1); ftrl: "
                                "FTRL-Proximal under SSP; downpour: Downpour SGD (local "
                                "copies, fetch every n_fetch and push every n_push steps); "
                                "ipm: iterative parameter mixing (a local SGD epoch per "
                                "worker, the models averaged) (these four with the model in a "
                                "row table keyed by feature id); sgd: mini-batch SGD under "
                                "SSP; gd: full-batch proximal gradient descent",
                                choices=("lbfgs", "ftrl", "downpour", "ipm", "sgd", "gd")),
        "penalty": paracel.Param(str, "l2", "the penalty r(w) on the weights (not the "
                                 "intercept)", choices=("l2", "l1", "none")),
        "C": paracel.Param(float, 1.0, "inverse penalty strength, as scikit-learn's: "
                           "minimise mean log-loss + r(w) / (C n)", low=0, closed="neither"),
        "fit_intercept": paracel.Param(bool, True, "learn an (unpenalised) intercept"),
        "epochs": paracel.Param(int, 100, "most passes over the data (gd, lbfgs: "
                                "iterations); 0: no training, apply init_model to the input "
                                "(predictions, scores)", low=0),
        "batch_size": paracel.Param(int, None, "sgd, ftrl, downpour, ipm: examples per "
                                    "mini-batch (per worker and step); null: ftrl 1024, the "
                                    "others 32", low=1, nullable=True),
        "learning_rate": paracel.Param(float, None, "step size eta0 (ftrl: alpha); null: "
                                       "sgd, downpour, ipm 10 / L, gd 1 / L (L from the "
                                       "data, see the docs), ftrl 0.5", low=0,
                                       closed="neither", nullable=True),
        "lr_schedule": paracel.Param(str, "inverse", "sgd, downpour, ipm: eta0, eta0 / (1 + "
                                     "lr_decay e) or eta0 / sqrt(1 + lr_decay e) at epoch e",
                                     choices=("constant", "inverse", "inverse_sqrt")),
        "lr_decay": paracel.Param(float, 0.05, "sgd, downpour, ipm: decay rate of the "
                                  "schedule, per epoch", low=0.0),
        "n_fetch": paracel.Param(int, 5, "downpour: a worker fetches the weights every this "
                                 "many of its steps", low=1),
        "n_push": paracel.Param(int, 5, "downpour: a worker pushes its update made since its "
                                "last push every this many of its steps", low=1),
        "acceleration": paracel.Param(bool, True, "gd: FISTA momentum with adaptive restart"),
        "tol": paracel.Param(float, 1e-4, "stopping tolerance (lbfgs: max |gradient|, "
                             "scikit-learn's; sgd: relative improvement of the objective "
                             "since the step size was twice as large; gd: relative weight "
                             "change; ftrl: unused); null: run all epochs", low=0.0,
                             nullable=True),
        "n_iter_no_change": paracel.Param(int, 5, "epochs (gd: iterations) within tol "
                                          "before stopping", low=1),
        "n_features": paracel.Param(int, None, "number of features; null: the largest "
                                    "index in the input", low=1, nullable=True),
        "zero_based": paracel.Param((bool, str), "auto", "whether feature indices start at "
                                    "0 ('auto': only if some index is 0)",
                                    choices=(True, False, "auto")),
        "init_model": paracel.Param(str, None, "a model.h5 of an earlier run to start from "
                                    "(warm start; relative to the job file)", nullable=True,
                                    path=True),
        "trace_every": paracel.Param(int, 0, "sgd: every this many clocks each worker "
                                     "traces its share's log-loss under the current model "
                                     "(share_loss in worker_history; 0: never)", low=0),
        "predict": paracel.Param(bool, False, "write pred_<worker> files (row, label, "
                                 "probability)"),
        "memory": paracel.Param(int, 10, "lbfgs: correction pairs kept (scikit-learn's "
                                "lbfgs keeps 10)", low=1),
        "admit": paracel.Param(int, 0, "lbfgs: a feature gets a weight only if it occurs in "
                               "at least this many training examples (0, 1: every "
                               "feature)", low=0),
        "test": paracel.Param(str, None, "a held-out LIBSVM file (relative to the job file): "
                              "its log-loss, AUC and accuracy after every iteration (lbfgs, "
                              "gd) or pass (ftrl, ipm), and at the end (all)", nullable=True,
                              path=True),
    }

    def __init__(self, **params):
        super().__init__(**params)
        if self.epochs == 0 and self.init_model is None:
            raise ConfigError("params.epochs: 0 applies init_model to the input, but "
                              "init_model is not set")
        if self.admit > 1 and self.method not in ("lbfgs", "ftrl"):
            raise ConfigError(f"params.admit: only lbfgs and ftrl keep their model by "
                              f"feature id; method {self.method!r} cannot admit features")

    def check_job(self, job):
        """Refuse checkpoints for SGD without ``tol`` at a staleness other
        than 0: each worker then stops at its own clock (once all of them
        together made the budget of steps), and a checkpoint needs every
        worker at the same clock."""
        if (job.checkpoint is not None and self.method == "sgd" and self.tol is None
                and job.staleness != 0):
            raise ConfigError("checkpoint: lr's SGD without tol stops each worker at its own "
                              "clock unless staleness is 0, and a checkpoint needs every "
                              "worker at the same clock; set staleness 0 or params.tol")

    # -- the run -----------------------------------------------------------

    def solve(self):
        self.batch_size_ = self.batch_size or (1024 if self.method == "ftrl" else 32)
        if self.epochs == 0:
            return self._apply()
        if self.method == "lbfgs":
            return self._lbfgs()
        if self.method == "ftrl":
            return self._ftrl()
        if self.method == "downpour":
            return self._downpour()
        if self.method == "ipm":
            return self._ipm()
        self._load()
        w, intercept = self._model()
        if self.method == "sgd":
            epochs, converged = self._sgd(w, intercept)
        else:
            epochs, converged = self._gd(w, intercept)
        return self._finish(w, intercept, epochs, converged)

    def state(self):
        """The loop's progress (:class:`SGDProgress`, :class:`GDProgress` or
        :class:`lbfgs.Progress`): all this worker carries from one clock to
        the next. The model, the counters and the partial sums are on the
        servers."""
        if self.method in ("lbfgs", "ftrl"):
            return self.progress_.state()
        if self.method == "downpour":
            self.progress_.replica = self.replica_.state()
            return self.progress_.state()
        if self.method == "ipm":
            return {"rng": self.rng_.bit_generator.state}
        return asdict(self.progress_)

    def restore(self, state):
        """Take back :meth:`state`; SGD's generator restarts from its state
        before the current pass's shuffle, which ``solve()`` draws again."""
        if self.method == "gd":
            self.progress_ = GDProgress(**state)
            return
        if self.method == "lbfgs":
            self.progress_ = lbfgs.Progress(**state)
            return
        if self.method == "ftrl":
            self.progress_ = ftrl.Progress(**state)
            self.rng_ = np.random.default_rng()
            self.rng_.bit_generator.state = self.progress_.shuffle_rng
            return
        if self.method == "downpour":
            self.progress_ = downpour.Progress(**state)
            self.replica_ = downpour.Replica.from_state(self.progress_.replica)
            self.rng_ = np.random.default_rng()
            self.rng_.bit_generator.state = self.progress_.shuffle_rng
            return
        if self.method == "ipm":
            self.rng_ = np.random.default_rng()
            self.rng_.bit_generator.state = state["rng"]
            return
        self.progress_ = SGDProgress(**state)
        self.rng_ = np.random.default_rng()
        self.rng_.bit_generator.state = self.progress_.shuffle_rng

    def _gather(self, value):
        """Every worker's ``value`` (numbers), as an array in worker order."""
        every = self.allgather(value)
        return every[:, 0] if np.ndim(value) == 0 else every

    def _labels(self, labels, both=True):
        """The 0/1 labels of this share, once every worker's agree on a
        convention (-1/+1 or 0/1, with ``both``: both classes present)."""
        seen = set()
        for values in self.allgather_objects(np.unique(labels).tolist()):
            seen.update(values)
        if not seen:
            raise DataError(f"{self.input_files[0]}: no examples in the input")
        if not seen <= {-1.0, 0.0, 1.0} or {-1.0, 0.0} <= seen:
            raise DataError(f"{self.input_files[0]}: labels must be -1/+1 or 0/1; found "
                            f"{', '.join(f'{v:g}' for v in sorted(seen))}")
        if both and (1.0 not in seen or len(seen) < 2):
            raise DataError(f"{self.input_files[0]}: every label is {min(seen):g}; "
                            "logistic regression needs both classes")
        self.negative_ = -1 if -1.0 in seen else 0
        return (labels > 0).astype(np.float64)

    def _load(self):
        """Load this worker's share; agree on sizes, labels and the step size."""
        labels, X = self.load_libsvm(n_features=self.n_features, zero_based=self.zero_based)
        X.sum_duplicates()
        self.y_ = self._labels(labels)
        self.X_ = X
        self.columns_ = np.unique(X.indices)           # the features this share touches
        self.Xc_ = compact(X, self.columns_)
        sizes = self._gather(X.shape[0]).astype(np.int64)
        self.sizes_ = sizes
        self.n_ = int(sizes.sum())
        self.offset_ = int(sizes[:self.worker_id].sum())
        self.n_features_ = X.shape[1]
        self.lam_ = 0.0 if self.penalty == "none" else 1.0 / (self.C * self.n_)
        squares = float(X.multiply(X).sum())
        total = float(self._gather(squares).sum())
        curvature = (total + self.n_ * self.fit_intercept) / (4.0 * self.n_)
        curvature = curvature if curvature > 0 else 0.25
        if self.learning_rate is not None:
            self.eta0_ = self.learning_rate
        else:
            self.eta0_ = (10.0 if self.method == "sgd" else 1.0) / curvature
        width = max(self.num_workers, self.num_servers) * BLOCKS_PER_RANK
        self.block_rows_ = int(min(MAX_BLOCK_ROWS, max(1, -(-self.n_features_ // width))))
        self.test_ = self._load_test() if self.test else None
        if self.worker_id == 0:
            self.log.info("lr: %d examples, %d features, %s with %s penalty, C=%g, eta0=%.4g",
                          self.n_, self.n_features_, self.method, self.penalty, self.C,
                          self.eta0_)

    def _model(self):
        """The weight vector ``w`` and the intercept on the servers (zeros, or
        the model of ``init_model``)."""
        w = self.matrix("w", (self.n_features_,), block_rows=self.block_rows_)
        intercept = self.matrix("intercept", (1,))
        if self.init_model is not None:
            from paracel.io import h5

            shape, _, _ = h5.matrix_info(self.init_model, "w")
            if shape != (self.n_features_,):
                raise DataError(f"{self.init_model}: its w has shape {shape}, the input "
                                f"has {self.n_features_} features")
            if self.resumed:                          # already loaded, and trained since
                return w, intercept
            w = self.load_model(self.init_model, "w", block_rows=self.block_rows_,
                                dtype=np.float64)
            if self.fit_intercept:
                try:
                    h5.matrix_info(self.init_model, "intercept")
                except DataError:
                    pass
                else:
                    intercept = self.load_model(self.init_model, "intercept", dtype=np.float64)
        return w, intercept

    def _my_blocks_of(self, matrix):
        return list(range(self.worker_id, matrix.num_blocks, self.num_workers))

    def _step_size(self, progress):
        """The step size of one worker's batch after ``progress`` epochs: the
        schedule's ``eta`` over the number of workers ``W``. The ``W`` steps
        of a clock are computed from about the same model, so together they
        make one step ``eta`` along the mean gradient of the clock's ``W``
        batches, whatever ``W`` (``W`` steps of ``eta`` would make a step ``W``
        times as long, which overshoots: see the module docstring)."""
        if self.lr_schedule == "inverse":
            eta = self.eta0_ / (1.0 + self.lr_decay * progress)
        elif self.lr_schedule == "inverse_sqrt":
            eta = self.eta0_ / np.sqrt(1.0 + self.lr_decay * progress)
        else:
            eta = self.eta0_
        return eta / self.num_workers

    # -- SGD under SSP -----------------------------------------------------

    def _sgd(self, w, intercept):
        """Mini-batch SGD; returns ``(epochs run, converged)``.

        The loop runs on :attr:`progress_` (:class:`SGDProgress`), advanced
        before each clock's ``iter_commit``, so a resumed job takes the next
        batch of the same shuffle. Between two passes, the ``tol`` test (the
        objective of the model the pass's last clock left) is part of the
        next clock.
        """
        target, shared, batches = self._sgd_setup(w, intercept)
        # without tol: every worker steps until all of them together made
        # `epochs` passes' worth of steps (so under SSP/async nobody trains
        # alone on its share at the end); with tol: each makes `batches` steps
        # a pass and all meet at each pass's end
        budget = self.epochs * self.steps_per_epoch_ if self.tol is None else None
        if not self.resumed:
            self.rng_ = self.rng()
            self.progress_ = SGDProgress(batch=batches)
        progress = self.progress_
        pieces = self._shuffle(batches) if progress.epoch else None
        while not progress.done:
            if progress.batch == batches:                 # between two passes
                if self._sgd_stops(progress, budget, target, shared):
                    break
                progress.epoch += 1
                progress.batch, progress.loss_sum, progress.seen = 0, 0.0, 0
                pieces = self._shuffle(batches)
            batch = np.sort(pieces[progress.batch])
            result = self._sgd_step(target, shared, batch, budget)
            if result is None:
                break
            progress.batch += 1
            progress.loss_sum += result[0]
            progress.seen += batch.size
            self.trace(batch_loss=result[0] / max(batch.size, 1))
            self.report(loss=progress.loss_sum / max(progress.seen, 1),
                        epoch=round(result[1], 4))
            if self.trace_every and (self.clock + 1) % self.trace_every == 0:
                self._trace_share_loss(target, shared)
            self.iter_commit()
        progress.done = True
        self.epochs_run_ = progress.epoch if budget is None else self.epochs
        self.sync()
        # the trained values into w and the intercept: copies of what no longer
        # changes, so a resumed finished job may make them again
        if self.worker_id == 0 and self.fit_intercept:
            intercept.push([0], shared.pull([0]), fn="replace")
        if self.penalty == "l1":
            self._copy_blocks(target, w, from_column=0)   # syncs
        else:
            self.sync()
        return self.epochs_run_, progress.converged

    def _sgd_setup(self, w, intercept):
        """SGD's matrices and constants: ``(target, shared, batches per pass)``.

        A fresh job fills the matrices here, before clock 1; a resumed one
        finds them on the servers.
        """
        fresh = not self.resumed
        rows = self.Xc_.shape[0]
        batches = max(1, int(max(-(-size // self.batch_size_) for size in self.sizes_)))
        # the non-empty batches of one pass over all shares (a share smaller
        # than `batches` rows leaves some of its batches empty)
        self.steps_per_epoch_ = int(sum(min(int(size), batches) for size in self.sizes_))
        self.mean_batch_ = self.n_ / self.steps_per_epoch_
        target = w
        if self.penalty == "l1":
            target = self.matrix("lr.l1", (self.n_features_, 2), block_rows=self.block_rows_)
            if self.init_model is not None and fresh:
                self._copy_blocks(w, target, into_column=0)
        elif self.penalty == "l2":
            df = self.matrix("lr.df", (self.n_features_,), block_rows=self.block_rows_)
            if fresh:
                counts = np.diff(self.X_.tocsc().indptr)[self.columns_].astype(np.float64)
                df.push(self.columns_, counts)
                self.sync()
            touch = 1.0 - (1.0 - df.pull(self.columns_) / self.n_) ** self.mean_batch_
            self.exponent_ = 1.0 / np.maximum(touch, 1e-300)
        self.my_share_ = min(rows, batches) / self.steps_per_epoch_
        # [intercept, u, steps, steps of worker 0, 1, ...], pulled with every
        # batch: u = sum of eta * lam over every worker's steps so far (the
        # total l1 penalty each weight should have had), steps = how many steps
        # all workers made (the schedule's clock)
        shared = self.matrix("lr.sgd", (3 + self.num_workers,))
        if fresh:
            if self.worker_id == 0 and self.fit_intercept:
                shared.push([0], intercept.pull([0]), fn="replace")
            self.sync()
        return target, shared, batches

    def _shuffle(self, batches):
        """The current pass's batches (positions in the share), shuffled by
        :attr:`rng_`, whose state before the shuffle is kept in the progress:
        a resumed job draws the same pass again."""
        self.progress_.shuffle_rng = self.rng_.bit_generator.state
        return np.array_split(self.rng_.permutation(self.Xc_.shape[0]), batches)

    def _sgd_stops(self, progress, budget, target, shared):
        """At the end of a pass (or before the first): whether to stop. With
        ``tol``, the objective ``F`` of the current model (reported as
        ``objective``) has improved by less than ``tol`` (relative) on its
        value when the step size was ``STEP_RATIO`` times as large, at
        ``n_iter_no_change`` pass ends in a row; without a budget, ``epochs``
        passes are made."""
        if self.tol is not None and progress.epoch:
            now = self._objective(target, shared)
            progress.objectives.append(now)
            self.report(objective=now)
            before = self._objective_before(progress.objectives)
            if before is not None:
                progress.stale = progress.stale + 1 if before - now < self.tol * now else 0
            progress.converged = progress.stale >= self.n_iter_no_change
        return progress.converged or (budget is None and progress.epoch >= self.epochs)

    def _objective_before(self, objectives):
        """``F`` at the end of the latest pass whose step size was at least
        ``STEP_RATIO`` times the current one (``objectives[p - 1]`` is ``F``
        after pass ``p``, when the progress is ``p`` epochs); ``None`` while
        there is none (early on, or with a constant step)."""
        current = len(objectives)
        for done in range(current - 1, 0, -1):
            if self._step_size(done) >= STEP_RATIO * self._step_size(current):
                return objectives[done - 1]
        return None

    def _objective(self, target, shared):
        """``F(w, b)`` of the current model, exactly, over all the data: each
        worker adds its share's log-loss and the penalty of its blocks of
        ``w``, summed in worker order. Two barriers: before, so that every
        step of the pass has landed; after the partial sums are written, so
        that nobody steps on before every worker has read the model."""
        self.sync()
        mine = self._my_blocks_of(target)
        blocks = self.read_multi([target.block_key(b) for b in mine]) if mine else []
        if self.penalty == "l1":
            blocks = [value[:, 0] for value in blocks]
        part = [self._share_log_loss(target, shared),
                sum(penalty_value(v, self.penalty) for v in blocks)]
        self.write(("lr.objective", self.worker_id), np.array(part))
        self.sync()
        total = np.zeros(2)
        for value in self.read_multi([("lr.objective", k) for k in range(self.num_workers)]):
            total += value                                # worker order: reproducible
        return float(total[0] / self.n_ + self.lam_ * total[1])

    def _share_log_loss(self, target, shared):
        """This share's summed log-loss under the current model."""
        bias, weights = self.pull_many([(shared, [0]), (target, self.columns_)])
        if weights.ndim == 2:
            weights = weights[:, 0]
        z = self.Xc_ @ weights + bias[0]
        return float(log_losses(z, self.y_).sum())

    def _trace_share_loss(self, target, shared):
        """Trace ``share_loss``: this share's summed log-loss under the
        current model, and its size (summed over the workers' latest
        traces, the training log-loss over time)."""
        self.trace(share_loss=[self._share_log_loss(target, shared), float(len(self.y_))])

    def _sgd_step(self, target, shared, batch, budget):
        """One mini-batch step: ``(summed log-loss of the batch before the step,
        progress in epochs)``, or ``None`` once all workers made ``budget`` steps."""
        me = 3 + self.worker_id
        X = self.Xc_[batch]
        used, local = np.unique(X.indices, return_inverse=True)
        X = scipy.sparse.csr_matrix((X.data, local, X.indptr), shape=(X.shape[0], len(used)))
        features = self.columns_[used]
        # the counters and the batch's weights in one round trip
        counters, weights = self.pull_many([(shared, [0, 1, 2, me]), (target, features)])
        bias, owed, steps, mine = counters
        if budget is not None and steps >= budget:
            return None
        progress = steps / self.steps_per_epoch_
        if not batch.size:
            return 0.0, progress
        eta = self._step_size(progress)
        owed += eta * self.lam_                           # this step's share, too
        if weights.ndim == 2:
            weights = weights[:, 0]
        y = self.y_[batch]
        z = X @ weights + bias
        # the batch's summed gradient over the mean batch size (not its own
        # size), times the correction for how much more often than its share
        # of the data this worker has stepped: then every example weighs the
        # same, however the shares' sizes and the workers' speeds differ
        prior = self.steps_per_epoch_
        ahead = (mine + self.my_share_ * prior) / (steps + prior) / self.my_share_
        residual = (expit(z) - y) * (np.clip(1.0 / ahead, 0.25, 4.0) / self.mean_batch_)
        step = -eta * (X.T @ residual)
        if self.penalty == "l2":
            shrink = (1.0 + eta * self.lam_) ** self.exponent_[used]
            target.push(features, np.column_stack([step, shrink]), fn="lr_sgd_l2")
        elif self.penalty == "l1":
            target.push(features, np.column_stack([step, np.full(len(step), owed)]),
                        fn="lr_sgd_l1")
        else:
            target.push(features, step)
        shared.push([0, 1, 2, me], [-eta * residual.sum() if self.fit_intercept else 0.0,
                                    eta * self.lam_, 1.0, 1.0])
        return float(log_losses(z, y).sum()), progress

    def _copy_blocks(self, source, target, from_column=None, into_column=None):
        """Copy this worker's blocks of ``source`` into ``target`` (same block
        layout), between a vector and one column of a 2-column matrix; then sync."""
        mine = self._my_blocks_of(target)
        if mine:
            values = self.read_multi([source.block_key(b) for b in mine])
            out = {}
            for block, value in zip(mine, values):
                if from_column is not None:
                    value = np.ascontiguousarray(value[:, from_column])
                if into_column is not None:
                    full = np.zeros(target.block_shape(block))
                    full[:, into_column] = value
                    value = full
                out[target.block_key(block)] = value
            self.write_multi(out)
        self.sync()

    # -- full-batch (accelerated) proximal gradient ------------------------

    def _gd(self, w, intercept):
        """Full-batch proximal gradient; returns ``(iterations run, converged)``.

        Iteration ``t`` is clock ``t``: the loop runs on ``self.clock`` and
        :attr:`progress_` (:class:`GDProgress`), so a resumed job takes the
        next iteration.
        """
        point = self.matrix("lr.y", (self.n_features_,), block_rows=self.block_rows_)
        grads = [self.matrix(f"lr.grad.{k}", (self.n_features_,), block_rows=self.block_rows_)
                 for k in range(self.num_workers)]
        mine = self._my_blocks_of(w)
        if not self.resumed:
            self.progress_ = self._gd_start(w, intercept, point, mine)
        progress = self.progress_
        while not progress.converged and self.clock < self.epochs:
            self._gd_iteration(progress, w, point, grads, mine)
        # a copy of what no longer changes: a resumed finished job may make it again
        if self.worker_id == 0 and self.fit_intercept:
            intercept.push([0], [progress.x_b], fn="replace")
        self.sync()
        return self.clock, progress.converged

    def _gd_start(self, w, intercept, point, mine):
        """The progress before iteration 1 (and ``y = w`` on the servers for
        a warm start)."""
        x_b = float(intercept.pull([0])[0]) if self.fit_intercept else 0.0
        # what this worker's phase 2 found, sent with the next phase 1:
        # [penalty of its blocks of x, restart dot product, max |change|, max |x|]
        found = np.zeros(4)
        if mine:
            blocks = self.read_multi([w.block_key(b) for b in mine])
            if self.init_model is not None:
                self.write_multi({point.block_key(b): v for b, v in zip(mine, blocks)})
            found = np.array([sum(penalty_value(v, self.penalty) for v in blocks), 0.0, np.inf,
                              max(float(np.abs(v).max(initial=0.0)) for v in blocks)])
        self.sync()
        return GDProgress(x_b=x_b, y_b=x_b, found=found)

    def _gd_iteration(self, progress, w, point, grads, mine):
        """One iteration, ending its clock."""
        W, me, n = self.num_workers, self.worker_id, self.n_
        # phase 1: this share's gradient at y
        z = self.Xc_ @ point.pull(self.columns_) + progress.y_b
        residual = expit(z) - self.y_
        grads[me].push(self.columns_, self.Xc_.T @ residual, fn="replace")
        self.write(("lr.gd", me), np.concatenate([[log_losses(z, self.y_).sum(),
                                                   residual.sum()], progress.found]))
        self.sync()
        # phase 2: every worker's sums, then the owned blocks' update
        keys = [("lr.gd", k) for k in range(W)]
        keys += [grads[k].block_key(b) for b in mine for k in range(W)]
        keys += [point.block_key(b) for b in mine] + [w.block_key(b) for b in mine]
        values = self.read_multi(keys)
        stats, values = np.array(values[:W]), values[W:]
        self.report(loss=float(stats[:, 0].sum()) / n)
        if self._gd_converged(progress, stats):
            progress.converged = True
            self.iter_commit()
            return
        beta = self._gd_intercept_step(progress, stats)
        progress.found = self._gd_blocks(mine, values, w, point, self.eta0_, self.lam_, beta)
        self.sync()
        self.report(**self._heldout(self._dense_weights(w), progress.x_b))
        self.iter_commit()

    def _gd_converged(self, progress, stats):
        """The ``tol`` test on the previous iteration's change (from the
        second iteration on)."""
        if self.clock == 0 or self.tol is None:
            return False
        change = max(float(stats[:, 4].max()), progress.change_b)
        largest = max(float(stats[:, 5].max()), abs(progress.x_b))
        progress.within = progress.within + 1 if change <= self.tol * largest else 0
        return progress.within >= self.n_iter_no_change

    def _gd_intercept_step(self, progress, stats):
        """Advance the momentum (restarting it if the step went uphill) and
        the intercept, the same numbers on every worker, so kept by each;
        returns the momentum factor ``beta``."""
        restart = float(stats[:, 3].sum()) + progress.dot_b > 0.0
        if restart or not self.acceleration:
            progress.momentum = 1.0
        following = (1.0 + np.sqrt(1.0 + 4.0 * progress.momentum * progress.momentum)) / 2.0
        beta = (progress.momentum - 1.0) / following if self.acceleration else 0.0
        progress.momentum = following
        x_b, y_b = progress.x_b, progress.y_b
        new_b = 0.0
        if self.fit_intercept:
            new_b = y_b - self.eta0_ * float(stats[:, 1].sum()) / self.n_
        progress.dot_b = (y_b - new_b) * (new_b - x_b)
        progress.change_b = abs(new_b - x_b)
        progress.y_b = new_b + beta * (new_b - x_b)
        progress.x_b = new_b
        return beta

    def _gd_blocks(self, mine, values, w, point, eta, lam, beta):
        """Phase 2 on this worker's blocks; returns its partial sums."""
        W, n, penalty = self.num_workers, self.n_, self.penalty
        count = len(mine)
        grad_parts = values[:count * W]
        ys, xs = values[count * W:count * W + count], values[count * W + count:]
        updates = {}
        found = np.zeros(4)
        for i, block in enumerate(mine):
            gradient = grad_parts[i * W]
            for k in range(1, W):                         # worker order: reproducible
                gradient = gradient + grad_parts[i * W + k]
            y, x = ys[i], xs[i]
            new = prox(y - eta * gradient / n, eta * lam, penalty)
            updates[w.block_key(block)] = new
            updates[point.block_key(block)] = new + beta * (new - x)
            found[0] += penalty_value(new, penalty)
            found[1] += float((y - new) @ (new - x))
            found[2] = max(found[2], float(np.abs(new - x).max(initial=0.0)))
            found[3] = max(found[3], float(np.abs(new).max(initial=0.0)))
        if updates:
            self.write_multi(updates)
        return found

    # -- L-BFGS / OWL-QN on a row table keyed by feature id ----------------

    def _lbfgs(self):
        """Load, train by :class:`lbfgs.Solver`, finish; iteration ``t`` is
        clock ``t``."""
        self._load_sparse()
        table = self.rows("lr.lbfgs", width=lbfgs.width(self.memory, self.num_workers))
        solver = lbfgs.Solver(self, table, self.memory)
        if not self.resumed:
            self._fill_table(table, lbfgs.X)
            self.progress_ = solver.start()
        progress = self.progress_
        while not (progress.converged or progress.failed) and self.clock < self.epochs:
            solver.iteration(progress)
            self.report(objective=progress.objective, gradient=progress.largest,
                        **self._heldout(lambda ids: table.pull(ids, columns=[lbfgs.X])[:, 0],
                                        progress.intercept[lbfgs.X]))
            self.iter_commit()
        if progress.failed and self.worker_id == 0:
            self.log.warning("lr: the line search found no step that lowers the objective "
                             "(converged as far as float64 allows, or a bad learning problem); "
                             "stopping after %d iterations", progress.iterations)
        bias = progress.intercept[lbfgs.X]
        return self._sparse_finish(table, lbfgs.X, bias, progress.iterations,
                                   progress.converged, progress.penalty, progress.nonzeros,
                                   table.size())

    def _ftrl(self):
        """Load, train by :class:`ftrl.Learner` for ``epochs`` passes (every
        worker the same number of batches a pass, a clock each), finish."""
        self._load_sparse(admit=False)
        table = self.rows("lr.ftrl", width=ftrl.WIDTH, admit=self.admit)
        alpha = self.learning_rate or FTRL_ALPHA
        learner = ftrl.Learner(self, table, alpha, FTRL_BETA)
        if not self.resumed:
            if self.init_model is not None:
                self._ftrl_warm_start(table, alpha, learner)
            self.rng_ = self.rng()
            self.progress_ = ftrl.Progress(batch=learner.batches)
        progress = self.progress_
        pieces = learner.shuffle(progress, self.rng_) if progress.epoch else None
        while progress.batch < learner.batches or progress.epoch < self.epochs:
            if progress.batch == learner.batches:
                progress.epoch += 1
                progress.batch, progress.loss_sum, progress.seen = 0, 0.0, 0
                pieces = learner.shuffle(progress, self.rng_)
            batch = np.sort(pieces[progress.batch])
            loss = learner.step(progress, batch) if batch.size else 0.0
            progress.batch += 1
            progress.loss_sum += loss
            progress.seen += batch.size
            self.report(loss=progress.loss_sum / max(progress.seen, 1),
                        epoch=round(progress.epoch - 1 + progress.batch / learner.batches, 4))
            if progress.batch == learner.batches:
                self.report(**self._heldout(
                    lambda ids: table.pull(ids, columns=[ftrl.W])[:, 0],
                    self._ftrl_bias(table)))
            self.iter_commit()
        penalty, nonzeros = learner.finish(self.epochs)
        return self._sparse_finish(table, ftrl.W, self._ftrl_bias(table), self.epochs, False,
                                   penalty, nonzeros, table.size() - self.fit_intercept)

    def _downpour(self):
        """Load, train by :class:`downpour.Learner` for ``epochs`` passes
        (every worker the same number of batches a pass, a clock each),
        finish from the servers' model."""
        self._load_sparse(admit=False)
        self.eta0_ = downpour.default_eta0(self)
        table = self.rows("lr.downpour", width=1)
        learner = downpour.Learner(self, table)
        if not self.resumed:
            self.rng_ = self.rng()
            self.progress_ = learner.start()
            self.replica_ = downpour.Replica.from_state(self.progress_.replica)
        progress, replica = self.progress_, self.replica_
        pieces = learner.shuffle(progress, self.rng_) if progress.epoch else None
        while progress.batch < learner.batches or progress.epoch < self.epochs:
            if progress.batch == learner.batches:
                progress.epoch += 1
                progress.batch, progress.loss_sum, progress.seen = 0, 0.0, 0
                pieces = learner.shuffle(progress, self.rng_)
            batch = np.sort(pieces[progress.batch])
            progress.loss_sum += learner.step(progress, replica, batch)
            progress.batch += 1
            progress.seen += batch.size
            self.report(loss=progress.loss_sum / max(progress.seen, 1),
                        epoch=round(progress.epoch - 1 + progress.batch / learner.batches, 4))
            self.iter_commit()
        penalty, nonzeros = learner.finish(replica)
        return self._sparse_finish(table, 0, self._row_bias(table, 0), self.epochs, False,
                                   penalty, nonzeros, table.size() - 1)

    def _ipm(self):
        """Load, train by :class:`ipm.Learner`: epoch ``e`` is clock ``e``."""
        self._load_sparse(admit=False)
        self.eta0_ = downpour.default_eta0(self)
        table = self.rows("lr.ipm", width=1 + self.num_workers)
        learner = ipm.Learner(self, table)
        if not self.resumed:
            self.rng_ = self.rng()
            learner.start()
        while self.clock < self.epochs:
            loss = learner.epoch(self.rng_)
            total = self.sum_over_workers(np.array([loss]))[0]
            self.report(loss=float(total) / self.n_,
                        **self._heldout(lambda ids: table.pull(ids, columns=[0])[:, 0],
                                        self._row_bias(table, 0)))
            self.iter_commit()
        penalty, nonzeros = learner.finish()
        return self._sparse_finish(table, 0, self._row_bias(table, 0), self.epochs, False,
                                   penalty, nonzeros, table.size() - 1)

    def _row_bias(self, table, column):
        """The intercept's row of a table keyed by feature id (0 without one)."""
        if not self.fit_intercept:
            return 0.0
        return float(table.pull([ftrl.INTERCEPT], columns=[column])[0, 0])

    def _ftrl_bias(self, table):
        if not self.fit_intercept:
            return 0.0
        return float(table.pull([ftrl.INTERCEPT], columns=[ftrl.W])[0, 0])

    def _ftrl_warm_start(self, table, alpha, learner):
        """Rows whose weights are ``init_model``'s (``z`` chosen so that
        FTRL's closed form gives them with ``n = 0``)."""
        weights, bias = self._init_weights(self.ids_)
        l1, l2 = learner.penalties(1.0)
        z = -weights * (FTRL_BETA / alpha + l2) - np.sign(weights) * l1
        rows = np.column_stack([z, np.zeros_like(z), weights, np.zeros_like(z)])
        ids = self.ids_
        if self.fit_intercept:
            ids = np.append(ids, ftrl.INTERCEPT)
            rows = np.vstack([rows, [-bias * FTRL_BETA / alpha, 0.0, bias, 1.0]])
        table.push(ids, rows, fn="replace")
        self.sync()

    def _load_sparse(self, admit=True, both=True):
        """Load this worker's share over the features it uses (``ids_``,
        ``Xc_``), drop features below the admission count (with ``admit``),
        agree on sizes."""
        labels, X, ids = self.load_libsvm(n_features=self.n_features,
                                          zero_based=self.zero_based, compact=True)
        X.sum_duplicates()
        self.y_ = self._labels(labels, both)
        sizes = self.sum_over_workers(np.eye(self.num_workers)[self.worker_id] * X.shape[0])
        self.sizes_ = sizes.astype(np.int64)
        self.n_ = int(sizes.sum())
        self.offset_ = int(sizes[:self.worker_id].sum())
        self.lam_ = 0.0 if self.penalty == "none" else 1.0 / (self.C * self.n_)
        self.tol_ = self.tol or 0.0
        self.features_seen_ = None
        if admit and self.admit > 1:
            X, ids = self._admitted(X, ids)
        self.Xc_, self.ids_ = X, ids
        self.start_intercept_ = 0.0
        self.test_ = self._load_test() if self.test else None
        if self.worker_id == 0:
            self.log.info("lr: %d examples, %s with %s penalty, C=%g", self.n_, self.method,
                          self.penalty, self.C)

    def _apply(self):
        """``epochs: 0``: score the input with ``init_model`` (any method; no
        training, no model written): predictions, log-loss and accuracy
        against the input's labels (meaningless if they are placeholders),
        held-out scores of ``test``."""
        self._load_sparse(admit=False, both=False)
        weights, bias = self._init_weights(self.ids_)
        z = self.Xc_ @ weights + bias
        count, loss, right = self.sum_over_workers(
            [z.size, log_losses(z, self.y_).sum(), np.count_nonzero((z > 0) == (self.y_ > 0))])
        if self.predict:
            self._write_predictions(z)
        heldout = self._heldout(lambda ids: self._init_weights(ids)[0], bias)
        return {"log_loss": float(loss / max(count, 1)), "accuracy": float(right / max(count, 1)),
                "examples": self.n_, "epochs": 0, **heldout}

    def _admitted(self, X, ids):
        """``X`` and ``ids`` without the features that occur in fewer than
        ``admit`` examples over all shares (counted on the servers)."""
        counts = self.rows("lr.df", width=1)
        if not self.resumed:
            counts.push(ids, np.diff(X.tocsc().indptr).astype(np.float64))
        self.sync()
        kept = np.flatnonzero(counts.pull(ids)[:, 0] >= self.admit)
        if self.worker_id == 0:
            self.features_seen_ = counts.size()
        return X[:, kept].tocsr(), ids[kept]

    def _fill_table(self, table, column):
        """Make every feature of this share a row (before clock 1): zeros, or
        the weights of ``init_model``."""
        weights = np.zeros(self.ids_.size)
        if self.init_model is not None:
            weights, self.start_intercept_ = self._init_weights(self.ids_)
        table.push(self.ids_, weights[:, None], fn="replace", columns=[column])
        self.sync()

    def _init_weights(self, ids):
        """The weights of ``init_model`` at ``ids`` (0 for features it does
        not have) and its intercept; a model keyed by id (``ids``, ``w``) or
        a dense one (``w``, feature ``j`` at position ``j``)."""
        import h5py

        with h5py.File(self.init_model, "r") as handle:
            weights = np.asarray(handle["w"], dtype=np.float64)
            known = np.asarray(handle["ids"], dtype=np.uint64) if "ids" in handle else \
                np.arange(weights.size, dtype=np.uint64)
            intercept = float(np.asarray(handle["intercept"])[0]) \
                if "intercept" in handle and self.fit_intercept else 0.0
        if not np.isfinite(weights).all() or not np.isfinite(intercept):
            raise DataError(f"{self.init_model}: the model holds non-finite weights")
        order = np.argsort(known)
        known, weights = known[order], weights[order]
        where = np.minimum(np.searchsorted(known, ids), max(known.size - 1, 0))
        found = known.size > 0
        return (np.where(found & (known[where] == ids), weights[where], 0.0)
                if found else np.zeros(ids.size)), intercept

    def _load_test(self):
        """This worker's share of the ``test`` file: ``(y, X, ids)``, its
        indices read with the training input's base."""
        labels, X, ids = self.load_libsvm(files=[self.test], zero_based=self.zero_based_,
                                          compact=True)
        X.sum_duplicates()
        return (labels > 0).astype(np.float64), X, ids

    def _heldout(self, weights_of, bias):
        """The held-out metrics of the current model (``{}`` without
        ``test``): ``test_log_loss``, ``test_auc``, ``test_accuracy``. A
        collective call; ``weights_of(ids)`` reads the weights of feature
        ids."""
        if self.test_ is None:
            return {}
        y, X, ids = self.test_
        z = X @ weights_of(ids) + bias
        count, loss, right = self.sum_over_workers(
            [y.size, log_losses(z, y).sum(), np.count_nonzero((z > 0) == (y > 0))])
        scores, labels = self._gather_scores(z, y)
        metrics = {"test_log_loss": float(loss / max(count, 1)),
                   "test_accuracy": float(right / max(count, 1))}
        if self.worker_id == 0:
            metrics["test_auc"] = auc(scores, labels)
        return metrics

    def _gather_scores(self, z, y):
        """Every worker's held-out margins and labels on worker 0 (else
        ``None``, ``None``)."""
        from paracel.waiting import gather_arrays

        return gather_arrays(self.comm, z), gather_arrays(self.comm, y)

    def _sparse_finish(self, table, column, bias, iterations, converged, penalty, nonzeros,
                       features):
        """Final metrics on the training data; ``model.h5`` with the
        features' ids and weights (every row but the intercept's); predictions."""
        z = self.Xc_ @ table.pull(self.ids_, columns=[column])[:, 0] + bias
        count, loss, right = self.sum_over_workers(
            [z.size, log_losses(z, self.y_).sum(), np.count_nonzero((z > 0) == (self.y_ > 0))])
        log_loss = loss / self.n_
        model = []
        if self.worker_id == 0:
            ids, weights = table.items(columns=[column])
            order = np.argsort(ids)
            order = order[ids[order] != ftrl.INTERCEPT]
            model = [("ids", ids[order]), ("w", weights[order, 0]),
                     ("intercept", np.array([bias]))]
        self.save_model("model.h5", model, method=self.method, penalty=self.penalty, C=self.C,
                        fit_intercept=self.fit_intercept, examples=self.n_,
                        zero_based=self.zero_based_)
        if self.predict:
            self._write_predictions(z)
        metrics = {"log_loss": float(log_loss), "accuracy": float(right / self.n_),
                   "objective": float(log_loss + self.lam_ * penalty),
                   "nonzeros": int(nonzeros), "intercept": float(bias),
                   "epochs": int(iterations), "converged": bool(converged),
                   "examples": self.n_, "features": int(features)}
        if self.features_seen_ is not None:
            metrics["features_seen"] = int(self.features_seen_)
        heldout = self._heldout(lambda ids: table.pull(ids, columns=[column])[:, 0], bias)
        return {**metrics, **heldout}

    def _write_predictions(self, z):
        """``pred_<worker>``: row, label, probability of this share."""
        probability = expit(z)
        label = np.where(z > 0, 1, self.negative_)
        self.dump("pred_", [(self.offset_ + i, (int(label[i]), f"{probability[i]:.6g}"))
                            for i in range(len(z))], sep="\t")

    # -- the end -----------------------------------------------------------

    def _finish(self, w, intercept, epochs, converged):
        """Final metrics on the training data; model, weights and predictions."""
        weights = w.pull(self.columns_)
        bias = float(intercept.pull([0])[0]) if self.fit_intercept else 0.0
        z = self.Xc_ @ weights + bias
        mine = self._my_blocks_of(w)
        blocks = self.read_multi([w.block_key(b) for b in mine]) if mine else []
        part = [float(log_losses(z, self.y_).sum()), float(((z > 0) == (self.y_ > 0)).sum()),
                sum(penalty_value(v, self.penalty) for v in blocks),
                float(sum(np.count_nonzero(v) for v in blocks))]
        totals = np.zeros(4)
        for row in self._gather(part):                    # worker order: reproducible
            totals += row
        log_loss = totals[0] / self.n_
        self.save_model("model.h5", [w, intercept], method=self.method,
                        penalty=self.penalty, C=self.C, fit_intercept=self.fit_intercept,
                        n_features=self.n_features_, examples=self.n_)
        self.dump("w_", [(start + i, repr(float(v)))
                         for b, value in zip(mine, blocks)
                         for start in [w.block_range(b)[0]]
                         for i, v in enumerate(value)])
        if self.predict:
            self._write_predictions(z)
        return {"log_loss": float(log_loss),
                "accuracy": float(totals[1] / self.n_),
                "objective": float(log_loss + self.lam_ * totals[2]),
                "nonzeros": int(totals[3]),
                "intercept": bias,
                "epochs": int(epochs),
                "converged": bool(converged),
                "examples": self.n_,
                "features": self.n_features_,
                "learning_rate": float(self.eta0_),
                **self._heldout(self._dense_weights(w), bias)}

    def _dense_weights(self, w):
        """``weights_of(ids)`` for :meth:`_heldout` from the dense ``w``
        (features beyond ``n_features`` weigh 0: training never saw them)."""
        def weights_of(ids):
            known = ids < self.n_features_
            out = np.zeros(ids.size)
            if known.any():
                out[known] = w.pull(ids[known].astype(np.int64))
            return out
        return weights_of
