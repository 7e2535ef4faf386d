"""A server's part in checkpoints: its table to one file, and back.

The table is one :mod:`paracel.snapshot` file, ``server-<id>.ckpt`` in the
checkpoint being written (see :mod:`paracel.checkpoints` for the folder, the
manifest and the checks). A resumed server with the same number of servers
reads back its own file; with another number it reads every file's index and
only the values of the keys the ring now places on it (re-sharding).
"""

import os

from paracel import snapshot
from paracel.errors import UserError


def shard_name(server_id):
    """The file of server ``server_id``'s table in a checkpoint."""
    return f"server-{server_id}.ckpt"


def write_shard(folder, server_id, table):
    """Write ``table`` into checkpoint staging folder ``folder``.

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
        info = snapshot.write(os.path.join(folder, name), table.items())
    except snapshot.Unstorable as error:
        raise UserError(
            f"checkpoint of server {server_id}: key {error.key!r}{error.path()} holds "
            f"{error}, which a checkpoint cannot store (an update function made it?); "
            f"it stores {snapshot.STORABLE}") from None
    return {"name": name, **info}


def load_shard(folder, manifest, server_id, ring):
    """The keys of checkpoint ``folder`` that ``ring`` places on ``server_id``.

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
    """
    if manifest["num_servers"] == ring.num_servers:  # the same placement: one file
        return dict(snapshot.read(os.path.join(folder, shard_name(server_id))))
    table = {}
    for old in range(manifest["num_servers"]):
        table.update(snapshot.read(os.path.join(folder, shard_name(old)),
                                   select=lambda keys: ring.group(keys).get(server_id, ())))
    return table
