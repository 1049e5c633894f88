"""A switch: a dataplane and its control plane behind one packet interface.

Packets are handled strictly in arrival order. Runs of data and drain packets go through the
dataplane in one call (compiled batch); a control packet between them is answered by the control
plane at exactly its place in the sequence, so "open flow, then data" and "data, then swap" mean
what they say.

>>> switch = Switch(rows=4, columns=16, fast=False, operator_secret="s3cret")
>>> request = {"op": "stats", "operator": "s3cret", "pad": " " * 400}
>>> packet = wire.encode_control(wire.PacketType.CONTROL_REQUEST, 1, 1, request)
>>> wire.decode_control(switch.handle([packet])[0])[1]["ok"]
True
"""

from __future__ import annotations

import logging
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import numpy as np

from switch_dataplane import wire
from switch_dataplane.control.control_plane import (
    DEFAULT_DEADLINE_RESERVE,
    DEFAULT_MEMORY_POLICY,
    ControlPlane,
    RandomBits,
)
from switch_dataplane.control.guard import (
    CONTROL_PER_SENDER,
    CredentialLimiter,
    ErrorLog,
    over_share,
)
from switch_dataplane.dataplane import Dataplane, FastDataplane, max_response_bytes
from switch_dataplane.dataplane.pipeline_kernel import control_packets
from switch_dataplane.dataplane.reference_model import ReferenceDataplane

DEFAULT_ROWS = 32
DEFAULT_COLUMNS = 4096  # per copy; see docs/hardware-model.md
DEFAULT_WINDOW = 256
DEFAULT_MAX_FLOWS = 256
DEFAULT_MAX_JOBS = 64
CONTROL_REPLY_CACHE = 4096  # answers of at most MAX_CONTROL_BYTES each: about 6 MB at most
_STATUS = wire.FIELD_OFFSET["status"]
_BAD_JOB = int(wire.Status.BAD_JOB)

log = logging.getLogger("inc_switch")

#: A datagram's sender as ``udp_io`` gives it: (host, port, ...).
Address = tuple


def _source(address: Address | None) -> str | None:
    """Who a limit applies to: the sender's host (its ports are free to change)."""
    return None if address is None else str(address[0])


class Switch:
    """Dataplane + control plane; ``fast=False`` uses the plain-Python reference model.

    ``random_bits`` draws job tokens and the incarnation (tests give twins one deterministic
    source; a switch never derives them from a seed). ``operator_secret``: what a ``stats``
    request must carry (None: no stats on the wire).
    """

    def __init__(
        self,
        rows: int = DEFAULT_ROWS,
        columns: int = DEFAULT_COLUMNS,
        window: int = DEFAULT_WINDOW,
        max_flows: int = DEFAULT_MAX_FLOWS,
        max_jobs: int = DEFAULT_MAX_JOBS,
        fast: bool = True,
        clock: Callable[[], float] = time.monotonic,
        cpu_clock: Callable[[], float] = time.thread_time,
        random_bits: RandomBits = secrets.randbits,
        operator_secret: str | None = None,
        jobs_per_source: int | None = None,
        flows_per_job: int | None = None,
        memory_policy: str = DEFAULT_MEMORY_POLICY,
        deadline_reserve: float = DEFAULT_DEADLINE_RESERVE,
    ) -> None:
        self.incarnation = random_bits(wire.INCARNATION_BITS) or 1  # 0: "not known yet"
        dataplane_class = FastDataplane if fast else ReferenceDataplane
        self.dataplane: Dataplane = dataplane_class(
            rows, columns, window, max_flows, max_jobs, self.incarnation
        )
        self.control_plane = ControlPlane(
            self.dataplane,
            clock=clock,
            cpu_clock=cpu_clock,
            random_bits=random_bits,
            operator_secret=operator_secret,
            jobs_per_source=jobs_per_source,
            flows_per_job=flows_per_job,
            memory_policy=memory_policy,
            deadline_reserve=deadline_reserve,
        )
        self.counters = self.control_plane.control_counters
        self.max_response = max_response_bytes(rows)
        self._control_replies: OrderedDict[tuple[Any, int, int], bytes] = OrderedDict()
        self.limiter = CredentialLimiter(clock)
        self.errors = ErrorLog(log, clock)
        # Sections the daemon adds to the ``stats`` answer (e.g. its fault injector's counters).
        self.stats_sections: dict[str, Callable[[], dict[str, Any]]] = {}

    def warm_up(self) -> None:
        """Compile (or load from cache) the fast path before the first packet arrives."""
        empty = np.zeros(0, np.int64)
        buf = np.zeros(8, np.uint8)
        control_packets(buf, empty, empty)
        out = np.zeros((1, self.max_response), np.uint8)
        self.dataplane.process_run(buf, empty, empty, 0, 0, out, empty)

    def handle_buffer(
        self,
        buf: np.ndarray,
        offsets: np.ndarray,
        lengths: np.ndarray,
        out: np.ndarray,
        out_lengths: np.ndarray,
        sender_of: np.ndarray | None = None,
        senders: list[Address] | None = None,
    ) -> dict[int, bytes]:
        """Process ``len(offsets)`` packets of a flat uint8 buffer in order.

        Data and drain responses go to ``out[p, :out_lengths[p]]`` (length 0: dropped). Control
        replies, which can exceed ``out``'s row size, are returned as {packet index: bytes}.
        ``senders[sender_of[p]]`` is packet p's sender (None: an in-process caller, unlimited);
        control requests beyond a sender's share of the batch are dropped (``guard.over_share``).
        """
        n = len(offsets)
        replies: dict[int, bytes] = {}
        controls = control_packets(buf, offsets, lengths)
        shed = (
            over_share(sender_of[controls])
            if sender_of is not None and len(controls) > CONTROL_PER_SENDER
            else None
        )
        start = 0
        for i, p in enumerate(controls.tolist()):
            if p > start:
                self.dataplane.process_run(buf, offsets, lengths, start, p, out, out_lengths)
            out_lengths[p] = 0
            start = p + 1
            if shed is not None and shed[i]:
                self.counters["shed"] += 1
                continue
            sender = None if senders is None or sender_of is None else senders[sender_of[p]]
            reply = self.handle_control(bytes(buf[offsets[p] : offsets[p] + lengths[p]]), sender)
            if reply is not None:
                replies[p] = reply
        if start < n:
            self.dataplane.process_run(buf, offsets, lengths, start, n, out, out_lengths)
        if senders is not None and sender_of is not None and n:
            self._limit_credentials(out, out_lengths[:n], sender_of[:n], senders)
        return replies

    def _limit_credentials(
        self,
        out: np.ndarray,
        out_lengths: np.ndarray,
        sender_of: np.ndarray,
        senders: list[Address],
    ) -> None:
        """Charge BAD_JOB answers to their senders; withhold every answer to a source out of
        allowance (vectorised: per batch, not per packet)."""
        bad = (out_lengths > 0) & (out[: len(out_lengths), _STATUS] == _BAD_JOB)
        if bad.any():
            for index, failures in enumerate(np.bincount(sender_of[bad]).tolist()):
                if failures:
                    self.limiter.charge(str(_source(senders[index])), failures)
        blocked = np.array([self.limiter.blocked(str(_source(a))) for a in senders], bool)
        if blocked.any():
            withheld = blocked[sender_of] & (out_lengths > 0)
            self.counters["rate_limited"] += int(withheld.sum())
            out_lengths[withheld] = 0

    def handle(
        self, packets: list[bytes], senders: list[Address] | None = None
    ) -> list[bytes | None]:
        """Convenience form of ``handle_buffer`` for a list of packets (tests, tools)."""
        sizes = [(len(p) + 3) // 4 * 4 for p in packets]
        offsets = np.cumsum([0, *sizes[:-1]]).astype(np.int64)
        buf = np.zeros(max(4, sum(sizes)), np.uint8)
        for off, packet in zip(offsets.tolist(), packets, strict=True):
            buf[off : off + len(packet)] = np.frombuffer(packet, np.uint8)
        lengths = np.array([len(p) for p in packets], np.int64)
        out = np.zeros((len(packets), self.max_response), np.uint8)
        out_lengths = np.zeros(len(packets), np.int64)
        sender_of = None
        if senders is not None:
            distinct = list(dict.fromkeys(senders))
            sender_of = np.array([distinct.index(a) for a in senders], np.int64)
            senders = distinct
        replies = self.handle_buffer(buf, offsets, lengths, out, out_lengths, sender_of, senders)
        return [
            replies.get(i) if i in replies else (bytes(out[i, :m]) if m else None)
            for i, m in enumerate(out_lengths.tolist())
        ]

    def handle_control(self, packet: bytes, sender: Address | None = None) -> bytes | None:
        """Answer a control request; a retried request (same sender, client, id) gets the same
        answer. Whatever the request, only its own answer is affected."""
        source = _source(sender)
        if source is not None and self.limiter.blocked(source):
            self.counters["rate_limited"] += 1
            return None
        try:
            hdr, message = wire.decode_control(packet)
            if packet[3] != wire.PacketType.CONTROL_REQUEST:
                raise wire.MalformedPacket("only control requests are answered")
        except wire.CorruptPacket:
            self.counters["corrupt"] += 1
            return None
        except wire.MalformedPacket as exc:
            self.counters["malformed"] += 1
            self.errors.note("malformed control requests", str(exc))
            return None
        key = (sender, int(hdr["flow_id"]), int(hdr["seq"]))
        cached = self._control_replies.get(key)
        if cached is not None:
            return cached
        try:
            if (
                source is not None
                and message.get("op") == "open_job"
                and len(packet) < wire.MIN_OPEN_JOB_REQUEST
            ):
                answer = {
                    "ok": False,
                    "code": "PAD_REQUEST",
                    "error": f"pad open_job requests to {wire.MIN_OPEN_JOB_REQUEST} bytes",
                }
            else:
                requester = (sender, int(hdr["flow_id"]))  # the client nonce: same on re-asks
                answer = self.control_plane.handle(message, source, requester)
                if message.get("op") == "stats" and answer.get("ok") and "switch" in answer:
                    answer.update({name: read() for name, read in self.stats_sections.items()})
        except Exception as exc:  # a bug must cost only this answer, never the batch
            self.counters["internal_errors"] += 1
            self.errors.note("internal errors", repr(exc))
            answer = {"ok": False, "code": "INTERNAL", "error": "the switch failed this request"}
        if answer.get("code") == "BAD_JOB" and source is not None:
            self.limiter.charge(source, 1)
        reply = self._encode_reply(packet, hdr, message, answer, sender is not None)
        if reply is not None and message.get("op") != "stats":
            self._control_replies[key] = reply
            if len(self._control_replies) > CONTROL_REPLY_CACHE:
                self._control_replies.popitem(last=False)
        return reply

    def _encode_reply(
        self,
        packet: bytes,
        hdr: np.ndarray,
        message: dict[str, Any],
        answer: dict[str, Any],
        from_network: bool,
    ) -> bytes | None:
        """The answer as one datagram; to a network sender without a valid credential (a token
        or the operator secret) no larger than the request, so the switch amplifies nothing: an
        error's text is cut to fit, a too-small request gets ``PAD_REQUEST`` or, smaller
        still, no answer."""
        client, request_id = int(hdr["flow_id"]), int(hdr["seq"])

        def encode(body: dict[str, Any]) -> bytes:
            return wire.encode_control(
                wire.PacketType.CONTROL_RESPONSE, client, request_id, body, self.incarnation
            )

        reply = encode(answer)
        credentialed = not from_network or (answer.get("ok") and message.get("op") != "open_job")
        limit = wire.MAX_CONTROL_BYTES if credentialed else min(len(packet), wire.MAX_CONTROL_BYTES)
        if len(reply) <= limit:
            return reply
        if answer.get("ok"):
            answer = {
                "ok": False,
                "code": "PAD_REQUEST" if not credentialed else "INTERNAL",
                "error": f"the answer needs {len(reply)} bytes: pad the request to that size",
            }
        bare = encode({**answer, "error": ""})
        room = limit - len(bare)
        if room < 0:
            self.counters["unanswered"] += 1
            return None
        text = str(answer["error"])[:room]
        while len(reply := encode({**answer, "error": text})) > limit:  # escapes took room
            text = text[: len(text) - (len(reply) - limit)]
        return reply

    def tick(self) -> None:
        self.control_plane.tick()

    def stats(self) -> dict[str, Any]:
        stats = self.control_plane.stats()
        stats.update({name: section() for name, section in self.stats_sections.items()})
        return stats
