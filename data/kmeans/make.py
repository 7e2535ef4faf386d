"""Generate ``blobs.csv``: 600 points in 4 dimensions around 5 centers.

Dense-vector input for ``conf/kmeans.json`` (``id,f1,...,f4`` lines). The
points are Gaussian (standard deviation 1) around 5 centers drawn uniformly
in ``[-8, 8]^4``, 120 points each, shuffled; seeded, so running this script
again rewrites the same file::

    python data/kmeans/make.py
"""

import os

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))


def main(seed=20240601, clusters=5, per_cluster=120, dims=4):
    rng = np.random.default_rng(seed)
    centers = rng.uniform(-8, 8, size=(clusters, dims))
    points = np.repeat(centers, per_cluster, axis=0) + rng.normal(size=(clusters * per_cluster,
                                                                        dims))
    points = points[rng.permutation(len(points))]
    with open(os.path.join(HERE, "blobs.csv"), "w", encoding="ascii") as handle:
        for i, row in enumerate(points):
            handle.write(f"p{i}," + ",".join(f"{v:.5f}" for v in row) + "\n")


if __name__ == "__main__":
    main()
