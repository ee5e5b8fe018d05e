"""The operating system's side of a job: whether the process that took it still runs, and stopping it.

archivist/jobs.py keeps the jobs table; these look at processes only (psutil, signals), so they have a
file of their own.
"""

from __future__ import annotations

import os
import signal


def alive(pid: int | None, started: float | None) -> bool:
    """Is `pid` still the process that took the job (started no later than `started`, not a zombie)?"""
    import psutil

    if pid is None:
        return False
    try:
        p = psutil.Process(pid)
        if p.status() == psutil.STATUS_ZOMBIE:
            return False
        return started is None or p.create_time() <= started + 1.0  # a later process under a reused pid is not it
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        return False
    except psutil.Error:  # cannot tell (another user's process): assume it still runs
        return True


def me() -> tuple[int, float]:
    """This process: its pid and when it started (`born`), as a job records who took it."""
    return os.getpid(), born(os.getpid())


def born(pid: int) -> float | None:
    """When process `pid` started (seconds since the epoch), or None when it cannot be told."""
    import psutil

    try:
        return psutil.Process(pid).create_time()
    except psutil.Error:
        return None


def terminate(pid: int) -> None:
    """SIGTERM the job's process: its whole group when it leads one (a run started in its own
    session, with its torchrun workers), else the process alone."""
    try:
        if os.getpgid(pid) == pid:
            os.killpg(pid, signal.SIGTERM)
        else:
            os.kill(pid, signal.SIGTERM)
    except (ProcessLookupError, PermissionError):
        pass


def reap(pid: int | None) -> None:
    """Collect child `pid` if it has ended (a child of ours that ended is a zombie until reaped)."""
    if pid:
        try:
            os.waitpid(pid, os.WNOHANG)  # a child of ours that ended is a zombie until reaped
        except ChildProcessError:
            pass
