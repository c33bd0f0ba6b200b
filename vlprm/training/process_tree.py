"""Keep a launcher's whole process tree together, so stopping the launcher stops its ranks.

torch's elastic agent (under `accelerate launch`) starts every training rank in a session of
its own: a Ctrl-C or a scheduler's signal to the job's process group never reaches them, and a
killed agent leaves them running as orphans. `run_supervised` (the launcher's side) becomes a
child subreaper, so every descendant stays its descendant whatever session it is in, forwards
SIGINT/SIGTERM/SIGHUP to all of them, SIGKILLs what is left after a grace period and waits.
`die_with_parent` (each rank's side) makes the kernel SIGTERM a rank whose parent dies, even
by SIGKILL. Linux only; elsewhere both are no-ops.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import subprocess
import time
from typing import Mapping, Sequence

logger = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1
_PR_SET_CHILD_SUBREAPER = 36
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def _prctl(option: int, value: int) -> bool:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(option, value, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def die_with_parent(sig: int = signal.SIGTERM) -> bool:
    """Have the kernel send `sig` to this process when its parent exits (True if set)."""
    return _prctl(_PR_SET_PDEATHSIG, int(sig))


def _parent_map() -> dict[int, int]:
    """pid -> parent pid of every process (from /proc/PID/stat; the name may hold spaces)."""
    parents = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:  # gone meanwhile
            continue
        parents[int(entry)] = int(fields[1])
    return parents


def descendants(pid: int | None = None) -> list[int]:
    """Every living descendant of `pid` (default: this process), parents before children."""
    root = os.getpid() if pid is None else pid
    children: dict[int, list[int]] = {}
    for child, parent in _parent_map().items():
        children.setdefault(parent, []).append(child)
    out, todo = [], list(children.get(root, []))
    while todo:
        p = todo.pop(0)
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def signal_descendants(sig: int) -> int:
    """Send `sig` to every descendant of this process; the number signalled."""
    n = 0
    for pid in descendants():
        try:
            os.kill(pid, sig)
            n += 1
        except ProcessLookupError:
            pass
    return n


def _reap_orphans(keep: int) -> None:
    """Collect exited descendants that were re-parented to us (not `keep`: Popen waits on it)."""
    for pid in descendants():
        if pid == keep:
            continue
        try:
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:  # not our direct child
            pass


def stop_descendants(grace_s: float, keep: int = -1) -> None:
    """SIGTERM every descendant, SIGKILL those still there after `grace_s`, reap them."""
    if not signal_descendants(signal.SIGTERM):
        return
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        _reap_orphans(keep)
        if not [p for p in descendants() if p != keep]:
            return
        time.sleep(0.2)
    left = signal_descendants(signal.SIGKILL)
    logger.warning("%d process(es) still running %.0f s after SIGTERM: killed", left, grace_s)
    time.sleep(0.2)
    _reap_orphans(keep)


def run_supervised(cmd: Sequence[str], env: Mapping[str, str] | None = None, *, grace_s: float = 10.0,
                   name: str = "training") -> int:
    """Run `cmd` and wait. SIGINT/SIGTERM/SIGHUP to this process are forwarded to every process
    it started (grandchildren included); whatever is left `grace_s` later is killed. Returns the
    command's exit status, or 128 + the signal number when stopped by a signal."""
    _prctl(_PR_SET_CHILD_SUBREAPER, 1)
    got: list[int] = []

    def forward(signum, frame):  # noqa: ARG001 - signal handler signature
        if not got:
            logger.warning("%s: stopping all %s processes", signal.Signals(signum).name, name)
        got.append(signum)
        signal_descendants(signal.SIGTERM if len(got) == 1 else signal.SIGKILL)

    previous = {s: signal.signal(s, forward) for s in STOP_SIGNALS}
    try:
        # Its own session: a terminal's Ctrl-C reaches the launcher alone, which forwards it once.
        proc = subprocess.Popen(list(cmd), env=dict(env) if env is not None else None, start_new_session=True,
                                preexec_fn=lambda: _prctl(_PR_SET_PDEATHSIG, signal.SIGTERM))
        stopped_at = None
        while True:
            try:
                rc = proc.wait(timeout=0.5)
                break
            except subprocess.TimeoutExpired:
                if got and stopped_at is None:
                    stopped_at = time.monotonic()
                if stopped_at is not None and time.monotonic() - stopped_at > grace_s:
                    signal_descendants(signal.SIGKILL)
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    stop_descendants(grace_s, keep=proc.pid)  # ranks orphaned by a dead agent
    return 128 + got[0] if got else rc
