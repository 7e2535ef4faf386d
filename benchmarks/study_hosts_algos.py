"""Pieces of ``study_hosts.py`` that run as MPI ranks.

As a module (job key ``modules``): :class:`Tick`, workers that only commit
clocks. As a script under mpiexec (``python -m mpi4py study_hosts_algos.py
COUNT``): a ping-pong of one int64 between rank 0 and the last rank, waited
for without spinning; rank 0 prints the seconds per round trip.
"""

import sys

import numpy as np

import paracel


class Tick(paracel.Algorithm):
    """``clocks`` calls of ``iter_commit()`` and nothing else."""

    parameters = {"clocks": paracel.Param(int, 1000, "how many clocks", low=1)}

    def solve(self):
        while self.clock < self.clocks:
            self.iter_commit()
        return {}


def ping_pong(count):
    """Seconds per round trip between rank 0 and the last rank."""
    import time

    from mpi4py import MPI

    from paracel.waiting import wait_request

    comm = MPI.COMM_WORLD
    rank, last = comm.Get_rank(), comm.Get_size() - 1
    buffer = np.zeros(1, dtype=np.int64)
    wait_request(comm.Ibarrier())
    start = time.perf_counter()
    if rank in (0, last):
        peer = last if rank == 0 else 0
        for _ in range(count):
            if rank == 0:
                comm.Send(buffer, dest=peer)
                wait_request(comm.Irecv(buffer, source=peer))
            else:
                wait_request(comm.Irecv(buffer, source=peer))
                comm.Send(buffer, dest=peer)
    seconds = (time.perf_counter() - start) / count
    wait_request(comm.Ibarrier())
    if rank == 0:
        print(seconds)


if __name__ == "__main__":
    ping_pong(int(sys.argv[1]))
