"""Segment's standard columns for a batch of calls, and turning calls into a table.

Standard columns are ``id`` (the messageId), ``received_at``, ``sent_at``, ``timestamp``,
``original_timestamp``, ``uuid_ts``, ``anonymous_id``, ``user_id`` and the flattened ``context_*``
fields the sending library fills in: analytics.js (web), a server library, analytics-ios.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import pyarrow as pa

from amberflo_sync.demo import vocabulary as vocab
from amberflo_sync.demo.population import Clients, Identities, Population
from amberflo_sync.demo.random_columns import (
    CallTimes,
    Duplicates,
    LoadSchedule,
    Quirks,
    hex_ids,
    join,
    pick,
    sample_call_times,
    sample_duplicates,
    take,
    timestamps,
    uuid4s,
)
from amberflo_sync.demo.table_model import Columns, WarehouseTable, make_table

LibraryKind = Literal["web", "server", "ios"]


@dataclass(frozen=True)
class Library:
    """The Segment library that sent the calls."""

    kind: LibraryKind
    name: str
    version: str


WEB = Library("web", "analytics.js", "npm:next-1.70.0")
SERVER = Library("server", "@segment/analytics-node", "2.1.2")
IOS = Library("ios", "analytics-ios", "4.1.8")

#: Standard columns in the order the generator writes them (``context_*`` follow).
STANDARD_ORDER = ("id", "received_at", "sent_at", "timestamp", "original_timestamp", "uuid_ts",
                  "anonymous_id", "user_id")


@dataclass(frozen=True)
class Calls:
    """A batch of calls with their standard columns, before property columns are added.

    :param page: for web calls, the index into ``vocabulary.PAGES`` of the page the call came from
        (``pages`` uses it for its properties, so ``context_page_*`` and properties agree).
    :param search, referrer: indices into ``vocabulary.SEARCHES`` / ``REFERRERS`` (web).
    """

    library: Library
    columns: Columns
    times: CallTimes
    identities: Identities
    duplicates: Duplicates
    page: np.ndarray | None = None
    search: np.ndarray | None = None
    referrer: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.times)


def message_ids(rng: np.random.Generator, library: Library, n: int) -> pa.Array:
    """messageIds as each library formats them."""
    if library.kind == "web":
        return hex_ids(rng, n, 32, prefix="ajs-next-")
    if library.kind == "server":
        return uuid4s(rng, n, prefix="node-next-")
    return uuid4s(rng, n, upper=True)


def page_urls(page: np.ndarray, search: np.ndarray) -> pa.Array:
    """``https://segment.com<path><search>`` for page and search indices."""
    paths = take([p[1] for p in vocab.PAGES], page)
    searches = take([s or "" for s in vocab.SEARCHES], search)
    return join(vocab.SITE, paths, searches)


def _web_context(rng: np.random.Generator, n: int, clients: Clients, client: np.ndarray) -> tuple[Columns, dict]:
    page = pick(rng, len(vocab.PAGES), n, vocab.PAGE_WEIGHTS)
    search = pick(rng, len(vocab.SEARCHES), n, vocab.SEARCH_WEIGHTS)
    referrer = pick(rng, len(vocab.REFERRERS), n, vocab.REFERRER_WEIGHTS)
    columns: Columns = {
        "context_ip": ("text", clients.ip.take(pa.array(client))),
        "context_library_name": ("text", take([WEB.name], np.zeros(n, np.int64))),
        "context_library_version": ("text", take([WEB.version], np.zeros(n, np.int64))),
        "context_locale": ("text", take(vocab.LOCALES, clients.attributes["locale"][client])),
        "context_page_path": ("text", take([p[1] for p in vocab.PAGES], page)),
        "context_page_referrer": ("text", take(vocab.REFERRERS, referrer)),
        "context_page_search": ("text", take(vocab.SEARCHES, search)),
        "context_page_title": ("text", take([p[2] for p in vocab.PAGES], page)),
        "context_page_url": ("text", page_urls(page, search)),
        "context_user_agent": ("text", take(vocab.USER_AGENTS, clients.attributes["user_agent"][client])),
    }
    return columns, {"page": page, "search": search, "referrer": referrer}


def _server_context(rng: np.random.Generator, n: int, population: Population) -> Columns:
    return {
        "context_ip": ("text", population.server_ips.take(pa.array(pick(rng, len(population.server_ips), n)))),
        "context_library_name": ("text", take([SERVER.name], np.zeros(n, np.int64))),
        "context_library_version": ("text", take([SERVER.version], np.zeros(n, np.int64))),
    }


def _ios_context(rng: np.random.Generator, n: int, clients: Clients, client: np.ndarray) -> Columns:
    a = clients.attributes
    app = a["app_version"][client]
    model = a["model"][client]
    heights = np.array([s[0] for s in vocab.IOS_SCREEN_SIZES], dtype=np.int64)
    widths = np.array([s[1] for s in vocab.IOS_SCREEN_SIZES], dtype=np.int64)
    wifi = rng.random(n) < 0.7
    return {
        "context_app_build": ("text", take(vocab.IOS_APP_BUILDS, app)),
        "context_app_name": ("text", take(["Initech Music"], np.zeros(n, np.int64))),
        "context_app_namespace": ("text", take(["com.initech.music"], np.zeros(n, np.int64))),
        "context_app_version": ("text", take(vocab.IOS_APP_VERSIONS, app)),
        "context_device_id": ("text", clients.device_id.take(pa.array(client))),
        "context_device_manufacturer": ("text", take(["Apple"], np.zeros(n, np.int64))),
        "context_device_model": ("text", take(vocab.IOS_MODELS, model)),
        "context_device_type": ("text", take(["ios"], np.zeros(n, np.int64))),
        "context_ip": ("text", clients.ip.take(pa.array(client))),
        "context_library_name": ("text", take([IOS.name], np.zeros(n, np.int64))),
        "context_library_version": ("text", take([IOS.version], np.zeros(n, np.int64))),
        "context_locale": ("text", take(vocab.LOCALES, a["locale"][client])),
        "context_network_carrier": ("text", take(vocab.CARRIERS, a["carrier"][client])),
        "context_network_cellular": ("boolean", pa.array(~wifi)),
        "context_network_wifi": ("boolean", pa.array(wifi)),
        "context_os_name": ("text", take(["iOS", "iPadOS"], (model == 3).astype(np.int64))),
        "context_os_version": ("text", take(vocab.IOS_OS_VERSIONS, a["os_version"][client])),
        "context_screen_height": ("bigint", pa.array(heights[model])),
        "context_screen_width": ("bigint", pa.array(widths[model])),
        "context_timezone": ("text", take(vocab.TIMEZONES, a["timezone"][client])),
    }


def make_calls(rng: np.random.Generator, library: Library, population: Population, identities: Identities,
               schedule: LoadSchedule, quirks: Quirks, *, times: CallTimes | None = None) -> Calls:
    """Standard and context columns for one call per entry of ``identities``.

    :param times: precomputed times (e.g. sorted per user for identifies); sampled when omitted.
    """
    n = len(identities)
    if times is None:
        times = sample_call_times(rng, n, schedule, quirks, skewed_clocks=library.kind != "server",
                                  offline_rate=0.03 if library.kind == "ios" else 0.0)
    extra: dict = {}
    if library.kind == "web":
        context, extra = _web_context(rng, n, population.web, identities.client)
    elif library.kind == "server":
        context = _server_context(rng, n, population)
    else:
        context = _ios_context(rng, n, population.ios, identities.client)
    columns: Columns = {
        "id": ("text", message_ids(rng, library, n)),
        "received_at": ("timestamp", timestamps(times.received_at)),
        "sent_at": ("timestamp", timestamps(times.sent_at)),
        "timestamp": ("timestamp", timestamps(times.timestamp, times.timestamp_null)),
        "original_timestamp": ("timestamp", timestamps(times.original_timestamp)),
        "uuid_ts": ("timestamp", timestamps(times.uuid_ts)),
        "anonymous_id": ("text", identities.anonymous_id),
        "user_id": ("text", identities.user_id),
        **context,
    }
    duplicates = sample_duplicates(rng, times, schedule, quirks.duplicate)
    return Calls(library=library, columns=columns, times=times, identities=identities, duplicates=duplicates, **extra)


def event_columns(n: int, event: str, event_text: str) -> Columns:
    """``event`` (the snake_cased table name) and ``event_text`` (the original event name)."""
    zeros = np.zeros(n, np.int64)
    return {"event": ("text", take([event], zeros)), "event_text": ("text", take([event_text], zeros))}


def calls_table(schema: str, name: str, calls: Calls, properties: Columns) -> WarehouseTable:
    """The table of ``calls`` with ``properties``, plus Segment's duplicate deliveries: the same row
    again under the same ``id``, with a later ``received_at`` and ``uuid_ts``."""
    table = make_table(schema, name, {**calls.columns, **properties})
    dup = calls.duplicates
    if not len(dup.source):
        return table
    repeats = table.data.take(pa.array(dup.source))
    for column, values in (("received_at", dup.received_at), ("uuid_ts", dup.uuid_ts)):
        i = repeats.schema.get_field_index(column)
        repeats = repeats.set_column(i, column, timestamps(values))
    return WarehouseTable(schema, name, pa.concat_tables([table.data, repeats]), table.types)
