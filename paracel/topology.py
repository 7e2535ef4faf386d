"""Who is who in the job: the split of ``COMM_WORLD`` into servers and workers.

The last ``S`` world ranks are the parameter servers; the first ``N - S`` are
workers, so a worker's id equals its world rank. Two communicators come out:
``ps``, a duplicate of the world on which workers and servers talk (kept apart
from anything the user does on ``COMM_WORLD``), and ``workers``, the workers
alone, for worker-to-worker collectives (``None`` on servers).
"""

from dataclasses import dataclass

from paracel.errors import ConfigError


@dataclass
class Topology:
    """This rank's place in the job."""

    ps: object
    workers: object
    role: str
    index: int
    num_servers: int
    num_workers: int

    @property
    def server_ranks(self):
        """Ranks in ``ps`` of server 0, 1, ..."""
        return list(range(self.num_workers, self.num_workers + self.num_servers))

    @property
    def tag(self):
        """``worker 3`` or ``server 0``: how logs and tracebacks name this rank."""
        return f"{self.role} {self.index}"


def check_size(size, num_servers):
    """Refuse a job with no room for a worker."""
    if size <= num_servers:
        raise ConfigError(f"servers: {num_servers} server(s) need at least {num_servers + 1} "
                          f"processes (one or more workers), but the job has {size}")


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
    size, rank = world.Get_size(), world.Get_rank()
    check_size(size, num_servers)
    num_workers = size - num_servers
    is_server = rank >= num_workers
    ps = world.Dup()
    workers = world.Split(1 if is_server else 0, rank)
    if is_server:
        workers.Free()
        return Topology(ps, None, "server", rank - num_workers, num_servers, num_workers)
    return Topology(ps, workers, "worker", rank, num_servers, num_workers)
