"""A bounded first-come-first-served queue in front of generation.

One generation runs at a time (the model is one object and, on a CPU, one generation already
uses every core); at most `max_waiting` more wait their turn. Past that a request is refused at
once with a retry estimate, so a crowd of clients costs a few queued tickets rather than one
thread and one prompt's activations each.

One user (all of their keys) holds at most `per_user` of those places, running or waiting: without
that share, one member's script sending as fast as it is answered kept every place and everyone
else got 429 for as long as it ran. The admin has no exemption: an admin key is the one an
integration or a benchmark script runs under, the likeliest to flood; an administrator who wants
one user to fill the queue raises the share (ARCHIVIST_MAX_QUEUED_PER_USER).
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from dataclasses import dataclass, field


class QueueFull(RuntimeError):
    """Too many generations are waiting; `retry_after` is a guess, in whole seconds, of when to retry."""

    code = "queue_full"  # the API's error code: the server is busy for everyone

    def __init__(self, waiting: int, retry_after: int, message: str | None = None):
        super().__init__(message or f"the generation queue is full ({waiting} waiting); retry in about {retry_after} s")
        self.waiting, self.retry_after = waiting, retry_after


class UserQueueFull(QueueFull):
    """One user already holds `per_user` places (`waiting`: theirs, running or waiting); others may still get one."""

    code = "user_queue_full"

    def __init__(self, held: int, per_user: int, retry_after: int):
        super().__init__(held, retry_after, f"you already have {held} generation(s) running or waiting, your share of "
                                            f"this server's queue (max_queued_per_user = {per_user}); retry in about "
                                            f"{retry_after} s, when one of yours ends")
        self.per_user = per_user


@dataclass(eq=False)
class Ticket:
    """A place in the queue. `wait_turn`, then do the work, then `release` (always, in a finally)."""

    queue: "GenerationQueue"
    user: str | None = None  # whose share it counts against (None: only the queue's)
    admitted_at: float = field(default_factory=time.monotonic)
    started_at: float | None = None
    released: bool = False

    def wait_turn(self, stop: threading.Event | None = None, poll: float = 0.2) -> bool:
        """Block until this ticket is at the head of the queue. Returns False (and leaves the queue)
        when `stop` is set first, e.g. because the client went away while waiting."""
        return self.queue._wait(self, stop, poll)

    def release(self) -> None:
        self.queue._release(self)


class GenerationQueue:
    """FIFO admission for generation: one running, at most `max_waiting` waiting behind it, at most
    `per_user` of them one user's (0: half the places, running and waiting, at least 1)."""

    def __init__(self, max_waiting: int = 16, concurrency: int = 1, per_user: int = 0):
        if max_waiting < 0 or concurrency < 1 or per_user < 0:
            raise ValueError(f"max_waiting and per_user must be >= 0 and concurrency >= 1, got {max_waiting}, "
                             f"{per_user}, {concurrency}")
        self.max_waiting, self.concurrency = max_waiting, concurrency
        self.per_user = per_user or max(1, (concurrency + max_waiting) // 2)
        self._cond = threading.Condition()
        self._tickets: deque[Ticket] = deque()  # the first `concurrency` are running (or about to)
        self._avg_seconds = 5.0  # moving average of a generation's duration, for Retry-After
        self.completed = 0
        self.cancelled = 0
        self.failed = 0

    def admit(self, user: str | None = None) -> Ticket:
        """A ticket counted against `user`'s share; UserQueueFull when that user already holds `per_user`
        tickets (checked first: it is theirs to wait for, whether or not the queue is full), else QueueFull
        when `concurrency + max_waiting` tickets are already out."""
        with self._cond:
            theirs = [i for i, t in enumerate(self._tickets) if user is not None and t.user == user]
            if len(theirs) >= self.per_user:  # about when their oldest ends
                retry = max(1, math.ceil(self._avg_seconds * (theirs[0] // self.concurrency + 1)))
                raise UserQueueFull(len(theirs), self.per_user, retry)
            if len(self._tickets) >= self.concurrency + self.max_waiting:
                waiting = len(self._tickets) - self.concurrency
                raise QueueFull(waiting, self._retry_after(len(self._tickets)))
            ticket = Ticket(self, user)
            self._tickets.append(ticket)
            return ticket

    def _retry_after(self, ahead: int) -> int:
        return max(1, math.ceil(self._avg_seconds * (ahead - self.concurrency + 1) / self.concurrency))

    def _runnable(self, ticket: Ticket) -> bool:
        for i, t in enumerate(self._tickets):
            if i >= self.concurrency:
                return False
            if t is ticket:
                return True
        return False

    def _wait(self, ticket: Ticket, stop: threading.Event | None, poll: float) -> bool:
        with self._cond:
            while not self._runnable(ticket):
                if ticket.released:
                    return False
                if stop is not None and stop.is_set():
                    self._drop(ticket, cancelled=True)
                    return False
                self._cond.wait(poll)  # timed, so a stop set from another thread is seen
            ticket.started_at = time.monotonic()
            return True

    def _release(self, ticket: Ticket, cancelled: bool = False) -> None:
        with self._cond:
            self._drop(ticket, cancelled)

    def _drop(self, ticket: Ticket, cancelled: bool = False) -> None:
        if ticket.released:
            return
        ticket.released = True
        try:
            self._tickets.remove(ticket)
        except ValueError:
            pass
        if ticket.started_at is not None:
            took = time.monotonic() - ticket.started_at
            self._avg_seconds = 0.8 * self._avg_seconds + 0.2 * took
        if cancelled:
            self.cancelled += 1
        self._cond.notify_all()

    def mark(self, outcome: str) -> None:
        """Count a finished generation: "completed", "cancelled" (the client went away) or "failed" (it
        ended in an error: the model failed, or the answer was refused as it was written)."""
        if outcome not in ("completed", "cancelled", "failed"):
            raise ValueError(f"outcome must be completed, cancelled or failed, got {outcome!r}")
        with self._cond:
            setattr(self, outcome, getattr(self, outcome) + 1)

    def stats(self) -> dict:
        with self._cond:
            running = min(len(self._tickets), self.concurrency)
            return {"running": running, "waiting": len(self._tickets) - running, "max_waiting": self.max_waiting,
                    "completed": self.completed, "cancelled": self.cancelled, "failed": self.failed,
                    "avg_seconds": round(self._avg_seconds, 3)}
