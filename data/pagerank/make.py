"""Write ``graph.txt``, the example graph of ``conf/pagerank.json``.

A seeded directed scale-free graph (``networkx.scale_free_graph``, 2000
nodes, 8165 edges, some repeated and some self-loops; 963 nodes
have no out-edge) with integer weights 1..5, one ``src dst weight`` line per
edge. Run ``python data/pagerank/make.py``; the output is the same every time.
"""

import os

import networkx as nx
import numpy as np

NODES = 2000
SEED = 7


def main():
    graph = nx.scale_free_graph(NODES, alpha=0.12, beta=0.76, gamma=0.12, seed=SEED)
    weights = np.random.default_rng(SEED).integers(1, 6, graph.number_of_edges())
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "graph.txt")
    with open(path, "w", encoding="utf-8") as handle:
        handle.write("# src dst weight: a seeded scale-free digraph (data/pagerank/make.py)\n")
        for (src, dst), weight in zip(graph.edges(), weights.tolist()):
            handle.write(f"{src} {dst} {weight}\n")


if __name__ == "__main__":
    main()
