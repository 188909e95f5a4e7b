"""One writer per run folder: a live holder refuses a second run; a killed one's lock is stale."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cutpoint import runlock

ROOT = Path(__file__).resolve().parent.parent
HOLD = """
import sys, time
sys.path.insert(0, {root!r})
from cutpoint.runlock import run_lock
with run_lock({run!r}, "extract"):
    print("held", flush=True)
    time.sleep(60)
"""


def _holder(run):
    proc = subprocess.Popen([sys.executable, "-c", HOLD.format(root=str(ROOT), run=str(run))],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_second_writer_refused_while_first_alive_then_stale_lock_ignored(tmp_path):
    run = tmp_path / "run"
    proc = _holder(run)
    try:
        with pytest.raises(runlock.RunLockedError) as e:
            with runlock.run_lock(run, "classical"):
                pass
        msg = str(e.value)
        assert f"pid {proc.pid}" in msg and "extract" in msg and "started" in msg
        # The CLIs refuse too, with one line on stderr and exit code 2.
        cli = subprocess.run([sys.executable, "-m", "cutpoint.runlock", str(run), "--stage", "x",
                              "--", sys.executable, "-c", "print('ran')"], cwd=ROOT,
                             capture_output=True, text=True)
        assert cli.returncode == 2 and "ran" not in cli.stdout and f"pid {proc.pid}" in cli.stderr
    finally:
        proc.kill()
        proc.wait()
    assert (run / runlock.LOCK_NAME).exists()        # killed: its lock stays behind …
    with runlock.run_lock(run, "classical"):          # … and is stale, so it does not block
        assert runlock.read_lock(run)["pid"] == os.getpid()
        with runlock.run_lock(run, "nested"):         # re-entrant in one process
            pass
        assert (run / runlock.LOCK_NAME).exists()
    assert not (run / runlock.LOCK_NAME).exists()


def test_classical_cli_refuses_a_locked_run_folder(tmp_path):
    from cutpoint import config
    run = tmp_path / "run"
    (tmp_path / "c.toml").write_text(config.to_toml(config.load()))
    proc = _holder(run)
    try:
        out = subprocess.run([sys.executable, "-m", "classical", "run", "--config",
                              str(tmp_path / "c.toml"), "--run-dir", str(run)], cwd=ROOT,
                             capture_output=True, text=True)
    finally:
        proc.kill()
        proc.wait()
    assert out.returncode == 2, out.stderr
    assert f"pid {proc.pid}" in out.stderr and "being written by another run" in out.stderr
