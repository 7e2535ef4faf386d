"""The worker's ack and fence bookkeeping (paracel.fences.AckTracker), without MPI.

A simulated server per index applies one worker's requests in the order sent
and answers acks in that order, as a real one does. Random runs of writes
(acked or not), waits on handles and flushes, with acks delivered whenever,
check the tracker's one promise, that a write it calls applied has been
applied, and the economies it exists for: no fence where an ack already due
covers the wait, and none twice.
"""

from collections import deque

from hypothesis import given, settings
from hypothesis import strategies as st

from paracel.fences import AckTracker


class FakeServer:
    """Applies requests in order; each acked one (or fence) yields an ack."""

    def __init__(self):
        self.inbox = deque()
        self.applied = 0
        self.outbox = deque()

    def step(self):
        kind = self.inbox.popleft()
        if kind != "fence":
            self.applied += 1
        if kind != "write":  # an acked write, or a fence
            self.outbox.append(self.applied)


class World:
    """A tracker, its servers, and what the client would do with them."""

    def __init__(self, servers):
        self.tracker = AckTracker(servers)
        self.servers = [FakeServer() for _ in range(servers)]
        self.fences = 0

    def send(self, server, acked):
        mark = self.tracker.count(server, acked)
        self.servers[server].inbox.append("acked" if acked else "write")
        return mark

    def deliver(self, server):
        """The server does what it can, and the worker takes one message."""
        fake = self.servers[server]
        while fake.inbox:
            fake.step()
        assert self.tracker.owes(server) == bool(fake.outbox)
        if fake.outbox:
            confirmed = fake.outbox.popleft()
            self.tracker.acked(server)
            assert self.tracker.applied[server] == confirmed

    def wait(self, marks):
        """What Client._fence does."""
        behind = self.tracker.behind(marks)
        for server, mark in behind:
            if self.tracker.fence(server, mark):
                self.fences += 1
                self.servers[server].inbox.append("fence")
        for server, mark in behind:
            while not self.tracker.reached(server, mark):
                self.deliver(server)
        for server, mark in marks.items():
            assert self.servers[server].applied >= mark


step = st.one_of(
    st.tuples(st.just("send"), st.integers(0, 2), st.booleans()),
    st.tuples(st.just("deliver"), st.integers(0, 2), st.booleans()),
    st.tuples(st.just("wait"), st.integers(0, 2), st.booleans()),
    st.tuples(st.just("flush"), st.integers(0, 2), st.booleans()),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(step, max_size=60))
def test_applied_means_applied(steps):
    world = World(3)
    handles = []
    for kind, server, acked in steps:
        if kind == "send":
            handles.append({server: world.send(server, acked)})
        elif kind == "deliver":
            world.deliver(server)
        elif kind == "wait" and handles:
            world.wait(handles[server % len(handles)])
        elif kind == "flush":
            world.wait(world.tracker.everything())
        tracker = world.tracker
        for index, fake in enumerate(world.servers):
            assert tracker.applied[index] <= fake.applied <= tracker.sent[index]
            due = list(tracker.due[index])
            assert due == sorted(set(due)) and all(tracker.applied[index] < n <= tracker.sent[index]
                                                   for n in due)


def test_a_numbered_write_is_what_a_handle_waits_for():
    tracker = AckTracker(2)
    assert [tracker.count(1, False) for _ in range(3)] == [1, 2, 3]
    assert tracker.everything() == {0: 0, 1: 3}
    assert tracker.behind({0: 0, 1: 2}) == [(1, 2)]


def test_an_acked_push_needs_no_fence():
    tracker = AckTracker(1)
    mark = tracker.count(0, acked=True)
    assert tracker.owes(0)
    assert not tracker.fence(0, mark)  # its own ack covers the wait
    tracker.acked(0)
    assert tracker.reached(0, mark) and not tracker.owes(0)
    assert tracker.behind({0: mark}) == []


def test_small_writes_get_one_fence_confirming_all_sent():
    tracker = AckTracker(1)
    first = tracker.count(0, acked=False)
    tracker.count(0, acked=False)
    assert tracker.fence(0, first)
    assert not tracker.fence(0, first)  # the fence already due covers it
    tracker.acked(0)
    assert tracker.applied == [2]


def test_a_fence_is_sent_when_the_acks_due_stop_short():
    tracker = AckTracker(1)
    tracker.count(0, acked=True)
    later = tracker.count(0, acked=False)
    assert tracker.fence(0, later)
    assert list(tracker.due[0]) == [1, 2]
    tracker.acked(0)
    assert not tracker.reached(0, later)
    tracker.acked(0)
    assert tracker.reached(0, later)
