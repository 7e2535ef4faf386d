"""A test hook that kills one rank at a chosen point of a job, like a crash.

Listed under the job's ``modules`` (imported on every rank before the
algorithm runs). ``PARACEL_TEST_KILL_AT="W:C"`` makes worker ``W`` SIGKILL
itself right after its ``iter_commit`` reaches clock ``C`` (so after the
checkpoint of that clock, if one was due); ``"W:end"`` kills it after
``solve()`` returned and the final checkpoint was written, before the
metrics; ``"server:S:C"`` makes server ``S`` SIGKILL itself in the middle of
writing its table into the checkpoint of clock ``C`` (half of the file's
pieces written). Without the variable the module changes nothing.
"""

import os
import signal

import paracel

_SPEC = os.environ.get("PARACEL_TEST_KILL_AT")


def _die():
    os.kill(os.getpid(), signal.SIGKILL)


def _kill_worker(worker, when):
    if when == "end":
        from paracel.worker import Worker

        write_metrics = Worker.write_metrics

        def end(self, *args, **kwargs):
            if self.worker_id == worker:
                _die()
            return write_metrics(self, *args, **kwargs)

        Worker.write_metrics = end
        return
    iter_commit = paracel.Algorithm.iter_commit

    def commit(self, *args, **kwargs):
        result = iter_commit(self, *args, **kwargs)
        if self.worker_id == worker and self.clock == int(when):
            _die()
        return result

    paracel.Algorithm.iter_commit = commit


def _kill_server_writing(server, clock):
    from paracel import checkpoints, snapshot
    from paracel.server import checkpoint

    write_shard, write_all = checkpoint.write_shard, snapshot._write_all
    armed = []
    staging = f"{checkpoints.STAGING}{clock:08d}-"

    def shard(folder, server_id, table):
        if server_id == server and os.path.basename(folder).startswith(staging):
            armed.append(True)
        return write_shard(folder, server_id, table)

    def pieces_then_die(descriptor, pieces):
        if armed:
            write_all(descriptor, pieces[:max(1, len(pieces) // 2)])
            os.fsync(descriptor)
            _die()
        return write_all(descriptor, pieces)

    checkpoint.write_shard, snapshot._write_all = shard, pieces_then_die


if _SPEC and _SPEC.startswith("server:"):
    _, _server, _clock = _SPEC.split(":")
    _kill_server_writing(int(_server), int(_clock))
elif _SPEC:
    _worker, _, _when = _SPEC.partition(":")
    _kill_worker(int(_worker), _when)
