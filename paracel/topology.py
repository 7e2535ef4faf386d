"""Who is who in the job: the split of ``COMM_WORLD`` into servers and workers.

``S`` ranks are the parameter servers, the others workers. On one host the
servers are the last ``S`` world ranks, so a worker's id equals its world
rank. Across hosts the servers are spread over the hosts (:func:`choose_servers`:
the last rank of each host in turn, the last host first), so every host
serves a share of the tables and no host's network link carries all the
traffic. Workers are numbered in world-rank order. Two communicators come
out: ``ps``, a duplicate of the world on which workers and servers talk (kept
apart from anything the user does on ``COMM_WORLD``), and ``workers``, the
workers alone, for worker-to-worker collectives (``None`` on servers).
"""

import socket
from dataclasses import dataclass

from paracel.errors import ConfigError


@dataclass
class Topology:
    """This rank's place in the job."""

    ps: object
    workers: object
    role: str
    index: int
    server_ranks: list
    worker_ranks: list
    hosts: list

    @property
    def num_servers(self):
        """How many ranks serve."""
        return len(self.server_ranks)

    @property
    def num_workers(self):
        """How many ranks work."""
        return len(self.worker_ranks)

    @property
    def single_host(self):
        """Whether every rank runs on the same host."""
        return len(set(self.hosts)) == 1

    @property
    def tag(self):
        """``worker 3`` or ``server 0``: how logs and tracebacks name this rank."""
        return f"{self.role} {self.index}"

    def placement(self):
        """``{"workers": [host of worker 0, ...], "servers": [...]}``."""
        return {"workers": [self.hosts[rank] for rank in self.worker_ranks],
                "servers": [self.hosts[rank] for rank in self.server_ranks]}


def check_size(size, num_servers):
    """Refuse a job with no room for a worker."""
    if size <= num_servers:
        raise ConfigError(f"servers: {num_servers} server(s) need at least {num_servers + 1} "
                          f"processes (one or more workers), but the job has {size}")


def choose_servers(hosts, num_servers):
    """The world ranks that serve, given each rank's host (``hosts[rank]``).

    The last rank of each host in turn, starting from the last host; then
    the next-to-last of each, and so on. On one host: the last ranks.
    """
    by_host = {}
    for rank, host in enumerate(hosts):
        by_host.setdefault(host, []).append(rank)
    columns = [ranks[::-1] for ranks in reversed(list(by_host.values()))]
    order = [column[i] for i in range(max(map(len, columns)))
             for column in columns if i < len(column)]
    return sorted(order[:num_servers])


def split(world, num_servers):
    """Split ``world`` (collective) into the parameter-server roles.

    Parameters
    ----------
    world : mpi4py.MPI.Comm
        Usually ``MPI.COMM_WORLD``.
    num_servers : int
        How many ranks serve.

    Returns
    -------
    Topology
    """
    from paracel.waiting import allgather_json

    size, rank = world.Get_size(), world.Get_rank()
    check_size(size, num_servers)
    hosts = allgather_json(world, socket.gethostname())
    servers = choose_servers(hosts, num_servers)
    workers = [r for r in range(size) if r not in set(servers)]
    is_server = rank in servers
    ps = world.Dup()
    comm = world.Split(1 if is_server else 0, rank)
    if is_server:
        comm.Free()
        return Topology(ps, None, "server", servers.index(rank), servers, workers, hosts)
    return Topology(ps, comm, "worker", workers.index(rank), servers, workers, hosts)
