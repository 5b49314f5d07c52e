"""A generated warehouse table: Arrow rows plus the SQL type of every column.

The generator only produces ``WarehouseTable`` objects (pure, no I/O); ``warehouse_writer`` turns
them into DDL and rows for DuckDB or PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import pyarrow as pa

if TYPE_CHECKING:
    import pandas as pd

#: Logical column types, rendered per dialect by the writer.
ColumnType = Literal["timestamp", "bigint", "double", "numeric", "boolean", "text"]

#: The Arrow type each logical type is held in while generating. ``numeric`` travels as float64
#: (values with two decimals) and becomes ``DECIMAL(18,2)`` / ``numeric(18,2)`` in the warehouse.
ARROW_TYPES: dict[str, pa.DataType] = {
    "timestamp": pa.timestamp("us", tz="UTC"),
    "bigint": pa.int64(),
    "double": pa.float64(),
    "numeric": pa.float64(),
    "boolean": pa.bool_(),
    "text": pa.large_string(),
}

#: An ordered column spec while building a table: name -> (type, values).
Columns = dict[str, tuple[ColumnType, pa.Array]]


@dataclass(frozen=True)
class WarehouseTable:
    """Rows of one warehouse table.

    :param schema: schema name (the Segment source slug or the Engage space schema).
    :param name: table name.
    :param data: the rows; column order is the table's column order.
    :param types: logical type of every column of ``data``.
    """

    schema: str
    name: str
    data: pa.Table
    types: Mapping[str, ColumnType]

    @property
    def qualified_name(self) -> str:
        return f"{self.schema}.{self.name}"

    @property
    def num_rows(self) -> int:
        return self.data.num_rows

    @property
    def column_names(self) -> list[str]:
        return list(self.data.column_names)

    def to_pandas(self) -> pd.DataFrame:
        """The rows as a DataFrame with nullable ``Int64`` / ``boolean`` columns and ``str`` text."""
        import pandas as pd

        mapper = {pa.int64(): pd.Int64Dtype(), pa.bool_(): pd.BooleanDtype()}.get
        return self.data.to_pandas(types_mapper=mapper)

    def renamed(self, rename: Callable[[str], str], *, schema: str | None = None) -> WarehouseTable:
        """A copy whose table and column names go through ``rename`` (e.g. ``str.upper``), in
        ``schema`` when given (already final, not passed through ``rename``)."""
        names = [rename(c) for c in self.data.column_names]
        return WarehouseTable(
            schema=schema if schema is not None else rename(self.schema),
            name=rename(self.name),
            data=self.data.rename_columns(names),
            types={rename(c): t for c, t in self.types.items()},
        )


def make_table(schema: str, name: str, columns: Columns, *, keep_empty: tuple[str, ...] = ("id",)) -> WarehouseTable:
    """Assemble a table, dropping every column that holds no non-null value.

    Segment creates a column the first time it sees a non-null value for it, so a property that was
    always null (or a context field a library never sends) has no column at all.

    :param columns: ordered ``name -> (type, array)``; arrays are cast to the type's Arrow type.
    :param keep_empty: columns kept even when entirely null.
    """
    arrays: list[pa.Array] = []
    names: list[str] = []
    types: dict[str, ColumnType] = {}
    for column, (ctype, values) in columns.items():
        values = values.cast(ARROW_TYPES[ctype]) if values.type != ARROW_TYPES[ctype] else values
        if len(values) and values.null_count == len(values) and column not in keep_empty:
            continue
        names.append(column)
        arrays.append(values)
        types[column] = ctype
    return WarehouseTable(schema, name, pa.Table.from_arrays(arrays, names=names), types)
