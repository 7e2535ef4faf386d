"""A test hook that kills one worker at a chosen point of a job, like a crash.

Listed under the job's ``modules`` (imported on every rank before the
algorithm runs). ``PARACEL_TEST_KILL_AT="W:C"`` makes worker ``W`` SIGKILL
itself right after its ``iter_commit`` reaches clock ``C`` (so after the
checkpoint of that clock, if one was due); ``"W:end"`` kills it after
``solve()`` returned and the final checkpoint was written, before the
metrics. Without the variable the module changes nothing.
"""

import os
import signal

import paracel

_SPEC = os.environ.get("PARACEL_TEST_KILL_AT")


def _die():
    os.kill(os.getpid(), signal.SIGKILL)


if _SPEC:
    _worker, _, _when = _SPEC.partition(":")
    _worker = int(_worker)

    if _when == "end":
        _write_metrics = paracel.Algorithm._write_metrics

        def _end(self, *args, **kwargs):
            if self.worker_id == _worker:
                _die()
            return _write_metrics(self, *args, **kwargs)

        paracel.Algorithm._write_metrics = _end
    else:
        _clock = int(_when)
        _iter_commit = paracel.Algorithm.iter_commit

        def _commit(self, *args, **kwargs):
            result = _iter_commit(self, *args, **kwargs)
            if self.worker_id == _worker and self.clock == _clock:
                _die()
            return result

        paracel.Algorithm.iter_commit = _commit
