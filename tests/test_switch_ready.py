"""A switch that says "listening" answers at once, even when it had to compile its kernels."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import numpy as np

from switch_dataplane import wire
from switch_dataplane.control.control_client import ControlClient, parse_address
from switch_dataplane.daemon.launcher import SwitchProcess

# One try, no retransmission: five times the control client's first timeout. A switch still
# compiling takes seconds; a ready one answers in about a millisecond.
ANSWER_WITHIN_S = 5 * ControlClient(("127.0.0.1", 1)).timeout_s


def test_a_switch_with_an_empty_compile_cache_answers_its_first_requests(tmp_path: Path) -> None:
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "empty-cache")}
    with SwitchProcess(env=env) as switch, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        address = parse_address(switch.address)
        sock.settimeout(ANSWER_WITHIN_S)
        message = {"op": "stats", "operator": switch.operator_secret}
        stats = wire.encode_control(wire.PacketType.CONTROL_REQUEST, 1, 1, message)
        sock.sendto(stats, address)
        hdr, answer = wire.decode_control(sock.recv(1 << 16))
        assert answer["ok"] and answer["switch"]["control_requests"] == 1
        data = wire.new_header(wire.PacketType.DATA, job_id=1, token=1, epoch=1, flow_id=1, seq=0)
        keys = np.zeros((1, wire.KEY_BYTES), np.uint8)
        sock.sendto(wire.encode_packet(data, np.array([0]), keys, np.array([1])), address)
        reply = sock.recv(1 << 16)
    assert wire.decode_packet(reply)[0]["type"] == wire.PacketType.DATA_RESPONSE
    assert any((tmp_path / "empty-cache").rglob("*.nbc"))  # it really compiled, into the cache
