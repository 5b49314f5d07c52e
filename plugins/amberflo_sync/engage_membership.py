"""What ending Engage memberships needs from the state database, beyond the per-user fingerprints.

A full snapshot of an identify-shaped space (``engage_<space>.users``) says who is *not* a member
only by leaving rows or columns out. Two facts let the Engage sync turn absence into ``false``
(see :func:`amberflo_sync.engage.ended_memberships`):

* **the users the space had**: the ids of its ``engage_fingerprints`` rows (one per user synced
  from the space), read back in pages here and compared with the ids the scan saw;
* **the audience keys the space had**: table ``engage_audience_keys`` (space, audience key), every
  audience column ever seen in the space. It only grows: a key stays once its column is dropped, so a
  run whose writes failed finds it again next time; a ``false`` is sent only while the stored
  customer state still holds ``"true"``, so a remembered key costs nothing once its members are out.

The ids the scan saw are kept as 64-bit hashes (8 bytes a user, sorted once), not as strings: memory
stays small however long the ids are. Two ids with the same hash would hide a departed user behind a
present one; at 10⁷ users the chance is about 3·10⁻⁶.

The Engage sync holds the ``customers`` lock while it uses this, so no two runs touch a space at once.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import sqlalchemy as sa

if TYPE_CHECKING:  # only its engine and schema are used: the state module may change around them
    from amberflo_sync.state import StateStore


def hash_ids(ids: list[str]) -> np.ndarray:
    """A stable 64-bit hash of each id (pandas' ``hash_array``: the same on every platform)."""
    if not ids:
        return np.zeros(0, dtype=np.uint64)
    return pd.util.hash_array(np.asarray(ids, dtype=object))


class SeenIds:
    """The ids a scan saw, as sorted 64-bit hashes."""

    def __init__(self) -> None:
        self._parts: list[np.ndarray] = []
        self._sorted: np.ndarray | None = None

    def add(self, ids: list[str]) -> None:
        self._parts.append(hash_ids(ids))
        self._sorted = None

    def __len__(self) -> int:
        return int(sum(len(p) for p in self._parts))

    def missing(self, ids: list[str]) -> list[str]:
        """The ids among ``ids`` the scan did not see."""
        if self._sorted is None:
            self._sorted = np.unique(np.concatenate(self._parts)) if self._parts else np.zeros(0, np.uint64)
            self._parts = [self._sorted]
        seen = self._sorted
        if not len(seen):
            return list(ids)
        hashes = hash_ids(ids)
        found = seen[np.minimum(np.searchsorted(seen, hashes), len(seen) - 1)] == hashes
        return [i for i, hit in zip(ids, found) if not hit]


class SpaceMembership:
    """The state of one identify-shaped space that ending memberships reads and writes.

    :param state: the state store (its engine and schema; table ``engage_fingerprints``).
    :param space: the space key (``EngageSpace.key``).
    """

    def __init__(self, state: StateStore, space: str) -> None:
        state.create()  # the tables, engage_audience_keys included, are the state store's
        self.engine = state.engine
        self.space = space
        self._fingerprints = state.table("engage_fingerprints")
        self._keys = state.table("engage_audience_keys")

    def audience_keys(self) -> set[str]:
        """Every audience key seen in the space."""
        sql = sa.text(f"SELECT audience_key FROM {self._keys} WHERE space = :space")
        with self.engine.connect() as conn:
            return {r[0] for r in conn.execute(sql, {"space": self.space})}

    def remember_audience_keys(self, keys: Iterable[str]) -> None:
        """Add keys not stored yet (never removes one: see the module docstring)."""
        new = sorted(set(keys) - self.audience_keys())
        if new:
            sql = sa.text(f"INSERT INTO {self._keys} (space, audience_key) VALUES (:space, :key)")
            with self.engine.begin() as conn:
                conn.execute(sql, [{"space": self.space, "key": k} for k in new])

    def stored_user_ids(self, page: int = 5000) -> Iterator[list[str]]:
        """The ids of the space's fingerprint rows, ``page`` at a time (keyset pagination, so each
        page is one indexed query however many users the space holds)."""
        sql = sa.text(
            f"SELECT customer_id FROM {self._fingerprints} WHERE space = :space AND customer_id > :after "
            "ORDER BY customer_id LIMIT :n"
        )
        after = ""
        while True:
            with self.engine.connect() as conn:
                ids = [r[0] for r in conn.execute(sql, {"space": self.space, "after": after, "n": page})]
            if not ids:
                return
            yield ids
            if len(ids) < page:
                return
            after = ids[-1]

    def forget_users(self, ids: list[str]) -> None:
        """Drop the fingerprint rows of users who left the space and hold no membership to end: a user
        who comes back is then new again (diffed against the stored customer values)."""
        sql = sa.text(
            f"DELETE FROM {self._fingerprints} WHERE space = :space AND customer_id IN :ids"
        ).bindparams(sa.bindparam("ids", expanding=True))
        with self.engine.begin() as conn:
            for start in range(0, len(ids), 1000):
                conn.execute(sql, {"space": self.space, "ids": ids[start : start + 1000]})
