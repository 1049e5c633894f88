"""The fault injector does what it says: per direction, counted, nothing lost but what it drops."""

from __future__ import annotations

import socket
from collections import Counter
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from switch_dataplane import wire
from switch_dataplane.daemon.fault_injector import (
    DirectionFaults,
    FaultInjector,
    direction_settings,
)
from switch_dataplane.daemon.launcher import SwitchProcess


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def tag(i: int) -> bytes:
    return i.to_bytes(4, "big") + b"payload"


def run(
    faults: DirectionFaults, batches: list[int], clock: FakeClock, step_s: float
) -> tuple[list[tuple[bytes, int]], list[int]]:
    """Feed datagrams 0, 1, ... in batches of the given sizes (the clock advancing between
    batches), then an idle flush; -> (everything that went on, in order; how many of them came
    from the final flush)."""
    out: list[tuple[bytes, int]] = []
    n = 0
    for size in batches:
        out += faults.apply([(tag(i), i) for i in range(n, n + size)])
        n += size
        clock.now += step_s
    flushed = faults.flush()
    return out + flushed, [len(out), len(flushed)]


fault_settings = st.fixed_dictionaries(
    {
        "drop": st.sampled_from([0.0, 0.1, 0.5, 1.0]),
        "duplicate": st.sampled_from([0.0, 0.1, 0.5, 1.0]),
        "reorder": st.sampled_from([0.0, 0.1, 0.5, 1.0]),
        "corrupt": st.sampled_from([0.0, 0.1, 0.5, 1.0]),
        "reorder_packets": st.integers(1, 6),
        "corrupt_bytes": st.integers(1, 4),
        "seed": st.integers(0, 2**32),
    }
)


@settings(max_examples=300, deadline=None)
@given(fault_settings, st.lists(st.integers(0, 12), max_size=25))
def test_every_datagram_is_accounted_for(kwargs: dict, batches: list[int]) -> None:
    """Only drops remove datagrams, only duplication repeats them, corruption changes exactly
    the bytes it counts, and a reordered copy goes on only after ``reorder_packets`` datagrams
    that arrived after it (or, when the direction goes idle, after all of them)."""
    clock = FakeClock()
    faults = DirectionFaults(**kwargs, clock=clock)
    out, (applied, flushed) = run(faults, batches, clock, step_s=0.01)
    n = sum(batches)
    counts = faults.counts
    assert counts["seen"] == n
    assert counts["passed"] == len(out) == n - counts["dropped"] + counts["duplicated"]
    copies = Counter(address for _, address in out)
    assert n - len(copies) == counts["dropped"]
    assert sum(c - 1 for c in copies.values()) == counts["duplicated"]
    assert max(copies.values(), default=1) <= 2
    assert sum(payload != tag(address) for payload, address in out) == counts["corrupted"]
    assert all(len(payload) == len(tag(address)) for payload, address in out)
    assert not faults.held
    late = 0
    for position, (_, address) in enumerate(out[:applied]):
        overtaken_by = sum(a > address for _, a in out[:position])
        if overtaken_by:
            late += 1
            assert overtaken_by >= kwargs["reorder_packets"]
    assert late + flushed == counts["reordered"]


@settings(max_examples=100, deadline=None)
@given(st.integers(1, 50), st.integers(0, 2**32), st.lists(st.integers(1, 8), max_size=20))
def test_reordering_by_time_holds_each_copy_that_long(ms: int, seed: int, batches: list) -> None:
    clock = FakeClock()
    faults = DirectionFaults(reorder=0.5, reorder_ms=ms, reorder_packets=0, seed=seed, clock=clock)
    sent_at: dict[int, float] = {}
    n = 0
    for size in batches:
        for i in range(n, n + size):
            sent_at[i] = clock.now
        for _, address in faults.apply([(tag(i), i) for i in range(n, n + size)]):
            if clock.now > sent_at[address]:  # held: released no sooner than it was due
                assert clock.now - sent_at[address] >= ms / 1000 - 1e-9
        n += size
        clock.now += 0.004
    clock.now += 1.0
    faults.flush()
    assert not faults.held


def test_blackhole_drops_everything_for_its_duration_then_nothing() -> None:
    clock = FakeClock()
    faults = DirectionFaults(blackhole_after=5, blackhole_s=2.0, clock=clock)
    first = faults.apply([(tag(i), i) for i in range(8)])
    assert [a for _, a in first] == [0, 1, 2, 3, 4]
    clock.now = 1.9
    assert faults.apply([(tag(8), 8)]) == []
    clock.now = 2.0
    assert faults.apply([(tag(9), 9)]) == [(tag(9), 9)]
    assert faults.counts["blackholed"] == 4


def test_directions_have_their_own_settings_and_random_streams() -> None:
    injector = FaultInjector.from_flags(
        {"drop": "requests=0.5", "reorder": "responses=1", "reorder_by": "20ms"}, seed=3
    )
    assert injector.requests.drop == 0.5 and injector.responses.drop == 0.0
    assert injector.requests.reorder == 0.0 and injector.responses.reorder == 1.0
    assert injector.responses.reorder_ms == 20.0
    same = FaultInjector.from_flags({"drop": "0.5"}, seed=3)
    draws = [same.requests.rng.random() for _ in range(4)]
    assert draws != [same.responses.rng.random() for _ in range(4)]


@pytest.mark.parametrize(
    ("flags", "problem"),
    [
        ({"drop": "1.5"}, "probability"),
        ({"drop": "sideways=0.1"}, "requests=V,responses=W"),
        ({"reorder_by": "soon"}, "not a number"),
        ({"blackhole": "inf"}, "finite"),
    ],
)
def test_bad_fault_flags_say_what_is_wrong(flags: dict, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        FaultInjector.from_flags(flags, seed=None)


def test_direction_settings_parse_packets_and_milliseconds() -> None:
    assert direction_settings({"reorder_by": "5"})["requests"]["reorder_packets"] == 5
    assert direction_settings({"reorder_by": "requests=7ms"})["requests"]["reorder_ms"] == 7.0


@pytest.fixture
def reordering_switch() -> Iterator[SwitchProcess]:
    """Every request held back; answers untouched."""
    with SwitchProcess("--reorder", "requests=1", "--reorder-by", "1", "--seed", "1") as switch:
        yield switch


def test_reordered_requests_reach_the_switch_never_their_sender(
    reordering_switch: SwitchProcess,
) -> None:
    """Every request is held back and released to the switch when the network goes idle: the
    host gets answers, never its own requests, and the switch's stats count the holds."""
    host, port = reordering_switch.address.rsplit(":", 1)
    stats = {"op": "stats", "operator": reordering_switch.operator_secret}
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(5)
        for request_id in (1, 2):
            packet = wire.encode_control(wire.PacketType.CONTROL_REQUEST, 77, request_id, stats)
            sock.sendto(packet, (host, int(port)))
        answers = [wire.decode_control(sock.recv(1 << 16)) for _ in range(2)]
    assert [int(hdr["type"]) for hdr, _ in answers] == [wire.PacketType.CONTROL_RESPONSE] * 2
    assert {int(hdr["seq"]) for hdr, _ in answers} == {1, 2}
    last = max(answers, key=lambda a: a[1]["faults"]["requests"]["reordered"])[1]
    assert last["faults"]["requests"]["reordered"] == 2
    assert last["faults"]["responses"]["reordered"] == 0
