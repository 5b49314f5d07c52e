"""Strict validation of meter records and customers, as the emulator's contract demands.

The emulator is the project's test oracle, so it is deliberately *stricter* than anything Amberflo is
known to be: a sync that passes here never sends a value whose fate at Amberflo is unknown
(``shared/spec/amberflo-api.md``). It is written independently of :mod:`amberflo_sync.formatting`
on purpose — an oracle that shares code with the thing it checks would share its bugs.

Meter validation is on the benchmark's hot path (≥ 300k records/s), hence the shape of
:func:`validate_meter_records`: it first tries to prove a whole request valid with column-wise bulk
checks (C-speed joins, set-of-types, one ``bytes.translate`` over every dimension value), and only when
that proof fails does it walk the records one by one (:func:`record_problem`) to name the first
offending record and field.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Sequence
from typing import Any

import numpy as np
import orjson

#: Characters allowed in a dimension value or a customer trait value.
ALLOWED_VALUE_CHARACTERS = (
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789 _-!.*'()&$@=;:+,?"
)
#: Longest accepted dimension or trait value, in characters.
MAX_VALUE_LENGTH = 200

# Bulk check: values are joined with a separator that is not an allowed character, encoded, and every
# allowed byte deleted; anything left over is a bad character (non-ASCII text survives as its UTF-8
# bytes). ``bytes.translate`` runs at memory speed, far ahead of a regex or a per-value loop.
_SEPARATOR = "\x00"
_ALLOWED_OR_SEPARATOR = (ALLOWED_VALUE_CHARACTERS + _SEPARATOR).encode("ascii")
_ALLOWED_SET = frozenset(ALLOWED_VALUE_CHARACTERS)
# orjson cannot serialize integers beyond 64 bits, and no epoch-millisecond time needs them.
_MAX_TIME_MILLIS = 2**63
_SORT_KEYS = orjson.OPT_SORT_KEYS


class RecordError(ValueError):
    """A meter record broke the contract; names the record's position and the field.

    :param index: position of the record in the request body (0 for a single-object body).
    :param field: dotted field name, e.g. ``dimensions.path``.
    :param reason: what is wrong, without echoing the value (it may be large or sensitive).
    """

    def __init__(self, index: int, field: str, reason: str) -> None:
        self.index = index
        self.field = field
        self.reason = reason
        super().__init__(f"record {index}: field '{field}': {reason}")


class CustomerError(ValueError):
    """A customer body broke the contract; names the field.

    :param field: dotted field name, e.g. ``traits.plan``.
    :param reason: what is wrong.
    """

    def __init__(self, field: str, reason: str) -> None:
        self.field = field
        self.reason = reason
        super().__init__(f"field '{field}': {reason}")


def _json_type(value: object) -> str:
    """JSON's name for a parsed value's type, for error messages that never echo the value."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def value_problem(value: object) -> str | None:
    """Why ``value`` is not an acceptable dimension or trait value, or ``None`` when it is.

    :param value: a parsed JSON value.
    """
    if not isinstance(value, str):
        return f"value must be a string, got {_json_type(value)}"
    if not value:
        return "value must not be empty"
    if len(value) > MAX_VALUE_LENGTH:
        return f"value is {len(value)} characters long, the maximum is {MAX_VALUE_LENGTH}"
    if not _ALLOWED_SET.issuperset(value):
        return "value contains characters outside the allowed set"
    return None


def _string_problem(value: object) -> str:
    """Reason a required string field is invalid (it is known to be invalid)."""
    if value is None:
        return "is required"
    if not isinstance(value, str):
        return f"must be a string, got {_json_type(value)}"
    return "must not be empty"


def record_problem(index: int, record: object) -> RecordError | None:
    """The first thing wrong with one meter record, field by field, or ``None`` when it is valid.

    This is the authoritative rule; the bulk checks of :func:`validate_meter_records` are a fast way
    of proving that it holds for a whole request, and fall back to it to name the culprit.

    :param index: the record's position in the request, for the message.
    :param record: one parsed element of the request body.
    """
    if not isinstance(record, dict):
        return RecordError(index, "(record)", f"must be a JSON object, got {_json_type(record)}")
    for field in ("uniqueId", "customerId", "meterApiName"):
        value = record.get(field)
        if type(value) is not str or not value:
            return RecordError(index, field, _string_problem(value))
    value = record.get("meterValue")
    if value is None:
        return RecordError(index, "meterValue", "is required")
    if type(value) not in (int, float):
        return RecordError(index, "meterValue", f"must be a number, got {_json_type(value)}")
    if isinstance(value, float) and not math.isfinite(value):
        return RecordError(index, "meterValue", "must be a finite number")
    if isinstance(value, int):
        try:
            float(value)
        except OverflowError:
            return RecordError(index, "meterValue", "is too large for a double")
    millis = record.get("meterTimeInMillis")
    if millis is None:
        return RecordError(index, "meterTimeInMillis", "is required")
    if type(millis) is not int:
        detail = " with a fraction or exponent" if isinstance(millis, float) else ""
        return RecordError(
            index,
            "meterTimeInMillis",
            f"must be an integer number of epoch milliseconds, got {_json_type(millis)}{detail}",
        )
    if millis <= 0:
        return RecordError(index, "meterTimeInMillis", "must be a positive integer")
    if millis >= _MAX_TIME_MILLIS:
        return RecordError(index, "meterTimeInMillis", "is out of range")
    if "dimensions" not in record:
        return None
    dimensions = record["dimensions"]
    if not isinstance(dimensions, dict):
        return RecordError(
            index, "dimensions", f"must be an object of strings, got {_json_type(dimensions)}"
        )
    for key, dimension_value in dimensions.items():
        if not key:
            return RecordError(index, "dimensions", "dimension names must not be empty")
        problem = value_problem(dimension_value)
        if problem is not None:
            return RecordError(index, f"dimensions.{key}", problem)
    return None


_REQUIRED = operator.itemgetter(
    "uniqueId", "customerId", "meterApiName", "meterValue", "meterTimeInMillis"
)
_NUMBER_TYPES = frozenset((int, float))
_DIMENSION_TYPES = frozenset((dict, type(None)))


def _values_are_valid(values: list[Any]) -> bool:
    """Whether every dimension value is a 1–200 character string of allowed characters.

    Bulk form of :func:`value_problem`: the values are joined with a separator that is not an
    allowed character; deleting every allowed byte (``bytes.translate``, memory speed) must leave
    nothing, and the gaps between separators (numpy, one vector op) give every value's length.
    """
    try:
        encoded = _SEPARATOR.join(values).encode("utf-8")
    except (TypeError, UnicodeEncodeError):  # a non-string value, or a lone surrogate
        return False
    if encoded.translate(None, _ALLOWED_OR_SEPARATOR):
        return False  # a character outside the set; non-ASCII survives as its UTF-8 bytes
    # Every byte is now ASCII, so byte offsets are character offsets.
    separators = np.flatnonzero(np.frombuffer(encoded, dtype=np.uint8) == 0)
    if len(separators) != len(values) - 1:
        return False  # a value contained the separator itself
    if not len(separators):
        return 1 <= len(encoded) <= MAX_VALUE_LENGTH
    first, last = int(separators[0]), len(encoded) - 1 - int(separators[-1])
    if not (1 <= first <= MAX_VALUE_LENGTH and 1 <= last <= MAX_VALUE_LENGTH):
        return False
    if len(separators) == 1:
        return True
    gaps = np.diff(separators)  # a value's length + 1
    return bool(gaps.min() >= 2 and gaps.max() <= MAX_VALUE_LENGTH + 1)


class MeterBatch:
    """The valid records of one request, as columns, ready to be stored.

    Identities (see :meth:`identities`) are computed on demand, so that the store can build them
    after the client already has its answer: they are a third of the validation cost.
    """

    __slots__ = ("unique_ids", "customer_ids", "meter_names", "meter_values", "millis", "dimensions")

    def __init__(
        self,
        unique_ids: Sequence[str],
        customer_ids: Sequence[str],
        meter_names: Sequence[str],
        meter_values: Sequence[int | float],
        millis: Sequence[int],
        dimensions: Sequence[dict[str, str] | None],
    ) -> None:
        self.unique_ids = unique_ids
        self.customer_ids = customer_ids
        self.meter_names = meter_names
        self.meter_values = meter_values
        self.millis = millis
        self.dimensions = dimensions  # None for "no dimensions", never {}

    def __len__(self) -> int:
        return len(self.unique_ids)

    def identities(self) -> list[bytes]:
        """Each record's canonical identity, the key of de-duplication.

        The six known fields as an orjson array: ``meterValue`` as a float (``1`` and ``1.0`` are the
        same record), dimensions sorted by name (their order does not matter); unknown top-level
        keys are not part of it.
        """
        dumps = orjson.dumps
        return [
            dumps(row, option=_SORT_KEYS)
            for row in zip(
                self.unique_ids,
                self.customer_ids,
                self.meter_names,
                map(float, self.meter_values),
                self.millis,
                self.dimensions,
            )
        ]


def _fast_batch(records: Sequence[Any]) -> MeterBatch | None:
    """Prove a whole request valid column by column; ``None`` means "look record by record".

    Every check here is *sufficient*: it only ever accepts valid records. It may refuse valid ones
    (e.g. when the sum of the meter values overflows), which merely costs the slow path.
    """
    if not records:
        return MeterBatch((), (), (), (), (), ())
    if set(map(type, records)) != {dict}:
        return None
    try:
        rows = list(map(_REQUIRED, records))
    except KeyError:
        return None
    unique_ids, customer_ids, meter_names, meter_values, millis = zip(*rows)
    try:
        for column in (unique_ids, customer_ids, meter_names):
            "".join(column)  # TypeError unless every element is a string
            if "" in column:
                return None
        if set(map(type, millis)) != {int} or min(millis) <= 0 or max(millis) >= _MAX_TIME_MILLIS:
            return None
        if not set(map(type, meter_values)) <= _NUMBER_TYPES or not math.isfinite(
            # NaN and ±inf poison the sum; an int too big for a double overflows it (abs: no
            # cancelling out), so that float() cannot fail when the identities are built later.
            sum(map(abs, meter_values))
        ):
            return None
    except (TypeError, OverflowError):
        return None
    dimensions = [record.get("dimensions") for record in records]
    if not set(map(type, dimensions)) <= _DIMENSION_TYPES:
        return None
    values: list[Any] = []
    add_values = values.extend
    for index, record_dimensions in enumerate(dimensions):
        if record_dimensions:
            if "" in record_dimensions:
                return None
            add_values(record_dimensions.values())
        elif record_dimensions is None:
            if "dimensions" in records[index]:
                return None  # an explicit null
        else:
            dimensions[index] = None  # {} and "no dimensions" are the same record
    if values and not _values_are_valid(values):
        return None
    return MeterBatch(unique_ids, customer_ids, meter_names, meter_values, millis, dimensions)


def validate_meter_records(records: Sequence[Any]) -> MeterBatch:
    """Validate a request's records, all or nothing.

    :param records: the parsed request body, as a list (a single object is a list of one).
    :returns: the records as a :class:`MeterBatch`, in request order.
    :raises RecordError: for the first invalid record, in request order, naming its first bad field.
    """
    batch = _fast_batch(records)
    if batch is not None:
        return batch
    for index, record in enumerate(records):
        problem = record_problem(index, record)
        if problem is not None:
            raise problem
    # Valid after all (the bulk checks are conservative).
    return MeterBatch(
        [record["uniqueId"] for record in records],
        [record["customerId"] for record in records],
        [record["meterApiName"] for record in records],
        [record["meterValue"] for record in records],
        [record["meterTimeInMillis"] for record in records],
        [record.get("dimensions") or None for record in records],
    )


def record_from_identity(identity: bytes, meter_value: int | float) -> dict[str, Any]:
    """Rebuild the stored form of a record (known fields only) from its identity.

    :param identity: bytes made by :meth:`MeterBatch.identities`.
    :param meter_value: the ``meterValue`` exactly as it was sent.
    """
    unique_id, customer_id, meter_name, _, millis, dimensions = orjson.loads(identity)
    record: dict[str, Any] = {
        "uniqueId": unique_id,
        "customerId": customer_id,
        "meterApiName": meter_name,
        "meterValue": meter_value,
        "meterTimeInMillis": millis,
    }
    if dimensions:
        record["dimensions"] = dimensions
    return record


# --- customers -------------------------------------------------------------------------------------


def _check_traits(traits: object) -> dict[str, str]:
    """Traits follow the dimension value rule (``mapping.md``: "dimension and trait values")."""
    if not isinstance(traits, dict):
        raise CustomerError("traits", f"must be an object of strings, got {_json_type(traits)}")
    for key, value in traits.items():
        if not key:
            raise CustomerError("traits", "trait names must not be empty")
        problem = value_problem(value)
        if problem is not None:
            raise CustomerError(f"traits.{key}", problem)
    return dict(traits)


def validate_customer(body: object) -> dict[str, Any]:
    """Validate a ``POST``/``PUT /customers`` body and return the customer's known fields.

    Optional fields sent as ``null`` count as absent. Unknown fields are dropped.

    :param body: the parsed request body.
    :raises CustomerError: naming the first invalid field.
    """
    if not isinstance(body, dict):
        raise CustomerError("(body)", f"must be a JSON object, got {_json_type(body)}")
    customer: dict[str, Any] = {}
    for field in ("customerId", "customerName"):
        value = body.get(field)
        if not isinstance(value, str) or not value:
            raise CustomerError(field, _string_problem(value))
        customer[field] = value
    email = body.get("customerEmail")
    if email is not None:
        if not isinstance(email, str):
            raise CustomerError("customerEmail", f"must be a string, got {_json_type(email)}")
        customer["customerEmail"] = email
    traits = body.get("traits")
    customer["traits"] = {} if traits is None else _check_traits(traits)
    for field in ("enabled", "test"):
        flag = body.get(field)
        if flag is not None:
            if not isinstance(flag, bool):
                raise CustomerError(field, f"must be a boolean, got {_json_type(flag)}")
            customer[field] = flag
    address = body.get("address")
    if address is not None:
        if not isinstance(address, dict):
            raise CustomerError("address", f"must be an object, got {_json_type(address)}")
        customer["address"] = dict(address)
    return customer

