"""The memory manager's promises, under any sequence of requests, releases and waits."""

from __future__ import annotations

import pickle

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from switch_dataplane.control.memory_manager import (
    POLICIES,
    RESERVE_HOLD_S,
    Grant,
    MemoryManager,
    MemoryRefused,
    MemoryRequest,
    Queued,
)

COLUMNS = 64
SIZES = st.sampled_from([1, 2, 4, 8, 16, 32, 64])


@st.composite
def requests(draw: st.DrawFn) -> MemoryRequest:
    columns = draw(st.none() | SIZES)
    min_columns = draw(SIZES.filter(lambda m: columns is None or m <= columns))
    return MemoryRequest(
        columns=columns,
        min_columns=min_columns,
        priority=draw(st.integers(0, 3)),
        deadline=draw(st.none() | st.floats(0, 100)),
        max_wait_s=draw(st.sampled_from([0.0, 1.0, 10.0, 100.0])),
    )


class ManagerMachine(RuleBasedStateMachine):
    """Random admissions, re-asks, releases and clock steps against every policy."""

    def __init__(self) -> None:
        super().__init__()
        self.now = 0.0
        self.asked: dict[int, MemoryRequest] = {}
        self.arrived: dict[int, int] = {}  # owner -> arrival order of its current wait
        self.next_owner = 0

    @initialize(policy=st.sampled_from(POLICIES), share=st.sampled_from([0.0, 0.125, 0.5]))
    def start(self, policy: str, share: float) -> None:
        self.manager = MemoryManager(COLUMNS, policy, clock=lambda: self.now, reserve_share=share)
        self.deadline_asked_at = -1e9

    @rule(request=requests())
    def arrive(self, request: MemoryRequest) -> None:
        self.next_owner += 1
        self._ask(self.next_owner, request)

    @precondition(lambda self: self.manager.waiting)
    @rule(data=st.data())
    def ask_again(self, data: st.DataObject) -> None:
        waiter = data.draw(st.sampled_from(self.manager.waiting))
        self._ask(waiter.owner, self.asked[waiter.owner])

    def _rank(self, owner: int) -> tuple:
        """The order waiters are served in, as the module's docstring promises."""
        request, arrived = self.asked[owner], self.arrived[owner]
        if self.manager.policy != "edf":
            return (arrived,)
        if request.deadline is not None and request.deadline > self.now:
            return (0, request.deadline, arrived)
        return (1, -request.priority, arrived)

    def _keeps_reserve(self, request: MemoryRequest) -> bool:
        """A grant that must leave the deadline reserve free: edf, no live deadline of its
        own, and a deadline job asked within the hold time."""
        live = request.deadline is not None and request.deadline > self.now
        recent = self.now - self.deadline_asked_at < RESERVE_HOLD_S
        return self.manager.policy == "edf" and recent and not live

    def _ask(self, owner: int, request: MemoryRequest) -> None:
        manager = self.manager
        if manager.position(owner) is None:
            self.arrived[owner] = len(self.arrived) + 1
        self.asked[owner] = request
        if request.deadline is not None:
            self.deadline_asked_at = self.now
        try:
            answer = manager.admit(owner, request)
        except MemoryRefused as refused:
            assert refused.code == "AA_FULL" and request.max_wait_s == 0
            assert owner not in manager.grants and manager.position(owner) is None
            return
        if isinstance(answer, Grant):
            ahead = [w.owner for w in manager.waiting if self._rank(w.owner) < self._rank(owner)]
            assert not ahead, f"owner {owner} overtook {ahead}"
            if not answer.shared:
                assert answer.columns >= request.min_columns
                if manager.policy in ("isolated", "edf") and request.columns is not None:
                    assert answer.columns <= request.columns
            if self._keeps_reserve(request):
                keep = min(manager.reserve, COLUMNS - request.min_columns)
                assert manager.regions.largest_free() >= keep, "the deadline reserve was taken"
        else:
            assert isinstance(answer, Queued) and answer.position == manager.position(owner)

    @precondition(lambda self: self.manager.grants)
    @rule(data=st.data())
    def close(self, data: st.DataObject) -> None:
        owner = data.draw(st.sampled_from(sorted(self.manager.grants)))
        grantable = self.manager.release(owner)
        assert len(grantable) <= 1
        for waiter in grantable:
            assert isinstance(self.manager.admit(waiter, self.asked[waiter]), Grant)

    @precondition(lambda self: self.manager.grants)
    @rule(data=st.data())
    def new_epoch(self, data: st.DataObject) -> None:
        """A holder's region re-decided between its epochs: never grown while others wait,
        never below what it accepts (the invariants check it stays disjoint)."""
        owner = data.draw(st.sampled_from(sorted(self.manager.grants)))
        before = self.manager.grants[owner]
        after = self.manager.resize(owner, self.asked[owner])
        assert self.manager.grants[owner] == after
        if self.manager.waiting:
            assert after.columns <= before.columns
        if not after.shared:
            assert after.columns >= min(before.columns, self.asked[owner].min_columns)

    @rule(seconds=st.sampled_from([0.5, 5.0, 50.0]))
    def wait(self, seconds: float) -> None:
        self.now += seconds
        for owner in self.manager.expire():
            assert self.manager.position(owner) is None

    @invariant()
    def regions_are_disjoint_and_inside(self) -> None:
        grants = list(self.manager.grants.values())
        if self.manager.policy == "exclusive":
            assert len(grants) <= 1
        taken = [0] * COLUMNS
        for grant in grants:
            assert grant.offset >= 0 and grant.offset + grant.columns <= COLUMNS
            if not grant.shared:
                for column in range(grant.offset, grant.offset + grant.columns):
                    taken[column] += 1
        assert max(taken) <= 1
        assert 0.0 <= self.manager.utilisation() <= 1.0

    @invariant()
    def nobody_waits_past_the_bound(self) -> None:
        for waiter in self.manager.waiting:
            assert waiter.gives_up_at > self.now or waiter.gives_up_at == waiter.arrived

    @invariant()
    def edf_serves_live_deadlines_first(self) -> None:
        if self.manager.policy != "edf":
            return
        live = [
            w.request.deadline is not None and w.request.deadline > self.now
            for w in self.manager._queue()
        ]
        assert live == sorted(live, reverse=True)


ManagerMachine.TestCase.settings = settings(max_examples=100, stateful_step_count=30, deadline=None)
TestManager = ManagerMachine.TestCase


def test_exclusive_is_one_job_at_a_time_then_the_next() -> None:
    manager = MemoryManager(16, "exclusive", clock=lambda: 0.0)
    assert manager.admit(1, MemoryRequest(columns=1)) == Grant(0, 16, shared=False)
    assert manager.admit(2, MemoryRequest(max_wait_s=9)) == Queued(1)
    with pytest.raises(MemoryRefused, match="AA_FULL: switch memory full under the exclusive"):
        manager.admit(3, MemoryRequest())
    assert manager.release(1) == [2]
    assert manager.admit(2, MemoryRequest(max_wait_s=9)) == Grant(0, 16, shared=False)


def test_edf_puts_the_nearest_deadline_first() -> None:
    manager = MemoryManager(16, "edf", clock=lambda: 0.0)
    manager.admit(1, MemoryRequest(columns=16))
    manager.admit(2, MemoryRequest(columns=16, max_wait_s=60, priority=9))
    manager.admit(3, MemoryRequest(columns=16, max_wait_s=60, deadline=30))
    manager.admit(4, MemoryRequest(columns=16, max_wait_s=60, deadline=20))
    assert [manager.position(o) for o in (2, 3, 4)] == [3, 2, 1]
    assert manager.release(1) == [4]


def test_edf_keeps_a_reserve_for_deadline_jobs_while_they_come() -> None:
    now = [0.0]
    manager = MemoryManager(16, "edf", clock=lambda: now[0], reserve_share=0.25)
    assert manager.admit(1, MemoryRequest(min_columns=4)) == Grant(0, 16, shared=False)
    manager.release(1)  # no deadline job yet: a job without one may take the whole array
    assert manager.admit(2, MemoryRequest(columns=4, deadline=9.0)) == Grant(0, 4, shared=False)
    manager.release(2)
    assert manager.admit(3, MemoryRequest(min_columns=4)) == Grant(0, 8, shared=False)
    assert manager.admit(4, MemoryRequest(columns=4, deadline=9.0)) == Grant(8, 4, shared=False)
    assert manager.admit(5, MemoryRequest(min_columns=4, max_wait_s=99)) == Queued(1)
    manager.release(3)
    manager.release(4)
    now[0] += RESERVE_HOLD_S  # deadline jobs stopped coming: the reserve is free to take
    assert manager.admit(5, MemoryRequest(min_columns=4, max_wait_s=99)) == Grant(0, 16, False)


def test_isolated_shares_fairly_when_no_size_is_named() -> None:
    manager = MemoryManager(16, "isolated", clock=lambda: 0.0)
    first = manager.admit(1, MemoryRequest())
    assert first == Grant(0, 16, shared=False)
    manager.release(1)
    manager.admit(1, MemoryRequest(columns=4))
    assert manager.admit(2, MemoryRequest()) == Grant(8, 8, shared=False)  # 16 / 2 jobs


@given(st.sampled_from(POLICIES), st.integers(0, 10), st.floats(allow_nan=True))
def test_bad_requests_are_refused_with_a_reason(policy: str, columns: int, wait: float) -> None:
    manager = MemoryManager(8, policy, clock=lambda: 0.0)
    request = MemoryRequest(columns=columns or None, max_wait_s=wait)
    try:
        manager.admit(1, request)
    except MemoryRefused as refused:
        assert refused.code in ("BAD_ARGUMENT", "AA_FULL") and str(refused).startswith(refused.code)
        again = pickle.loads(pickle.dumps(refused))
        assert (type(again), again.code, str(again)) == (MemoryRefused, refused.code, str(refused))
