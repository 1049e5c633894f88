"""A switch: a dataplane and its control plane behind one packet interface.

Packets are handled strictly in arrival order. Runs of data and drain packets go through the
dataplane in one call (compiled batch); a control packet between them is answered by the control
plane at exactly its place in the sequence, so "open flow, then data" and "data, then swap" mean
what they say.

>>> switch = Switch(rows=4, columns=16, fast=False)
>>> request = wire.encode_control(wire.PacketType.CONTROL_REQUEST, 1, 1, {"op": "stats"})
>>> wire.decode_control(switch.handle([request])[0])[1]["ok"]
True
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import numpy as np

from switch_dataplane import wire
from switch_dataplane.control.control_plane import ControlPlane
from switch_dataplane.dataplane import Dataplane, FastDataplane, max_response_bytes
from switch_dataplane.dataplane.pipeline_kernel import next_control_packet
from switch_dataplane.dataplane.reference_model import ReferenceDataplane

DEFAULT_ROWS = 32
DEFAULT_COLUMNS = 4096  # per copy; see docs/hardware-model.md
DEFAULT_WINDOW = 256
DEFAULT_MAX_FLOWS = 256
DEFAULT_MAX_JOBS = 64
CONTROL_REPLY_CACHE = 4096


class Switch:
    """Dataplane + control plane; ``fast=False`` uses the plain-Python reference model."""

    def __init__(
        self,
        rows: int = DEFAULT_ROWS,
        columns: int = DEFAULT_COLUMNS,
        window: int = DEFAULT_WINDOW,
        max_flows: int = DEFAULT_MAX_FLOWS,
        max_jobs: int = DEFAULT_MAX_JOBS,
        fast: bool = True,
        clock: Callable[[], float] = time.monotonic,
        seed: int | None = None,
        cpu_clock: Callable[[], float] = time.thread_time,
    ) -> None:
        dataplane_class = FastDataplane if fast else ReferenceDataplane
        self.dataplane: Dataplane = dataplane_class(rows, columns, window, max_flows, max_jobs)
        self.control_plane = ControlPlane(
            self.dataplane, clock=clock, seed=seed, cpu_clock=cpu_clock
        )
        self.max_response = max_response_bytes(rows)
        self._control_replies: OrderedDict[tuple[int, int], bytes] = OrderedDict()
        # Sections the daemon adds to every ``stats`` answer (e.g. its fault injector's counters).
        self.stats_sections: dict[str, Callable[[], dict[str, Any]]] = {}

    def warm_up(self) -> None:
        """Compile (or load from cache) the fast path before the first packet arrives."""
        empty = np.zeros(0, np.int64)
        buf = np.zeros(8, np.uint8)
        next_control_packet(buf, empty, empty, 0, 0)
        out = np.zeros((1, self.max_response), np.uint8)
        self.dataplane.process_run(buf, empty, empty, 0, 0, out, empty)

    def handle_buffer(
        self,
        buf: np.ndarray,
        offsets: np.ndarray,
        lengths: np.ndarray,
        out: np.ndarray,
        out_lengths: np.ndarray,
    ) -> dict[int, bytes]:
        """Process ``len(offsets)`` packets of a flat uint8 buffer in order.

        Data and drain responses go to ``out[p, :out_lengths[p]]`` (length 0: dropped). Control
        replies, which can exceed ``out``'s row size, are returned as {packet index: bytes}.
        """
        n = len(offsets)
        replies: dict[int, bytes] = {}
        start = 0
        while start < n:
            p = next_control_packet(buf, offsets, lengths, start, n)
            if p > start:
                self.dataplane.process_run(buf, offsets, lengths, start, p, out, out_lengths)
            if p == n:
                break
            out_lengths[p] = 0
            reply = self.handle_control(bytes(buf[offsets[p] : offsets[p] + lengths[p]]))
            if reply is not None:
                replies[p] = reply
            start = p + 1
        return replies

    def handle(self, packets: list[bytes]) -> list[bytes | None]:
        """Convenience form of ``handle_buffer`` for a list of packets (tests, tools)."""
        sizes = [(len(p) + 3) // 4 * 4 for p in packets]
        offsets = np.cumsum([0, *sizes[:-1]]).astype(np.int64)
        buf = np.zeros(max(4, sum(sizes)), np.uint8)
        for off, packet in zip(offsets.tolist(), packets, strict=True):
            buf[off : off + len(packet)] = np.frombuffer(packet, np.uint8)
        lengths = np.array([len(p) for p in packets], np.int64)
        out = np.zeros((len(packets), self.max_response), np.uint8)
        out_lengths = np.zeros(len(packets), np.int64)
        replies = self.handle_buffer(buf, offsets, lengths, out, out_lengths)
        return [
            replies.get(i) if i in replies else (bytes(out[i, :m]) if m else None)
            for i, m in enumerate(out_lengths.tolist())
        ]

    def handle_control(self, packet: bytes) -> bytes | None:
        """Answer a control request; a retried request (same client, id) gets the same answer."""
        try:
            hdr, message = wire.decode_control(packet)
        except wire.MalformedPacket:
            self.control_plane.control_counters["malformed"] += 1
            return None
        key = (int(hdr["flow_id"]), int(hdr["seq"]))
        cached = self._control_replies.get(key)
        if cached is not None and message.get("op") != "stats":
            return cached
        answer = self.control_plane.handle(message)
        if message.get("op") == "stats" and answer.get("ok"):
            answer.update({name: section() for name, section in self.stats_sections.items()})
        reply = wire.encode_control(wire.PacketType.CONTROL_RESPONSE, key[0], key[1], answer)
        self._control_replies[key] = reply
        if len(self._control_replies) > CONTROL_REPLY_CACHE:
            self._control_replies.popitem(last=False)
        return reply

    def tick(self) -> None:
        self.control_plane.tick()

    def stats(self) -> dict[str, Any]:
        stats = self.control_plane.stats()
        stats.update({name: section() for name, section in self.stats_sections.items()})
        return stats
