"""The switch and the host protocol under attack: token prediction and guessing, forged answers,
poison control packets, amplification, exhaustion, reply-cache theft, a switch restarted
mid-job, and a job of 10,000 partitions.

Every datagram may be hostile: each test plays the attacker the issue describes and checks that
the attack buys nothing (and that honest traffic beside it is still answered, exactly).
"""

from __future__ import annotations

import itertools
import logging
import random
import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from inc_spark.host import aggregate, drain_copy, key_codec, merge_results, open_job
from inc_spark.host.job import StreamResult
from inc_spark.host.packer import PacketBatch
from inc_spark.host.reliable_exchange import Expect, ReliableExchange
from switch_dataplane import wire
from switch_dataplane.control import control_plane
from switch_dataplane.control.control_client import (
    ControlClient,
    SwitchRestarted,
    fetch_stats,
)
from switch_dataplane.control.guard import CONTROL_PER_SENDER, FAILURE_BURST, over_share
from switch_dataplane.control.region_allocator import RegionAllocator
from switch_dataplane.daemon import SwitchDaemon
from switch_dataplane.daemon.launcher import SwitchProcess
from switch_dataplane.daemon.switch import CONTROL_REPLY_CACHE, Switch
from switch_dataplane.wire import PacketType, Status

ATTACKER = ("10.6.6.6", 6666)
VICTIM = ("10.1.1.1", 1111)
OPERATOR = "operator-secret"


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def control(message: dict[str, Any], client: int = 1, request_id: int = 1) -> bytes:
    return wire.encode_control(PacketType.CONTROL_REQUEST, client, request_id, message)


def answer(reply: bytes | None) -> dict[str, Any]:
    assert reply is not None
    return wire.decode_control(reply)[1]


def small_switch(**kwargs: Any) -> Switch:
    options = dict(rows=4, columns=16, window=8, max_flows=8, max_jobs=8, fast=False)
    return Switch(**{**options, **kwargs})


REQUEST_IDS = itertools.count(1000)


def call_packet(message: dict[str, Any]) -> bytes:
    """One new request padded as ``ControlClient`` pads it."""
    padded = {**message, "pad": " " * wire.MIN_OPEN_JOB_REQUEST}
    return control(padded, request_id=next(REQUEST_IDS))


def call(switch: Switch, message: dict[str, Any], sender: tuple | None = None) -> dict[str, Any]:
    """One new request, from ``sender`` (None: in process)."""
    request = call_packet(message)
    return answer((switch.handle([request], [sender]) if sender else switch.handle([request]))[0])


def data_packet(job: dict[str, Any], token: int, flow_id: int = 0, seq: int = 0) -> bytes:
    hdr = wire.new_header(
        PacketType.DATA, job_id=job["job_id"], token=token, epoch=1, flow_id=flow_id, seq=seq
    )
    keys = np.frombuffer(b"k" * 16, np.uint8).reshape(1, 16)
    return wire.encode_packet(hdr, np.array([0]), keys, np.array([1]))


# ---------------------------------------------------------------------------- credentials


def _untemper(y: int) -> int:
    """The Mersenne Twister state word behind one 32-bit output."""
    y ^= y >> 18
    y ^= (y << 15) & 0xEFC60000
    x = y
    for _ in range(5):
        x = y ^ ((x << 7) & 0x9D2C5680)
    y = x & 0xFFFFFFFF
    x = y
    for _ in range(3):
        x = y ^ (x >> 11)
    return x & 0xFFFFFFFF


def test_tokens_cannot_be_predicted_after_624_open_close_pairs() -> None:
    """The attack of the issue: 624 tokens give a Mersenne Twister's state; the next job's
    token is predicted and used to read and close another client's job. Tokens from
    ``secrets`` are 64 bits and predict nothing."""
    switch = small_switch()
    tokens = []
    for _ in range(624):
        job = call(switch, {"op": "open_job", "lease_s": 60})
        tokens.append(job["token"])
        ident = {"job_id": job["job_id"], "token": job["token"]}
        assert call(switch, {"op": "close_job", **ident})["ok"]
    twister = random.Random()
    state = [_untemper((t - 1) & 0xFFFFFFFF) for t in tokens]
    twister.setstate((3, (*state, 624), None))
    predicted = twister.randrange(1, 1 << 32)
    victim = call(switch, {"op": "open_job", "lease_s": 60})
    assert victim["token"] != predicted
    stolen = call(switch, {"op": "job_status", "job_id": victim["job_id"], "token": predicted})
    assert stolen["code"] == "BAD_JOB"
    closing = {"op": "close_job", "job_id": victim["job_id"], "token": predicted}
    assert call(switch, closing)["code"] == "BAD_JOB"
    assert max(tokens) >= 1 << 32  # 64-bit tokens


def test_tokens_and_incarnation_are_never_the_same_twice() -> None:
    """Two switches built alike (as two boots with one ``--seed``) share no token."""
    one, two = small_switch(), small_switch()
    assert one.incarnation != two.incarnation
    first = call(one, {"op": "open_job"})
    second = call(two, {"op": "open_job"})
    assert first["job_id"] == second["job_id"] and first["token"] != second["token"]


def test_wrong_token_and_unknown_job_answer_alike() -> None:
    """A guess learns nothing about which jobs exist: the same answer for both."""
    switch = small_switch()
    job = call(switch, {"op": "open_job"})
    wrong = call(switch, {"op": "renew", "job_id": job["job_id"], "token": job["token"] ^ 1})
    unknown = call(switch, {"op": "renew", "job_id": 5, "token": job["token"] ^ 1})
    assert wrong == unknown
    data_wrong = switch.handle([data_packet(job, job["token"] ^ 1)])[0]
    data_unknown = switch.handle([data_packet({"job_id": 5}, job["token"] ^ 1)])[0]
    assert data_wrong is not None and data_unknown is not None
    assert data_wrong[wire.FIELD_OFFSET["status"]] == Status.BAD_JOB
    at = wire.FIELD_OFFSET["checksum"]  # all but the echoed job id and the checksum over it
    assert data_wrong[8:at] == data_unknown[8:at] and data_wrong[at + 4 :] == data_unknown[at + 4 :]


def test_failed_credentials_are_rate_limited_per_source() -> None:
    """Guessing from one source runs out of answers after a burst; it refills with time; an
    honest source beside it is answered throughout."""
    clock = FakeClock()
    switch = small_switch(clock=clock, fast=True)
    job = call(switch, {"op": "open_job"}, VICTIM)
    guesses = [data_packet(job, job["token"] ^ (i + 1)) for i in range(2 * int(FAILURE_BURST))]
    answers = switch.handle(guesses, [ATTACKER] * len(guesses))
    answered = sum(a is not None for a in answers)
    assert answered <= FAILURE_BURST
    assert switch.stats()["switch"]["rate_limited"] == len(guesses) - answered
    # Control guesses from the same source: no answer either.
    guess = control({"op": "renew", "job_id": job["job_id"], "token": 7}, request_id=1)
    assert switch.handle([guess], [ATTACKER]) == [None]
    # Honest traffic from elsewhere is answered.
    assert call(switch, {"op": "job_status", "job_id": job["job_id"], "token": job["token"]},
                VICTIM)["ok"]  # fmt: skip
    clock.now += 60  # refilled
    assert switch.handle([guesses[0]], [ATTACKER])[0] is not None


# ---------------------------------------------------------------------------- forged answers


def test_host_believes_answers_only_from_the_switch_with_the_token() -> None:
    """A stranger's DATA_RESPONSE (another address), one from the switch's address with another
    token, one with an unknown status byte and one damaged on the way (its checksum) are dropped
    and counted; the true answer is the only one taken, and no status byte raises."""
    fake_switch = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    fake_switch.bind(("127.0.0.1", 0))
    stranger = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    token, flow_id, job_id = 0x1122334455667788, 9, 3
    hdr = wire.new_header(PacketType.DATA, job_id=job_id, token=token, epoch=1, flow_id=flow_id)
    request = wire.encode_packet(
        hdr, np.array([0]), np.frombuffer(b"g" * 16, np.uint8).reshape(1, 16), np.array([5])
    )
    batch = PacketBatch(
        np.frombuffer(request, np.uint8).copy(),
        np.array([0], np.int64),
        np.array([len(request)], np.int64),
        1,
    )
    exchange = ReliableExchange(fake_switch.getsockname(), window=4, deadline_s=5)

    def respond(status: int, token_sent: int, key: bytes, value: int) -> bytes:
        out = hdr.copy()
        out["type"], out["status"], out["token"], out["incarnation"] = 2, status, token_sent, 77
        return wire.encode_packet(
            out, np.array([0]), np.frombuffer(key, np.uint8).reshape(1, 16), np.array([value])
        )

    def play_switch() -> None:
        _, host = fake_switch.recvfrom(2048)
        stranger.sendto(respond(0, token, b"E" * 16, 1_000_000), host)  # right token, wrong peer
        fake_switch.sendto(respond(0, token ^ 1, b"F" * 16, 1_000_000), host)  # wrong token
        fake_switch.sendto(respond(9, token, b"U" * 16, 1), host)  # unknown status byte
        damaged = bytearray(respond(0, token, b"g" * 16, 5))
        damaged[-1] ^= 0x40  # the value 5 became 69 on the way
        fake_switch.sendto(bytes(damaged), host)
        fake_switch.sendto(respond(0, token, b"g" * 16, 5), host)  # the true answer

    player = threading.Thread(target=play_switch)
    player.start()
    try:
        keys, values = exchange.run(
            batch, Expect(int(PacketType.DATA_RESPONSE), job_id, flow_id=flow_id), 1
        )
    finally:
        player.join()
        exchange.close()
        fake_switch.close()
        stranger.close()
    assert [bytes(k) for k in keys] == [b"g" * 16] and values.tolist() == [5]
    assert exchange.stats.foreign_datagrams >= 1
    assert exchange.stats.unknown_status == 1
    assert exchange.stats.corrupt_answers == 1


# ---------------------------------------------------------------------------- poison packets

POISON = [
    b"[" * 60000 + b"]" * 60000,
    b'{"op":"open_job","a":' * 300 + b"1" + b"}" * 300,
    b'{"op":"open_job","window":' + b"9" * 5000 + b"}",
    b'{"op":"open_job","job_id":1e400}',
    b'{"op":"open_job","lease_s":NaN}',
    b'{"op":"open_job","lease_s":Infinity}',
    b'{"op":"open_job","name":"' + b"x" * 60000 + b'"}',
    b'{"op":"open_job","lease_s":1e308,"window":18446744073709551616}',
    b'{"op":"open_flow","job_id":0,"token":1,"epoch":-5}',
    b"\xff\xfe",
]


def test_poison_control_packets_cost_only_their_own_answer(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A batch of poison with honest requests between them (each from a socket of its own, so
    all are within their share of the batch): every honest request is answered, the switch
    never raises, and the log has one line per kind of error, not one per packet."""
    switch = small_switch(operator_secret=OPERATOR)
    header = wire.new_header(PacketType.CONTROL_REQUEST).tobytes()
    batch, honest, senders = [], [], []
    for i, poison in enumerate(POISON * 10):
        batch.append(wire.seal(header + poison))
        senders.append((ATTACKER[0], i))
        honest.append(len(batch))
        batch.append(control({"op": "stats", "operator": OPERATOR}, request_id=i))
        senders.append((VICTIM[0], i))
    with caplog.at_level(logging.WARNING, logger="inc_switch"):
        replies = switch.handle(batch, senders)
    for i in honest:
        assert answer(replies[i])["ok"]
    assert all(
        replies[i] is None or not answer(replies[i])["ok"]
        for i in range(len(batch))
        if i not in honest
    )
    assert len(caplog.records) <= 3  # one per kind: malformed, refused, ...
    assert switch.stats()["switch"]["internal_errors"] == 0


def test_a_flood_of_control_requests_costs_an_honest_client_nothing() -> None:
    """One socket floods a batch with requests; another client's one request in the middle of
    it is answered, the flood only up to its share (its first ``CONTROL_PER_SENDER``), and what
    was shed is counted. Data packets are never shed."""
    switch = small_switch(operator_secret=OPERATOR)
    flood = [control({"op": "stats"}, client=6, request_id=i) for i in range(500)]
    honest = call_packet({"op": "open_job"})
    batch = flood[:250] + [honest] + flood[250:]
    senders = [ATTACKER] * 250 + [VICTIM] + [ATTACKER] * 250
    job = answer(switch.handle(batch, senders)[250])
    assert job["ok"]
    assert switch.stats()["switch"]["shed"] == 500 - CONTROL_PER_SENDER
    ident = {"job_id": job["job_id"], "token": job["token"]}
    flow = call(
        switch,
        {"op": "open_flow", **ident, "epoch": job["epoch"], "partition": 0, "attempt": 0},
        VICTIM,
    )
    data = [data_packet(job, job["token"], flow["flow_id"], seq) for seq in range(64)]
    assert all(r is not None for r in switch.handle(data, [VICTIM] * 64))


@settings(max_examples=300, deadline=None)
@given(
    senders=st.lists(st.integers(0, 5), max_size=60),
    per_sender=st.integers(1, 6),
    per_batch=st.integers(1, 20),
)
def test_the_share_of_a_batch_is_taken_round_by_round(
    senders: list[int], per_sender: int, per_batch: int
) -> None:
    """``over_share`` against the plain rule: rounds of every sender's next request, in arrival
    order, until ``per_batch`` are taken or every sender has had ``per_sender``."""
    kept: set[int] = set()
    for round_ in range(per_sender):
        for i, sender in enumerate(senders):
            if len(kept) < per_batch and senders[:i].count(sender) == round_:
                kept.add(i)
    expected = [i not in kept for i in range(len(senders))]
    assert over_share(np.array(senders, np.int64), per_sender, per_batch).tolist() == expected


def test_a_huge_lease_is_capped_and_a_job_never_lives_forever() -> None:
    switch = small_switch()
    job = call(switch, {"op": "open_job", "lease_s": 1e300})
    assert job["lease_s"] == control_plane.MAX_LEASE_S
    assert switch.handle([control({"op": "open_job", "lease_s": float("inf")})]) == [None]
    assert switch.handle([control({"op": "open_job", "lease_s": float("nan")})]) == [None]
    assert len(switch.control_plane.jobs) == 1


# ---------------------------------------------------------------------------- amplification

OPS = ["open_job", "open_flow", "close_flow", "epoch_record", "new_epoch", "swap", "clear_copy",
       "job_status", "renew", "close_job", "stats", "frobnicate"]  # fmt: skip
unauthenticated = st.fixed_dictionaries(
    {"op": st.sampled_from(OPS)},
    optional={
        "job_id": st.integers(0, 9),
        "token": st.integers(0, 2**64 - 1),
        "name": st.text(max_size=64),
        "epoch": st.integers(0, 3),
        "operator": st.text(max_size=8),
        "flow_id": st.integers(0, 2**32 - 1),
        "columns": st.sampled_from([1, 2, 4, 16, 3]),
        "min_columns": st.sampled_from([1, 2, 16, 3]),
        "priority": st.integers(-1, 256),
        "deadline_ms": st.integers(-1, 10**9),
        "max_wait_ms": st.sampled_from([0, 1, 60_000, 3_600_001]),
        "pad": st.sampled_from(["", " " * wire.MIN_OPEN_JOB_REQUEST]),
    },
)


@settings(max_examples=300, deadline=None)
@given(unauthenticated)
def test_no_answer_without_a_credential_is_larger_than_its_request(
    message: dict[str, Any],
) -> None:
    """Whatever a stranger asks (stats without the operator secret, unknown ops, guesses,
    open_job unpadded, or padded while the array is full: queued, refused or expired), the
    answer is at most as large as the request."""
    clock = FakeClock()
    switch = small_switch(operator_secret=OPERATOR, clock=clock)
    call(switch, {"op": "open_job", "name": "n" * 64}, VICTIM)  # a job with a long name
    switch.handle([control({**message, "pad": " " * wire.MIN_OPEN_JOB_REQUEST})], [ATTACKER])
    clock.now += 0.002  # a wait of 1 ms runs out
    request = control(message, request_id=2)
    (reply,) = switch.handle([request], [ATTACKER])
    assert len(reply or b"") <= len(request)


def test_amplification_ratios_of_the_issue() -> None:
    """stats (46 B asked, 674 B answered before), unknown op, a drain with a wrong token: every
    ratio <= 1; padded honest requests get their full answers."""
    switch = small_switch(operator_secret=OPERATOR)
    job = call(switch, {"op": "open_job", "name": "x" * 64}, VICTIM)
    requests = [
        control({"op": "stats"}),
        control({"op": "frobnicate"}, request_id=2),
        control({"op": "open_job"}, request_id=3),
        wire.encode_header(
            wire.new_header(PacketType.DRAIN_REQUEST, job_id=job["job_id"], token=1)
        ),
        data_packet(job, 5),
    ]
    ratios = [
        len(r or b"") / len(q)
        for q, r in zip(requests, switch.handle(requests, [ATTACKER] * 5), strict=True)
    ]
    assert max(ratios) <= 1.0, ratios
    assert len(switch.control_plane.jobs) == 1  # the unpadded open_job opened nothing


# ---------------------------------------------------------------------------- exhaustion


def test_one_source_cannot_take_every_job_slot() -> None:
    switch = small_switch(max_jobs=8)
    opened = 0
    for _ in range(8):
        reply = call(switch, {"op": "open_job", "columns": 1}, ATTACKER)
        opened += reply["ok"]
    assert opened == switch.control_plane.jobs_per_source < 8
    assert call(switch, {"op": "open_job", "columns": 1}, VICTIM)["ok"]


def test_one_job_cannot_hold_every_flow_slot() -> None:
    switch = small_switch(max_flows=8)
    job = call(switch, {"op": "open_job", "columns": 4}, VICTIM)
    ident = {"job_id": job["job_id"], "token": job["token"], "epoch": 1, "attempt": 0}
    codes = [
        call(switch, {"op": "open_flow", **ident, "partition": p}, VICTIM).get("code")
        for p in range(8)
    ]
    quota = switch.control_plane.flows_per_job
    assert quota < 8 and codes[:quota] == [None] * quota and codes[quota] == "TOO_MANY_FLOWS"
    other = call(switch, {"op": "open_job", "columns": 4}, ATTACKER)
    flow = {"epoch": 1, "partition": 0, "attempt": 0}
    ident = {"job_id": other["job_id"], "token": other["token"]}
    assert call(switch, {"op": "open_flow", **ident, **flow}, ATTACKER)["ok"]


def test_a_replayed_open_job_does_not_hand_out_the_owners_token() -> None:
    """The reply cache is keyed by sender: the same bytes from a stranger are a new request."""
    switch = small_switch()
    request = control({"op": "open_job", "columns": 4, "pad": " " * 600}, client=42, request_id=7)
    (mine,) = switch.handle([request], [VICTIM])
    (again,) = switch.handle([request], [VICTIM])
    (theirs,) = switch.handle([request], [ATTACKER])
    assert mine == again  # a retry of the owner: the same answer
    assert answer(theirs)["token"] != answer(mine)["token"]


def test_reply_cache_is_bounded() -> None:
    switch = small_switch(operator_secret=OPERATOR)
    requests = [control({"op": "frobnicate"}, client=c, request_id=1) for c in range(6000)]
    switch.handle(requests, [VICTIM] * len(requests))
    cache = switch._control_replies
    assert len(cache) <= CONTROL_REPLY_CACHE
    assert sum(map(len, cache.values())) <= CONTROL_REPLY_CACHE * wire.MAX_CONTROL_BYTES


def test_region_allocator_answers_without_scanning() -> None:
    """A full array answers in O(log n): 2,000 refusals on a full 4,096-column array take
    milliseconds (a scan of the allocated regions took 31 ms each)."""
    regions = RegionAllocator(4096)
    assert [regions.allocate(1) for _ in range(4096)] == list(range(4096))
    started = time.perf_counter()
    for _ in range(2000):
        assert regions.allocate(1) is None and regions.largest_free() == 0
    assert time.perf_counter() - started < 0.5
    for offset in range(0, 4096, 2):
        regions.free(offset)
    assert regions.largest_free() == 1
    for offset in range(1, 4096, 2):
        regions.free(offset)
    assert regions.largest_free() == 4096 and regions.allocate(4096) == 0


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.integers(0, 5), st.integers(0, 99)), max_size=60))
def test_region_allocator_matches_a_brute_force_model(steps: list[tuple[bool, int, int]]) -> None:
    """Regions never overlap, are aligned, and a request fails only when no aligned free range
    of that size exists."""
    regions = RegionAllocator(32)
    used: dict[int, int] = {}
    for is_alloc, order, which in steps:
        if is_alloc or not used:
            size = 1 << order
            free = [o for o in range(0, 32, size)
                    if all(o + size <= u or u + s <= o for u, s in used.items())]  # fmt: skip
            got = regions.allocate(size)
            assert (got is None) == (not free)
            if got is not None:
                assert got in free
                used[got] = size
        else:
            offset = sorted(used)[which % len(used)]
            regions.free(offset)
            del used[offset]


# ---------------------------------------------------------------------------- live switch


@pytest.fixture(scope="module")
def live_switch() -> Iterator[tuple[str, SwitchDaemon]]:
    switch = Switch(rows=8, columns=1024, max_flows=64, operator_secret=OPERATOR)
    daemon = SwitchDaemon(switch, port=0).start()
    yield "{}:{}".format(*daemon.address), daemon
    daemon.stop()


def test_ten_thousand_partitions_complete_exactly() -> None:
    """A job with 10,000 flows of one packet each (a switch process, one control client and one
    exchange, so the test is quick): its epoch record comes back whole (paged, each answer one
    datagram) and the counts are exact."""
    partitions = 10_000
    expected: Counter[str] = Counter()
    residuals = []
    with SwitchProcess("--rows", "8", "--cols", "256") as switch:
        ticket = open_job(switch.address, op="sum", swap_stale_share=0.0)
        client = ticket.control()
        exchange = ReliableExchange(ticket.switch, window=4)
        try:
            for p in range(partitions):
                ident = {"job_id": ticket.job_id, "token": ticket.token}
                flow = client.request(
                    "open_flow", **ident, epoch=ticket.epoch, partition=p, attempt=0
                )["flow_id"]
                words = [f"w{(p * 7 + i) % 300}" for i in range(3)]
                expected.update({w: 1 + i for i, w in enumerate(words)})
                keys = np.frombuffer(b"".join(key_codec.encode_key(w) for w in words), np.uint8)
                header = wire.new_header(PacketType.DATA, **ident, epoch=ticket.epoch, flow_id=flow)
                packet = wire.encode_packet(
                    header, np.arange(3), keys.reshape(3, 16), np.arange(1, 4)
                )
                batch = PacketBatch(
                    np.frombuffer(packet, np.uint8).copy(),
                    np.array([0], np.int64),
                    np.array([len(packet)], np.int64),
                    3,
                )
                k, v = exchange.run(batch, Expect(2, ticket.job_id, flow_id=flow), 3)
                residuals.append(StreamResult("sum", keys=[k], values=[v]))
                client.request("close_flow", **ident, flow_id=flow, packets=1)
            record = client.request(
                "epoch_record", job_id=ticket.job_id, token=ticket.token, epoch=ticket.epoch
            )
            keys, values, _ = drain_copy(ticket, 0)
        finally:
            exchange.close()
            client.close()
    assert record["total"] == partitions
    assert [f["partition"] for f in record["flows"]] == list(range(partitions))
    assert all(f["closed"] and f["packets"] == 1 for f in record["flows"])
    drained = StreamResult("sum", keys=[keys], values=[values])
    assert merge_results([*residuals, drained], "sum") == expected


def test_stats_need_the_operator_secret(live_switch: tuple[str, SwitchDaemon]) -> None:
    address, daemon = live_switch
    host, port = address.split(":")
    client = ControlClient((host, int(port)), deadline_s=2)
    try:
        with pytest.raises(Exception, match="NOT_OPERATOR"):
            client.request("stats")
        ticket = open_job(address, name="s" * 500)  # names are cut to the limit
        stats = fetch_stats(client, OPERATOR)
        assert stats["jobs"][str(ticket.job_id)]["name"] == "s" * control_plane.MAX_NAME_CHARS
        assert stats["switch"]["rows"] == 8
        client.request("close_job", job_id=ticket.job_id, token=ticket.token)
    finally:
        client.close()


def _restartable(port: int) -> SwitchProcess:
    return SwitchProcess("--port", str(port), "--seed", "7", "--rows", "8", "--cols", "256")


def test_a_restarted_switch_is_detected_and_never_gives_wrong_counts() -> None:
    """The switch restarts (same port, same ``--seed``) mid-job: the old job's next exchange,
    drain and control call raise SwitchRestarted (no stale packet lands in a new job), and a
    job opened after the restart counts exactly."""
    first = _restartable(0)
    port = int(first.address.rsplit(":", 1)[1])
    address = f"127.0.0.1:{port}"
    try:
        old = open_job(address, op="sum", deadline_s=5)
        control_old = old.control()
        flow = control_old.request(
            "open_flow", job_id=old.job_id, token=old.token, epoch=old.epoch, partition=0,
            attempt=0,
        )["flow_id"]  # fmt: skip
        exchange = ReliableExchange(old.switch, old.window, deadline_s=5)
        batch_of = _batches(old, flow)
        exchange.run(batch_of(0), Expect(2, old.job_id, flow_id=flow, base=0), old.slots)
    finally:
        first.stop()
    with _restartable(port) as second:
        assert second.address.endswith(f":{port}")
        new = open_job(address, op="sum", deadline_s=5)
        try:
            with pytest.raises(SwitchRestarted, match="restarted"):
                exchange.run(batch_of(1), Expect(2, old.job_id, flow_id=flow, base=1), old.slots)
            with pytest.raises(SwitchRestarted):
                control_old.request("job_status", job_id=old.job_id, token=old.token)
            with pytest.raises(SwitchRestarted):
                drain_copy(old, 0)
        finally:
            exchange.close()
            control_old.close()
        client = new.control()
        client.request("close_job", job_id=new.job_id, token=new.token)
        client.close()
        pairs = [(f"k{i % 37}", i) for i in range(3000)]
        expected: Counter[str] = Counter()
        for key, value in pairs:
            expected[key] += value
        assert aggregate(pairs, switch=address, deadline_s=5) == expected


def _batches(ticket: Any, flow_id: int) -> Any:
    def batch(seq: int) -> PacketBatch:
        hdr = wire.new_header(
            PacketType.DATA,
            job_id=ticket.job_id,
            token=ticket.token,
            epoch=ticket.epoch,
            flow_id=flow_id,
            seq=seq,
        )
        keys = np.frombuffer(b"s" * 16, np.uint8).reshape(1, 16)
        packet = wire.encode_packet(hdr, np.array([0]), keys, np.array([1]))
        return PacketBatch(
            np.frombuffer(packet, np.uint8).copy(),
            np.array([0], np.int64),
            np.array([len(packet)], np.int64),
            1,
        )

    return batch
