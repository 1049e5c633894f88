"""Reliability benchmark: a live switch and the host protocol under attack, faults and load.

    .venv/bin/python bench/reliability_bench.py --json docs/reliability.json   # full (~3 min)
    .venv/bin/python bench/reliability_bench.py --quick                         # the test's subset

Every switch is ``inc-switch serve --port 0`` in its own process (``SwitchProcess``). Parts:

- ``fuzz``: mutated datagrams (a numpy mutation fuzzer over valid packets of every type, plus a
  few poison control requests; three in four resealed with a valid checksum, as an attacker
  would, so they reach the parser behind it) sent to one switch, paced by a legitimate request every
  ``PACE`` datagrams (so its socket buffer does not overflow); then the switch must be alive
  and a legitimate ``host.aggregate`` exact.
- ``forged``: a stranger sends DATA_RESPONSE datagrams (status OK, a foreign key, any token) to
  every UDP port of a host running ``host.aggregate``; each run is exact, wrong or an error.
- ``tokens``: a stranger guesses a victim job's token (``job_status`` with random tokens), and
  predicts it from the tokens of jobs it opened and closed itself (624 Mersenne Twister outputs
  determine the next); whether an answer tells an existing job from a missing one.
- ``amplification``: answer bytes / request bytes of every request type without a valid token.
- ``flood``: bad requests from another process for a while: the switch's RSS and CPU, and a
  legitimate ``host.aggregate`` during the flood against one without.
- ``faults``: ``host.aggregate`` through each injected fault (both directions), a switch
  restarted mid-job, and a Spark worker killed mid-stream: each run exact, wrong, or a clear error.

Each part prints a progress line per step on stderr; ``--json`` writes every figure.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import random
import socket
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import psutil

from bench import REPO, machine_load
from inc_spark import host
from inc_spark.host import key_codec
from switch_dataplane import frame_check, wire
from switch_dataplane.control.control_client import (
    ControlClient,
    ControlRequestFailed,
    SwitchUnreachable,
    parse_address,
)
from switch_dataplane.daemon.launcher import SwitchProcess

PACE = 500  # fuzzed datagrams between two legitimate requests (the switch keeps up)
ROW_BYTES = wire.HEADER_BYTES + wire.MAX_SLOTS * wire.SLOT_BYTES + 64
CONTROL_OPS = (
    "open_job",
    "open_flow",
    "close_flow",
    "epoch_record",
    "new_epoch",
    "swap",
    "clear_copy",
    "job_status",
    "renew",
    "close_job",
    "stats",
)
FAULT_RATES = (0.01, 0.05, 0.10)


def progress(message: str) -> None:
    print(f"[reliability-bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def reference(pairs: list[tuple[Any, int]]) -> dict[Any, int]:
    out: Counter = Counter()
    for key, value in pairs:
        out[key] += value
    return dict(out)


def workload(n: int, seed: int) -> list[tuple[str, int]]:
    rng = random.Random(seed)
    return [(f"k{rng.randrange(5000)}", rng.randrange(-50, 50)) for _ in range(n)]


def outcome(run: Callable[[], dict], expected: dict) -> dict[str, Any]:
    """{'outcome': exact | wrong | error, ...} of one call, with its time."""
    started = time.monotonic()
    try:
        got = run()
    except Exception as exc:  # the point is to record what happens
        return {
            "outcome": "error",
            "error": f"{type(exc).__name__}: {exc}"[:300],
            "seconds": time.monotonic() - started,
        }
    seconds = time.monotonic() - started
    if got == expected:
        return {"outcome": "exact", "seconds": seconds}
    foreign = [k for k in got if k not in expected]
    differing = sum(1 for k, v in expected.items() if got.get(k) != v)
    return {
        "outcome": "wrong",
        "seconds": seconds,
        "foreign_keys": len(foreign),
        "differing_keys": differing,
        "example_foreign": repr(foreign[:3])[:200],
    }


def control_packet(request_id: int, message: dict[str, Any]) -> bytes:
    return wire.encode_control(wire.PacketType.CONTROL_REQUEST, 0xBAD, request_id, message)


def switch_stats(switch: SwitchProcess) -> dict[str, Any] | None:
    """The switch's ``stats`` answer (with its operator secret), or None if it refuses or does
    not answer."""
    client = ControlClient(parse_address(switch.address), deadline_s=5)
    try:
        return client.request("stats", operator=switch.operator_secret)
    except (ControlRequestFailed, ConnectionError):
        return None
    finally:
        client.close()


def legit_exact(address: str, seed: int) -> dict[str, Any]:
    """A legitimate client after the attack: retries while fuzzed jobs (0.5 s leases) hold
    every job slot or the whole aggregator array."""
    pairs = workload(20_000, seed)
    expected = reference(pairs)
    deadline = time.monotonic() + 40
    while True:
        result = outcome(lambda: host.aggregate(pairs, switch=address), expected)
        busy = any(code in result.get("error", "") for code in ("TOO_MANY_JOBS", "AA_FULL"))
        if not busy or time.monotonic() > deadline:
            return result
        time.sleep(0.5)  # slots come back when the fuzzed jobs' short leases run out


# ------------------------------------------------------------------------------ fuzzer


def valid_templates(rng: np.random.Generator) -> list[bytes]:
    """Valid packets of every type (data with 0..64 slots, drains, answers, every control op)."""
    out = []
    for ptype in (
        wire.PacketType.DATA,
        wire.PacketType.DATA_RESPONSE,
        wire.PacketType.DRAIN_RESPONSE,
    ):
        for slots in (0, 1, 8, 32, wire.MAX_SLOTS):
            hdr = wire.new_header(
                ptype, job_id=int(rng.integers(0, 4)), token=int(rng.integers(1, 1 << 32)),
                epoch=1, flow_id=int(rng.integers(0, 4)), seq=int(rng.integers(0, 300)),
            )  # fmt: skip
            index = np.sort(rng.choice(wire.MAX_SLOTS, slots, replace=False))
            keys = rng.integers(0, 256, (slots, wire.KEY_BYTES), np.uint8)
            values = rng.integers(-(2**31), 2**31, slots)
            out.append(wire.encode_packet(hdr, index, keys, values))
    for copy in (0, 1):
        out.append(wire.encode_header(wire.new_header(
            wire.PacketType.DRAIN_REQUEST, job_id=0, token=1, epoch=1, flow_id=0, seq=3, copy=copy
        )))  # fmt: skip
    fields = {"job_id": 0, "token": 12345, "epoch": 1, "flow_id": 0, "partition": 0,
              "attempt": 0, "copy": 1, "lease_s": 0.5, "name": "fuzz"}  # fmt: skip
    for op in CONTROL_OPS:
        out.append(control_packet(1, {"op": op, **fields}))
    out.append(wire.encode_control(wire.PacketType.CONTROL_RESPONSE, 1, 1, {"ok": True}))
    return out


#: Control payloads the issue found make the handler raise or grow: deep JSON, huge integers,
#: non-finite numbers, non-UTF-8, non-object JSON.
POISON = [
    b"[" * 30_000 + b"]" * 30_000,
    b'{"op": "job_status", "job_id": ' + b"9" * 5000 + b', "token": 1}',
    b'{"op": "job_status", "job_id": 1e400, "token": 1}',
    b'{"op": "open_job", "lease_s": NaN, "name": "x"}',
    b'{"op": "renew", "job_id": -1, "token": Infinity}',
    b"\xff\xfe\xfd not utf-8",
    b'["op", "stats"]',
    b'{"op": "' + b"x" * 1000 + b'"}',
]


def poison_controls() -> list[bytes]:
    """The poison payloads as sealed control requests (their checksum right)."""
    header = wire.new_header(wire.PacketType.CONTROL_REQUEST, flow_id=0xBAD, seq=9).tobytes()
    return [wire.seal(header + poison) for poison in POISON]


def mutated_batch(templates: list[bytes], n: int, rng: np.random.Generator) -> list[bytes]:
    """``n`` datagrams: random templates, each mutated one way (flips, truncation, extension,
    random header fields behind a valid magic/version/type, random bytes, or none), three in
    four then resealed with their checksum."""
    lengths = np.array([len(t) for t in templates])
    rows = np.zeros((len(templates), ROW_BYTES), np.uint8)
    for i, t in enumerate(templates):
        rows[i, : min(len(t), ROW_BYTES)] = np.frombuffer(t[:ROW_BYTES], np.uint8)
    pick = rng.integers(0, len(templates), n)
    mat = rows[pick]
    size = np.minimum(lengths[pick], ROW_BYTES)
    kind = rng.integers(0, 6, n)
    flips = np.flatnonzero(kind == 0)
    for _ in range(4):
        where = rng.integers(0, np.maximum(size[flips], 1))
        mat[flips, where] ^= rng.integers(1, 256, len(flips), dtype=np.uint8)
    cut = kind == 1
    size[cut] = rng.integers(0, size[cut] + 1)
    grow = np.flatnonzero(kind == 2)
    extra = rng.integers(1, 64, len(grow))
    tail = rng.integers(0, 256, (len(grow), 64), np.uint8)
    for j in range(64):
        cols = np.minimum(size[grow] + j, ROW_BYTES - 1)
        mat[grow, cols] = np.where(j < extra, tail[:, j], mat[grow, cols])
    size[grow] = np.minimum(size[grow] + extra, ROW_BYTES)
    fields = np.flatnonzero(kind == 3)
    mat[fields, 4 : wire.HEADER_BYTES] = rng.integers(
        0, 256, (len(fields), wire.HEADER_BYTES - 4), np.uint8
    )
    noise = np.flatnonzero(kind == 4)
    mat[noise] = rng.integers(0, 256, (len(noise), ROW_BYTES), np.uint8)
    size[noise] = rng.integers(0, ROW_BYTES, len(noise))
    reseal = np.flatnonzero((size >= wire.HEADER_BYTES) & (rng.random(n) < 0.75))
    frame_check.seal_all(mat.reshape(-1), reseal * ROW_BYTES, size[reseal])
    return [mat[i, : size[i]].tobytes() for i in range(n)]


def drain_answers(sock: socket.socket) -> int:
    """Bytes of the answers waiting on ``sock`` (read and dropped)."""
    total = 0
    while True:
        try:
            total += len(sock.recv(1 << 16))
        except BlockingIOError:
            return total


def fuzz(count: int, seed: int) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    templates = valid_templates(rng)
    poison = poison_controls()
    with SwitchProcess() as switch:
        address = parse_address(switch.address)
        pacer = host.open_job(switch.address, op="sum", name="pacer", lease_s=600, columns=1)
        control = pacer.control()
        before = switch_stats(switch)
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setblocking(False)
        sent = sent_bytes = answer_bytes = poisons = 0
        started = time.monotonic()
        cpu_before = psutil.Process(switch.proc.pid).cpu_times()
        chunk = 50_000
        while sent < count:
            batch = mutated_batch(templates, min(chunk, count - sent), rng)
            for i, datagram in enumerate(batch):
                if i % 500 == 0:  # one poison in 500
                    datagram = poison[(sent + i) // 500 % len(poison)]
                    poisons += 1
                try:
                    sock.sendto(datagram, address)
                except BlockingIOError:
                    answer_bytes += drain_answers(sock)
                    continue
                sent_bytes += len(datagram)
                if (sent + i) % PACE == PACE - 1:
                    control.request("renew", job_id=pacer.job_id, token=pacer.token)
                    answer_bytes += drain_answers(sock)
            sent += len(batch)
            progress(f"fuzz: {sent:,} of {count:,} datagrams sent, switch alive: "
                     f"{switch.proc.poll() is None}")  # fmt: skip
        seconds = time.monotonic() - started
        cpu = psutil.Process(switch.proc.pid).cpu_times()
        answer_bytes += drain_answers(sock)
        sock.close()
        control.close()
        alive = switch.proc.poll() is None
        after = switch_stats(switch) if alive else None
        legit = legit_exact(switch.address, seed) if alive else {"outcome": "switch dead"}
    counters = {}
    if before and after:
        counters = {
            k: after["switch"][k] - before["switch"].get(k, 0)
            for k in ("packets", "malformed", "control_requests", "control_errors")
            if k in after["switch"]
        }
    log_bytes = len(switch.log_tail)
    return {
        "datagrams": sent,
        "poison_datagrams": poisons,
        "bytes": sent_bytes,
        "seconds": seconds,
        "datagrams_per_s": sent / seconds,
        "switch_cpu_s": cpu.user + cpu.system - cpu_before.user - cpu_before.system,
        "answer_bytes": answer_bytes,
        "switch_counters": counters,
        "switch_alive": alive,
        "legit_after": legit,
        "switch_log_tail_bytes": log_bytes,
    }


# ------------------------------------------------------------------------------ forged answers


def forged_answers(job_id: int, epoch: int, flows: list[int]) -> list[bytes]:
    """Answers a stranger makes up (status OK, key EVIL = 1,000,000, a made-up token):
    DATA_RESPONSEs for the guessed flows, seqs 0..2047, and DRAIN_RESPONSEs of both copies
    for columns 0..1023."""
    keys, _ = key_codec.encode_keys(["EVIL"])
    out = []
    for ptype, flow_ids, copies, seqs in (
        (wire.PacketType.DATA_RESPONSE, flows, (0,), 2048),
        (wire.PacketType.DRAIN_RESPONSE, (0,), (0, 1), 1024),
    ):
        for flow in flow_ids:
            for copy in copies:
                header = wire.new_header(ptype, job_id=job_id, token=0x5EC12E7, epoch=epoch,
                                         flow_id=flow, copy=copy)  # fmt: skip
                one = wire.encode_packet(header, np.array([0]), keys[:1], np.array([1_000_000]))
                rows = np.tile(np.frombuffer(one, np.uint8), (seqs, 1))
                at = wire.FIELD_OFFSET["seq"]
                rows[:, at : at + 4] = np.arange(seqs, dtype=">u4").view(np.uint8).reshape(-1, 4)
                out += [wire.seal(row.tobytes()) for row in rows]
    return out


def forge(stop: threading.Event, packets: list[bytes], counter: list[int]) -> None:
    """Send ``packets`` to every UDP port of this process but our own until ``stop``."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    own = sock.getsockname()[1]
    me = psutil.Process()
    while not stop.is_set():
        ports = {
            c.laddr.port
            for c in me.net_connections(kind="udp4")
            if c.laddr and c.laddr.port != own and not c.raddr
        }
        for port in ports:
            for packet in packets:
                try:
                    sock.sendto(packet, ("127.0.0.1", port))
                    counter[0] += 1
                except OSError:
                    break
    sock.close()


def forged(runs: int, seed: int) -> dict[str, Any]:
    results = []
    sent = [0]
    with SwitchProcess() as switch:
        for run in range(runs):
            pairs = workload(100_000, seed + run)
            expected = reference(pairs)
            # Job ids and flow ids are guessable: the stranger opens a job and a flow of its
            # own and closes them; the victim's get the same job id and nearby flow ids.
            probe = host.open_job(switch.address)
            client = ControlClient(probe.switch)
            credentials = {"job_id": probe.job_id, "token": probe.token, "epoch": probe.epoch}
            flow = client.request("open_flow", **credentials, partition=0, attempt=0)["flow_id"]
            client.request("close_job", job_id=probe.job_id, token=probe.token)
            client.close()
            slot, generation = flow & 0xFFFF, flow >> 16
            flows = [g << 16 | (slot + d) & 0xFF for g in (generation, generation + 1)
                     for d in range(-2, 3)]  # fmt: skip
            stop = threading.Event()
            forger = threading.Thread(
                target=forge, args=(stop, forged_answers(probe.job_id, probe.epoch, flows), sent)
            )
            forger.start()
            try:
                result = outcome(
                    lambda p=pairs: host.aggregate(p, switch=switch.address, pre_combine=False),
                    expected,
                )
            finally:
                stop.set()
                forger.join()
            results.append(result)
            progress(f"forged answers: run {run + 1}/{runs}: {result['outcome']} "
                     f"({sent[0]:,} forged datagrams so far)")  # fmt: skip
    return {
        "runs": runs,
        "forged_datagrams": sent[0],
        "outcomes": dict(Counter(r["outcome"] for r in results)),
        "results": results,
    }


# ------------------------------------------------------------------------------ tokens


def _undo_right(y: int, shift: int) -> int:
    x = y
    for _ in range(32 // shift + 1):
        x = y ^ (x >> shift)
    return x


def _undo_left(y: int, shift: int, mask: int) -> int:
    x = y
    for _ in range(32 // shift + 1):
        x = y ^ ((x << shift) & mask)
    return x & 0xFFFFFFFF


def _untemper(y: int) -> int:
    """The Mersenne Twister state word behind one 32-bit output."""
    y = _undo_right(y, 18)
    y = _undo_left(y, 15, 0xEFC60000)
    y = _undo_left(y, 7, 0x9D2C5680)
    return _undo_right(y, 11)


def predicted_next_token(tokens: list[int]) -> int:
    """The next ``randrange(1, 2**32)`` of a Mersenne Twister that gave these 624 tokens."""
    state = [_untemper(t - 1) for t in tokens[-624:]]
    rng = random.Random()
    rng.setstate((3, (*state, 624), None))
    return rng.randrange(1, 1 << 32)


def guess_tokens(address: tuple[str, int], job_id: int, guesses: int) -> tuple[int, Counter, float]:
    """``job_status`` with random tokens from one socket, 200 in flight at a time;
    -> (accepted, refusal codes, guesses per second)."""
    rng = random.Random(1)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.settimeout(0.1)
    accepted = 0
    answers: Counter = Counter()
    started = time.monotonic()
    for first in range(0, guesses, 200):
        batch = range(first, min(first + 200, guesses))
        for request_id in batch:
            message = {"op": "job_status", "job_id": job_id, "token": rng.getrandbits(32)}
            sock.sendto(control_packet(request_id + 1, message), address)
        for position in range(len(batch)):
            try:
                _, answer = wire.decode_control(sock.recv(1 << 16))
            except TimeoutError:  # the rest were dropped (rate limit, full buffer): no answer
                answers["no answer"] += len(batch) - position
                break
            if answer.get("ok"):
                accepted += 1
            else:
                answers[answer.get("code", "?")] += 1
    sock.close()
    return accepted, answers, guesses / (time.monotonic() - started)


def tokens(guesses: int) -> dict[str, Any]:
    with SwitchProcess() as switch:
        address = switch.address
        attacker = ControlClient(parse_address(address), deadline_s=5)
        victim = host.open_job(address, name="victim", columns=1024)
        accepted, answers, rate = guess_tokens(parse_address(address), victim.job_id, guesses)
        refused = sum(answers.values())
        progress(f"tokens: {guesses:,} guesses, {accepted} accepted, {rate:,.0f}/s")

        def refusal(job_id: int) -> str:
            try:
                attacker.request("job_status", job_id=job_id, token=1)
            except ControlRequestFailed as exc:
                return f"{exc.code}: {exc}".replace(str(job_id), "N")
            return "accepted"

        reveals = refusal(victim.job_id) != refusal(60)
        own: list[int] = []
        try:
            for _ in range(624):
                job = attacker.request("open_job", name="a", lease_s=5, columns=1)
                own.append(job["token"])
                attacker.request("close_job", job_id=job["job_id"], token=job["token"])
            target = host.open_job(address, name="target", columns=1024)
            attacker.request("close_job", job_id=target.job_id, token=predicted_next_token(own))
            prediction = "accepted: the attacker closed another client's job"
        except ControlRequestFailed as exc:
            prediction = f"refused ({exc.code})"
        except SwitchUnreachable as exc:
            prediction = f"no answer ({exc})"[:200]
        progress(f"tokens: predicted from 624 own tokens: {prediction}")
        attacker.close()
    return {
        "guesses": guesses,
        "guesses_per_s": rate,
        "accepted": accepted,
        "refused": refused,
        "refusal_codes": dict(answers),
        "refusal_reveals_existing_job": reveals,
        "token_bits_seen": max(own, default=0).bit_length(),
        "prediction_from_624_tokens": prediction,
    }


# ------------------------------------------------------------------------------ amplification


def answer_sizes(address: tuple[str, int], packet: bytes) -> int:
    """Bytes answered to one request (0: no answer within 0.5 s)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(0.5)
        sock.sendto(packet, address)
        total = 0
        try:
            while True:
                total += len(sock.recv(1 << 16))
                sock.settimeout(0.05)
        except TimeoutError:
            return total


def amplification() -> dict[str, Any]:
    rows = []
    with SwitchProcess() as switch:
        address = parse_address(switch.address)
        host.open_job(switch.address, name="n" * 60_000, lease_s=60)  # a long name in stats
        requests = {
            f"control {op}": control_packet(i, {"op": op, "job_id": 0, "token": 1})
            for i, op in enumerate(CONTROL_OPS, 1)
        }
        requests["control unknown op"] = control_packet(99, {"op": "nope"})
        requests["control bad JSON"] = wire.seal(control_packet(100, {"op": "stats"})[:-3])
        for slots in (0, wire.MAX_SLOTS):
            hdr = wire.new_header(wire.PacketType.DATA, job_id=0, token=1, epoch=1, seq=0)
            keys = np.zeros((slots, wire.KEY_BYTES), np.uint8)
            requests[f"data, {slots} slots, wrong token"] = wire.encode_packet(
                hdr, np.arange(slots), keys, np.ones(slots, np.int64)
            )
        requests["drain, wrong token"] = wire.encode_header(
            wire.new_header(wire.PacketType.DRAIN_REQUEST, job_id=0, token=1, epoch=1, seq=0)
        )
        for name, packet in requests.items():
            answered = answer_sizes(address, packet)
            rows.append({"request": name, "request_bytes": len(packet),
                         "answer_bytes": answered, "ratio": answered / len(packet)})  # fmt: skip
    worst = max(rows, key=lambda r: r["ratio"])
    progress(f"amplification: worst {worst['ratio']:.1f}x ({worst['request']})")
    return {"requests": rows, "worst": worst}


# ------------------------------------------------------------------------------ flood


def flood_child(address: str, seconds: float, seed: int) -> None:
    """Bad requests as fast as one process sends them: fuzzed datagrams, poison control
    requests, and ``stats`` with ever new request ids (each a new reply-cache entry)."""
    rng = np.random.default_rng(seed)
    batch = mutated_batch(valid_templates(rng), 20_000, rng) + poison_controls()
    where = parse_address(address)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setblocking(False)
    deadline = time.monotonic() + seconds
    request_id = 0
    while time.monotonic() < deadline:
        for datagram in batch[:2000]:
            request_id += 1
            for packet in (datagram, control_packet(request_id, {"op": "stats"})):
                try:
                    sock.sendto(packet, where)
                except BlockingIOError:
                    drain_answers(sock)
        drain_answers(sock)
        batch = batch[2000:] + batch[:2000]


def flood(seconds: float, seed: int) -> dict[str, Any]:
    pairs = workload(200_000, seed)
    expected = reference(pairs)
    with SwitchProcess() as switch:
        proc = psutil.Process(switch.proc.pid)
        quiet = outcome(lambda: host.aggregate(pairs, switch=switch.address), expected)
        counted_before = switch_stats(switch)["switch"]
        rss_before = proc.memory_info().rss
        cpu_before = proc.cpu_times()
        child = multiprocessing.get_context("fork").Process(
            target=flood_child, args=(switch.address, seconds, seed)
        )
        child.start()
        started = time.monotonic()
        while proc.cpu_times().user - cpu_before.user < 0.5 and child.is_alive():
            child.join(timeout=0.05)  # until the flood keeps the switch busy
        during = outcome(lambda: host.aggregate(pairs, switch=switch.address), expected)
        rss_max = proc.memory_info().rss
        while child.is_alive():
            rss_max = max(rss_max, proc.memory_info().rss)
            child.join(timeout=0.2)
        elapsed = time.monotonic() - started
        cpu = proc.cpu_times()
        alive = switch.proc.poll() is None
        after = outcome(lambda: host.aggregate(pairs, switch=switch.address), expected)
        rss_after = proc.memory_info().rss if alive else None
        counted = switch_stats(switch)["switch"] if alive else counted_before
    progress(f"flood: {elapsed:.1f} s, RSS {rss_before >> 20} -> max {rss_max >> 20} MiB, "
             f"aggregate {quiet['seconds']:.2f} s quiet, {during['seconds']:.2f} s during "
             f"({during['outcome']})")  # fmt: skip
    return {
        "seconds": elapsed,
        "switch_rss_before_mib": rss_before / 2**20,
        "switch_rss_max_mib": rss_max / 2**20,
        "switch_rss_after_mib": None if rss_after is None else rss_after / 2**20,
        "switch_cpu_s": cpu.user + cpu.system - cpu_before.user - cpu_before.system,
        "switch_alive": alive,
        # what the switch did with the flood (counter increases)
        "switch_counted": {
            name: counted[name] - counted_before[name]
            for name in ("malformed", "corrupt", "shed", "rate_limited", "unanswered")
        },
        "aggregate_quiet": quiet,
        "aggregate_during_flood": during,
        "aggregate_after_flood": after,
    }


# ------------------------------------------------------------------------------ fault matrix


def fault_run(flags: tuple[str, ...], pairs: list, expected: dict) -> dict[str, Any]:
    with SwitchProcess("--rows", "16", "--cols", "1024", *flags, "--seed", "1") as switch:
        result = outcome(
            lambda: host.aggregate(pairs, switch=switch.address, pre_combine=False), expected
        )
        stats = switch_stats(switch)
    if stats and "faults" in stats:
        result["injected"] = stats["faults"]
    return result


def restart_mid_job(pairs: list, expected: dict) -> dict[str, Any]:
    """The switch killed while a job streams, and a fresh one started on the same port."""
    first = SwitchProcess()
    port = first.address.rsplit(":", 1)[1]
    box: dict[str, Any] = {}
    call = threading.Thread(
        target=lambda: box.update(
            outcome(lambda: host.aggregate(pairs, switch=first.address), expected)
        )  # fmt: skip
    )
    call.start()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and call.is_alive():
        stats = switch_stats(first)
        if stats and stats["switch"]["packets"] > 200:
            break
    first.proc.kill()
    first.stop()
    second = SwitchProcess("--port", port)
    call.join()
    second.stop()
    return box


SPARK_KILL = """
import operator, os, random, signal, sys
from pyspark import SparkConf, SparkContext, TaskContext
import inc_spark
conf = (SparkConf().setMaster("local[2,4]").set("spark.ui.enabled", "false")
        .set("spark.ui.showConsoleProgress", "false").set("spark.inc.switch.address", sys.argv[1]))
sc = SparkContext(conf=conf)
sc.setLogLevel("OFF")
rng = random.Random(1)
pairs = [(f"k{rng.randrange(5000)}", rng.randrange(-50, 50)) for _ in range(80_000)]

def killed_once(index, rows):
    ctx = TaskContext.get()
    for i, row in enumerate(rows):
        if index == 1 and ctx.attemptNumber() == 0 and i == 15_000:
            os.kill(os.getpid(), signal.SIGKILL)  # the Python worker dies mid-stream
        yield row

rdd = sc.parallelize(pairs, 4).mapPartitionsWithIndex(killed_once)
expected = dict(rdd.reduceByKey(operator.add).collect())
try:
    got = dict(rdd.inc_reduce_by_key(operator.add).collect())
    differ = sum(got.get(k) != v for k, v in expected.items()) + len(got.keys() - expected.keys())
    print("exact" if got == expected else f"wrong: {differ} keys differ")
except Exception as exc:
    print(f"error: {type(exc).__name__}: {str(exc)[:200]}")
sc.stop()
"""


def worker_killed() -> dict[str, Any]:
    import subprocess

    with SwitchProcess() as switch:
        started = time.monotonic()
        run = subprocess.run(
            [sys.executable, "-c", SPARK_KILL, switch.address],
            capture_output=True, text=True, timeout=300, cwd=REPO,
            env={**os.environ, "PYSPARK_PYTHON": sys.executable,
                 "PYSPARK_DRIVER_PYTHON": sys.executable},
        )  # fmt: skip
    line = (run.stdout.strip().splitlines() or [f"error: exit {run.returncode}"])[-1]
    kind = line.split(":", 1)[0]
    return {
        "outcome": kind if kind in ("exact", "wrong") else "error",
        "detail": line[:300] if kind != "exact" else "",
        "seconds": time.monotonic() - started,
    }


def faults(pairs_n: int, rates: tuple[float, ...], spark: bool, seed: int) -> list[dict[str, Any]]:
    pairs = workload(pairs_n, seed)
    expected = reference(pairs)
    cases: list[tuple[str, str, tuple[str, ...]]] = []
    for rate in rates:
        r = str(rate)
        cases += [
            ("drop", r, ("--drop", r)),
            ("duplicate", r, ("--duplicate", r)),
            ("reorder", r, ("--reorder", r, "--reorder-by", "3")),
            ("corrupt", r, ("--corrupt", r)),
        ]
    cases.append(("blackhole", "0.5 s", ("--blackhole", "0.5", "--blackhole-after", "300")))
    rows = []
    for fault, rate, flags in cases:
        result = fault_run(flags, pairs, expected)
        rows.append({"fault": fault, "rate": rate, **result})
        progress(f"faults: {fault} {rate}: {result['outcome']} ({result['seconds']:.1f} s)")
    result = restart_mid_job(workload(pairs_n * 5, seed), reference(workload(pairs_n * 5, seed)))
    rows.append({"fault": "switch restart mid-job", "rate": "-", **result})
    progress(f"faults: switch restart: {result['outcome']}")
    if spark:
        result = worker_killed()
        rows.append({"fault": "Spark worker killed mid-stream", "rate": "-", **result})
        progress(f"faults: worker killed: {result['outcome']}")
    return rows


# ------------------------------------------------------------------------------ tables


def _outcomes(results: list[dict[str, Any]]) -> str:
    return ", ".join(f"{n} {kind}" for kind, n in Counter(r["outcome"] for r in results).items())


def format_tables(report: dict[str, Any]) -> str:
    """docs/reliability.md's tables (``bench/report.py`` renderer ``reliability``)."""
    fuzzed, forged_, tokens_, amp, flood_ = (
        report[k] for k in ("fuzz", "forged", "tokens", "amplification", "flood")
    )
    machine = report["machine"]
    legit = fuzzed["legit_after"]
    lines = [
        f"Run: {'--quick' if report['quick'] else 'full'}, {report['seconds']:.0f} s on "
        f"{machine['nproc']} CPUs ({machine['cpu']}), shared: on average "
        f"{report['machine_load']['busy_cpus_mean']:.2f} CPUs busy during the run.",
        "",
        "| attack | sent | result |",
        "|---|---:|---|",
        f"| mutated datagrams ({fuzzed['poison_datagrams']:,} of them poison control requests) "
        f"| {fuzzed['datagrams']:,} | switch alive: {'yes' if fuzzed['switch_alive'] else 'NO'}"
        f"; {fuzzed['datagrams_per_s']:,.0f} datagrams/s; a legitimate aggregate after: "
        f"{legit['outcome']} |",
        f"| forged answers to a host in `host.aggregate` | {forged_['forged_datagrams']:,} "
        f"| {forged_['runs']} runs: {_outcomes(forged_['results'])} |",
        f"| token guesses (`job_status`) | {tokens_['guesses']:,} | {tokens_['accepted']} "
        f"accepted, {tokens_['refused']:,} refused, {tokens_['guesses_per_s']:,.0f} guesses/s; "
        f"the refusal tells an existing job from a missing one: "
        f"{'yes' if tokens_['refusal_reveals_existing_job'] else 'no'} |",
        f"| next token predicted from 624 tokens of the attacker's own jobs | 1 "
        f"| {tokens_['prediction_from_624_tokens']} |",
        f"| largest answer / request without a valid token | 1 | "
        f"{amp['worst']['ratio']:.1f}x ({amp['worst']['request']}, "
        f"{amp['worst']['answer_bytes']:,} B for {amp['worst']['request_bytes']} B) |",
        f"| flood of bad requests, {flood_['seconds']:.0f} s | - | switch RSS "
        f"{flood_['switch_rss_before_mib']:.0f} -> max {flood_['switch_rss_max_mib']:.0f} MiB, "
        f"{flood_['switch_cpu_s']:.1f} CPU s; malformed "
        f"{flood_['switch_counted']['malformed']:,}, corrupt "
        f"{flood_['switch_counted']['corrupt']:,}, control requests shed "
        f"{flood_['switch_counted']['shed']:,}; aggregate "
        f"{flood_['aggregate_quiet']['seconds']:.2f} s quiet, "
        f"{flood_['aggregate_during_flood']['seconds']:.2f} s during the flood "
        f"({flood_['aggregate_during_flood']['outcome']}) |",
        "",
        "| request without a valid token | request B | answer B | answer / request |",
        "|---|---:|---:|---:|",
    ]
    for row in amp["requests"]:
        lines.append(f"| {row['request']} | {row['request_bytes']:,} | {row['answer_bytes']:,} "
                     f"| {row['ratio']:.2f} |")  # fmt: skip
    lines += [
        "",
        "| fault | rate | outcome | s | what happened |",
        "|---|---:|---|---:|---|",
    ]
    for row in report["faults"]:
        detail = row.get("error") or row.get("detail") or ""
        if row["outcome"] == "wrong" and "differing_keys" in row:
            detail = f"{row['differing_keys']} keys wrong, {row['foreign_keys']} foreign"
        injected = row.get("injected")
        if injected and not detail:
            detail = "; ".join(
                f"{direction}: "
                + ", ".join(
                    f"{k} {v}" for k, v in counts.items() if v and k not in ("seen", "passed")
                )
                for direction, counts in injected.items()
            )
        detail = detail.replace("|", "/")
        lines.append(f"| {row['fault']} | {row['rate']} | {row['outcome']} "
                     f"| {row['seconds']:.1f} | {detail} |")  # fmt: skip
    return "\n".join(lines)


# ------------------------------------------------------------------------------ main


def run(quick: bool, seed: int = 1) -> dict[str, Any]:
    busy_before = machine_load.busy_cpu_seconds()
    started = time.monotonic()
    report: dict[str, Any] = {
        "quick": quick,
        "machine": machine_load.machine(),
        "fuzz": fuzz(20_000 if quick else 1_000_000, seed),
        "forged": forged(1 if quick else 5, seed),
        "tokens": tokens(2_000 if quick else 50_000),
        "amplification": amplification(),
        "flood": flood(2.0 if quick else 10.0, seed),
        "faults": faults(
            10_000 if quick else 30_000,
            (0.05,) if quick else FAULT_RATES,
            spark=not quick,
            seed=seed,
        ),  # fmt: skip
    }
    elapsed = time.monotonic() - started
    report["seconds"] = elapsed
    report["machine_load"] = {
        "busy_cpus_mean": (machine_load.busy_cpu_seconds() - busy_before) / elapsed,
    }
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="the fast subset (make test)")
    parser.add_argument("--json", metavar="OUT", help="write all figures as JSON")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    report = run(args.quick, args.seed)
    text = json.dumps(report, indent=2)
    if args.json:
        Path(args.json).write_text(text + "\n")
        progress(f"wrote {args.json}")
    else:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
