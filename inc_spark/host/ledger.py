"""The traffic ledger of one call: what crossed the network each way and what reached the
hosts."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from switch_dataplane.control.control_plane import traffic_ledger


@dataclass
class Metrics:
    """The traffic ledger of one call: what crossed the network each way and what reached the
    hosts, from the switch's per-epoch counters (not accumulators, which count retried tasks
    twice), plus what only the hosts know (None where not known).

    ``host_bound`` (residual + flushed + evicted + drained) is what the switch hands back for
    the final merge; its limit is one tuple per distinct key of the result. A call without a
    switch (the baseline) sends nothing: all its combined tuples are ``host_path``.
    """

    tuples_sent: int  # host -> switch, fresh tuples (a retransmission is not counted again)
    absorbed: int
    residual: int  # tuples the switch returned: their aggregator held another key
    flushed: int  # stored values returned because a sum would overflow int32
    evicted: int  # resident entries returned to make room for a tuple's key
    drained_entries: int  # aggregators read back at the end (and from swapped-out copies)
    duplicates: int  # retransmitted or duplicated packets the switch answered from seen state
    packets: int  # data packets the switch processed
    bytes_to_switch: int  # data packets and drain requests
    bytes_to_hosts: int  # data answers and drain answers
    ack_bytes: int  # the headers of those answers: acknowledgement overhead
    swaps: int
    epochs: int
    seconds: float
    switch_cpu_s: float | None = None  # the switch thread's CPU time during the call
    tuples_in: int | None = None  # pairs the senders read
    host_path: int | None = None  # entries that never travelled (keys or values the switch
    # cannot hold; with no switch, every combined tuple)
    distinct_keys: int | None = None  # of the result
    retransmissions: int | None = None

    @classmethod
    def from_switch(
        cls, status: dict[str, Any], cpu_before: float | None = None, **fields: Any
    ) -> Metrics:
        """The ledger of an epoch from ``job_status`` (bytes as the switch counted them, re-read
        drain answers included); ``drained_entries`` (what the hosts took, each entry once) and
        the other host-side fields are given."""
        c = status["counters"]
        ledger = traffic_ledger(c)
        return cls(
            tuples_sent=c["tuples"],
            absorbed=c["absorbed"],
            residual=c["residual"],
            flushed=c["flushed"],
            evicted=c["evicted"],
            duplicates=c["duplicates"],
            packets=c["packets"] - c["drain_requests"],
            bytes_to_switch=ledger["bytes_to_switch"],
            bytes_to_hosts=ledger["bytes_to_hosts"],
            ack_bytes=ledger["ack_bytes"],
            swaps=status["swaps"],
            switch_cpu_s=None if cpu_before is None else status["switch_cpu_s"] - cpu_before,
            **fields,
        )

    @classmethod
    def without_switch(cls, seconds: float, **fields: Any) -> Metrics:
        """The ledger of a call that ran with no switch: nothing crossed to a switch."""
        zero = dict.fromkeys(
            ("tuples_sent", "absorbed", "residual", "flushed", "evicted", "drained_entries",
             "duplicates", "packets", "bytes_to_switch", "bytes_to_hosts", "ack_bytes",
             "swaps"),
            0,
        )  # fmt: skip
        return cls(**zero, epochs=1, seconds=seconds, **fields)

    @property
    def host_bound(self) -> int:
        return self.residual + self.flushed + self.evicted + self.drained_entries

    @property
    def absorbed_share(self) -> float:
        return self.absorbed / self.tuples_sent if self.tuples_sent else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "host_bound": self.host_bound,
            "absorbed_share": self.absorbed_share,
        }

    def summary(self) -> str:
        """One line for logs and job output."""
        per_key = (
            f" ({self.host_bound / self.distinct_keys:.2f} per distinct key)"
            if self.distinct_keys
            else ""
        )
        return (
            f"{self.tuples_sent:,} tuples to the switch ({self.bytes_to_switch / 1e6:.1f} MB), "
            f"{self.absorbed_share:.1%} absorbed; back to hosts {self.host_bound:,}{per_key}: "
            f"{self.residual:,} residual, {self.flushed:,} flushed, {self.evicted:,} evicted, "
            f"{self.drained_entries:,} drained ({self.bytes_to_hosts / 1e6:.1f} MB); "
            f"{self.swaps} swaps, {self.epochs} epoch(s)"
        )
