"""Child processes never outlive medtune: SIGKILL or SIGTERM of the parent stops the child (and its group)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="parent-death signal is Linux only")

PARENT = """
import sys, time
from medtune.children import {call}
child = [sys.executable, "-c", "import time; time.sleep(120)"]
{body}
"""


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _gone_within(pid: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not _alive(pid):
            return True
        time.sleep(0.1)
    return False


def _children(pid: int, wait: float = 20) -> list[int]:
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        found = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(stat.parent.name))
        if found:
            return found
        time.sleep(0.1)
    return []


def _parent(call: str, body: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", PARENT.format(call=call, body=body)])


@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGTERM])
def test_a_started_child_dies_with_its_parent(how: signal.Signals) -> None:
    parent = _parent("start_child", "start_child(child)\ntime.sleep(120)")
    try:
        (child,) = _children(parent.pid)
        assert os.getpgid(child) == child != os.getpgid(parent.pid)   # its own process group
        parent.send_signal(how)
        parent.wait(timeout=10)
        assert _gone_within(child, 10), f"the child outlived its parent ({how.name})"
    finally:
        parent.kill()


def test_run_child_stops_the_child_on_sigterm_and_returns() -> None:
    parent = _parent("run_child", "print('code', run_child(child), flush=True)")
    try:
        (child,) = _children(parent.pid)
        parent.send_signal(signal.SIGTERM)
        assert parent.wait(timeout=20) == 0
        assert _gone_within(child, 5)
    finally:
        parent.kill()


def test_stop_child_stops_the_whole_group() -> None:
    from medtune.children import start_child, stop_child

    shell = start_child(["bash", "-c", f"{sys.executable} -c 'import time; time.sleep(120)' & wait"])
    (grandchild,) = _children(shell.pid)
    stop_child(shell, grace=5)
    assert shell.poll() is not None and _gone_within(grandchild, 5)
