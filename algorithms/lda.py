"""Latent Dirichlet Allocation by collapsed Gibbs sampling, the parameter-server way.

What it computes
----------------
A ``topics``-topic LDA model of a corpus (Blei, Ng & Jordan 2003) fitted by
collapsed Gibbs sampling (Griffiths & Steyvers 2004): every token ``i`` (word
``w`` in document ``d``) carries a topic ``z_i``, resampled from

    p(z_i = k | rest) ∝ (n_wk[w, k] + beta) / (n_k[k] + V beta) · (n_dk[d, k] + alpha)

with the token's own assignment left out of the counts. The quality measure
is the complete log-likelihood ``log p(w, z)`` as the PyPI ``lda`` package's
``LDA.loglikelihood()`` computes it (symmetric priors ``alpha``, ``beta``):

    log p(w, z) = sum_k [lgamma(V beta) - lgamma(V beta + n_k)]
        + sum_{w,k: n_wk > 0} [lgamma(beta + n_wk) - lgamma(beta)]
        + sum_d [lgamma(K alpha) - lgamma(K alpha + n_d)]
        + sum_{d,k: n_dk > 0} [lgamma(alpha + n_dk) - lgamma(alpha)]

Parallel scheme (AD-LDA, as in Yahoo! LDA and Petuum)
-----------------------------------------------------
The documents are split across the workers (each loads only its share);
each worker keeps its tokens' assignments ``z`` and its documents' counts
``n_dk`` locally. The topic-word counts live on the servers as the
distributed ``V × K`` int64 matrix ``n_wk`` (row blocks spread over the
servers) and the topic totals as the ``K`` vector ``n_k``. One clock is one
sweep over the worker's documents:

1. pull the ``n_wk`` rows of the words in its documents (plus the rows it
   owns for the log-likelihood, ``w ≡ worker_id mod num_workers``) and
   ``n_k``, into a local copy;
2. sample every token, updating the local copy as it goes;
3. push the change of its rows (new − old, only rows that changed) and of
   ``n_k`` with ``"add"``, then ``iter_commit()``.

Within a sweep the tokens are sampled in ``chunks`` vectorised steps: each
document's tokens (in a random order) are spread evenly over the chunks, and
all tokens of a chunk are drawn at once from the counts as they stood at the
chunk's start (each token's own assignment removed), then the counts are
updated. A document with at most ``chunks`` tokens is thus sampled strictly
sequentially, as in the serial sampler; tokens of one chunk see each other's
previous assignments, the same approximation AD-LDA makes across workers.

Staleness: with ``staleness: 0`` a worker waits (one barrier of the workers)
until all have pulled before it pushes, so every sweep reads exactly the
counts after the previous sweep and a run is deterministic for a fixed
``seed``. With ``s > 0`` a pull may miss up to ``s`` clocks of the other
workers' changes (SSP); counts stay exact on the servers and a worker always
sees its own changes, so no count it uses goes negative.

Log-likelihood: at the start of clock ``t`` each worker computes its part
(its owned ``n_wk`` rows, its documents; worker 0 adds the ``n_k`` term) from
what it pulled, i.e. for the state after ``t`` sweeps, and writes it into
its own entry of row ``t`` of the small table ``lda.loglik`` (a vector of
``iterations + 1`` rows of ``num_workers`` entries); summing a row in worker
order keeps the value reproducible. At clock ``t`` worker 0 reports
(``report``) the newest value complete on the servers: ``loglik`` after
``sweeps = t - s - 1`` sweeps (nothing per clock when asynchronous).
After the last sweep every worker syncs, so the final value is exact for
any staleness; with ``s > 0`` earlier values mix states within the
staleness window.

Checkpoints and resume
----------------------
Clock ``t + 1`` is sweep ``t`` (the first one also adds the initial counts),
and the loop runs on ``self.clock``. A worker's :meth:`LDA.state` is what it
carries between sweeps: its tokens' topics ``z`` and its generator's state.
A resumed job loads its share again and rebuilds the token order from a
fresh generator (the same draws as the first time), then takes back ``z``
and the generator and recounts ``n_dk`` from ``z``; it finds ``n_wk``, ``n_k``
and the log-likelihood rows in the restored tables, so it adds no initial
counts and continues with sweep ``clock``. After the last sweep the final
log-likelihood is written with ``replace``, so a job resumed from its final
checkpoint writes the same outputs again. With ``staleness: 0`` a resumed
run ends bitwise as the uninterrupted one.

Input
-----
One document per line, in one of two formats (parameter ``format``):

``"bow"`` (bag of words, LIBSVM-like; read with ``load_libsvm``)
    ``doc_id word_id:count word_id:count ...``; ``doc_id`` an integer,
    word ids 0-based, counts non-negative integers. The vocabulary size is
    ``vocab_size``, or the largest word id + 1 over all workers.
``"text"`` (read with ``load_lines``)
    Tokens separated by whitespace, taken as they are (an empty line is an
    empty document). The vocabulary is the sorted set of all workers' tokens
    (agreed with one ``allgather``); a document's id is its line number
    (0-based, over all input files in order).

Output
------
``topics.txt``
    One line per topic: ``k<TAB>w1 w2 ...``, its ``top_words`` most frequent
    words (ids for ``bow``, tokens for ``text``), most frequent first.
``doc_topic_<worker_id>``
    One line per document of that worker: ``doc_id<TAB>θ_1 ... θ_K`` with
    ``θ_k = (n_dk + alpha) / (n_d + K alpha)`` (the ``lda`` package's
    ``doc_topic_``).
``lda_model.h5``
    The final ``n_wk`` (``V × K``) and ``n_k`` counts (``save_model``; file
    attributes ``alpha``, ``beta``).
``vocab.txt``
    ``text`` only: the vocabulary, one token per line, in word-id order.

Metrics: ``loglik`` (final), ``loglik_per_token``, ``loglik_history`` (after
0, 1, …, ``iterations`` sweeps), ``sweeps``, ``documents``, ``tokens``,
``vocab_size``.
"""


import numpy as np
import scipy.sparse
from scipy.special import gammaln

import paracel

MODEL_FILE = "lda_model.h5"


class LDA(paracel.Algorithm):
    """Latent Dirichlet Allocation by distributed collapsed Gibbs sampling."""

    summary = "LDA topic model by collapsed Gibbs sampling (AD-LDA; n_wk, n_k on the servers)"
    reads = ('format "bow": "doc_id word_id:count ..." lines (integer ids, words from 0); '
             'format "text": one document per line, words separated by whitespace')
    parameters = {
        "topics": paracel.Param(int, 10, "number of topics K", low=1),
        "alpha": paracel.Param(float, 0.1, "document-topic Dirichlet prior", low=0,
                               closed="neither"),
        "beta": paracel.Param(float, 0.01, "topic-word Dirichlet prior ('eta' in the lda "
                              "package)", low=0, closed="neither"),
        "iterations": paracel.Param(int, 100, "Gibbs sweeps (one clock each)", low=1),
        "chunks": paracel.Param(int, 32, "vectorised sampling steps per sweep", low=1),
        "format": paracel.Param(str, "bow", "input format: 'bow' (doc_id word_id:count ...) "
                                "or 'text' (whitespace-separated tokens)",
                                choices=("bow", "text")),
        "vocab_size": paracel.Param(int, None, "bow only: vocabulary size (default: largest "
                                    "word id + 1)", low=1, nullable=True),
        "top_words": paracel.Param(int, 10, "words per topic in topics.txt", low=1),
    }

    def __init__(self, **params):
        super().__init__(**params)
        if self.format == "text" and self.vocab_size is not None:
            raise paracel.ConfigError("params.vocab_size: only for format 'bow'; the text "
                                      "vocabulary is the set of tokens")

    # -- the run -----------------------------------------------------------

    def expected_clocks(self):
        """One clock a sweep."""
        return self.iterations

    def solve(self):
        doc_ids, X, names = self.load_corpus()
        shard = self.shard_ = Shard(X, self.topics, self.chunks, self.rng(), self.worker_id,
                                    self.num_workers)
        if self.resumed:
            shard.resume(self.restored_["z"], self.restored_["rng"])
        documents, tokens = self.sum_over_workers([X.shape[0], shard.z.size]).astype(np.int64)
        self.create_model(X.shape[1], shard)
        while self.clock < self.iterations:
            self.clock_sweep(shard, self.clock)
        self.sync()
        self.push_loglik(self.iterations, self.n_wk_.pull(shard.owned),
                         self.n_k_.pull(np.arange(self.topics)), shard)
        self.sync()
        self.dump("doc_topic_", zip(doc_ids, doc_topic(shard.n_kd, self.alpha)), sep=" ")
        words = [] if names is None else [("words", names)]
        self.save_model(MODEL_FILE, [self.n_wk_, self.n_k_, *words], alpha=self.alpha,
                        beta=self.beta)
        if self.worker_id != 0:
            return {}
        self.write_topics(self.n_wk_.to_numpy(), names)
        history = self.loglik_.to_numpy().reshape(-1, self.num_workers).sum(axis=1)
        return {"loglik": float(history[-1]), "loglik_per_token": float(history[-1] / tokens),
                "loglik_history": history.tolist(), "sweeps": self.iterations,
                "documents": int(documents), "tokens": int(tokens), "vocab_size": X.shape[1]}

    @classmethod
    def apply_model(cls, worker, model, iterations=100):
        """Topic proportions of new documents under a saved model
        (``predict``): the topic-word distributions are fixed and each
        document's proportions are the fixed point of :func:`fold_in`.
        ``pred_<worker>`` lines ``doc theta_1 ... theta_K``; metrics: the
        documents' perplexity, and the tokens whose word the model lacks
        (dropped)."""
        algorithm = cls(**model.params)
        phi = topic_word(model["n_wk"], model["n_k"], algorithm.beta)
        if algorithm.format == "text":
            lines = worker.load_lines()
            first = sum(worker.allgather([len(lines)])[:worker.worker_id])
            X, lost = text_counts(lines, model["words"])
            doc_ids = first + np.arange(X.shape[0])
        else:
            labels, X = worker.load_libsvm(zero_based=True)
            doc_ids = labels.astype(np.int64)
            X, lost = known_words(X, phi.shape[0])
        theta = fold_in(X, phi, algorithm.alpha, iterations)
        worker.dump("pred_", zip(doc_ids.tolist(), theta), sep=" ")
        loglik = float(X.data @ np.log(mixtures(X, theta, phi))) if X.nnz else 0.0
        documents, tokens, total, unknown = worker.sum_over_workers(
            [X.shape[0], X.sum(), loglik, lost])
        return {"documents": int(documents), "tokens": int(tokens),
                "perplexity": float(np.exp(-total / max(tokens, 1))),
                "unknown_tokens": int(unknown)}

    def state(self):
        """The topic of every token and the generator: all a worker carries
        from one sweep to the next (its token order is drawn again from the
        fresh generator, its ``n_kd`` counted again from the topics)."""
        return {"z": self.shard_.z, "rng": self.shard_.rng.bit_generator.state}

    def restore(self, state):
        """Keep :meth:`state` for ``solve()``, which rebuilds the shard first."""
        self.restored_ = state

    def create_model(self, V, shard):
        """Create ``n_wk``, ``n_k`` and the log-likelihood table on the servers
        (or attach to them in a resumed job) and, in the first clock, add this
        worker's initial counts (collective)."""
        K = self.topics
        self.n_wk_ = self.matrix("n_wk", (V, K), np.int64,
                                 block_rows=max(1, -(-V // (16 * self.num_servers))))
        self.n_k_ = self.matrix("n_k", (K,), np.int64)
        self.loglik_ = self.matrix("lda.loglik", ((self.iterations + 1) * self.num_workers,))
        if self.clock == 0:  # a resumed job finds them in the tables
            self.n_wk_.push(shard.vocab_rows, count_pairs(shard.z, shard.local_words, K,
                                                          shard.vocab_rows.size).T)
            self.n_k_.push(np.arange(K), np.bincount(shard.z, minlength=K))
            self.sync()

    def clock_sweep(self, shard, sweep):
        """One clock: pull, log-likelihood of the state pulled, one Gibbs
        sweep, push the changes, ``iter_commit``."""
        topic_ids = np.arange(self.topics)
        pulled, totals = self.n_wk_.pull(shard.rows), self.n_k_.pull(topic_ids)
        self.push_loglik(sweep, pulled[shard.at_owned], totals, shard)
        self.report_loglik(sweep)
        before, totals_before = pulled[shard.at_vocab], totals.copy()
        n_kw = np.ascontiguousarray(before.T)
        gibbs_sweep(shard.local_words, shard.docs, shard.z, shard.bounds, n_kw, shard.n_kd,
                    totals, self.alpha, self.beta, self.n_wk_.shape[0] * self.beta,
                    shard.rng)
        if self.staleness == 0:
            self.sync()  # nobody pushes before all have pulled: deterministic BSP
        delta = n_kw.T - before
        changed = np.flatnonzero(np.any(delta, axis=1))
        self.n_wk_.push(shard.vocab_rows[changed], delta[changed])
        self.n_k_.push(topic_ids, totals - totals_before)
        self.iter_commit()

    # -- input -------------------------------------------------------------

    def load_corpus(self):
        """This worker's documents: ``(doc_ids, counts, names)`` with ``counts``
        a csr ``documents × V`` matrix of word counts and ``names`` the word
        names (``None`` for ``bow``: word ids are the names)."""
        if self.format == "text":
            return self.load_text()
        labels, X = self.load_libsvm(n_features=self.vocab_size, zero_based=True)
        files = ", ".join(self.input_files)
        doc_ids = labels.astype(np.int64)
        if not np.array_equal(doc_ids, labels):
            bad = labels[doc_ids != labels][0]
            raise paracel.DataError(f"{files}: document id {float(bad):g} is not an integer")
        bad = np.flatnonzero((X.data < 0) | (X.data % 1 != 0))
        if bad.size:
            row = np.searchsorted(X.indptr, bad[0], side="right") - 1
            raise paracel.DataError(
                f"{files}: document {doc_ids[row]}: word {X.indices[bad[0]]} has count "
                f"{float(X.data[bad[0]]):g}; word counts must be non-negative integers")
        return doc_ids, _counts(X), None

    def load_text(self):
        """Whitespace-tokenised lines; the vocabulary is the sorted union of
        every worker's tokens, a document's id its global line number."""
        documents = [line.split() for line in self.load_lines()]
        mine = sorted({token for document in documents for token in document})
        every = self.allgather_objects((len(documents), mine))
        first = sum(count for count, _ in every[:self.worker_id])
        names = np.array(sorted(set().union(*(names for _, names in every))))
        flat = np.array([token for document in documents for token in document], dtype=str)
        indptr = np.cumsum([0] + [len(document) for document in documents])
        X = scipy.sparse.csr_matrix((np.ones(flat.size), np.searchsorted(names, flat), indptr),
                                    shape=(len(documents), names.size))
        if self.worker_id == 0:
            self.write_lines("vocab.txt", names)
        return first + np.arange(len(documents)), _counts(X), names

    # -- log-likelihood ----------------------------------------------------

    def push_loglik(self, sweep, owned_counts, totals, shard):
        """Write this worker's part of log p(w, z) after ``sweep`` sweeps (from
        its owned ``n_wk`` rows, ``n_k`` and its documents) into its own entry
        of row ``sweep`` of the log-likelihood table (``num_workers`` entries
        a row). A ``replace``, not an ``add``: the final value is written
        again when a job resumes after its end."""
        part = word_loglik(owned_counts, self.beta) + doc_loglik(shard.n_kd, self.alpha)
        if self.worker_id == 0:
            part += topic_loglik(totals, self.n_wk_.shape[0], self.beta)
        self.loglik_.push([sweep * self.num_workers + self.worker_id], [part], "replace")

    def report_loglik(self, sweep):
        """Worker 0: report the newest log-likelihood complete on the servers."""
        if self.worker_id != 0 or self.staleness is None:
            return
        done = sweep - self.staleness - 1
        if done >= 0:
            row = self.loglik_.pull(done * self.num_workers + np.arange(self.num_workers))
            self.report(loglik=float(row.sum()), sweeps=done)

    # -- output ------------------------------------------------------------

    def write_topics(self, n_wk, names):
        """``topics.txt``: each topic's ``top_words`` most frequent words."""
        top = np.argsort(-n_wk.T, axis=1, kind="stable")[:, :self.top_words]
        labels = top if names is None else names[top]
        self.write_lines("topics.txt",
                         (f"{k}\t{' '.join(map(str, row))}" for k, row in enumerate(labels)))

    def write_lines(self, name, lines):
        """``OUTPUT/name``, one line per item (written whole, replaced by reruns)."""
        with self.open_output(name) as handle:
            handle.writelines(f"{line}\n" for line in lines)


# -- sampling (plain NumPy, no MPI) ------------------------------------------


class Shard:
    """One worker's documents as tokens, with their topic assignments.

    Attributes
    ----------
    words, docs, bounds
        The tokens by chunk (:func:`chunked_tokens`).
    vocab_rows, local_words
        The distinct words of the shard (global ids, sorted) and each
        token's index into them.
    owned
        The ``n_wk`` rows whose log-likelihood terms this worker sums.
    rows, at_vocab, at_owned
        The rows pulled each clock (``vocab_rows`` ∪ ``owned``) and where
        ``vocab_rows`` and ``owned`` sit among them.
    z, n_kd
        Topic of each token; ``K × documents`` topic counts.
    rng
        The worker's generator (token order, initial topics, sampling).
    """

    def __init__(self, X, K, chunks, rng, worker_id, num_workers):
        self.rng = rng
        self.words, self.docs, self.bounds = chunked_tokens(X, chunks, rng)
        self.vocab_rows, self.local_words = np.unique(self.words, return_inverse=True)
        self.owned = np.arange(worker_id, X.shape[1], num_workers)
        self.rows = np.union1d(self.vocab_rows, self.owned)
        self.at_vocab = np.searchsorted(self.rows, self.vocab_rows)
        self.at_owned = np.searchsorted(self.rows, self.owned)
        self.z = rng.integers(0, K, self.words.size)
        self.n_kd = count_pairs(self.z, self.docs, K, X.shape[0])

    def resume(self, z, rng_state):
        """Take back the topics and the generator of a checkpoint, recount ``n_kd``."""
        K, documents = self.n_kd.shape
        self.z = z
        self.rng.bit_generator.state = rng_state
        self.n_kd = count_pairs(z, self.docs, K, documents)


def chunked_tokens(X, chunks, rng):
    """Expand a ``documents × words`` count matrix into tokens grouped by chunk.

    Each document's tokens are put in a random order and spread evenly over
    the ``chunks`` chunks (token ``i`` of a document of length ``n`` goes to
    chunk ``i * chunks // n``).

    Returns
    -------
    words, docs : numpy.ndarray of int64
        Each token's word id and (local) document index, chunk by chunk.
    bounds : numpy.ndarray
        Chunk ``c`` is ``words[bounds[c]:bounds[c + 1]]``.
    """
    counts = X.data.astype(np.int64)
    words = np.repeat(X.indices.astype(np.int64), counts)
    docs = np.repeat(np.repeat(np.arange(X.shape[0]), np.diff(X.indptr)), counts)
    order = np.lexsort((rng.random(words.size), docs))
    words, docs = words[order], docs[order]
    lengths = np.bincount(docs, minlength=X.shape[0])
    position = np.arange(words.size) - (np.cumsum(lengths) - lengths)[docs]
    chunk = position * chunks // lengths[docs]
    order = np.argsort(chunk, kind="stable")
    return words[order], docs[order], np.searchsorted(chunk[order], np.arange(chunks + 1))


def count_pairs(topics, columns, K, num_columns):
    """The ``K × num_columns`` table of how often each ``(topic, column)`` pair occurs."""
    return np.bincount(topics * num_columns + columns,
                       minlength=K * num_columns).reshape(K, num_columns)


def gibbs_sweep(words, docs, z, bounds, n_kw, n_kd, n_k, alpha, beta, vbeta, rng):
    """One collapsed Gibbs sweep over the tokens, chunk by chunk, in place.

    ``words`` index the columns of ``n_kw`` (``K × words``, this worker's
    copy of its rows of ``n_wk``, transposed), ``docs`` those of ``n_kd``
    (``K × documents``); ``z`` holds the assignments; ``vbeta = V * beta``.
    Topics run along the first axis so that the cumulative sums and
    comparisons below run over long contiguous rows.
    """
    for start, stop in zip(bounds[:-1], bounds[1:]):
        if start < stop:
            part = slice(start, stop)
            z[part] = _sample_chunk(words[part], docs[part], z[part], n_kw, n_kd, n_k, alpha,
                                    beta, vbeta, rng)


def _sample_chunk(words, docs, old, n_kw, n_kd, n_k, alpha, beta, vbeta, rng):
    """Draw new topics for one chunk of tokens at once, then update the counts."""
    tokens = np.arange(words.size)
    p = n_kw[:, words] + beta
    p[old, tokens] -= 1
    doc = n_kd[:, docs] + alpha
    doc[old, tokens] -= 1
    p *= doc
    p /= (n_k + vbeta)[:, None]
    p[old, tokens] *= (n_k[old] + vbeta) / (n_k[old] + vbeta - 1)  # own token left out
    np.cumsum(p, axis=0, out=p)
    new = (p < rng.random(words.size) * p[-1]).sum(axis=0)
    moved = new != old
    _move(n_kw, words[moved], old[moved], new[moved])
    _move(n_kd, docs[moved], old[moved], new[moved])
    n_k += np.bincount(new[moved], minlength=n_k.size) - np.bincount(old[moved],
                                                                      minlength=n_k.size)
    return new


def _move(counts, columns, old, new):
    np.subtract.at(counts, (old, columns), 1)
    np.add.at(counts, (new, columns), 1)


# -- log-likelihood terms ------------------------------------------------------


def word_loglik(counts, prior):
    """``sum over counts n > 0 of lgamma(prior + n) - lgamma(prior)``."""
    positive = counts[counts > 0]
    return float(gammaln(positive + prior).sum() - positive.size * gammaln(prior))


def topic_loglik(n_k, V, beta):
    """The topic normalisers of log p(w | z): ``sum_k lgamma(V beta) - lgamma(V beta + n_k)``."""
    return float(n_k.size * gammaln(V * beta) - gammaln(V * beta + n_k).sum())


def doc_loglik(n_kd, alpha):
    """log p(z) of these documents (``n_kd``: ``K × documents`` counts)."""
    K, documents = n_kd.shape
    norm = documents * gammaln(K * alpha) - gammaln(K * alpha + n_kd.sum(axis=0)).sum()
    return float(norm) + word_loglik(n_kd, alpha)


def topic_word(n_wk, n_k, beta):
    """``phi[w, k] = (n_wk + beta) / (n_k + V beta)``: each topic's word
    distribution (a column), from a model's counts."""
    return (n_wk + beta) / (n_k + n_wk.shape[0] * beta)


def mixtures(X, theta, phi):
    """``theta_d . phi_w`` for every non-zero ``(d, w)`` of ``X``, in its order."""
    rows = np.repeat(np.arange(X.shape[0]), np.diff(X.indptr))
    return np.einsum("ij,ij->i", theta[rows], phi[X.indices])


def fold_in(X, phi, alpha, iterations):
    """Documents' topic proportions with the topics ``phi`` (V x K) fixed.

    The fixed point of ``theta_d <- normalise(alpha + theta_d * sum_w
    n_dw phi_w / (theta_d . phi_w))``, which maximises the documents'
    likelihood under a Dirichlet(alpha + 1) prior; every document is updated
    at once with sparse products, from uniform proportions.
    """
    theta = np.full((X.shape[0], phi.shape[1]), 1.0 / phi.shape[1])
    for _ in range(iterations):
        ratio = scipy.sparse.csr_matrix((X.data / mixtures(X, theta, phi), X.indices, X.indptr),
                                        shape=X.shape)
        theta = alpha + theta * (ratio @ phi)
        theta /= theta.sum(axis=1, keepdims=True)
    return theta


def known_words(X, V):
    """``(counts over the model's V words, tokens of other words dropped)``."""
    X = X.tocoo()
    keep = X.col < V
    kept = scipy.sparse.csr_matrix((X.data[keep], (X.row[keep], X.col[keep])),
                                   shape=(X.shape[0], V))
    return _counts(kept), float(X.data[~keep].sum())


def text_counts(lines, words):
    """Whitespace-tokenised lines as counts over a model's vocabulary
    ``words``: ``(csr counts, tokens of other words dropped)``."""
    index = {word: column for column, word in enumerate(np.asarray(words).tolist())}
    documents = [[index.get(token, -1) for token in line.split()] for line in lines]
    flat = np.array([c for document in documents for c in document], dtype=np.int64)
    known = flat >= 0
    indptr = np.cumsum([0] + [sum(c >= 0 for c in document) for document in documents])
    X = scipy.sparse.csr_matrix((np.ones(known.sum()), flat[known], indptr),
                                shape=(len(documents), len(index)))
    return _counts(X), int((~known).sum())


def doc_topic(n_kd, alpha):
    """Smoothed document-topic distributions ``(n_dk + alpha) / (n_d + K alpha)``,
    one row per document."""
    theta = n_kd.T + alpha
    return theta / theta.sum(axis=1, keepdims=True)


def _counts(X):
    """``X`` as int64 csr counts with sorted, summed, non-zero entries."""
    X = scipy.sparse.csr_matrix(X, dtype=np.int64)
    X.sum_duplicates()
    X.eliminate_zeros()
    return X

