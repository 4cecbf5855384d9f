"""The traffic's write pause: a write in flight when the pause is set holds ``wait_idle``
until it ends, and no write starts while paused."""

from __future__ import annotations

import threading

import pytest

from cutover.sample.traffic import WritePause

pytestmark = pytest.mark.unit


def test_wait_idle_waits_for_the_write_in_flight() -> None:
    pause = WritePause()
    assert pause.begin_write()  # a write starts before the pause
    pause.set()
    assert not pause.begin_write()  # none starts while paused
    assert not pause.wait_idle(0.05)  # the first is still in flight
    idle = threading.Event()
    waiter = threading.Thread(target=lambda: pause.wait_idle(30) and idle.set())
    waiter.start()
    assert not idle.is_set()
    pause.end_write()
    waiter.join(30)
    assert idle.is_set()


def test_not_idle_unless_paused() -> None:
    pause = WritePause()
    assert not pause.wait_idle(0.01)
    pause.set()
    assert pause.wait_idle(0.01)
    pause.clear()
    assert pause.begin_write()
