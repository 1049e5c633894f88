"""Run ``inc-switch serve`` in a child process, for tests and benchmarks.

>>> with SwitchProcess("--rows", "4") as switch:
...     switch.address.startswith("127.0.0.1:")
True
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from typing import Any

CLI_MODULE = "switch_dataplane.daemon.cli"  # what ``inc-switch`` runs


class SwitchProcess:
    """``inc-switch serve --port 0 ARGS`` started at once; ``address`` is its 'host:port'.

    ``prefix`` runs it under another command (e.g. ``ip netns exec NS``); its stderr goes to
    the file ``log`` (default: a temporary file), quoted in the error if it does not start. Use
    as a context manager, or call ``stop()``: it is terminated, then killed if it lingers.
    """

    def __init__(
        self,
        *args: str,
        prefix: Sequence[str] = (),
        log: str | os.PathLike | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self._log = open(log, "w+") if log else tempfile.TemporaryFile(mode="w+")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [*prefix, sys.executable, "-m", CLI_MODULE, "serve", "--port", "0", *args],
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
            env=env,
        )
        line = self.proc.stdout.readline()
        if "listening on" not in line:
            self.stop()
            raise RuntimeError(f"inc-switch did not start: {line!r} {self.log_tail}")
        self.address = line.rsplit(" ", 1)[1].strip()

    @property
    def operator_secret(self) -> str:
        """The secret ``stats`` needs, from the file ``inc-switch serve`` wrote by default."""
        from switch_dataplane.daemon.cli import default_secret_file

        return default_secret_file(int(self.address.rsplit(":", 1)[1])).read_text().strip()

    def stop(self) -> None:
        if self._log.closed:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self._log.seek(0)
        self.log_tail = self._log.read()[-4000:]
        self._log.close()

    def __enter__(self) -> SwitchProcess:
        return self

    def __exit__(self, *_exc: Any) -> None:
        self.stop()
