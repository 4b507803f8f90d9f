"""Readiness: which host slots may start a request now, which wait on a timer, and who waits."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable

from crawler.hosts import Gate, HostSlot


class Readiness:
    """The ready list, the slots' timers and the idle workers' futures of a `Scheduler`.

    The scheduler binds `consider`, `release`, `wait` and the wakers to its own names, so a
    call costs what it did when they were its methods: nothing more per page.
    """

    def __init__(
        self,
        slots: dict[str, HostSlot],
        needs_robots: bool,
        forget: Callable[[HostSlot], None],
    ) -> None:
        self.slots = slots  # the scheduler's own dict: a slot not in it was forgotten
        self.needs_robots = needs_robots
        self.forget = forget  # drop an idle slot (and its gates) from the scheduler
        self.ready: deque[HostSlot] = deque()
        self._waiters: deque[asyncio.Future[None]] = deque()

    def consider(self, slot: HostSlot) -> None:
        """Put `slot` on the ready list, on a timer, or forget it when idle."""
        if slot.in_ready or self.slots.get(slot.key) is not slot:
            return  # already on the ready list, or forgotten (a freed gate looked first)
        now = time.monotonic()
        wait = slot.wait_time(now, self.needs_robots)
        if wait is None:
            gate = slot.full_gate()
            if gate is not None and slot.has_work(self.needs_robots):
                if not slot.in_blocked:
                    slot.in_blocked = True
                    gate.blocked.append(slot)
                return
            if slot.idle(now) and slot.timer is None:
                self.forget(slot)
            elif not slot.queue and slot.open == 0 and slot.timer is None:
                self._set_timer(slot, slot.next_start - now)  # forget it once its delay passed
            return
        if wait > 0:
            if slot.timer is None:
                self._set_timer(slot, wait)
            return
        slot.in_ready = True
        self.ready.append(slot)
        self.wake_one()

    def release(self, gate: Gate, ended: HostSlot) -> None:
        """A request of `ended` through `gate` is over: let the first other slot it kept
        waiting try again (`ended` itself is considered after, so origins take turns)."""
        while gate.blocked and not gate.full:
            slot = gate.blocked.popleft()
            slot.in_blocked = False
            if slot is ended:
                continue
            self.consider(slot)
            if slot.in_ready or slot.timer is not None:
                return

    def _set_timer(self, slot: HostSlot, delay: float) -> None:
        loop = asyncio.get_running_loop()
        slot.timer = loop.call_later(max(0.0, delay), self._timer_fired, slot)

    def _timer_fired(self, slot: HostSlot) -> None:
        slot.timer = None
        if self.slots.get(slot.key) is slot:
            self.consider(slot)

    async def wait(self) -> None:
        """Until something changes: a host became ready, a job ended, work arrived."""
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        finally:
            if not waiter.done():
                waiter.cancel()

    def wake_one(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def wake_all(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)

    def close(self) -> None:
        for slot in self.slots.values():
            if slot.timer is not None:
                slot.timer.cancel()
                slot.timer = None
