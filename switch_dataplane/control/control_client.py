"""Send one control request to a switch and wait for its answer, retrying on loss.

A retry reuses the request id, so the control plane answers it from its reply cache instead of
executing it twice (opening two jobs, say).
"""

from __future__ import annotations

import itertools
import os
import select
import socket
import time
from typing import Any

from switch_dataplane import wire


class SwitchUnreachable(ConnectionError):
    """No answer from the switch within the time allowed."""


class ControlRequestFailed(RuntimeError):
    """The control plane refused a request; ``code`` says why (e.g. AA_FULL)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code


def parse_address(address: str) -> tuple[str, int]:
    """'host:port' (or '[v6]:port') -> (host, port), with a clear error."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"switch address {address!r} is not HOST:PORT, e.g. 127.0.0.1:9900")
    return host.strip("[]") or "127.0.0.1", int(port)


class ControlClient:
    """Control requests over a UDP socket of the caller's (or its own)."""

    _ids = itertools.count(1)

    def __init__(
        self,
        switch: tuple[str, int],
        sock: socket.socket | None = None,
        timeout_s: float = 0.2,
        deadline_s: float = 10.0,
    ) -> None:
        self.switch = switch
        self.own_socket = sock is None
        if sock is None:
            family = socket.AF_INET6 if ":" in switch[0] else socket.AF_INET
            sock = socket.socket(family, socket.SOCK_DGRAM)
        self.sock = sock
        self.client = int.from_bytes(os.urandom(4), "little")
        self.timeout_s = timeout_s
        self.deadline_s = deadline_s

    def close(self) -> None:
        if self.own_socket:
            self.sock.close()

    def request(self, op: str, **fields: Any) -> dict[str, Any]:
        """The answer's fields; raises ControlRequestFailed or SwitchUnreachable."""
        request_id = next(self._ids) & 0xFFFFFFFF
        packet = wire.encode_control(
            wire.PacketType.CONTROL_REQUEST, self.client, request_id, {"op": op, **fields}
        )
        deadline = time.monotonic() + self.deadline_s
        wait = self.timeout_s
        while time.monotonic() < deadline:
            self.sock.sendto(packet, self.switch)
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
                data = self.sock.recv(65536)
            except ConnectionRefusedError:
                continue
            try:
                hdr, message = wire.decode_control(data)
            except wire.MalformedPacket:
                continue
            if (
                hdr["type"] == wire.PacketType.CONTROL_RESPONSE
                and int(hdr["flow_id"]) == self.client
                and int(hdr["seq"]) == request_id
            ):
                return message
