#!/usr/bin/env python3
"""Reads every table written by cortexflow's writer with pyarrow and checks it against
schemas/<table>.json and the expected values. Usage: check_parquet.py DIR EXPECTED.json SCHEMAS"""
import json
import math
import pathlib
import sys

import pyarrow as pa
import pyarrow.parquet as pq

TYPES = {"utf8": pa.string(), "bool": pa.bool_(), "uint16": pa.uint16(), "uint32": pa.uint32(),
         "uint64": pa.uint64(), "int32": pa.int32(), "int64": pa.int64(), "float32": pa.float32(),
         "float64": pa.float64()}

root, expected, schemas = pathlib.Path(sys.argv[1]), json.load(open(sys.argv[2])), pathlib.Path(sys.argv[3])
for name, rows in expected.items():
    table = pq.read_table(root / f"{name}.parquet")
    spec = json.load(open(schemas / f"{name}.json"))
    assert table.schema.metadata[b"table"].decode() == name
    assert table.schema.names == [c["name"] for c in spec["columns"]], (name, table.schema.names)
    for field, col in zip(table.schema, spec["columns"]):
        if col["type"].startswith("fixed_size_list"):
            assert pa.types.is_fixed_size_list(field.type) and field.type.value_type == pa.float32(), (name, field)
        else:
            assert field.type == TYPES[col["type"]], (name, field)
        assert field.nullable == col.get("nullable", False), (name, field)
    got = table.to_pylist()
    assert len(got) == len(rows), name
    for g, e in zip(got, rows):
        for k, v in e.items():
            w = g[k]
            if isinstance(v, float):
                assert math.isclose(w, v, rel_tol=1e-6), (name, k, w, v)
            elif isinstance(v, list):
                assert all(math.isclose(a, b, rel_tol=1e-6) for a, b in zip(w, v)) and len(w) == len(v), (name, k)
            else:
                assert w == v, (name, k, w, v)
print("ok", len(expected), "tables")
