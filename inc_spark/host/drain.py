"""Reading the switch's aggregators back: one copy at a time, and a driver thread that drains
the copies the control plane swaps out while tasks still stream."""

from __future__ import annotations

import threading

import numpy as np

from inc_spark.host.job import JobTicket
from inc_spark.host.packer import PacketBatch
from inc_spark.host.reliable_exchange import ExchangeStats, Expect, ReliableExchange
from switch_dataplane import frame_check, wire
from switch_dataplane.control.control_client import ControlClient

DRAIN_POLL_S = 0.02


def drain_copy(ticket: JobTicket, copy: int) -> tuple[np.ndarray, np.ndarray, ExchangeStats]:
    """Read every aggregator of one copy of the job's region (idempotent, loss-proof)."""
    columns = ticket.columns
    headers = np.repeat(
        wire.new_header(
            wire.PacketType.DRAIN_REQUEST,
            job_id=ticket.job_id,
            token=ticket.token,
            epoch=ticket.epoch,
            copy=copy,
            incarnation=ticket.incarnation,
        )[None],
        columns,
    )
    headers["seq"] = np.arange(columns)
    batch = PacketBatch(
        headers.view(np.uint8).reshape(-1).copy(),
        np.arange(columns, dtype=np.int64) * wire.HEADER_BYTES,
        np.full(columns, wire.HEADER_BYTES, np.int64),
        0,
    )
    frame_check.seal_all(batch.buf, batch.offsets, batch.lengths)
    exchange = ReliableExchange(ticket.switch, window=512, deadline_s=ticket.deadline_s)
    try:
        keys, values = exchange.run(
            batch,
            Expect(int(wire.PacketType.DRAIN_RESPONSE), ticket.job_id, copy=copy),
            ticket.slots,
        )
    finally:
        exchange.close()
    return keys, values, exchange.stats


class CopyDrainer:
    """Driver-side thread: drains copies the control plane swapped out, then frees them."""

    def __init__(self, ticket: JobTicket) -> None:
        self.ticket = ticket
        self.keys: list[np.ndarray] = []
        self.values: list[np.ndarray] = []
        self.stats = ExchangeStats()
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="inc-drainer", daemon=True)

    def start(self) -> CopyDrainer:
        self._thread.start()
        return self

    def _run(self) -> None:
        control = self.ticket.control()
        try:
            while not self._stop.wait(DRAIN_POLL_S):
                self.drain_swapped(control)
        except BaseException as exc:  # reported to the caller by finish()
            self.error = exc
        finally:
            control.close()

    def drain_swapped(self, control: ControlClient) -> None:
        """Drain and clear every copy the control plane marked drainable."""
        status = control.request("job_status", job_id=self.ticket.job_id, token=self.ticket.token)
        for copy, state in enumerate(status["copies"]):
            if state == "drainable":
                self.take(copy)
                control.request(
                    "clear_copy", job_id=self.ticket.job_id, token=self.ticket.token, copy=copy
                )

    def take(self, copy: int) -> None:
        keys, values, stats = drain_copy(self.ticket, copy)
        self.keys.append(keys)
        self.values.append(values)
        self.stats.add(stats)

    def finish(self) -> None:
        """Stop the thread, then drain what is left: any swapped-out copy and the active one."""
        self._stop.set()
        self._thread.join()
        if self.error is not None:
            raise self.error
        control = self.ticket.control()
        try:
            self.drain_swapped(control)
            status = control.request(
                "job_status", job_id=self.ticket.job_id, token=self.ticket.token
            )
            self.take(status["active_copy"])
            after = control.request(
                "job_status", job_id=self.ticket.job_id, token=self.ticket.token
            )
        finally:
            control.close()
        if after["swaps"] != status["swaps"] or "drainable" in after["copies"]:
            raise RuntimeError(
                "the switch swapped copies during the final drain (a flow of this job is still "
                "open?); the drained totals cannot be trusted, redo the call in a new epoch"
            )
