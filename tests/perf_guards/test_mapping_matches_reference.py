"""The Arrow hot path renders byte-identical records to the pandas mapping it replaced (issue 6).

Random frames carry every awkward value the mapping must survive (escapes, blanks, refused
characters, NaN/±inf/-0.0, huge and tiny floats, naive and zoned timestamps of any unit, mixed
object columns, Decimals, duplicate ids, rows to reject) and are mapped by both implementations.
"""

from __future__ import annotations

import decimal

import numpy as np
import pandas as pd
import pytest

from amberflo_sync import formatting, transform
from tests.perf_guards.fuzz_frames import column_variants, random_floats, random_texts, random_times
from tests.perf_guards.reference import formatting as reference_formatting
from tests.perf_guards.reference import transform as reference_transform


def standard_columns(rng: np.random.Generator, n: int, value_kind: str) -> pd.DataFrame:
    ids = [f"m-{i % max(n - 3, 1)}" for i in range(n)]  # a few in-chunk duplicates
    for i in np.flatnonzero(rng.random(n) < 0.05):
        ids[i] = rng.choice([None, "", "  ", 'q"uote\\d', "new\nline", "ünï/|"])
    users = random_texts(rng, n, distinct=7)
    anonymous = [None if rng.random() < 0.3 else f"anon-{i}" for i in range(n)]
    frame = pd.DataFrame(
        {
            "id": pd.Series(ids, dtype="str"),
            "user_id": pd.Series(users, dtype="str"),
            "anonymous_id": pd.Series(anonymous, dtype="str"),
            "timestamp": random_times(rng, n),
            "received_at": random_times(rng, n, unit="ns"),
            "uuid_ts": random_times(rng, n),
            "context_ip": "10.0.0.1",
            "event": pd.Series(random_texts(rng, n, distinct=3), dtype="str"),
            "event_text": pd.Series(random_texts(rng, n, distinct=3), dtype="str"),
        }
    )
    values = {
        "float": pd.Series(random_floats(rng, n)),
        "text": pd.Series([rng.choice(["1", " 7 ", "abc", "", "2.5", "1e3", "NaN", "-inf", None]) for _ in range(n)], dtype="str"),
        "decimal": pd.Series([decimal.Decimal(rng.choice(["12.50", "NaN", "-3", "1E+2"])) for _ in range(n)], dtype=object),
        "int": pd.Series(rng.integers(-5, 5, n)),
        "boolean": pd.Series(pd.array(np.where(rng.random(n) < 0.5, None, rng.random(n) < 0.5), dtype="boolean")),
        "mixed": pd.Series([[1, "2", True, None, 2.5][i % 5] for i in range(n)], dtype=object),
    }
    if value_kind != "none":
        frame["value"] = values[value_kind]
    frame[transform.DUP_RANK_COLUMN] = np.where(rng.random(n) < 0.05, 2, 1)
    return frame


def fuzz_frame(seed: int, n: int, value_kind: str) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = standard_columns(rng, n, value_kind)
    variants = column_variants(rng, n)
    names = list(variants)
    for name in rng.choice(names, size=min(8, len(names)), replace=False):
        frame[str(name)] = variants[name].to_numpy() if variants[name].dtype == object else variants[name].array
    frame["REGION"] = pd.Series(random_texts(rng, n, distinct=4), dtype="str")
    frame["region"] = "shadowed by REGION (first spelling wins)"
    return frame


def as_plain(batch) -> tuple:
    rejected = batch.rejected
    return (
        list(batch.records),
        list(batch.ids),
        rejected["id"].tolist(),
        rejected["reason"].tolist(),
        [repr(sorted(r.items(), key=str)) for r in rejected["row"].tolist()],
        batch.duplicates,
    )


@pytest.mark.parametrize("kind", ["track", "page"])
@pytest.mark.parametrize("value_kind", ["none", "float", "text", "decimal", "int", "boolean", "mixed"])
@pytest.mark.parametrize("seed", range(3))
def test_records_are_byte_identical_to_the_reference(seed, value_kind, kind):
    frame = fuzz_frame(seed, 600, value_kind)
    ours = transform.to_meter_records(frame, kind=kind, table="t_table")
    reference = reference_transform.to_meter_records(frame, kind=kind, table="t_table")
    assert as_plain(ours) == as_plain(reference)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("n", [1, 7, 300, 3000])
def test_column_formatting_is_identical_to_the_reference(seed, n):
    for name, column in column_variants(np.random.default_rng(seed), n).items():
        for function in ("column_to_text", "format_column"):
            ours = getattr(formatting, function)(column)
            reference = getattr(reference_formatting, function)(column)
            assert str(ours.dtype) == str(reference.dtype), (name, function)
            assert ours.index.equals(reference.index)
            assert ours.isna().tolist() == reference.isna().tolist(), (name, function)
            assert ours.dropna().tolist() == reference.dropna().tolist(), (name, function)


def test_rendered_records_are_a_json_array_without_copies():
    frame = fuzz_frame(11, 500, "float")
    batch = transform.to_meter_records(frame, kind="track", table="t")
    records = batch.records
    assert len(batch.rendered) == len(records) > 0
    for start, stop in [(0, len(records)), (3, 40), (7, 7), (len(records) - 1, len(records))]:
        body = b"".join(bytes(part) for part in batch.rendered.json_array_parts(start, stop))
        assert body == ("[" + ",".join(records[start:stop]) + "]").encode("utf-8")
    assert list(batch.rendered[5:9]) == records[5:9] and batch.rendered[-1] == records[-1]
