"""A server's part in checkpoints: its table to one file, and back.

The table is one :mod:`paracel.snapshot` file, ``server-<id>.ckpt`` in the
checkpoint being written (see :mod:`paracel.checkpoints` for the folder, the
manifest and the checks); each row table's shard is one more pair in it,
``("@rows", name)`` → its arrays (:meth:`paracel.server.rowtable.RowShard.saved`).
A resumed server with the same number of servers reads back its own file;
with another number it reads every file's index and only the values of the
keys the ring now places on it (re-sharding), and every file's row tables,
keeping the rows whose ids are now placed on it.
"""

import os

from paracel import snapshot
from paracel.errors import UserError
from paracel.partition import id_servers
from paracel.server import rowtable


def shard_name(server_id):
    """The file of server ``server_id``'s table in a checkpoint."""
    return f"server-{server_id}.ckpt"


def write_shard(folder, server_id, pairs):
    """Write a server's ``(key, value)`` pairs (:meth:`paracel.server.store.Store.pairs`)
    into checkpoint staging folder ``folder``.

    Returns
    -------
    dict
        ``{"name", "size", "crc32"}`` of the file, for the manifest.

    Raises
    ------
    UserError
        A value that cannot be stored (naming the server and key), or a file
        that cannot be written (a full disk): one line.
    """
    name = shard_name(server_id)
    try:
        info = snapshot.write(os.path.join(folder, name), pairs)
    except snapshot.Unstorable as error:
        raise UserError(
            f"checkpoint of server {server_id}: key {error.key!r}{error.path()} holds "
            f"{error}, which a checkpoint cannot store (an update function made it?); "
            f"it stores {snapshot.STORABLE}") from None
    return {"name": name, **info}


def load_shard(folder, manifest, server_id, ring):
    """What checkpoint ``folder`` holds for ``server_id`` under ``ring``.

    Parameters
    ----------
    folder : str
        A verified checkpoint.
    manifest : dict
        Its manifest (``num_servers``: how many files there are).
    server_id : int
        This server.
    ring : paracel.partition.Ring
        The placement of this run (possibly over another number of servers).

    Returns
    -------
    table : dict
        The keys placed on this server, with their values.
    rows : dict of str to paracel.server.rowtable.RowShard
        Each row table's shard, with the rows whose ids are placed here.
    """
    if manifest["num_servers"] == ring.num_servers:  # the same placement: one file
        return _split(snapshot.read(os.path.join(folder, shard_name(server_id))), None)
    pairs = []
    for old in range(manifest["num_servers"]):
        pairs += snapshot.read(os.path.join(folder, shard_name(old)),
                               select=lambda keys: _placed_here(keys, ring, server_id))
    return _split(pairs, lambda ids: id_servers(ids, ring.num_servers) == server_id)


def _is_row_table(key):
    return type(key) is tuple and len(key) == 2 and key[0] == rowtable.SAVED_TAG


def _placed_here(keys, ring, server_id):
    """Positions of the keys the ring places on ``server_id``, and of every
    row table (its rows are sorted out by id)."""
    tables = [i for i, key in enumerate(keys) if _is_row_table(key)]
    others = [i for i, key in enumerate(keys) if not _is_row_table(key)]
    placed = ring.group([keys[i] for i in others]).get(server_id, ())
    return tables + [others[i] for i in placed]


def _split(pairs, keep):
    """``(table, rows)`` from checkpoint pairs; ``keep(ids)`` picks the rows
    of this server when re-sharding."""
    table, parts = {}, {}
    for key, value in pairs:
        if _is_row_table(key):
            parts.setdefault(key[1], []).append(rowtable.check_saved(key[1], value))
        else:
            table[key] = value
    return table, {name: rowtable.restore(name, saved, keep) for name, saved in parts.items()}
