"""Child processes never outlive medtune: SIGKILL or SIGTERM of the parent stops the child (and its group)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest
from tests.procs import children, gone_within

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="parent-death signal is Linux only")

PARENT = """
import sys, time
from medtune.children import {call}
child = [sys.executable, "-c", "import time; time.sleep(120)"]
{body}
"""


def _parent(call: str, body: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", PARENT.format(call=call, body=body)])


@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGTERM])
def test_a_started_child_dies_with_its_parent(how: signal.Signals) -> None:
    parent = _parent("start_child", "start_child(child)\ntime.sleep(120)")
    try:
        (child,) = children(parent.pid, wait=20)
        assert os.getpgid(child) == child != os.getpgid(parent.pid)   # its own process group
        parent.send_signal(how)
        parent.wait(timeout=10)
        assert gone_within(child, 10), f"the child outlived its parent ({how.name})"
    finally:
        parent.kill()


def test_run_child_stops_the_child_on_sigterm_and_returns() -> None:
    parent = _parent("run_child", "print('code', run_child(child), flush=True)")
    try:
        (child,) = children(parent.pid, wait=20)
        parent.send_signal(signal.SIGTERM)
        assert parent.wait(timeout=20) == 0
        assert gone_within(child, 5)
    finally:
        parent.kill()


def test_stop_child_stops_the_whole_group() -> None:
    from medtune.children import start_child, stop_child

    shell = start_child(["bash", "-c", f"{sys.executable} -c 'import time; time.sleep(120)' & wait"])
    (grandchild,) = children(shell.pid, wait=20)
    stop_child(shell, grace=5)
    assert shell.poll() is not None and gone_within(grandchild, 5)
