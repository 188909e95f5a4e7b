"""One writer per run folder: a lock file naming the process that holds it.

Every stage that writes a run folder (extract, classical run, finetune, report umap/build) takes
`run_lock(run_dir, "stage")` for its whole run. The lock is ``<run_dir>/.lock``, created
atomically (``O_CREAT | O_EXCL``) and holding JSON: pid, host, command line, stage and start
time. A second writer is refused with a `RunLockedError` that names the active process. A lock
left by a killed run is stale — its pid is no longer alive on this host (or it is alive but is a
different, newer process: its start time differs) — and is taken over with a warning. A lock
from another host cannot be checked and is honoured; the message says how to remove it.
Nested takes by the same process are allowed (re-entrant), so a stage calling another stage's
library function does not lock itself out.
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import sys
from datetime import datetime, timezone
from pathlib import Path

log = logging.getLogger("cutpoint.runlock")
LOCK_NAME = ".lock"
_held: dict[str, int] = {}   # resolved run dir → nesting depth, in this process


class RunLockedError(ValueError):
    """Another live process is writing the run folder. A ValueError, so that every stage's CLI
    prints it as one line and exits with code 2, as for any other refused input."""


def _proc_start(pid: int):
    """The process' start time in clock ticks since boot (Linux), else None."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:   # exists, owned by someone else
        return True
    return True


def read_lock(run_dir) -> dict | None:
    path = Path(run_dir) / LOCK_NAME
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {"pid": -1, "unreadable": True}


def is_stale(info: dict) -> bool:
    """True when the lock's process is gone (so the lock can be taken over)."""
    if info.get("unreadable"):
        return True
    if info.get("host") not in (None, socket.gethostname()):
        return False
    pid = int(info.get("pid", -1))
    if not _alive(pid):
        return True
    started = info.get("proc_start")
    now = _proc_start(pid)
    return started is not None and now is not None and started != now  # pid reused


def describe(info: dict) -> str:
    return (f"pid {info.get('pid')} on {info.get('host', '?')}, `{info.get('command', '?')}`"
            f" ({info.get('stage', '?')}), started {info.get('started', '?')}")


def acquire(run_dir, stage: str) -> Path:
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    key = str(run_dir.resolve())
    path = run_dir / LOCK_NAME
    if _held.get(key):
        _held[key] += 1
        return path
    me = {"pid": os.getpid(), "host": socket.gethostname(), "stage": stage,
          "command": " ".join([os.path.basename(sys.executable)] + sys.argv),
          "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
          "proc_start": _proc_start(os.getpid())}
    for _ in range(3):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            info = read_lock(run_dir)
            if info is None:
                continue                      # released meanwhile: try again
            if not is_stale(info):
                raise RunLockedError(
                    f"{run_dir} is being written by another run: {describe(info)}. Wait for it "
                    f"to finish (or stop it: kill {info.get('pid')}), then re-run. If that "
                    f"process is really gone, delete {path}.")
            log.warning("Removing a stale lock of a run that is no longer alive (%s).",
                        describe(info))
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
            continue
        with os.fdopen(fd, "w") as f:
            json.dump(me, f)
        _held[key] = 1
        return path
    raise RunLockedError(f"Could not take the lock {path}: other runs keep taking it.")


def release(run_dir) -> None:
    run_dir = Path(run_dir)
    key = str(run_dir.resolve())
    if not _held.get(key):
        return
    _held[key] -= 1
    if _held[key]:
        return
    del _held[key]
    info = read_lock(run_dir)
    if info and info.get("pid") == os.getpid():
        with contextlib.suppress(FileNotFoundError):
            (run_dir / LOCK_NAME).unlink()


@contextlib.contextmanager
def run_lock(run_dir, stage: str):
    """Hold the run folder's lock for the duration of the block (see the module docstring)."""
    acquire(run_dir, stage)
    try:
        yield
    finally:
        release(run_dir)


def main(argv=None) -> int:
    """`python -m cutpoint.runlock RUN_DIR` prints who holds the lock (exit 1 if held);
    `python -m cutpoint.runlock RUN_DIR --stage S -- CMD …` runs CMD holding it (for a stage
    whose CLI does not take the lock itself)."""
    import subprocess
    argv = sys.argv[1:] if argv is None else list(argv)
    cmd = argv[argv.index("--") + 1:] if "--" in argv else []
    argv = argv[:argv.index("--")] if "--" in argv else argv
    stage = "command"
    if "--stage" in argv:
        i = argv.index("--stage")
        stage, argv = argv[i + 1], argv[:i] + argv[i + 2:]
    if len(argv) != 1:
        print("usage: python -m cutpoint.runlock RUN_DIR [--stage S -- CMD …]", file=sys.stderr)
        return 2
    if cmd:
        try:
            with run_lock(argv[0], stage):
                return subprocess.call(cmd)
        except RunLockedError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
    info = read_lock(argv[0])
    if info is None or is_stale(info):
        print(f"{argv[0]}: not locked" + (" (stale lock)" if info else ""))
        return 0
    print(f"{argv[0]}: locked by {describe(info)}")
    return 1


if __name__ == "__main__":
    sys.exit(main())
