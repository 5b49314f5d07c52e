"""Two lock holders contending at the same moment, for any state store (the lock tests of every engine)."""

from __future__ import annotations

import threading

from amberflo_sync.state import StateStore


def contend(state: StateStore, name: str = "customers", holders: tuple[str, ...] = ("identify", "engage")) -> list[str]:
    """Let ``holders`` try to take ``name`` at once; returns who got it (the lock is left held)."""
    barrier = threading.Barrier(len(holders))
    won: list[str] = []

    def attempt(holder: str) -> None:
        barrier.wait()
        if state.try_lock(name, holder):
            won.append(holder)

    threads = [threading.Thread(target=attempt, args=(h,)) for h in holders]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return won
