"""Process helpers for the tests that check no child outlives medtune (read from /proc, Linux)."""

from __future__ import annotations

import time
from pathlib import Path


def running(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def gone_within(pid: int, seconds: float) -> bool:
    """Wait up to ``seconds`` for ``pid`` to stop running."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not running(pid):
            return True
        time.sleep(0.1)
    return not running(pid)


def children(pid: int, wait: float = 0.0) -> list[int]:
    """The processes whose parent is ``pid`` (polled up to ``wait`` seconds until there is one)."""
    deadline = time.monotonic() + wait
    while True:
        found = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                parent = int(stat.read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            if parent == pid:
                found.append(int(stat.parent.name))
        if found or time.monotonic() >= deadline:
            return found
        time.sleep(0.1)
