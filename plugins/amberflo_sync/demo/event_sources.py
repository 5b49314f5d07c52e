"""The two Segment event sources of the demo warehouse: ``prod`` (web) and ``ios_app`` (mobile).

Each source schema holds ``pages`` or ``screens``, ``tracks`` (standard columns of every track call),
one table per track event, ``identifies`` and ``users`` (``prod`` also ``groups`` and ``aliases``).
Property columns follow Segment's naming: nested properties flattened (``product_sku``), arrays as one
string (``"[a, b]"``), ``_`` before names that collide with a standard column (``_id``) or start with
a digit (``_2fa_enabled``, table ``_101_account_update``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import unicodedata

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from amberflo_sync.demo import vocabulary as vocab
from amberflo_sync.demo.calls import (
    IOS,
    SERVER,
    STANDARD_ORDER,
    WEB,
    Calls,
    Library,
    calls_table,
    event_columns,
    make_calls,
    page_urls,
)
from amberflo_sync.demo.population import (
    Clients,
    Identities,
    IdentityMix,
    Population,
    active_users,
    assign_identities,
    clients_of,
)
from amberflo_sync.demo.random_columns import (
    DAY,
    NO_QUIRKS,
    LoadSchedule,
    Quirks,
    choice,
    hex_ids,
    join,
    null_out,
    numbers,
    pick,
    sample_call_times,
    stream,
    take,
    timestamps,
)
from amberflo_sync.demo.table_model import Columns, WarehouseTable, make_table

PropertyBuilder = Callable[[np.random.Generator, Calls], Columns]


# --- properties of each call type ---------------------------------------------------------------------


def _meter_values(rng: np.random.Generator, n: int) -> np.ndarray:
    """API call counts: mostly whole numbers (sent as ``2.0``), some fractions and bursts."""
    value = rng.integers(1, 51, n).astype(np.float64)
    u = rng.random(n)
    value[u < 0.2] = rng.choice([0.25, 0.5, 1.5, 2.5], int((u < 0.2).sum()))
    value[u > 0.93] = rng.integers(1000, 10_000, int((u > 0.93).sum()))
    return value


def page_properties(rng: np.random.Generator, calls: Calls) -> Columns:
    """``pages``: ``name`` and the page properties analytics.js sends, equal to the page context."""
    n, page, search = len(calls), calls.page, calls.search
    utm = np.isin(search, (1, 4))
    return {
        "context_campaign_name": ("text", take(vocab.CAMPAIGN_NAMES, pick(rng, 3, n), ~utm)),
        "context_campaign_source": ("text", take(vocab.CAMPAIGN_SOURCES, np.where(search == 4, 1, 0), ~utm)),
        "name": ("text", take([p[0] for p in vocab.PAGES], page)),
        "keywords": ("text", choice(rng, vocab.KEYWORDS, n, vocab.KEYWORD_WEIGHTS)),
        "path": ("text", take([p[1] for p in vocab.PAGES], page)),
        "referrer": ("text", take(vocab.REFERRERS, calls.referrer)),
        "search": ("text", take(vocab.SEARCHES, search)),
        "title": ("text", take([p[2] for p in vocab.PAGES], page)),
        "url": ("text", page_urls(page, search)),
    }


def api_call_properties(rng: np.random.Generator, calls: Calls) -> Columns:
    """``ApiCalls`` from the backend: ``value`` (float), ``region``, ``endpoint``, ``status_code``."""
    n = len(calls)
    status = pick(rng, len(vocab.STATUS_CODES), n, vocab.STATUS_WEIGHTS)
    return {
        "value": ("double", null_out(rng, _meter_values(rng, n), 0.03)),
        "region": ("text", choice(rng, vocab.REGIONS, n, vocab.REGION_WEIGHTS, null_rate=0.01)),
        "endpoint": ("text", choice(rng, vocab.ENDPOINTS, n, vocab.ENDPOINT_WEIGHTS)),
        "status_code": ("bigint", null_out(rng, np.asarray(vocab.STATUS_CODES)[status], 0.01)),
    }


def order_completed_properties(rng: np.random.Generator, calls: Calls) -> Columns:
    """``Order Completed``: ``value``/``revenue`` (numeric), ``product_sku`` (flattened
    ``product.sku``), ``products`` (an array, as one string), ``coupon`` (mostly null)."""
    n = len(calls)
    k = rng.choice([1, 2, 3], n, p=[0.6, 0.3, 0.1])
    items = [pick(rng, len(vocab.PRODUCTS), n) for _ in range(3)]
    prices = np.asarray(vocab.PRODUCT_PRICES)
    total = prices[items[0]] + np.where(k >= 2, prices[items[1]], 0) + np.where(k >= 3, prices[items[2]], 0)
    value = np.round(total, 2)
    names = [take(vocab.PRODUCTS, items[i], k <= i) for i in range(3)]
    listed = pc.binary_join_element_wise(*names, pa.scalar(", ", pa.large_string()), null_handling="skip")
    return {
        "order_id": ("text", join("ORD-", numbers(rng.integers(0, 10_000_000, n), width=7))),
        "value": ("numeric", null_out(rng, value, 0.01)),
        "revenue": ("numeric", pa.array(np.round(value * 0.92, 2))),
        "currency": ("text", choice(rng, vocab.CURRENCIES, n, vocab.CURRENCY_WEIGHTS)),
        "product_sku": ("text", take(vocab.PRODUCT_SKUS, items[0])),
        "products": ("text", join("[", listed, "]")),
        "coupon": ("text", choice(rng, vocab.COUPONS, n, vocab.COUPON_WEIGHTS)),
    }


def signed_up_properties(rng: np.random.Generator, calls: Calls) -> Columns:
    """``Signed Up``: no ``value`` at all; ``plan``, ``_2fa_enabled`` (a digit-leading name)."""
    n = len(calls)
    return {
        "plan": ("text", choice(rng, vocab.PLANS, n, vocab.PLAN_WEIGHTS, null_rate=0.03)),
        "_2fa_enabled": ("boolean", null_out(rng, rng.random(n) < 0.35, 0.05)),
        "method": ("text", choice(rng, vocab.SIGNUP_METHODS, n, (60, 30, 10))),
    }


def file_uploaded_properties(rng: np.random.Generator, calls: Calls) -> Columns:
    """``File Uploaded``: ``value`` in bytes (bigint), ``_id`` (property ``id``, renamed because it
    collides with the standard column), ``file_type``, ``file_name``."""
    n = len(calls)
    size = np.clip(rng.lognormal(np.log(500_000), 1.5, n), 1, 2**31).astype(np.int64)
    return {
        "value": ("bigint", null_out(rng, size, 0.01)),
        "_id": ("text", hex_ids(rng, n, 12, prefix="file_")),
        "file_type": ("text", choice(rng, vocab.FILE_TYPES, n, vocab.FILE_TYPE_WEIGHTS)),
        "file_name": ("text", choice(rng, vocab.FILE_NAMES, n, vocab.FILE_NAME_WEIGHTS)),
        "folder": ("text", choice(rng, ("/uploads", "/uploads/invoices/2026", "/shared/Q3 | drafts", None), n)),
    }


def account_update_properties(rng: np.random.Generator, calls: Calls) -> Columns:
    """``101 Account Update`` (table ``_101_account_update``): ``field``, ``source``."""
    n = len(calls)
    return {
        "field": ("text", choice(rng, vocab.ACCOUNT_FIELDS, n)),
        "source": ("text", choice(rng, ("settings_page", "api"), n, (80, 20))),
    }


def screen_properties(rng: np.random.Generator, calls: Calls) -> Columns:
    """``screens``: ``name`` + ``title`` and ``category``."""
    screen = pick(rng, len(vocab.SCREENS), len(calls), vocab.SCREEN_WEIGHTS)
    return {
        "name": ("text", take([s[0] for s in vocab.SCREENS], screen)),
        "title": ("text", take([s[1] for s in vocab.SCREENS], screen)),
        "category": ("text", take([s[2] for s in vocab.SCREENS], screen)),
    }


def ios_api_call_properties(rng: np.random.Generator, calls: Calls) -> Columns:
    """``ApiCalls`` from the app: no ``status_code`` column, a ``retry_count`` instead."""
    n = len(calls)
    return {
        "value": ("double", null_out(rng, _meter_values(rng, n), 0.03)),
        "region": ("text", choice(rng, vocab.REGIONS, n, vocab.REGION_WEIGHTS)),
        "endpoint": ("text", choice(rng, vocab.ENDPOINTS, n, vocab.ENDPOINT_WEIGHTS)),
        "retry_count": ("bigint", pa.array(np.where(rng.random(n) < 0.9, 0, rng.integers(1, 4, n)))),
    }


#: ``song_played.value`` is a text column: the app sends numbers as strings (and, rarely, junk).
SONG_VALUES = ("1", "2", "3", "0.5", "2.5", "10", "n/a")
SONG_VALUE_WEIGHTS = (50, 15, 10, 10, 8, 6.8, 0.2)


def song_played_properties(rng: np.random.Generator, calls: Calls) -> Columns:
    """``Song Played``: ``value`` as text (``"2.5"``), song, artist, genre, duration."""
    n = len(calls)
    song = pick(rng, len(vocab.SONGS), n, vocab.SONG_WEIGHTS)
    return {
        "value": ("text", choice(rng, SONG_VALUES, n, SONG_VALUE_WEIGHTS, null_rate=0.02)),
        "song_title": ("text", take(vocab.SONGS, song)),
        "artist": ("text", take(vocab.ARTISTS, song)),
        "genre": ("text", take(vocab.GENRES, song)),
        "duration_s": ("bigint", pa.array(rng.integers(120, 420, n))),
        "is_offline": ("boolean", pa.array(rng.random(n) < 0.1)),
    }


# --- sources ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CallTable:
    """One table of page, screen or track calls.

    :param share: its share of all generated calls.
    :param event_text: the original event name for a track table; None for ``pages``/``screens``.
    """

    name: str
    share: float
    library: Library
    properties: PropertyBuilder
    event_text: str | None = None
    mix: IdentityMix = field(default_factory=IdentityMix)


SERVER_MIX = IdentityMix(known=0.975, anonymous=0.01, blank=0.012, neither=0.003, known_with_anonymous=0.1)
MOBILE_MIX = IdentityMix(known=0.80, anonymous=0.17, blank=0.027, neither=0.003)


@dataclass(frozen=True)
class Source:
    """A Segment source: its schema, call tables and how its users identify."""

    schema: str
    library: Library
    tables: tuple[CallTable, ...]
    identified_share: float
    traits: Sequence[str]
    side_tables: bool = False


PROD = Source(
    schema="prod",
    library=WEB,
    tables=(
        CallTable("pages", 0.36, WEB, page_properties),
        CallTable("api_calls", 0.20, SERVER, api_call_properties, "ApiCalls", SERVER_MIX),
        CallTable("order_completed", 0.06, WEB, order_completed_properties, "Order Completed"),
        CallTable("signed_up", 0.02, WEB, signed_up_properties, "Signed Up"),
        CallTable("file_uploaded", 0.06, WEB, file_uploaded_properties, "File Uploaded"),
        CallTable("_101_account_update", 0.01, WEB, account_update_properties, "101 Account Update"),
    ),
    identified_share=0.95,
    traits=("name", "email", "plan", "logins", "phone", "username", "website", "avatar", "company_name",
            "created_at"),
    side_tables=True,
)
IOS_APP = Source(
    schema="ios_app",
    library=IOS,
    tables=(
        CallTable("screens", 0.14, IOS, screen_properties, mix=MOBILE_MIX),
        CallTable("api_calls", 0.09, IOS, ios_api_call_properties, "ApiCalls", MOBILE_MIX),
        CallTable("song_played", 0.06, IOS, song_played_properties, "Song Played", MOBILE_MIX),
    ),
    identified_share=0.9,
    traits=("name", "email", "plan", "logins", "push_enabled"),
)
SOURCES = (PROD, IOS_APP)


def allocate(total: int, shares: Sequence[float]) -> list[int]:
    """Split ``total`` by ``shares`` exactly (largest remainder)."""
    raw = np.asarray(shares, dtype=np.float64) / sum(shares) * total
    counts = np.floor(raw).astype(np.int64)
    rest = total - int(counts.sum())
    counts[np.argsort(-(raw - counts), kind="stable")[:rest]] += 1
    return counts.tolist()


def clients_for(population: Population, library: Library) -> Clients:
    return population.ios if library.kind == "ios" else population.web


def call_tables(source: Source, rows: dict[str, int], *, seed: int, label: str, population: Population,
                schedule: LoadSchedule, quirks: Quirks) -> list[WarehouseTable]:
    """Every page/screen/track-event table of ``source`` with ``rows[name]`` calls (none when 0)."""
    tables = []
    for spec in source.tables:
        n = rows.get(spec.name, 0)
        if n <= 0:
            continue
        rng = stream(seed, label, source.schema, spec.name)
        identities = assign_identities(rng, n, population, clients_for(population, spec.library), spec.mix)
        calls = make_calls(rng, spec.library, population, identities, schedule, quirks)
        properties = spec.properties(rng, calls)
        if spec.event_text is not None:
            properties = {**event_columns(n, spec.name, spec.event_text), **properties}
        tables.append(calls_table(source.schema, spec.name, calls, properties))
    return tables


def is_track_table(source: Source, name: str) -> bool:
    return any(t.name == name and t.event_text is not None for t in source.tables)


def _standard_rank(column: str) -> tuple[int, str]:
    if column in STANDARD_ORDER:
        return STANDARD_ORDER.index(column), ""
    if column.startswith("context_"):
        return len(STANDARD_ORDER), column
    return len(STANDARD_ORDER) + 1, column


def tracks_table(schema: str, event_tables: Sequence[WarehouseTable]) -> WarehouseTable | None:
    """``tracks``: the standard columns (with ``event``/``event_text``) of every track call."""
    if not event_tables:
        return None
    parts, types = [], {}
    for table in event_tables:
        keep = [c for c in table.column_names
                if _standard_rank(c)[0] <= len(STANDARD_ORDER) or c in ("event", "event_text")]
        parts.append(table.data.select(keep))
        types.update({c: table.types[c] for c in keep})
    data = pa.concat_tables(parts, promote_options="default")
    order = sorted(data.column_names, key=lambda c: (c in ("event", "event_text"), _standard_rank(c)))
    return WarehouseTable(schema, "tracks", data.select(order), {c: types[c] for c in order})


# --- identifies and users ---------------------------------------------------------------------------------


def _ascii(names: Sequence[str]) -> list[str]:
    """Lower-case ASCII letters of each name (``Zoë`` -> ``zoe``), for emails and usernames."""
    return ["".join(ch for ch in unicodedata.normalize("NFKD", s) if ch.isascii() and ch.isalpha()).lower()
            for s in names]


@dataclass(frozen=True)
class Profiles:
    """Each customer's trait values (one entry per customer), before identify calls reveal them."""

    values: dict[str, tuple[str, pa.Array]]


def customer_profiles(seed: int, population: Population, now_us: int) -> Profiles:
    """Names, emails, plans… of every customer (the same in every source)."""
    rng = stream(seed, "profiles")
    n = population.n_users
    first = pick(rng, len(vocab.FIRST_NAMES), n)
    last = pick(rng, len(vocab.LAST_NAMES), n)
    suffix = numbers(rng.integers(1, 99, n))
    first_ascii, last_ascii = take(_ascii(vocab.FIRST_NAMES), first), take(_ascii(vocab.LAST_NAMES), last)
    username = join(first_ascii, last_ascii.cast(pa.large_string()), suffix)
    avatar = join("https://s3.amazonaws.com/uifaces/faces/twitter/", username, "/128.jpg")
    long_avatar = rng.random(n) < 0.03
    avatar = pc.if_else(pa.array(long_avatar), join(avatar, "?w=128&h=128&fit=crop&crop=faces&auto=format"
                                                           "&sig=" + "f" * 180), avatar)
    return Profiles(values={
        "name": ("text", join(take(vocab.FIRST_NAMES, first), " ", take(vocab.LAST_NAMES, last))),
        "email": ("text", join(first_ascii, ".", last_ascii, suffix, "@", choice(rng, vocab.EMAIL_DOMAINS, n))),
        "plan": ("text", choice(rng, vocab.PLANS, n, vocab.PLAN_WEIGHTS)),
        "logins": ("bigint", pa.array(rng.integers(1, 200, n))),
        "phone": ("text", join("650-", numbers(rng.integers(200, 999, n)), "-", numbers(rng.integers(0, 9999, n), 4))),
        "username": ("text", username),
        "website": ("text", choice(rng, vocab.WEBSITES, n)),
        "avatar": ("text", avatar),
        "company_name": ("text", choice(rng, vocab.COMPANIES, n)),
        "created_at": ("timestamp", timestamps(now_us - rng.integers(30 * DAY, 720 * DAY, n) // 1000 * 1000)),
        "push_enabled": ("boolean", pa.array(rng.random(n) < 0.6)),
    })


#: Chance that a trait is set in a customer's first identify call, and in later ones.
TRAIT_PRESENCE = {
    "name": (0.97, 0.3), "email": (0.98, 0.3), "plan": (0.95, 0.85), "logins": (1.0, 1.0),
    "phone": (0.7, 0.1), "username": (0.9, 0.2), "website": (0.6, 0.1), "avatar": (0.8, 0.2),
    "company_name": (0.85, 0.2), "created_at": (1.0, 0.2), "push_enabled": (0.9, 0.5),
}


def identifies_table(source: Source, *, seed: int, label: str, population: Population, profiles: Profiles,
                     schedule: LoadSchedule, quirks: Quirks, customers: int | None = None) -> WarehouseTable | None:
    """``identifies``: several calls per identified customer over time (the first one with most
    traits, later ones with only some set), plus a few anonymous identifies (no ``user_id``, or a
    blank one) carrying only an email.

    :param customers: identify this many customers once each (a later load) instead of every
        identified customer one or more times.
    """
    rng = stream(seed, label, source.schema, "identifies")
    clients = clients_for(population, source.library)
    eligible = np.flatnonzero(clients.count > 0)
    if customers is None:
        chosen = eligible[rng.random(len(eligible)) < source.identified_share]
        per_user = 1 + rng.poisson(1.3, len(chosen))
    else:
        chosen = np.sort(rng.choice(eligible, min(customers, len(eligible)), replace=False))
        per_user = np.ones(len(chosen), dtype=np.int64)
    users = np.repeat(chosen, per_user)
    n_known = len(users)
    n_anon = int(round(n_known * 0.03))
    n = n_known + n_anon
    if n == 0:
        return None
    times = sample_call_times(rng, n, schedule, quirks, skewed_clocks=source.library.kind != "server")
    order = np.concatenate([np.lexsort((times.received_at[:n_known], users)), np.arange(n_known, n)])
    times = times.take(order)
    starts = np.repeat(np.concatenate([[0], np.cumsum(per_user)[:-1]]), per_user)
    first_call = (np.arange(n_known) == starts) if customers is None else np.zeros(n_known, bool)

    client = np.concatenate([clients_of(rng, clients, users),
                             clients.anonymous_start + rng.integers(0, max(1, clients.anonymous_count), n_anon)])
    anonymous = np.arange(n) >= n_known
    blank = anonymous & (rng.random(n) < 0.2)
    user_index = np.concatenate([users, np.zeros(n_anon, np.int64)])
    user_id = pc.if_else(pa.array(blank), pa.scalar("", pa.large_string()),
                         take(population.user_ids, user_index, anonymous))
    identities = Identities(client=client, user_id=user_id, anonymous_id=take(clients.anonymous_id, client))
    calls = make_calls(rng, source.library, population, identities, schedule, quirks, times=times)

    first_all = np.concatenate([first_call, np.zeros(n_anon, bool)])
    traits: Columns = {}
    for trait in source.traits:
        ctype, values = profiles.values[trait]
        p_first, p_later = TRAIT_PRESENCE[trait]
        present = np.where(first_all, rng.random(n) < p_first, rng.random(n) < p_later) & ~anonymous
        if trait == "logins":
            call_no = np.concatenate([np.arange(n_known) - starts, np.zeros(n_anon, np.int64)])
            base = values.to_numpy(zero_copy_only=False)[user_index]
            later = 0 if customers is None else 40
            traits[trait] = (ctype, pa.array(base + later + call_no * 5 + rng.integers(0, 5, n), mask=~present))
        elif trait == "email":
            lead = join("lead", numbers(rng.integers(1000, 9999, n)), "@example.com")
            email = pc.if_else(pa.array(anonymous), lead, values.take(pa.array(user_index)))
            traits[trait] = (ctype, pc.if_else(pa.array(present | anonymous), email, pa.nulls(n, email.type)))
        else:
            traits[trait] = (ctype, values.take(pa.array(user_index, mask=~present)))
    return calls_table(source.schema, "identifies", calls, traits)


def users_table(identifies: WarehouseTable) -> WarehouseTable | None:
    """``users``: one row per ``user_id`` (``id``), each trait's latest non-null value."""
    standard = {"id", "received_at", "sent_at", "timestamp", "original_timestamp", "uuid_ts", "anonymous_id",
                "user_id"}
    traits = [c for c in identifies.column_names if c not in standard and not c.startswith("context_")]
    frame = identifies.to_pandas()[["user_id", "received_at", "uuid_ts", *traits]]
    frame = frame[frame["user_id"].notna() & (frame["user_id"] != "")]
    if frame.empty:
        return None
    frame = frame.sort_values(["received_at", "uuid_ts"], kind="stable")
    grouped = frame.groupby("user_id", sort=True)
    merged = grouped[traits].last()
    merged.insert(0, "uuid_ts", grouped["uuid_ts"].max())
    merged.insert(0, "received_at", grouped["received_at"].max())
    merged = merged.reset_index().rename(columns={"user_id": "id"})
    types = {"id": "text", "received_at": "timestamp", "uuid_ts": "timestamp",
             **{t: identifies.types[t] for t in traits}}
    columns = {c: (types[c], pa.array(merged[c], from_pandas=True)) for c in merged.columns}
    return make_table(identifies.schema, "users", columns)


# --- groups and aliases (not used by the sync) ----------------------------------------------------------


def side_tables(source: Source, *, seed: int, population: Population, schedule: LoadSchedule) -> list[WarehouseTable]:
    """Small ``groups`` and ``aliases`` tables."""
    out = []
    clients = clients_for(population, source.library)
    for name in ("groups", "aliases"):
        rng = stream(seed, "base", source.schema, name)
        n = max(3, population.n_users // (10 if name == "groups" else 25))
        users = active_users(rng, population, clients, n)
        client = clients_of(rng, clients, users)
        identities = Identities(client, take(population.user_ids, users), take(clients.anonymous_id, client))
        calls = make_calls(rng, source.library, population, identities, schedule, NO_QUIRKS)
        if name == "groups":
            properties: Columns = {
                "group_id": ("text", join("grp_", numbers(rng.integers(1, max(2, n // 2), n), 3))),
                "name": ("text", choice(rng, vocab.COMPANIES, n)),
                "industry": ("text", choice(rng, vocab.INDUSTRIES, n)),
                "employees": ("bigint", pa.array(rng.integers(2, 5000, n))),
                "plan": ("text", choice(rng, vocab.PLANS, n, vocab.PLAN_WEIGHTS)),
            }
        else:
            previous = take(clients.anonymous_id, clients.first[users])
            properties = {"previous_id": ("text", previous)}
        out.append(calls_table(source.schema, name, calls, properties))
    return out


def source_tables(source: Source, rows: dict[str, int], *, seed: int, label: str, population: Population,
                  profiles: Profiles, schedule: LoadSchedule, quirks: Quirks,
                  identify_customers: int | None = None, with_side_tables: bool = True) -> list[WarehouseTable]:
    """Every table of one source schema."""
    calls = call_tables(source, rows, seed=seed, label=label, population=population, schedule=schedule, quirks=quirks)
    tables = list(calls)
    tracks = tracks_table(source.schema, [t for t in calls if is_track_table(source, t.name)])
    if tracks is not None:
        tables.append(tracks)
    identifies = identifies_table(source, seed=seed, label=label, population=population, profiles=profiles,
                                  schedule=schedule, quirks=quirks, customers=identify_customers)
    if identifies is not None:
        tables.append(identifies)
        users = users_table(identifies)
        if users is not None:
            tables.append(users)
    if source.side_tables and with_side_tables:
        tables.extend(side_tables(source, seed=seed, population=population, schedule=schedule))
    return tables
