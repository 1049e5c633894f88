"""Batched UDP I/O: GRO runs split into their datagrams, answers regrouped into GSO runs.

A scripted socket stands in for the kernel, so the properties are checked on any run shape
(the daemon and host tests cover real sockets).
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from switch_dataplane.udp_io import RUN_BYTES, receive_waiting, send_grouped

SENDERS = [("127.0.0.1", 5000 + i) for i in range(3)]


@st.composite
def gro_runs(draw: st.DrawFn) -> list[tuple[list[bytes], int, tuple]]:
    """Runs as the kernel returns them: datagrams of one segment size, the last maybe shorter
    (an empty datagram is a run of its own)."""
    runs = []
    for _ in range(draw(st.integers(1, 8))):
        sender = SENDERS[draw(st.integers(0, len(SENDERS) - 1))]
        if draw(st.integers(0, 9)) == 0:
            runs.append(([b""], 0, sender))
            continue
        segment = draw(st.integers(1, 300))
        count = draw(st.integers(1, min(12, RUN_BYTES // segment)))
        last = draw(st.integers(1, segment))
        sizes = [segment] * (count - 1) + [last]
        datagrams = [draw(st.binary(min_size=n, max_size=n)) for n in sizes]
        runs.append((datagrams, segment, sender))
    return runs


class ScriptedSocket:
    """Returns the given runs one per ``receive_into``, then nothing; records ``send_run``."""

    def __init__(self, runs: list[tuple[list[bytes], int, tuple]] = ()) -> None:
        self.runs = list(runs)
        self.sent: list[tuple[bytes, int, tuple]] = []

    def receive_into(self, view: memoryview) -> tuple[int, int, tuple] | None:
        if not self.runs:
            return None
        datagrams, segment, sender = self.runs.pop(0)
        payload = b"".join(datagrams)
        view[: len(payload)] = payload
        return len(payload), max(segment, 1), sender

    def send_run(self, payload: memoryview, segment: int, address: tuple) -> None:
        self.sent.append((bytes(payload), segment, address))


@settings(max_examples=200, deadline=None)
@given(gro_runs())
def test_received_runs_split_into_their_datagrams_in_order(runs: list) -> None:
    buf = np.zeros(8 * RUN_BYTES + RUN_BYTES, np.uint8)
    waiting = receive_waiting(ScriptedSocket(runs), memoryview(buf), 8 * RUN_BYTES)
    expected = [(d, sender) for datagrams, _, sender in runs for d in datagrams]
    got = [
        (bytes(buf[o : o + n]), waiting.senders[s])
        for o, n, s in zip(
            waiting.offsets.tolist(),
            waiting.lengths.tolist(),
            waiting.sender_of.tolist(),
            strict=True,
        )
    ]
    assert got == expected
    assert waiting.nbytes == sum(len(d) for d, _ in expected)
    first_of_run = np.cumsum([0] + [len(datagrams) for datagrams, _, _ in runs[:-1]])
    assert (waiting.offsets[first_of_run] % 8 == 0).all()


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, len(SENDERS) - 1), st.sampled_from([0, 4, 8, 12, 40])),
        max_size=60,
    ),
    st.integers(0, 2**32 - 1),
)
def test_grouped_answers_each_reach_their_sender_once_in_arrival_order(
    answers: list[tuple[int, int]], seed: int
) -> None:
    rng = np.random.default_rng(seed)
    out = rng.integers(0, 256, (len(answers), 40), dtype=np.uint8)
    sender_of = np.array([s for s, _ in answers], np.int64)
    lengths = np.array([n for _, n in answers], np.int64)
    sock = ScriptedSocket()
    send_grouped(sock, out, lengths, sender_of, SENDERS, np.zeros(out.size, np.uint8))

    received = defaultdict(list)  # (address, size) -> datagrams in sending order
    for payload, segment, address in sock.sent:
        assert len(payload) % segment == 0  # one size per run
        for start in range(0, len(payload), segment):
            received[address, segment].append(payload[start : start + segment])
    expected = defaultdict(list)
    for i, (s, n) in enumerate(answers):
        if n:
            expected[SENDERS[s], n].append(bytes(out[i, :n]))
    assert received == expected
    assert len(sock.sent) == len(expected)  # one run per (address, size)


@pytest.mark.parametrize("bad_length", [6, 12, -4])
def test_an_answer_of_a_partial_word_or_beyond_its_row_is_refused(bad_length: int) -> None:
    out = np.zeros((2, 8), np.uint8)
    sock = ScriptedSocket()
    with pytest.raises(ValueError, match="32-bit words within a row"):
        send_grouped(
            sock, out, np.array([8, bad_length]), np.zeros(2, np.int64), SENDERS, out.ravel()
        )
    assert sock.sent == []
