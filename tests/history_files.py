#!/usr/bin/env python3
"""Writes one history in every file format churnguard reads, with pandas and pyarrow.

An implementation independent of churnguard's own writers, for tests/history_files.rs: the same
events as JSONL (Python's json module, other key order and spacing), gzip JSONL, CSV (pandas;
absent amounts as empty cells), Parquet (pyarrow; ts as TIMESTAMP(NANOS, UTC), type dictionary-
encoded, amount DECIMAL(18,2), several row groups), and the history split by month into parts
that alternate between Parquet (zstd, TIMESTAMP(MICROS)) and gzip CSV.

Usage: history_files.py SOURCE.jsonl OUT_DIR
"""

import gzip
import json
import os
import sys
from decimal import Decimal

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

COLUMNS = ["event_id", "user_id", "type", "ts", "amount"]


def write_jsonl(records, path, opener=open):
    with opener(path, "wt", encoding="utf-8") as f:
        for r in records:
            f.write(json.dumps(r, sort_keys=True) + "\n")


def parquet_table(df, ts_unit):
    ts = pd.to_datetime(df["ts"], utc=True, format="ISO8601")
    amounts = [None if pd.isna(a) else Decimal(repr(float(a))) for a in df["amount"]]
    return pa.table(
        {
            "event_id": pa.array(df["event_id"], pa.string()),
            "user_id": pa.array(df["user_id"], pa.string()),
            "type": pa.array(df["type"], pa.string()).dictionary_encode(),
            "ts": pa.array(ts).cast(pa.timestamp(ts_unit, tz="UTC")),
            "amount": pa.array(amounts, pa.decimal128(18, 2)),
        }
    )


def main():
    source, out = sys.argv[1], sys.argv[2]
    with open(source, encoding="utf-8") as f:
        records = [json.loads(line) for line in f if line.strip()]
    write_jsonl(records, os.path.join(out, "history.jsonl"))
    write_jsonl(records, os.path.join(out, "history.jsonl.gz"), gzip.open)

    df = pd.DataFrame.from_records(records, columns=COLUMNS)
    df.to_csv(os.path.join(out, "history.csv"), index=False)
    pq.write_table(
        parquet_table(df, "ns"),
        os.path.join(out, "history.parquet"),
        row_group_size=2000,
        compression="snappy",
    )

    parts = os.path.join(out, "parts")
    os.makedirs(parts, exist_ok=True)
    months = df["ts"].str.slice(0, 7)
    for i, month in enumerate(sorted(months.unique())):
        part = df[months == month]
        if i % 2 == 0:
            pq.write_table(
                parquet_table(part, "us"),
                os.path.join(parts, f"{month}.parquet"),
                compression="zstd",
            )
        else:
            part.to_csv(os.path.join(parts, f"{month}.csv.gz"), index=False, compression="gzip")
    print(f"wrote {len(records)} events in {len(months.unique())} monthly parts", file=sys.stderr)


if __name__ == "__main__":
    main()
