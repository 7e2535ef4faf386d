"""The bundled algorithm toolkit, installed as ``paracel.algorithms``.

Each algorithm is one module with one :class:`paracel.Algorithm` subclass;
:data:`BUNDLED` maps the name a job file uses to ``module:Class``.
"""

BUNDLED = {
    "pagerank": "paracel.algorithms.pagerank:PageRank",
    "wc": "paracel.algorithms.wc:WordCount",
}
