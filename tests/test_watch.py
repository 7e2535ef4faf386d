"""Waits among workers (paracel.watch), without MPI: mismatched collective
calls are named, a state where every unfinished worker waits is a deadlock
only once it stays unchanged, and a short wait publishes nothing."""

import pytest

from paracel import watch
from paracel.watch import (CHECKPOINT, CLOCK, END, RUNNING, SYNC, CollectiveMismatch,
                           Deadlock, ReportedElsewhere, Watch, check_labels, deadlocked)


def test_equal_labels_pass_and_different_ones_name_every_worker():
    check_labels([(SYNC, 3, 5)] * 3, 0)
    check_labels([(SYNC, 3, 5), (SYNC, 3, 9)], 0)  # a sync() may come at other clocks
    with pytest.raises(ReportedElsewhere):  # worker 0 reports it
        check_labels([(CHECKPOINT, 3, 5), (CHECKPOINT, 3, 6)], 1)
    with pytest.raises(CollectiveMismatch, match="worker 1 waits in the checkpoint barrier"):
        check_labels([(CHECKPOINT, 3, 5), (CHECKPOINT, 3, 6)], 0)
    with pytest.raises(CollectiveMismatch) as error:
        check_labels([(SYNC, 3, 5), (CHECKPOINT, 3, 5), (SYNC, 3, 5)], 0)
    text = str(error.value)
    assert "worker 0 waits in sync() (collective call #3, clock 5)" in text
    assert "worker 1 waits in the checkpoint barrier (collective call #3, clock 5)" in text


def test_deadlock_needs_every_unfinished_worker_waiting():
    assert deadlocked([False, False], [(SYNC, 2, 0), (CLOCK, 0, 1)])
    assert not deadlocked([False, False], [(SYNC, 2, 0), (RUNNING, 0, 0)])
    # a finished worker waiting at the end, the others waiting for it: stuck
    assert deadlocked([True, False], [(END, 4, 3), (SYNC, 4, 3)])
    # everyone finished and nobody waits: nothing to report
    assert not deadlocked([True, True], [(RUNNING, 0, 0), (RUNNING, 0, 0)])


class Board:
    """A board whose n-th snapshot is ``script(n)``; records what was published."""

    staleness = 0
    worker = 0

    def __init__(self, script):
        self.script = script
        self.looks = 0
        self.published = []

    def publish(self, label):
        self.published.append(label)

    def snapshot(self):
        self.looks += 1
        return self.script(self.looks)


@pytest.fixture
def fast(monkeypatch):
    monkeypatch.setattr(watch, "PUBLISH_AFTER", 0.01)
    monkeypatch.setattr(watch, "LOOK_EVERY", 0.02)


def test_a_stuck_wait_ends_in_a_deadlock_error(fast):
    board = Board(lambda look: ([False, False], [[SYNC, 1, 0], [CLOCK, 0, 1]]))
    with pytest.raises(Deadlock, match="worker 1 waits in iter_commit.. at clock 1"):
        Watch(board).wait(lambda: False, (SYNC, 1, 0))
    assert board.published[0] == (SYNC, 1, 0) and board.published[-1] is None


def test_a_changing_board_is_not_a_deadlock(fast):
    board = Board(lambda look: ([False, False], [[SYNC, 1, 0], [CLOCK, 0, look]]))
    Watch(board).wait(lambda: board.looks > 10, (SYNC, 1, 0))
    assert board.published[-1] is None


def test_a_short_wait_publishes_nothing():
    board = Board(lambda look: ([False], [[RUNNING, 0, 0]]))
    Watch(board).wait(lambda: True, (SYNC, 1, 0))
    assert board.published == []


def test_only_the_lowest_waiting_worker_reports_a_deadlock(fast):
    board = Board(lambda look: ([False, False], [[SYNC, 1, 0], [CLOCK, 0, 1]]))
    board.worker = 1
    Watch(board).wait(lambda: board.looks > 5, (CLOCK, 0, 1))  # worker 0 reports it
