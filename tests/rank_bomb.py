"""A module whose import fails on world rank 2 only (a test of errors that
one rank sees before the job starts)."""

import os

if os.environ.get("OMPI_COMM_WORLD_RANK", os.environ.get("PMI_RANK")) == "2":
    raise ImportError("rank_bomb refuses to load on rank 2")
