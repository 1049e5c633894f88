"""The switch a driver starts for itself when ``spark.inc.switch.address`` is unset.

It serves on the driver's address (``spark.driver.host``) so executors on other machines reach
it, runs in a thread of the driver process (the compiled kernel releases the GIL), and stops
with the SparkContext.
"""

from __future__ import annotations

import logging
import socket
import threading
from typing import Any

from inc_spark.spark.config import IncConf
from inc_spark.spark.context_stop import on_stop
from switch_dataplane.daemon import SwitchDaemon
from switch_dataplane.daemon.switch import Switch

log = logging.getLogger("inc_spark")

_lock = threading.Lock()
_running: dict[int, SwitchDaemon] = {}  # id(SparkContext) -> daemon


def _driver_bind_address(sc: Any) -> str:
    if (sc.master or "").startswith("local"):
        return "127.0.0.1"  # driver and executors share this machine
    host = sc.getConf().get("spark.driver.host", None) or socket.gethostname()
    try:
        return socket.gethostbyname(host)
    except OSError:
        return "0.0.0.0"


def embedded_switch(sc: Any, conf: IncConf) -> tuple[str, int]:
    """The address of this SparkContext's embedded switch, starting it on first use."""
    with _lock:
        daemon = _running.get(id(sc))
        if daemon is None:
            switch = Switch(
                rows=conf["switch.rows"],
                columns=conf["switch.columns"],
                memory_policy=conf["switch.memoryPolicy"],
                deadline_reserve=conf["switch.deadlineReserve"],
            )
            daemon = SwitchDaemon(switch, host=_driver_bind_address(sc), port=0).start()
            _running[id(sc)] = daemon
            on_stop(sc, lambda: stop_embedded_switch(sc))
        return daemon.address


def stop_embedded_switch(sc: Any) -> None:
    with _lock:
        daemon = _running.pop(id(sc), None)
    if daemon is not None:
        log.info("inc-spark: %s", daemon.summary())
        daemon.stop()
