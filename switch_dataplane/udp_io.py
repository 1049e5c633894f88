"""Batched UDP I/O with Linux UDP GSO (send) and GRO (receive), shared by switch and hosts.

One ``sendmsg`` with ``UDP_SEGMENT`` hands the kernel up to 128 equal-size datagrams (recent
kernels' UDP_MAX_SEGMENTS; older ones allow 64, which the first refused send discovers); one
``recvmsg_into`` on a ``UDP_GRO`` socket returns a run of coalesced datagrams plus their segment
size. Where the kernel lacks either, the functions fall back to one datagram per call.
"""

from __future__ import annotations

import contextlib
import errno
import socket
import struct
from dataclasses import dataclass

import numpy as np

SOL_UDP = 17
UDP_SEGMENT = 103
UDP_GRO = 104
GSO_MAX_SEGMENTS = 128  # Linux UDP_MAX_SEGMENTS today; older kernels: 64 (see send_run)
GSO_SAFE_SEGMENTS = 64
GSO_MAX_BYTES = 65000
SOCKET_BUFFER_BYTES = 8 << 20
RUN_BYTES = 65536  # room for one received GRO run
_GRO_CMSG_SPACE = socket.CMSG_SPACE(4)


class BatchSocket:
    """A UDP socket that sends and receives runs of datagrams with GSO/GRO when available."""

    def __init__(self, host: str = "0.0.0.0", port: int = 0) -> None:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_DGRAM)
        for option in (socket.SO_RCVBUF, socket.SO_SNDBUF):
            with contextlib.suppress(OSError):
                self.sock.setsockopt(socket.SOL_SOCKET, option, SOCKET_BUFFER_BYTES)
        self.sock.bind((host, port))
        self.gro = _try_setsockopt(self.sock, UDP_GRO, 1)
        self.gso = True  # discovered on first send
        self.gso_segments = GSO_MAX_SEGMENTS  # lowered to 64 on the first EINVAL

    @property
    def address(self) -> tuple[str, int]:
        host, port = self.sock.getsockname()[:2]
        return host, port

    def fileno(self) -> int:
        return self.sock.fileno()

    def close(self) -> None:
        self.sock.close()

    def receive_into(
        self, view: memoryview, wait: bool = False
    ) -> tuple[int, int, tuple[str, int]] | None:
        """Receive one datagram or one GRO run into ``view``.

        Returns (bytes, segment size, sender), or None if nothing is waiting (``wait=False``).
        The run is ``bytes // segment`` datagrams of ``segment`` bytes, then the remainder.
        """
        flags = 0 if wait else socket.MSG_DONTWAIT
        try:
            nbytes, ancillary, _flags, sender = self.sock.recvmsg_into(
                [view], _GRO_CMSG_SPACE, flags
            )
        except (BlockingIOError, InterruptedError):
            return None
        except ConnectionRefusedError:  # an ICMP error from an earlier send; not for us
            return None
        segment = nbytes
        for level, kind, data in ancillary:
            if level == SOL_UDP and kind == UDP_GRO:
                segment = struct.unpack("i", data[:4])[0]
        return nbytes, max(segment, 1), sender

    def send_run(self, payload: bytes | memoryview, segment: int, address: tuple) -> None:
        """Send ``payload`` as datagrams of ``segment`` bytes (the last may be shorter)."""
        total = len(payload)
        if total <= segment:
            self._sendto(payload, address)
            return
        view = memoryview(payload)
        start = 0
        while start < total:
            step = max(1, min(self.gso_segments, GSO_MAX_BYTES // segment)) * segment
            chunk = view[start : start + step]
            if self.gso and len(chunk) > segment:
                try:
                    self.sock.sendmsg(
                        [chunk], [(SOL_UDP, UDP_SEGMENT, struct.pack("H", segment))], 0, address
                    )
                    start += len(chunk)
                    continue
                except OSError as exc:
                    if exc.errno not in (errno.EIO, errno.EINVAL, errno.ENOPROTOOPT):
                        raise
                    if (
                        exc.errno == errno.EINVAL
                        and self.gso_segments > GSO_SAFE_SEGMENTS
                        and len(chunk) > GSO_SAFE_SEGMENTS * segment
                    ):
                        self.gso_segments = GSO_SAFE_SEGMENTS  # a kernel with a 64-segment cap
                        continue
                    self.gso = False
            for pos in range(0, len(chunk), segment):
                self._sendto(chunk[pos : pos + segment], address)
            start += len(chunk)

    def send(self, payload: bytes | memoryview, address: tuple) -> None:
        self._sendto(payload, address)

    def _sendto(self, payload: bytes | memoryview, address: tuple) -> None:
        with contextlib.suppress(ConnectionRefusedError):
            self.sock.sendto(payload, address)


def _try_setsockopt(sock: socket.socket, option: int, value: int) -> bool:
    try:
        sock.setsockopt(SOL_UDP, option, value)
    except OSError:
        return False
    return True


@dataclass
class Waiting:
    """The datagrams taken from a socket into one buffer, in arrival order."""

    offsets: np.ndarray  # int64, where each datagram starts in the buffer
    lengths: np.ndarray  # int64
    sender_of: np.ndarray  # int64, each datagram's index into ``senders``
    senders: list[tuple]  # one entry per address
    nbytes: int
    calls: int  # receive calls made


def receive_waiting(
    sock: BatchSocket, view: memoryview, limit: int, max_datagrams: int | None = None
) -> Waiting:
    """Take the datagrams waiting on ``sock`` into ``view``, each run 8-byte aligned, until none
    waits, ``limit`` bytes are used (``view`` needs ``RUN_BYTES`` of room beyond ``limit``) or
    ``max_datagrams`` are taken (the last run taken may go beyond it by one GRO run)."""
    cursor = received = calls = count = 0
    offsets_parts: list[np.ndarray] = []
    lengths_parts: list[np.ndarray] = []
    run_senders: list[int] = []
    index_of: dict[tuple, int] = {}
    while cursor < limit and (max_datagrams is None or count < max_datagrams):
        got = sock.receive_into(view[cursor : cursor + RUN_BYTES])
        calls += 1
        if got is None:
            break
        nbytes, segment, sender = got
        offsets, lengths = split_run(nbytes, segment, cursor)
        offsets_parts.append(offsets)
        lengths_parts.append(lengths)
        run_senders.append(index_of.setdefault(sender, len(index_of)))
        count += len(offsets)
        cursor += (nbytes + 7) // 8 * 8
        received += nbytes
    if not offsets_parts:
        empty = np.zeros(0, np.int64)
        return Waiting(empty, empty, empty, [], 0, calls)
    sender_of = np.repeat(np.array(run_senders, np.int64), [len(o) for o in offsets_parts])
    return Waiting(
        np.concatenate(offsets_parts),
        np.concatenate(lengths_parts),
        sender_of,
        list(index_of),
        received,
        calls,
    )


def split_run(nbytes: int, segment: int, base: int) -> tuple[np.ndarray, np.ndarray]:
    """(offsets, lengths) of the datagrams of a received run that starts at ``base``."""
    count = max(1, -(-nbytes // segment))  # an empty datagram is one (malformed) packet
    offsets = base + np.arange(count, dtype=np.int64) * segment
    lengths = np.full(count, segment, np.int64)
    lengths[-1] = nbytes - segment * (count - 1)
    return offsets, lengths


def send_grouped(
    sock: BatchSocket, out: np.ndarray, lengths: np.ndarray, indices: np.ndarray, address: tuple
) -> None:
    """Send the responses ``out[i, :lengths[i]]`` for ``indices`` to one address, GSO by size."""
    sizes = lengths[indices]
    for size in np.unique(sizes).tolist():
        if size == 0:
            continue
        same = indices[sizes == size]
        sock.send_run(out[same, :size].tobytes(), size, address)
