"""The UDP daemon: receive runs of packets, push them through the switch, send the answers.

Receiving uses GRO and sending GSO (``udp_io``), so one system call moves up to 64 packets; the
compiled dataplane handles a whole receive batch in one call. ``SwitchDaemon`` runs in the
foreground (``inc-switch serve``) or in a thread (the embedded switch of a Spark driver).
"""

from __future__ import annotations

import logging
import select
import threading
import time

import numpy as np

from switch_dataplane import udp_io, wire
from switch_dataplane.daemon.fault_injector import FaultInjector
from switch_dataplane.daemon.switch import Switch
from switch_dataplane.udp_io import (
    RUN_BYTES,
    BatchSocket,
    Waiting,
    receive_waiting,
    send_grouped,
)

log = logging.getLogger("inc_switch")

BATCH_BYTES = 1 << 20  # receive buffer per batch
TICK_S = 0.02  # control-plane housekeeping period
RUN_SEGMENTS_MARGIN = 1024  # room for one more GRO run (the kernel coalesces at most 128)


class SwitchDaemon:
    """Serves one ``Switch`` on a UDP address until ``stop()``."""

    def __init__(
        self,
        switch: Switch,
        host: str = "127.0.0.1",
        port: int = wire.DEFAULT_PORT,
        faults: FaultInjector | None = None,
    ) -> None:
        self.switch = switch
        # The compiled code loads (~0.25 s) while the first control requests are answered: the
        # small batch helpers first, then the fast path. A data batch that comes sooner waits
        # for it on numba's compiler lock.
        self._warm_up = threading.Thread(target=self._compile, name="inc-switch-warm-up")
        self._warm_up.start()
        self.sock = BatchSocket(host, port)
        self.faults = faults if faults is not None and faults.active else None
        if self.faults is not None:
            switch.stats_sections["faults"] = self.faults.counts
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.buf = np.zeros(BATCH_BYTES + RUN_BYTES, np.uint8)
        self.view = memoryview(self.buf)
        self.max_packets = BATCH_BYTES // wire.HEADER_BYTES
        max_packets = self.max_packets + RUN_SEGMENTS_MARGIN
        self.out = np.zeros((max_packets, switch.max_response), np.uint8)
        self.out_lengths = np.zeros(max_packets, np.int64)
        self.staging = np.zeros(self.out.size, np.uint8)  # answers regrouped into GSO runs
        self.internal_errors = 0
        self.started = time.monotonic()
        self.cpu_started = time.process_time()

    def _compile(self) -> None:
        udp_io.warm_up()
        self.switch.warm_up()

    def wait_until_compiled(self) -> None:
        """Block until the compiled paths are loaded (or compiled into the cache): a switch that
        says it is listening must answer at once."""
        self._warm_up.join()

    @property
    def address(self) -> tuple[str, int]:
        return self.sock.address

    def start(self) -> SwitchDaemon:
        """Serve in a background thread."""
        self._thread = threading.Thread(target=self.serve_forever, name="inc-switch", daemon=True)
        self._thread.start()
        return self

    def request_stop(self) -> None:
        """Ask the serving loop to return (safe from a signal handler)."""
        self._stop.set()

    def stop(self) -> None:
        """Stop serving, wait for the thread, release the port."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._warm_up.join()
        self.sock.close()

    def serve_forever(self) -> None:
        next_tick = time.monotonic() + TICK_S
        while not self._stop.is_set():
            ready = select.select([self.sock], [], [], TICK_S)[0]
            if ready:
                try:
                    self._serve_batch()
                except Exception:  # never let one bad batch take the switch down
                    self.internal_errors += 1
                    log.exception("inc-switch: batch failed; continuing")
            elif self.faults is not None:
                self._send_faulty([], [])
            now = time.monotonic()
            if now >= next_tick:
                self.switch.tick()
                next_tick = now + TICK_S

    def _serve_batch(self) -> None:
        """Drain the socket into one buffer, process it in one call, answer everything."""
        waiting = receive_waiting(self.sock, self.view, BATCH_BYTES, self.max_packets)
        if not len(waiting.offsets):
            return
        if self.faults is not None:
            self._serve_faulty(waiting)
            return
        replies = self.switch.handle_buffer(
            self.buf,
            waiting.offsets,
            waiting.lengths,
            self.out,
            self.out_lengths,
            waiting.sender_of,
            waiting.senders,
        )
        for index, reply in replies.items():
            try:
                self.sock.send(reply, waiting.senders[waiting.sender_of[index]])
            except OSError as exc:  # this answer only: the rest of the batch is still sent
                self.switch.errors.note("unsendable answers", repr(exc))
        n = len(waiting.offsets)
        send_grouped(
            self.sock,
            self.out,
            self.out_lengths[:n],
            waiting.sender_of,
            waiting.senders,
            self.staging,
        )

    def _serve_faulty(self, waiting: Waiting) -> None:
        """Slow path with fault injection: per-packet lists, both directions."""
        packets = [
            (bytes(self.buf[o : o + m]), waiting.senders[s])
            for o, m, s in zip(
                waiting.offsets.tolist(),
                waiting.lengths.tolist(),
                waiting.sender_of.tolist(),
                strict=True,
            )
        ]
        self._send_faulty(*zip(*packets, strict=True))

    def _send_faulty(self, packets: tuple | list, addresses: tuple | list) -> None:
        """Requests through their faults to the switch, its answers through theirs to the hosts;
        with no packets (an idle moment), whatever each direction still holds."""
        assert self.faults is not None
        arriving = list(zip(packets, addresses, strict=True))
        idle = not arriving
        incoming = self.faults.requests.flush() if idle else self.faults.requests.apply(arriving)
        answers = (
            self.switch.handle([p for p, _ in incoming], [a for _, a in incoming])
            if incoming
            else []
        )
        responses = [(r, a) for r, (_, a) in zip(answers, incoming, strict=True) if r]
        outgoing = self.faults.responses.apply(responses)
        if idle:
            outgoing += self.faults.responses.flush()
        for response, address in outgoing:
            self.sock.send(response, address)

    def summary(self) -> str:
        stats = self.switch.stats()["switch"]
        elapsed = time.monotonic() - self.started
        cpu = time.process_time() - self.cpu_started
        text = (
            f"inc-switch: {stats['packets']} packets, {stats['malformed']} malformed, "
            f"{stats['corrupt']} corrupt, "
            f"{stats['control_requests']} control requests in {elapsed:.1f} s "
            f"({cpu:.1f} s CPU)"
        )
        if self.faults is not None:
            text += f"; injected {self.faults.counts()}"
        return text
