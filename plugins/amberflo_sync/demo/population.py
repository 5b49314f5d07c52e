"""Who sends the calls: customers, their browsers and phones, and anonymous visitors.

Customers have ids ``user_0001`` … and an activity weight (a few heavy users, a long tail). Every
customer browses from one to three browsers (one ``anonymous_id`` each); some also use the iOS app
on one or two devices. Anonymous visitors have browsers or devices but no user id.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from amberflo_sync.demo import vocabulary as vocab
from amberflo_sync.demo.random_columns import join, numbers, pick, stream, take, uuid4s


@dataclass(frozen=True)
class Clients:
    """Browsers or devices, each with an ``anonymous_id``; customers' clients come first and each
    customer's clients are contiguous (``first[u]`` … ``first[u] + count[u] - 1``); the rest
    (``anonymous_start`` …) belong to anonymous visitors.

    :param attributes: per-client index arrays into ``vocabulary`` pools (user agent, locale, …).
    """

    anonymous_id: pa.Array
    owner: np.ndarray
    first: np.ndarray
    count: np.ndarray
    anonymous_start: int
    ip: pa.Array
    attributes: dict[str, np.ndarray]
    device_id: pa.Array | None = None

    def __len__(self) -> int:
        return len(self.owner)

    @property
    def anonymous_count(self) -> int:
        return len(self.owner) - self.anonymous_start


@dataclass(frozen=True)
class Population:
    """Customers and the clients they and anonymous visitors use."""

    user_ids: pa.Array
    activity: np.ndarray
    web: Clients
    ios: Clients
    server_ips: pa.Array

    @property
    def n_users(self) -> int:
        return len(self.user_ids)


def customer_count(events: int) -> int:
    """About one customer per 20 events, between 20 and 1,000."""
    return int(min(1000, max(20, events // 20)))


def user_ids(n: int) -> pa.Array:
    """``user_0001`` … ``user_<n>`` (wider than four digits only beyond 9,999 users)."""
    return join("user_", numbers(np.arange(1, n + 1), width=max(4, len(str(n)))))


def _ips(rng: np.random.Generator, n: int) -> pa.Array:
    octets = [numbers(rng.integers(lo, 255, n)) for lo in (11, 0, 0, 1)]
    return join(*octets, sep=".")


def _clients(rng: np.random.Generator, per_user: np.ndarray, anonymous: int, *, mobile: bool) -> Clients:
    owner = np.concatenate([np.repeat(np.arange(len(per_user)), per_user), np.full(anonymous, -1)])
    n = len(owner)
    first = np.concatenate([[0], np.cumsum(per_user)[:-1]]).astype(np.int64)
    if mobile:
        ids = uuid4s(rng, n, upper=True)
        attributes = {
            "model": pick(rng, len(vocab.IOS_MODELS), n, (40, 30, 25, 5)),
            "os_version": pick(rng, len(vocab.IOS_OS_VERSIONS), n, (20, 50, 30)),
            "app_version": pick(rng, len(vocab.IOS_APP_VERSIONS), n, (15, 35, 50)),
            "carrier": pick(rng, len(vocab.CARRIERS), n),
            "timezone": pick(rng, len(vocab.TIMEZONES), n),
            "locale": pick(rng, len(vocab.LOCALES), n, vocab.LOCALE_WEIGHTS),
        }
    else:
        ids = uuid4s(rng, n)
        attributes = {
            "user_agent": pick(rng, len(vocab.USER_AGENTS), n, (45, 20, 10, 25)),
            "locale": pick(rng, len(vocab.LOCALES), n, vocab.LOCALE_WEIGHTS),
        }
    return Clients(
        anonymous_id=ids,
        owner=owner,
        first=first,
        count=per_user.astype(np.int64),
        anonymous_start=int(per_user.sum()),
        ip=_ips(rng, n),
        attributes=attributes,
        device_id=uuid4s(rng, n, upper=True) if mobile else None,
    )


def build_population(seed: int, events: int, *, customers: int | None = None) -> Population:
    """The customers and clients behind ``events`` calls (deterministic for ``seed``).

    :param customers: number of customers (default: :func:`customer_count` of ``events``).
    """
    rng = stream(seed, "population")
    n_users = customer_count(events) if customers is None else customers
    activity = rng.lognormal(0.0, 1.2, n_users)
    web_per_user = rng.choice([1, 2, 3], n_users, p=[0.6, 0.3, 0.1])
    ios_per_user = np.where(rng.random(n_users) < 0.4, rng.choice([1, 2], n_users, p=[0.8, 0.2]), 0)
    web = _clients(stream(seed, "population", "web"), web_per_user, max(20, min(200_000, events // 40)), mobile=False)
    ios = _clients(stream(seed, "population", "ios"), ios_per_user, max(10, min(100_000, events // 200)), mobile=True)
    server_ips = pa.array(["34.212.8.17", "34.212.8.18", "52.14.77.201"], pa.large_string())
    return Population(user_ids=user_ids(n_users), activity=activity, web=web, ios=ios, server_ips=server_ips)


# --- who sent each call ------------------------------------------------------------------------------


@dataclass(frozen=True)
class IdentityMix:
    """Shares of the identity cases a Segment table holds (must sum to 1).

    :param known: ``user_id`` set.
    :param anonymous: ``user_id`` null, ``anonymous_id`` set.
    :param blank: ``user_id`` is ``''`` (an empty string), ``anonymous_id`` set.
    :param neither: neither id usable (``user_id`` null or ``''``, ``anonymous_id`` null): the sync
        must reject these rows.
    :param known_with_anonymous: share of ``known`` rows that also carry an ``anonymous_id``
        (all of them on the web; few from a server library).
    """

    known: float = 0.87
    anonymous: float = 0.10
    blank: float = 0.027
    neither: float = 0.003
    known_with_anonymous: float = 1.0


@dataclass(frozen=True)
class Identities:
    """Per row: the client (index into ``Clients``), ``user_id`` and ``anonymous_id``."""

    client: np.ndarray
    user_id: pa.Array
    anonymous_id: pa.Array

    def __len__(self) -> int:
        return len(self.client)


def clients_of(rng: np.random.Generator, clients: Clients, users: np.ndarray) -> np.ndarray:
    """One client of each given customer (customers must have at least one)."""
    return clients.first[users] + (rng.random(len(users)) * clients.count[users]).astype(np.int64)


def active_users(rng: np.random.Generator, population: Population, clients: Clients, n: int) -> np.ndarray:
    """``n`` customers drawn by activity among those who have a client of this kind."""
    weights = np.where(clients.count > 0, population.activity, 0.0)
    return rng.choice(population.n_users, n, p=weights / weights.sum())


def assign_identities(rng: np.random.Generator, n: int, population: Population, clients: Clients,
                      mix: IdentityMix) -> Identities:
    """Who sent each of ``n`` calls, following ``mix``."""
    case = rng.choice(4, n, p=np.array([mix.known, mix.anonymous, mix.blank, mix.neither]) / (
        mix.known + mix.anonymous + mix.blank + mix.neither))
    known = case == 0
    users = active_users(rng, population, clients, n)
    client = clients.anonymous_start + rng.integers(0, max(1, clients.anonymous_count), n)
    client[known] = clients_of(rng, clients, users[known])

    # case 3 ("neither") has a blank user_id a third of the time, else null
    blank = (case == 2) | ((case == 3) & (rng.random(n) < 1 / 3))
    user_id = take(population.user_ids, users, ~known)
    user_id = pc.if_else(pa.array(blank), pa.scalar("", pa.large_string()), user_id)
    anonymous_missing = (case == 3) | (known & (rng.random(n) >= mix.known_with_anonymous))
    anonymous_id = take(clients.anonymous_id, client, anonymous_missing)
    return Identities(client=client, user_id=user_id, anonymous_id=anonymous_id)
