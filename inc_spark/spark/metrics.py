"""Spark's own figures of an application, for the vanilla side of the traffic ledger.

Read from the UI's REST API (``/api/v1/applications/<id>/stages``): shuffle records and bytes
written by the map side and read by the reduce side, input bytes, and per-stage wall and
executor times. Jobs and benchmarks put these beside ``inc_spark.last_metrics()``.
"""

from __future__ import annotations

import json
import logging
import time
import urllib.request
from datetime import datetime
from typing import Any

log = logging.getLogger("inc_spark")

ATTEMPTS = 5  # tries of the REST call (its first answer can take seconds on a busy machine)
TIMEOUT_S = 20.0

#: summed over the application's stages: REST field -> name in the result
_TOTALS = {
    "shuffleWriteRecords": "shuffle_write_records",
    "shuffleWriteBytes": "shuffle_write_bytes",
    "shuffleReadRecords": "shuffle_read_records",
    "shuffleReadBytes": "shuffle_read_bytes",
    "inputBytes": "input_bytes",
}


def stage_metrics(sc: Any) -> dict[str, Any] | None:
    """Shuffle and input totals over the stages of this application, and each stage's figures.

    None (with the reason logged) if the UI is disabled or does not answer. Waits until no stage
    is ACTIVE or PENDING, as the UI store is filled asynchronously by the listener bus.
    """
    url = sc.uiWebUrl
    if not url:
        log.info("inc-spark: no Spark figures: the UI is disabled")
        return None
    stages: list[dict[str, Any]] = []
    for attempt in range(ATTEMPTS):
        try:
            with urllib.request.urlopen(
                f"{url}/api/v1/applications/{sc.applicationId}/stages", timeout=TIMEOUT_S
            ) as response:
                stages = json.load(response)
        except (OSError, ValueError) as exc:
            if attempt == ATTEMPTS - 1:
                log.warning("inc-spark: no Spark figures from %s: %r", url, exc)
                return None
            time.sleep(0.5)
            continue
        if all(s.get("status") not in ("ACTIVE", "PENDING") for s in stages):
            break
        time.sleep(0.1)
    totals = {name: sum(int(s.get(field, 0)) for s in stages) for field, name in _TOTALS.items()}
    return {
        "stages": len(stages),
        **totals,
        "stage_list": [
            {
                "id": s.get("stageId"),
                "name": s.get("name"),
                "status": s.get("status"),
                "tasks": s.get("numTasks"),
                "wall_s": _stage_seconds(s),
                "executor_run_s": s.get("executorRunTime", 0) / 1e3,
                "executor_cpu_s": s.get("executorCpuTime", 0) / 1e9,
                "shuffle_write_records": s.get("shuffleWriteRecords", 0),
                "shuffle_write_bytes": s.get("shuffleWriteBytes", 0),
            }
            for s in sorted(stages, key=lambda s: (s.get("stageId", 0), s.get("attemptId", 0)))
        ],
    }


def _stage_seconds(stage: dict[str, Any]) -> float | None:
    try:
        start, end = (
            datetime.strptime(stage[k], "%Y-%m-%dT%H:%M:%S.%f%Z")
            for k in ("submissionTime", "completionTime")
        )
    except (KeyError, ValueError):
        return None
    return round((end - start).total_seconds(), 3)
