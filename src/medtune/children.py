"""Child processes that never outlive medtune: the serving engine (``medtune serve``) and Streamlit (``medtune ui``).

A child runs in its own process group and gets SIGTERM when its parent dies, even by SIGKILL (Linux
``PR_SET_PDEATHSIG``); stopping it stops its whole group (SIGTERM, then SIGKILL after a grace period).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any


def _die_with_parent(parent: int) -> Callable[[], None]:
    """A pre-exec hook: on Linux the child gets SIGTERM when its parent dies (``PR_SET_PDEATHSIG``)."""
    def hook() -> None:
        if sys.platform.startswith("linux"):
            import ctypes

            ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGTERM))  # 1 = PR_SET_PDEATHSIG
            if os.getppid() != parent:   # the parent died before the hook ran
                os._exit(1)
    return hook


def start_child(command: list[str], env: dict[str, str] | None = None, log_path: Path | None = None) -> Any:
    """Start ``command`` in its own process group, dying with this process; its output appended to ``log_path``
    (inherited when None)."""
    if log_path is None:
        return subprocess.Popen(command, env=env, start_new_session=True, preexec_fn=_die_with_parent(os.getpid()))
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log_file:
        return subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env=env, start_new_session=True, preexec_fn=_die_with_parent(os.getpid()))


def stop_child(process: Any, grace: float = 10.0) -> None:
    """Stop ``process`` and everything in its process group: SIGTERM, then SIGKILL after ``grace`` seconds."""
    if process is None or process.poll() is not None:
        return
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def run_child(command: list[str], env: dict[str, str] | None = None) -> int:
    """Run ``command`` in the foreground until it exits; SIGTERM or Ctrl-C here stops it (and its group).

    Returns:
        The child's exit code (0 when stopped by a signal here).
    """
    def stop_on_signal(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, stop_on_signal)
    process = start_child(command, env)
    try:
        return int(process.wait())
    except KeyboardInterrupt:
        return 0
    finally:
        stop_child(process)
        signal.signal(signal.SIGTERM, previous)
