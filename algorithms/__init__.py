"""The bundled algorithm toolkit, installed as ``paracel.algorithms``.

Each algorithm is one module with one :class:`paracel.Algorithm` subclass;
:data:`BUNDLED` maps the name a job file uses to ``module:Class``.
"""

BUNDLED = {
    "als": "paracel.algorithms.als:ALS",
    "kmeans": "paracel.algorithms.kmeans:KMeans",
    "lasso": "paracel.algorithms.lasso:Lasso",
    "lda": "paracel.algorithms.lda:LDA",
    "lr": "paracel.algorithms.lr:LogisticRegression",
    "mf": "paracel.algorithms.mf:MatrixFactorization",
    "pagerank": "paracel.algorithms.pagerank:PageRank",
    "ridge": "paracel.algorithms.ridge:Ridge",
    "sim": "paracel.algorithms.sim:CosineSimilarity",
    "wc": "paracel.algorithms.wc:WordCount",
}
