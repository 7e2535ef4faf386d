"""Distributed matrices and vectors: row blocks on the servers.

A :class:`DistMatrix` named ``name`` with ``shape = (rows, cols)`` (or
``(rows,)`` for a vector) is stored as row blocks of ``block_rows`` rows, each
block one table key (:func:`paracel.partition.block_key`) placed on a server
by the ring. A worker pulls just the rows it needs and pushes deltas for just
those rows; rows are grouped by block and blocks by server, so each server
gets one message per call, carrying only the rows asked for.

Blocks are dense numpy arrays, or ``scipy.sparse.csr_matrix`` for a sparse
matrix (pull returns a csr matrix of the rows asked for).
"""

import numpy as np

from paracel.errors import UserError
from paracel.partition import block_key

DEFAULT_BLOCK_BYTES = 1 << 20


class DistMatrix:
    """A matrix or vector kept on the parameter servers.

    Parameters
    ----------
    client : paracel.client.Client
        The worker's parameter-store client.
    name : str
        The matrix's name (its blocks' keys derive from it).
    shape : tuple of int
        ``(rows,)`` for a vector, ``(rows, cols)`` for a matrix.
    dtype : numpy dtype
        Element type of dense blocks.
    block_rows : int, optional
        Rows per block; by default about 1 MiB of dense data per block, and
        small enough that every server gets several blocks.
    sparse : bool
        Store blocks as ``csr_matrix`` (2-D only).
    """

    def __init__(self, client, name, shape, dtype=np.float64, block_rows=None, sparse=False):
        self.client = client
        self.name = name
        self.shape = tuple(int(n) for n in shape)
        self.dtype = np.dtype(dtype)
        if len(self.shape) not in (1, 2) or min(self.shape) < 0:
            raise UserError(f"matrix {name!r}: shape must be (rows,) or (rows, cols), "
                            f"got {shape}")
        if sparse and len(self.shape) != 2:
            raise UserError(f"matrix {name!r}: a sparse matrix needs shape (rows, cols)")
        self.sparse = sparse
        row_bytes = self.dtype.itemsize * (self.shape[1] if len(self.shape) == 2 else 1)
        self.block_rows = int(block_rows or _default_block_rows(
            self.shape[0], row_bytes, len(client.server_ranks)))
        if self.block_rows < 1:
            raise UserError(f"matrix {name!r}: block_rows must be >= 1")
        self.num_blocks = -(-self.shape[0] // self.block_rows)
        self._servers = None

    # -- layout ------------------------------------------------------------

    def block_key(self, block):
        """The table key of row block ``block``."""
        return block_key(self.name, block)

    def block_range(self, block):
        """``(first_row, stop_row)`` of row block ``block``."""
        start = block * self.block_rows
        return start, min(start + self.block_rows, self.shape[0])

    def block_shape(self, block):
        """Shape of row block ``block``."""
        start, stop = self.block_range(block)
        return (stop - start,) + self.shape[1:]

    def block_servers(self, blocks):
        """The server of each of ``blocks`` (computed once per matrix)."""
        if self._servers is None:
            self._servers = np.array([self.client.ring.server_of(self.block_key(b))
                                      for b in range(self.num_blocks)], dtype=np.int64)
        return self._servers[np.asarray(blocks, dtype=np.int64)]

    def _group(self, rows):
        """Split global row numbers by block: ``{block: (positions, local_rows)}``."""
        rows = np.asarray(rows, dtype=np.int64).ravel()
        if rows.size and (rows.min() < 0 or rows.max() >= self.shape[0]):
            bad = rows[(rows < 0) | (rows >= self.shape[0])][0]
            raise UserError(f"matrix {self.name!r}: row {bad} is out of range "
                            f"for {self.shape[0]} rows")
        blocks = rows // self.block_rows
        # a 16-bit key lets numpy use its radix sort (5x faster than int64)
        order = np.argsort(blocks.astype(np.uint16) if self.num_blocks <= 1 << 16 else blocks,
                           kind="stable")
        cuts = np.flatnonzero(np.diff(blocks[order])) + 1
        groups = {}
        for part in np.split(order, cuts) if rows.size else []:
            block = int(blocks[part[0]])
            groups[block] = (part, rows[part] - block * self.block_rows)
        return groups

    # -- creation ----------------------------------------------------------

    def initial_block(self, block, init="zeros", value=0.0, seed=0, scale=1.0):
        """The initial content of one block (the same on every worker count).

        ``init`` is ``"zeros"``, ``"constant"`` (``value``) or ``"random"``
        (uniform in ``[0, scale)``, seeded by ``seed``, the matrix name and the
        block, so the matrix does not depend on who creates which block).
        """
        shape = self.block_shape(block)
        if self.sparse:
            import scipy.sparse

            if init != "zeros":
                raise UserError(f"matrix {self.name!r}: a sparse matrix starts as zeros")
            return scipy.sparse.csr_matrix(shape, dtype=self.dtype)
        if init == "zeros":
            return np.zeros(shape, dtype=self.dtype)
        if init == "constant":
            return np.full(shape, value, dtype=self.dtype)
        if init == "random":
            name_seed = int.from_bytes(self.name.encode("utf-8")[:8].ljust(8, b"\0"), "little")
            rng = np.random.default_rng([seed, name_seed, block])
            return (rng.random(shape) * scale).astype(self.dtype)
        raise UserError(f"matrix {self.name!r}: unknown init {init!r}; "
                        "choose 'zeros', 'constant' or 'random'")

    def create(self, blocks, **init):
        """Write the initial content of ``blocks`` (one message per server)."""
        self.client.write_multi({self.block_key(b): self.initial_block(b, **init)
                                 for b in blocks})

    # -- rows --------------------------------------------------------------

    def pull(self, rows):
        """The given rows (global numbers, any order, repeats allowed).

        Returns
        -------
        numpy.ndarray or scipy.sparse.csr_matrix
            ``len(rows)`` rows in the order asked, shape ``(len(rows),)`` for
            a vector.
        """
        return pull_many([(self, rows)])[0]

    def _assemble(self, groups, parts, count):
        """The rows of a pull in the order asked, from each block's part."""
        if self.sparse:
            return _sparse_rows(parts, [positions for positions, _ in groups.values()],
                                count, self.shape[1])
        out = np.empty((count,) + self.shape[1:], dtype=self.dtype)
        for (positions, _), part in zip(groups.values(), parts):
            out[positions] = part
        return out

    def push(self, rows, deltas, fn="add"):
        """Fold ``deltas[i]`` into row ``rows[i]`` on the servers.

        ``fn`` is ``"add"`` (repeated rows accumulate), ``"sub"``,
        ``"replace"``, or ``"max"`` / ``"min"`` (elementwise, a repeated row
        taking its largest / smallest value); only the rows given travel. Returns a handle
        (``wait()`` returns once applied).

        ``fn`` may also name a *row* update function registered with
        :func:`paracel.update_function` (dense matrices only): it runs on the
        server as ``fn(block, (local_rows, values))``, where ``values`` holds
        this push's ``deltas[i]`` for the block's rows (any trailing shape:
        a vector's push may carry several numbers per row, e.g. a step and a
        penalty), and returns the new block. That makes a read-modify-write
        of rows atomic on the server, e.g. a proximal step that must see the
        other workers' pushes.
        """
        if self.sparse:
            return self._push_sparse(rows, deltas, fn)
        deltas = np.asarray(deltas)
        row_fn = {"add": "add_rows", "sub": "add_rows", "replace": "set_rows",
                  "max": "max_rows", "min": "min_rows"}.get(fn)
        if row_fn is None:
            from paracel.server.updates import lookup

            if not isinstance(fn, str):
                raise UserError(f"matrix {self.name!r}: push fn must be 'add', 'sub', "
                                f"'replace', 'max', 'min' or a registered row update function, got {fn!r}")
            lookup(fn)  # an unknown name fails here, listing the known ones
            row_fn = fn
        if fn == "sub":
            deltas = -deltas
        groups = self._group(rows)
        return self.client.update_multi(
            {self.block_key(b): (local, deltas[positions])
             for b, (positions, local) in groups.items()}, row_fn,
            self.block_servers(list(groups)))

    def _push_sparse(self, rows, deltas, fn):
        """Sparse rows travel as one csr delta per block, added with ``add``."""
        import scipy.sparse

        if fn not in ("add", "sub"):
            raise UserError(f"matrix {self.name!r}: a sparse matrix takes push fn "
                            f"'add' or 'sub', got {fn!r}")
        deltas = scipy.sparse.csr_matrix(deltas)
        updates = {}
        for block, (positions, local) in self._group(rows).items():
            part = deltas[positions].tocoo()
            block_delta = scipy.sparse.csr_matrix(
                (part.data, (local[part.row], part.col)), shape=self.block_shape(block))
            updates[self.block_key(block)] = block_delta
        return self.client.update_multi(updates, fn)

    # -- whole -------------------------------------------------------------

    def to_numpy(self):
        """The whole matrix, gathered from the servers (dense, or csr if sparse).

        Always read from the servers, never from the worker's cached copies:
        what is saved or reported as the model is what the servers hold.
        """
        blocks = self.client.read_multi([self.block_key(b) for b in range(self.num_blocks)],
                                        fresh=True)
        if self.sparse:
            import scipy.sparse

            return scipy.sparse.vstack(blocks, format="csr")
        if not blocks:
            return np.zeros(self.shape, dtype=self.dtype)
        return np.concatenate(blocks)

    def assign(self, array, blocks=None):
        """Write ``array`` (the whole matrix) into ``blocks`` (default: all)."""
        if tuple(array.shape) != self.shape:
            raise UserError(f"matrix {self.name!r}: cannot assign shape {array.shape} "
                            f"to shape {self.shape}")
        blocks = range(self.num_blocks) if blocks is None else blocks
        self.client.write_multi({self.block_key(b): _slice(array, *self.block_range(b))
                                 for b in blocks})


def pull_many(requests):
    """Rows of several matrices in one round trip: ``[(matrix, rows), ...]``
    gives what each ``matrix.pull(rows)`` would, with one message per server
    for them all (the matrices share the worker's client).
    """
    plans, keys, selections, servers = [], [], [], []
    for matrix, rows in requests:
        groups = matrix._group(rows)
        blocks = list(groups)
        plans.append((matrix, groups, len(np.asarray(rows).ravel()), len(keys)))
        keys += [matrix.block_key(b) for b in blocks]
        selections += [local for _, local in groups.values()]
        servers.append(matrix.block_servers(blocks))
    if not requests:
        return []
    parts = requests[0][0].client.read_rows(keys, selections, np.concatenate(servers))
    return [matrix._assemble(groups, parts[first:first + len(groups)], count)
            for matrix, groups, count, first in plans]


def _default_block_rows(rows, row_bytes, servers):
    """At most 1 MiB per block, and at least 8 blocks per server when the
    matrix has the rows for it, so no server sits idle."""
    by_size = DEFAULT_BLOCK_BYTES // max(row_bytes, 1)
    by_spread = -(-rows // (8 * servers))
    return max(1, min(by_size, by_spread))


def _slice(array, start, stop):
    part = array[start:stop]
    return part.tocsr() if hasattr(part, "tocsr") else np.ascontiguousarray(part)


def _sparse_rows(parts, positions, count, cols):
    """Reassemble csr row sets into one csr matrix in the asked order."""
    import scipy.sparse

    if not parts:
        return scipy.sparse.csr_matrix((count, cols))
    stacked = scipy.sparse.vstack(parts, format="csr")
    order = np.empty(count, dtype=np.int64)
    order[np.concatenate(positions)] = np.arange(count)
    return stacked[order]
