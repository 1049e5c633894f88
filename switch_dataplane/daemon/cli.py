"""``inc-switch``: run the switch daemon, or ask a running one for its statistics.

inc-switch serve --host 127.0.0.1 --port 0 --drop 0.05 --seed 1
inc-switch serve --memory-policy edf
inc-switch stats --switch 127.0.0.1:9900

``serve`` writes a fresh operator secret to ``--operator-secret-file`` (readable by its owner
only); ``stats`` reads it from there: only the operator sees the counters of every job.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import secrets
import signal
import sys
from pathlib import Path

from switch_dataplane import wire
from switch_dataplane.control.control_client import (
    ControlClient,
    ControlRequestFailed,
    SwitchUnreachable,
    fetch_stats,
    parse_address,
)
from switch_dataplane.control.control_plane import DEFAULT_DEADLINE_RESERVE, DEFAULT_MEMORY_POLICY
from switch_dataplane.control.memory_manager import POLICIES
from switch_dataplane.daemon import SwitchDaemon
from switch_dataplane.daemon.fault_injector import FaultInjector
from switch_dataplane.daemon.switch import (
    DEFAULT_COLUMNS,
    DEFAULT_MAX_FLOWS,
    DEFAULT_MAX_JOBS,
    DEFAULT_ROWS,
    DEFAULT_WINDOW,
    Switch,
)

FAULT_FLAGS = {
    "--drop": "probability a datagram is dropped",
    "--duplicate": "probability a datagram goes on twice",
    "--reorder": "probability a datagram is held back (see --reorder-by)",
    "--reorder-by": "how long a reordered datagram is held: N packets [3] or Nms",
    "--corrupt": "probability a datagram has bytes flipped",
    "--corrupt-bytes": "bytes flipped in a corrupted datagram [1]",
    "--blackhole": "seconds during which every datagram is dropped",
    "--blackhole-after": "datagrams let through before the blackhole starts [0]",
}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="inc-switch", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the switch until SIGINT/SIGTERM")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (0.0.0.0: all)")
    serve.add_argument("--port", type=int, default=wire.DEFAULT_PORT, help="0 picks a free port")
    serve.add_argument("--rows", type=int, default=DEFAULT_ROWS, help="slots per packet (S)")
    serve.add_argument("--cols", type=int, default=DEFAULT_COLUMNS, help="columns per copy")
    serve.add_argument("--window", type=int, default=DEFAULT_WINDOW, help="seen-state window")
    serve.add_argument("--max-flows", type=int, default=DEFAULT_MAX_FLOWS)
    serve.add_argument("--max-jobs", type=int, default=DEFAULT_MAX_JOBS)
    serve.add_argument(
        "--memory-policy",
        choices=POLICIES,
        default=DEFAULT_MEMORY_POLICY,
        help="how jobs share the aggregator array (docs/config.md)",
    )
    serve.add_argument(
        "--deadline-reserve",
        type=float,
        default=DEFAULT_DEADLINE_RESERVE,
        metavar="SHARE",
        help="edf: share of the array (0..0.5) best-effort jobs leave free for deadline jobs",
    )
    faults = serve.add_argument_group(
        "faults (testing)",
        "each takes V for both directions or requests=V,responses=W (see docs/config.md)",
    )
    for flag, meaning in FAULT_FLAGS.items():
        faults.add_argument(flag, metavar="V", help=meaning)
    serve.add_argument("--seed", type=int, default=None, help="seed for faults (never tokens)")
    serve.add_argument(
        "--operator-secret-file",
        type=Path,
        default=None,
        help="where to write the secret `inc-switch stats` needs, mode 0600 (default: "
        "~/.inc-switch/operator-secret-PORT)",
    )
    stats = sub.add_parser("stats", help="print a running switch's counters as JSON")
    stats.add_argument("--switch", default=f"127.0.0.1:{wire.DEFAULT_PORT}", help="HOST:PORT")
    stats.add_argument("--timeout", type=float, default=5.0, help="seconds to wait")
    stats.add_argument(
        "--operator-secret-file",
        type=Path,
        default=None,
        help="the file `inc-switch serve` wrote its operator secret to (default: "
        "~/.inc-switch/operator-secret-PORT)",
    )
    return parser


def default_secret_file(port: int) -> Path:
    """Where a switch serving on ``port`` keeps its operator secret by default."""
    return Path.home() / ".inc-switch" / f"operator-secret-{port}"


def write_operator_secret(path: Path) -> str:
    """A fresh secret in ``path``, created readable and writable by its owner only."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    secret = secrets.token_hex(16)
    path.unlink(missing_ok=True)  # a file another user made must not keep its permissions
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as file:
        file.write(secret + "\n")
    return secret


def serve(args: argparse.Namespace) -> int:
    try:
        switch = Switch(
            rows=args.rows,
            columns=args.cols,
            window=args.window,
            max_flows=args.max_flows,
            max_jobs=args.max_jobs,
            memory_policy=args.memory_policy,
            deadline_reserve=args.deadline_reserve,
        )
        names = [flag[2:].replace("-", "_") for flag in FAULT_FLAGS]
        faults = FaultInjector.from_flags({n: getattr(args, n) for n in names}, args.seed)
        daemon = SwitchDaemon(switch, args.host, args.port, faults)
        secret_file = args.operator_secret_file or default_secret_file(daemon.address[1])
        switch.control_plane.operator_secret = write_operator_secret(secret_file)
    except (ValueError, OSError) as exc:
        print(f"inc-switch: cannot start: {exc}", file=sys.stderr)
        return 2

    def stop(_signum: int, _frame: object) -> None:
        daemon.request_stop()

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    daemon.wait_until_compiled()
    host, port = daemon.address
    print(f"inc-switch listening on {host}:{port}", flush=True)
    try:
        daemon.serve_forever()
    finally:
        daemon.stop()
        logging.getLogger("inc_switch").info(daemon.summary())
        print(daemon.summary(), file=sys.stderr, flush=True)
    return 0


def stats(args: argparse.Namespace) -> int:
    try:
        address = parse_address(args.switch)
        secret_file = args.operator_secret_file or default_secret_file(address[1])
        secret = secret_file.read_text().strip()
        client = ControlClient(address, deadline_s=args.timeout)
        answer = fetch_stats(client, secret)
    except (ValueError, SwitchUnreachable, ControlRequestFailed, OSError) as exc:
        print(f"inc-switch stats: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(answer, indent=2, sort_keys=True))
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    return serve(args) if args.command == "serve" else stats(args)


if __name__ == "__main__":
    sys.exit(main())
