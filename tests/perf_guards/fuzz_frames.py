"""Generated warehouse-like columns and frames with every awkward value the mapping must survive."""

from __future__ import annotations

import datetime as dt
import decimal

import numpy as np
import pandas as pd

_ALPHABET = list("abcXYZ019 _-!.*'()&$@=;:+,?/|\\\"\t\n\x00\x1féü😀<>#%") + ["  ", "https://", "ø"]


def random_texts(rng: np.random.Generator, n: int, *, distinct: int | None = None) -> list[str | None]:
    """Text with allowed and refused characters, blanks, empties, long values and nulls."""
    pool_size = distinct or n
    pool = []
    for _ in range(pool_size):
        length = int(rng.choice([0, 1, 3, 12, 40, 199, 200, 201, 260]))
        pool.append("".join(rng.choice(_ALPHABET, length)) if length else "")
    values: list[str | None] = [pool[i] for i in rng.integers(0, pool_size, n)]
    for i in np.flatnonzero(rng.random(n) < 0.1):
        values[i] = None
    for i in np.flatnonzero(rng.random(n) < 0.03):
        values[i] = "   "
    return values


def random_floats(rng: np.random.Generator, n: int) -> np.ndarray:
    magnitude = 10.0 ** rng.integers(-12, 25, n)
    numbers = rng.standard_normal(n) * magnitude
    whole = rng.random(n) < 0.3
    numbers[whole] = np.round(numbers[whole])
    specials = np.array([np.nan, np.inf, -np.inf, -0.0, 0.0, 1e16, 9999999999999998.0, 2.0**63, -(2.0**63),
                         1e-4, 9.999e-5, 0.1, 2.5, 5e-324, 1.7976931348623157e308, 123456789.123456789])
    picks = rng.random(n) < 0.15
    numbers[picks] = rng.choice(specials, int(picks.sum()))
    return numbers


def random_times(rng: np.random.Generator, n: int, *, unit: str = "us", tz: bool = True, wide: bool = False) -> pd.Series:
    low, high = (-62_000_000_000, 250_000_000_000) if wide else (-2_000_000_000, 4_000_000_000)
    seconds = rng.integers(low, high, n)
    sub = rng.integers(0, 1_000_000_000, n)
    nanos = seconds.astype("int64") * 1_000_000_000 + sub if not wide else None
    if wide:
        values = (seconds.astype("datetime64[s]")).astype(f"datetime64[{unit if unit != 'ns' else 'us'}]")
    else:
        values = nanos.astype("datetime64[ns]").astype(f"datetime64[{unit}]")
    series = pd.Series(values)
    series[rng.random(n) < 0.1] = pd.NaT
    return series.dt.tz_localize("UTC") if tz else series


def column_variants(rng: np.random.Generator, n: int) -> dict[str, pd.Series]:
    """One column of every dtype the readers can produce (and some they should not)."""
    floats = random_floats(rng, n)
    ints = rng.integers(-(2**62), 2**62, n)
    flags = rng.random(n) < 0.5
    texts = random_texts(rng, n)
    few = random_texts(rng, n, distinct=5)
    nullable_flags = pd.array(np.where(rng.random(n) < 0.1, None, flags), dtype="boolean")
    mixed = pd.Series([[1, "two", 3.5, None, True, dt.date(2020, 1, 2), b"by/tes", {"k": 1}, [1, 2]][i % 9]
                       for i in range(n)], dtype=object)
    decimals = pd.Series([decimal.Decimal(str(round(x, 3))) if i % 7 else decimal.Decimal("NaN")
                          for i, x in enumerate(rng.standard_normal(n) * 100)], dtype=object)
    return {
        "str": pd.Series(texts, dtype="str"),
        "str_few": pd.Series(few, dtype="str"),
        "string_na": pd.Series(texts, dtype=pd.StringDtype("pyarrow")),
        "string_python": pd.Series(texts, dtype=pd.StringDtype("python")),
        "object_str": pd.Series(texts, dtype=object),
        "float": pd.Series(floats),
        "float32": pd.Series(np.clip(floats, -3e38, 3e38).astype("float32")),
        "int": pd.Series(ints),
        "int_small": pd.Series(rng.integers(-3, 500, n)),
        "Int64": pd.Series(pd.array(np.where(rng.random(n) < 0.1, None, ints), dtype="Int64")),
        "bool": pd.Series(flags),
        "boolean": pd.Series(nullable_flags),
        "object_bool": pd.Series(np.where(rng.random(n) < 0.1, None, flags), dtype=object),
        "ts_us_utc": random_times(rng, n),
        "ts_ns_utc": random_times(rng, n, unit="ns"),
        "ts_ms_naive": random_times(rng, n, unit="ms", tz=False),
        "ts_wide": random_times(rng, n, unit="s", wide=True),
        "object_mixed": mixed,
        "object_decimal": decimals,
        "object_float_int": pd.Series([1, 2.5, None, 3] * (n // 4) + [7] * (n % 4), dtype=object),
        "arrow_str": pd.Series(texts, dtype=pd.ArrowDtype(__import__("pyarrow").string())),
        "arrow_double": pd.Series(floats, dtype="double[pyarrow]"),
        "arrow_ts": random_times(rng, n).astype("timestamp[us, tz=UTC][pyarrow]"),
    }
