"""Send one control request to a switch and wait for its answer, retrying on loss.

A retry reuses the request id, so the control plane answers it from its reply cache instead of
executing it twice (opening two jobs, say). An answer is believed only from the switch's address
with this client's nonce and request id; every answer carries the switch's incarnation, and a
change of it (the switch restarted and lost every job) raises ``SwitchRestarted``. Requests are
padded to ``REQUEST_PAD_BYTES``: the switch never answers a request without a credential with
more bytes than it got. Paged answers (``next``) are fetched to the end and joined.
"""

from __future__ import annotations

import itertools
import os
import select
import socket
import time
from typing import Any

from switch_dataplane import wire

REQUEST_PAD_BYTES = wire.MIN_OPEN_JOB_REQUEST  # larger than any answer to open_job or error


class SwitchUnreachable(ConnectionError):
    """No answer from the switch within the time allowed."""


class ControlRequestFailed(RuntimeError):
    """The control plane refused a request; ``code`` says why (e.g. AA_FULL)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message

    def __reduce__(self) -> tuple:  # so executors and process pools can send it back
        return type(self), (self.code, self.message)


class SwitchRestarted(ControlRequestFailed):
    """The switch answered with another incarnation: it restarted and every job on it is gone.
    Nothing it answered before can be combined with what it answers now."""

    def __init__(self, switch: tuple[str, int], expected: int, seen: int) -> None:
        self.switch, self.expected, self.seen = switch, expected, seen
        super().__init__(
            "SWITCH_RESTARTED",
            f"the switch at {switch[0]}:{switch[1]} restarted (incarnation {expected:#010x} is "
            f"now {seen:#010x}) and lost the job; redo the call (a new job is opened)",
        )

    def __reduce__(self) -> tuple:
        return type(self), (self.switch, self.expected, self.seen)


def parse_address(address: str) -> tuple[str, int]:
    """'host:port' (or '[v6]:port') -> (host, port), with a clear error."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"switch address {address!r} is not HOST:PORT, e.g. 127.0.0.1:9900")
    return host.strip("[]") or "127.0.0.1", int(port)


def resolve(switch: tuple[str, int]) -> tuple[int, tuple[str, int]]:
    """(address family, numeric (host, port)) of the switch: what answers come from."""
    family, _, _, _, address = socket.getaddrinfo(switch[0], switch[1], type=socket.SOCK_DGRAM)[0]
    return family, (str(address[0]), int(address[1]))


def check_incarnation(switch: tuple[str, int], expected: int | None, seen: int) -> int:
    """The incarnation to expect from now on; raises SwitchRestarted if ``seen`` differs."""
    if expected is not None and seen != expected:
        raise SwitchRestarted(switch, expected, seen)
    return seen


class ControlClient:
    """Control requests over a UDP socket of the caller's (or its own).

    ``incarnation``: the switch incarnation the caller's state belongs to (None: learn it from
    the first answer); ``self.incarnation`` is the one seen.
    """

    _ids = itertools.count(1)

    def __init__(
        self,
        switch: tuple[str, int],
        sock: socket.socket | None = None,
        timeout_s: float = 0.2,
        deadline_s: float = 10.0,
        incarnation: int | None = None,
    ) -> None:
        family, self.address = resolve(switch)
        self.switch = switch
        self.own_socket = sock is None
        if sock is None:
            sock = socket.socket(family, socket.SOCK_DGRAM)
        self.sock = sock
        self.client = int.from_bytes(os.urandom(4), "little")
        self.timeout_s = timeout_s
        self.deadline_s = deadline_s
        self.incarnation = incarnation

    def close(self) -> None:
        if self.own_socket:
            self.sock.close()

    def request(self, op: str, **fields: Any) -> dict[str, Any]:
        """The answer's fields (every page of a paged one); raises ControlRequestFailed,
        SwitchRestarted or SwitchUnreachable."""
        answer = self._request_one(op, fields)
        paged = answer.pop("paged", None)
        while isinstance(paged, str) and "next" in answer:
            page = self._request_one(op, {**fields, "start": answer.pop("next")})
            answer[paged].extend(page.get(paged, []))
            if "next" in page:
                answer["next"] = page["next"]
        return answer

    def _request_one(self, op: str, fields: dict[str, Any]) -> dict[str, Any]:
        request_id = next(self._ids) & 0xFFFFFFFF
        message = {"op": op, **fields}
        packet = wire.encode_control(
            wire.PacketType.CONTROL_REQUEST, self.client, request_id, message
        )
        if len(packet) < REQUEST_PAD_BYTES:
            pad = REQUEST_PAD_BYTES - len(packet) - len(',"pad":""')
            message["pad"] = " " * max(0, pad)
            packet = wire.encode_control(
                wire.PacketType.CONTROL_REQUEST, self.client, request_id, message
            )
        deadline = time.monotonic() + self.deadline_s
        wait = self.timeout_s
        while time.monotonic() < deadline:
            self.sock.sendto(packet, self.address)
            answer = self._await(request_id, min(wait, max(0.0, deadline - time.monotonic())))
            if answer is not None:
                if not answer.get("ok"):
                    raise ControlRequestFailed(answer.get("code", "?"), answer.get("error", ""))
                return answer
            wait = min(wait * 2, 2.0)
        raise SwitchUnreachable(
            f"no answer from the switch at {self.switch[0]}:{self.switch[1]} within "
            f"{self.deadline_s:.0f} s (is inc-switch running there and the port reachable?)"
        )

    def _await(self, request_id: int, timeout: float) -> dict[str, Any] | None:
        end = time.monotonic() + timeout
        while True:
            left = end - time.monotonic()
            if left <= 0 or not select.select([self.sock], [], [], left)[0]:
                return None
            try:
                data, sender = self.sock.recvfrom(65536)
            except ConnectionRefusedError:
                continue
            if (str(sender[0]), int(sender[1])) != self.address:
                continue  # not from the switch: never believed
            try:
                hdr, message = wire.decode_control(data)
            except wire.MalformedPacket:
                continue
            if (
                hdr["type"] == wire.PacketType.CONTROL_RESPONSE
                and int(hdr["flow_id"]) == self.client
                and int(hdr["seq"]) == request_id
            ):
                self.incarnation = check_incarnation(
                    self.switch, self.incarnation, int(hdr["incarnation"])
                )
                return message


def fetch_stats(client: ControlClient, operator_secret: str) -> dict[str, Any]:
    """A switch's statistics (the layout of ``ControlPlane.stats``), piece by piece."""
    top = client.request("stats", operator=operator_secret)
    jobs = {}
    for job_id in top["jobs"]:
        try:
            job = client.request("stats", operator=operator_secret, job=job_id)["job"]
            epochs = {}
            ledgers = {}
            for epoch in job.pop("epochs"):
                piece = client.request("stats", operator=operator_secret, job=job_id, epoch=epoch)
                epochs[str(epoch)] = piece["counters"]
                ledgers[str(epoch)] = piece["ledger"]
        except ControlRequestFailed as exc:
            if exc.code in ("BAD_JOB", "STALE_EPOCH"):  # closed or moved on meanwhile
                continue
            raise
        jobs[str(job_id)] = {**job, "epochs": epochs, "ledger": ledgers}
    return {"switch": top["switch"], "jobs": jobs}
