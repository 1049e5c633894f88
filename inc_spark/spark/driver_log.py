"""Where the driver's inc-spark messages go: Python ``logging`` (logger ``inc_spark``), handed to
the driver JVM's log4j (logger ``inc_spark``: standard error, beside Spark's own lines, with
Spark's log configuration deciding what shows) while the program has not configured logging.

Never standard output: ``spark-submit`` merges the Python driver's standard error into its
standard output, so anything Python itself writes to either changes the program's output.
``spark.inc.logLevel`` sets the ``inc_spark`` logger's level; unset, logging's own configuration
does (WARNING by default: the start-up line and every fallback reason).
"""

from __future__ import annotations

import logging
import sys

LOGGER = "inc_spark"

#: spark.inc.logLevel values (log4j's names) -> logging levels
LEVELS = {
    "ALL": logging.NOTSET,
    "TRACE": logging.DEBUG,
    "DEBUG": logging.DEBUG,
    "INFO": logging.INFO,
    "WARN": logging.WARNING,
    "ERROR": logging.ERROR,
    "FATAL": logging.CRITICAL,
    "OFF": logging.CRITICAL + 10,
}


class Log4jHandler(logging.Handler):
    """Hands records to the driver JVM's log4j; without a JVM (or once the program has
    configured logging, whose handlers then get the records), writes nothing itself, except
    to standard error where no JVM was ever started."""

    def emit(self, record: logging.LogRecord) -> None:
        if logging.getLogger().handlers:
            return  # the program configured logging: its handlers have the record
        try:
            from pyspark import SparkContext

            message = self.format(record)
            jvm = SparkContext._jvm
            if jvm is None:
                sys.stderr.write(message + "\n")
                return
            log4j = jvm.org.apache.logging.log4j.LogManager.getLogger(LOGGER)
            if record.levelno >= logging.ERROR:
                log4j.error(message)
            elif record.levelno >= logging.WARNING:
                log4j.warn(message)
            elif record.levelno >= logging.INFO:
                log4j.info(message)
            else:
                log4j.debug(message)
        except Exception:  # a failing log line must not fail the job
            self.handleError(record)


def configure(level: str | None) -> None:
    """Route the ``inc_spark`` logger to log4j (once) and set its level from
    ``spark.inc.logLevel`` (None: leave it to logging's configuration)."""
    logger = logging.getLogger(LOGGER)
    if not any(isinstance(h, Log4jHandler) for h in logger.handlers):
        logger.addHandler(Log4jHandler())
    if level is None:
        return
    if level.strip().upper() not in LEVELS:
        raise ValueError(
            f"bad value for spark.inc.logLevel: {level!r}; use one of {', '.join(LEVELS)}"
        )
    logger.setLevel(LEVELS[level.strip().upper()])
