"""Writes Confluent-framed Avro payloads with fastavro, an implementation independent of
churnguard's decoder, for tests/avro_input.rs.

Usage: python3 tests/avro_writer.py SCHEMA_DIR
Prints one line per payload: "<name> <base64 payload>".
"""
import base64
import datetime as dt
import decimal
import json
import struct
import sys
from io import BytesIO

import fastavro

schema_dir = sys.argv[1]
schemas = {
    i: fastavro.parse_schema(json.load(open(f"{schema_dir}/{i}.avsc"))) for i in (1, 2)
}


def frame(schema_id, record, writer_id=None):
    out = BytesIO()
    fastavro.schemaless_writer(out, schemas[writer_id or schema_id], record)
    return b"\x00" + struct.pack(">I", schema_id) + out.getvalue()


UTC = dt.timezone.utc
order = {
    "event_id": "ord-1001",
    "user_id": "u-42",
    "anonymous_id": "anon-9f1c",
    "event_type": "ORDER_COMPLETED",
    "occurred_at": dt.datetime(2025, 12, 12, 19, 11, 1, 249000, tzinfo=UTC),
    "properties": {
        "order_id": "50314b8e",
        "revenue": decimal.Decimal("25.50"),
        "currency": "EUR",
        "product_ids": ["507f1f77", "505bd76785"],
        "attributes": {"coupon": "hasbros", "shipping": "express"},
    },
    "context": {"ip": "108.0.78.21", "session_digest": bytes(range(20)), "consent": True},
}
viewed = dict(order, event_id="view-1", event_type="PRODUCT_VIEWED",
              properties=dict(order["properties"], revenue=None, currency=None, order_id=None))
anonymous = dict(order, event_id="view-2", user_id=None, event_type="PRODUCT_VIEWED")
heartbeat = dict(order, event_id="hb-1", event_type="HEARTBEAT")
big_order = dict(order, event_id="ord-1002",
                 properties=dict(order["properties"], revenue=decimal.Decimal("-3.75"), currency="USD"))
refund_v2 = {
    "event_id": "ref-7",
    "user_id": "u-42",
    "anonymous_id": "anon-9f1c",
    "event_type": "ORDER_REFUNDED",
    "occurred_at": dt.datetime(2025, 12, 13, 8, 0, 0, 123456, tzinfo=UTC),
    "channel": "APP",
    "properties": {"order_id": "50314b8e", "revenue": 12.25, "currency": None},
}
yen = dict(refund_v2, event_id="ref-8", properties=dict(refund_v2["properties"], currency="JPY"))

good = frame(1, order)
payloads = {
    "order": good,
    "viewed": frame(1, viewed),
    "anonymous": frame(1, anonymous),
    "heartbeat": frame(1, heartbeat),
    "negative_amount": frame(1, big_order),
    "refund_v2": frame(2, refund_v2),
    "yen_v2": frame(2, yen),
    "wrong_magic": b"\x01" + good[1:],
    "json": json.dumps({"event_id": "x"}).encode(),
    "unknown_id": b"\x00" + struct.pack(">I", 42) + good[5:],
    "header_only": good[:5],
    "too_short": good[:3],
    "truncated": good[:-3],
    "trailing": good + b"\x00\x00",
    "v2_framed_as_v1": frame(1, refund_v2, writer_id=2),
}
for name, payload in payloads.items():
    print(name, base64.b64encode(payload).decode())
