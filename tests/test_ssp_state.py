"""Tests of the SSP wait rule (paracel.ssp.may_proceed) and its pure state
machine (paracel.ssp.ClockState), without MPI.

A worker's clock is advanced by ``commit``; it may then run only while the
slowest unfinished worker is at least ``clock - s``. The randomized schedules
below commit any worker that may run and check that nobody ever gets more than
``s + 1`` clocks ahead (``s`` while running, plus the commit that then blocks
it) and that some worker can always run until all have finished.
"""

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from paracel.ssp import FINISHED, ClockState, may_proceed


# -- the rule ----------------------------------------------------------------

def test_bsp_waits_for_the_slowest():
    assert may_proceed(3, 3, 0)
    assert not may_proceed(4, 3, 0)
    assert may_proceed(0, 0, 0)


@pytest.mark.parametrize("s", [1, 2, 5])
def test_ssp_allows_exactly_s_ahead(s):
    slowest = 10
    assert may_proceed(slowest + s, slowest, s)
    assert not may_proceed(slowest + s + 1, slowest, s)


def test_asynchronous_never_waits():
    assert may_proceed(10 ** 9, 0, None)
    assert may_proceed(1, 0, None)


def test_finished_slowest_never_holds_back():
    assert may_proceed(10 ** 6, FINISHED, 0)


# -- the state machine ---------------------------------------------------------

def test_clocks_start_at_zero_and_everyone_may_run():
    state = ClockState(4, 0)
    assert state.clocks == [0, 0, 0, 0]
    assert all(state.may_proceed(w) for w in range(4))


def test_commit_returns_new_clock():
    state = ClockState(2, 1)
    assert state.commit(0) == 1
    assert state.commit(0) == 2
    assert state.clocks == [2, 0]


def test_bsp_worker_blocks_until_all_commit():
    state = ClockState(3, 0)
    state.commit(0)
    assert not state.may_proceed(0)
    state.commit(1)
    assert not state.may_proceed(0)
    state.commit(2)
    assert all(state.may_proceed(w) for w in range(3))


@pytest.mark.parametrize("s", [1, 3])
def test_ssp_worker_runs_s_ahead_then_blocks(s):
    state = ClockState(3, s)
    for _ in range(s):
        state.commit(0)
        assert state.may_proceed(0)
    state.commit(0)
    assert not state.may_proceed(0)
    assert state.clocks[0] - state.slowest() == s + 1
    state.commit(1)
    assert not state.may_proceed(0)  # worker 2 is still at 0
    state.commit(2)
    assert state.may_proceed(0)


def test_asynchronous_state_never_blocks():
    state = ClockState(3, None)
    for _ in range(100):
        state.commit(0)
    assert state.may_proceed(0)
    assert state.clocks == [100, 0, 0]


def test_finished_worker_does_not_hold_others_back():
    state = ClockState(3, 0)
    state.commit(0)
    state.commit(1)
    assert not state.may_proceed(0)  # worker 2 is at 0
    state.finish(2)
    assert state.may_proceed(0) and state.may_proceed(1)
    assert state.slowest() == 1


def test_all_finished_slowest_is_finished():
    state = ClockState(2, 0)
    state.finish(0)
    state.finish(1)
    assert state.slowest() == FINISHED


# -- randomized schedules ------------------------------------------------------

def _run_schedule(num_workers, s, iterations, rng):
    """Commit random runnable workers until every one has done ``iterations``
    clocks; check the bound and freedom from deadlock at every step."""
    state = ClockState(num_workers, s)
    done = [0] * num_workers
    finished = set()
    bound = None if s is None else s + 1
    steps = 0
    while len(finished) < num_workers:
        runnable = [w for w in range(num_workers)
                    if w not in finished and state.may_proceed(w)]
        assert runnable, f"deadlock: clocks {state.clocks}, s={s}"
        worker = rng.choice(runnable)
        if done[worker] == iterations:
            state.finish(worker)
            finished.add(worker)
        else:
            state.commit(worker)
            done[worker] += 1
        live = [state.clocks[w] for w in range(num_workers) if w not in finished]
        if live and bound is not None:
            assert max(live) - min(live) <= bound, (state.clocks, s)
            # no live worker is blocked by less than s + 1 clocks of lead
            for w in range(num_workers):
                if w not in finished and not state.may_proceed(w):
                    assert state.clocks[w] - min(live) == bound
        steps += 1
    assert done == [iterations] * num_workers
    assert steps == num_workers * (iterations + 1)
    return state


@pytest.mark.parametrize("s", [0, 1, 3])
@pytest.mark.parametrize("seed", range(20))
def test_random_schedule_respects_bound_and_never_deadlocks(s, seed):
    _run_schedule(5, s, iterations=12, rng=random.Random(seed * 31 + s))


@settings(max_examples=150, deadline=None)
@given(num_workers=st.integers(1, 6), s=st.sampled_from([0, 1, 3, None]),
       iterations=st.integers(0, 8), seed=st.integers(0, 2 ** 32 - 1))
def test_hypothesis_schedules(num_workers, s, iterations, seed):
    _run_schedule(num_workers, s, iterations, random.Random(seed))


def test_schedule_reaches_the_bound():
    """A greedy fast worker really gets s + 1 ahead, so the bound is tight."""
    for s in (0, 1, 3):
        state = ClockState(5, s)
        while state.may_proceed(0):
            state.commit(0)
        assert state.clocks[0] == s + 1
        assert state.clocks[1:] == [0, 0, 0, 0]
