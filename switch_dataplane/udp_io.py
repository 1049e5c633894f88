"""Batched UDP I/O with Linux UDP GSO (send) and GRO (receive), shared by switch and hosts.

One ``sendmsg`` with ``UDP_SEGMENT`` hands the kernel up to 128 equal-size datagrams (recent
kernels' UDP_MAX_SEGMENTS; older ones allow 64, which the first refused send discovers); one
``recvmsg_into`` on a ``UDP_GRO`` socket returns a run of coalesced datagrams plus their segment
size. Where the kernel lacks either, the functions fall back to one datagram per call. Splitting
runs into datagrams and gathering answers into runs are compiled: per batch, Python only makes
the system calls.
"""

from __future__ import annotations

import contextlib
import errno
import socket
import struct
from dataclasses import dataclass

import numba
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
    runs: list[tuple[int, ...]] = []  # (start, bytes, segment size, datagrams, sender index)
    index_of: dict[tuple, int] = {}
    while cursor < limit and (max_datagrams is None or count < max_datagrams):
        got = sock.receive_into(view[cursor : cursor + RUN_BYTES])
        calls += 1
        if got is None:
            break
        nbytes, segment, sender = got
        datagrams = max(1, -(-nbytes // segment))  # an empty datagram is one (malformed) packet
        runs.append(
            (cursor, nbytes, segment, datagrams, index_of.setdefault(sender, len(index_of)))
        )
        count += datagrams
        cursor += (nbytes + 7) // 8 * 8
        received += nbytes
    offsets = np.empty(count, np.int64)
    lengths = np.empty(count, np.int64)
    sender_of = np.empty(count, np.int64)
    if runs:
        _split_runs(np.array(runs, np.int64), offsets, lengths, sender_of)
    return Waiting(offsets, lengths, sender_of, list(index_of), received, calls)


def warm_up() -> None:
    """Compile (or load from cache) the batch helpers before the first datagram."""
    empty = np.zeros(0, np.int64)
    _split_runs(np.zeros((0, 5), np.int64), empty, empty, empty)
    _gather_runs(np.zeros((0, 1), np.uint32), empty, empty, np.zeros(0, np.uint32))


@numba.njit(cache=True, nogil=True)
def _split_runs(
    runs: np.ndarray, offsets: np.ndarray, lengths: np.ndarray, sender_of: np.ndarray
) -> None:
    """Each run (start, bytes, segment size, datagrams, sender) into its datagrams, in order."""
    n = 0
    for r in range(runs.shape[0]):
        start, nbytes, segment, datagrams, sender = runs[r]
        for k in range(datagrams):
            offsets[n] = start + k * segment
            lengths[n] = min(segment, nbytes - k * segment)
            sender_of[n] = sender
            n += 1


def send_grouped(
    sock: BatchSocket,
    out: np.ndarray,
    lengths: np.ndarray,
    sender_of: np.ndarray,
    senders: list[tuple],
    staging: np.ndarray,
) -> None:
    """Send each answer ``out[i, :lengths[i]]`` (none where 0) to ``senders[sender_of[i]]``.

    Answers of one size to one address leave in one GSO run, in arrival order; ``staging`` (a
    flat uint8 array as large as ``out``) holds the runs. Answers are whole 32-bit words, as
    every wire packet is: rows of ``out`` and lengths are multiples of 4 bytes.
    """
    runs = _gather_runs(out.view(np.uint32), lengths, sender_of, staging.view(np.uint32))
    view = memoryview(staging)
    for sender, size, start, count in runs.tolist():
        sock.send_run(view[start : start + size * count], size, senders[sender])


@numba.njit(cache=True, nogil=True)
def _gather_runs(
    out: np.ndarray, lengths: np.ndarray, sender_of: np.ndarray, staging: np.ndarray
) -> np.ndarray:
    """Copy the answers (uint32 words) into ``staging`` by (sender, size), stable; -> rows
    (sender, size in bytes, start byte, count), one per run."""
    n = lengths.shape[0]
    for size in lengths:
        if size % 4 or not 0 <= size <= 4 * out.shape[1]:
            raise ValueError("send_grouped: answers must be whole 32-bit words within a row")
    order = np.arange(n)
    if n:
        order = _stable_order(lengths, 4 * out.shape[1] + 1, order)
        order = _stable_order(sender_of, sender_of.max() + 1, order)
    runs = np.empty((n, 4), np.int64)
    n_runs = 0
    cursor = 0  # in words
    for i in order:
        size = lengths[i]
        if size == 0:
            continue
        if n_runs == 0 or runs[n_runs - 1, 0] != sender_of[i] or runs[n_runs - 1, 1] != size:
            runs[n_runs, 0] = sender_of[i]
            runs[n_runs, 1] = size
            runs[n_runs, 2] = 4 * cursor
            runs[n_runs, 3] = 0
            n_runs += 1
        for j in range(size // 4):
            staging[cursor + j] = out[i, j]
        runs[n_runs - 1, 3] += 1
        cursor += size // 4
    return runs[:n_runs]


@numba.njit(cache=True, nogil=True)
def _stable_order(keys: np.ndarray, key_range: int, order: np.ndarray) -> np.ndarray:
    """``order`` stably sorted by ``keys[order]`` (in 0..key_range-1): one counting-sort pass
    of a radix sort."""
    starts = np.zeros(key_range + 1, np.int64)
    for i in order:
        starts[keys[i] + 1] += 1
    for k in range(key_range):
        starts[k + 1] += starts[k]
    sorted_order = np.empty(order.shape[0], np.int64)
    for i in order:
        sorted_order[starts[keys[i]]] = i
        starts[keys[i]] += 1
    return sorted_order
