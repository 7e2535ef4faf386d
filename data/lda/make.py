"""Generate the small synthetic LDA corpus shipped in data/lda/.

The corpus is drawn from a known LDA model, so a fitted model can be checked
against the truth: K = 5 topics over a vocabulary of V = 300 words, topic k
putting nearly all of its mass on words 60k .. 60k + 59 (word weights drawn
from Dirichlet(1) there, 0.001 elsewhere), document-topic mixtures from
Dirichlet(0.2), 200 documents of Poisson(100) tokens.

Writes (next to this script):

``corpus.txt``
    The bag-of-words corpus: ``doc_id word_id:count ...`` (0-based word ids,
    sorted), one document per line.
``true_topic_word.txt``
    The true topic-word distributions, one topic per line (V numbers).

Run: ``python data/lda/make.py`` (seeded; rerunning gives the same files).
"""

import os

import numpy as np

K, V, DOCS, MEAN_LENGTH, ALPHA, SEED = 5, 300, 200, 100, 0.2, 20240501
HERE = os.path.dirname(os.path.abspath(__file__))


def generate(rng):
    """Topic-word matrix ``phi`` (K × V) and document-word counts (DOCS × V)."""
    block = V // K
    concentration = np.full((K, V), 0.001)
    for k in range(K):
        concentration[k, k * block:(k + 1) * block] = 1.0
    phi = np.array([rng.dirichlet(row) for row in concentration])
    theta = rng.dirichlet(np.full(K, ALPHA), size=DOCS)
    counts = np.zeros((DOCS, V), dtype=np.int64)
    for d in range(DOCS):
        topics = rng.choice(K, size=max(1, rng.poisson(MEAN_LENGTH)), p=theta[d])
        for k, n in zip(*np.unique(topics, return_counts=True)):
            counts[d] += rng.multinomial(n, phi[k])
    return phi, counts


def main():
    phi, counts = generate(np.random.default_rng(SEED))
    with open(os.path.join(HERE, "corpus.txt"), "w", encoding="ascii") as handle:
        for d, row in enumerate(counts):
            words = np.flatnonzero(row)
            handle.write(f"{d} " + " ".join(f"{w}:{row[w]}" for w in words) + "\n")
    np.savetxt(os.path.join(HERE, "true_topic_word.txt"), phi, fmt="%.6g")


if __name__ == "__main__":
    main()
