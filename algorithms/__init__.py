"""The bundled algorithm toolkit, installed as ``paracel.algorithms``.

Each algorithm is one module with one :class:`paracel.Algorithm` subclass;
:data:`BUNDLED` maps the name a job file uses to ``module:Class``.
"""

BUNDLED = {
    "adjust_ktop": "paracel.algorithms.adjust_ktop:AdjustKtop",
    "als": "paracel.algorithms.als:ALS",
    "dtr": "paracel.algorithms.dtr:DecisionTreeRecommender",
    "fm": "paracel.algorithms.fm:FactorizationMachine",
    "kmeans": "paracel.algorithms.kmeans:KMeans",
    "lda": "paracel.algorithms.lda:LDA",
    "lr": "paracel.algorithms.lr:LogisticRegression",
    "mf": "paracel.algorithms.mf:MatrixFactorization",
    "pagerank": "paracel.algorithms.pagerank:PageRank",
    "recommend": "paracel.algorithms.recommend:Recommend",
    "sim": "paracel.algorithms.sim:CosineSimilarity",
    "svd": "paracel.algorithms.svd:TruncatedSVD",
    "wc": "paracel.algorithms.wc:WordCount",
}
