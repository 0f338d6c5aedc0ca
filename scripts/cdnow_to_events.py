#!/usr/bin/env python3
"""Convert CDNOW_master.txt to churnguard's event schema (JSONL of `purchase` events).

Input: whitespace-separated `customer_id date(YYYYMMDD) number_of_cds dollar_value`, one line
per customer and purchase day, after a header line (69,659 rows, 23,570 customers, 1997-01-01..1998-06-30).

Output: one event per line, in file order:
  {"event_id":"cdnow-<line>","user_id":"c<id>","type":"purchase",
   "ts":"YYYY-MM-DDT12:00:00Z","amount":<dollars>,"props":{"cds":<n>}}
The data has day resolution only; events are placed at 12:00 UTC so that a cutoff at a UTC
midnight never coincides with a purchase. `number_of_cds` goes into `props` (ignored by
the engine). Negative or non-finite dollar values would be refused by the service; CDNOW has
none, but any found are clamped to 0 and counted on stderr.

Usage: cdnow_to_events.py CDNOW_master.txt OUT.jsonl
"""
import json
import math
import sys


def main() -> int:
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    src, dst = sys.argv[1], sys.argv[2]
    n = clamped = 0
    customers = set()
    with open(src, encoding="ascii") as f, open(dst, "w", encoding="ascii") as out:
        for lineno, line in enumerate(f, 1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) != 4:
                raise SystemExit(f"{src}:{lineno}: expected 4 fields, got {len(parts)}")
            cust, date, cds, dollars = parts
            if lineno == 1 and not cust.isdigit():
                continue  # header: customer_id date number_of_cds dollar_value
            if len(date) != 8 or not date.isdigit():
                raise SystemExit(f"{src}:{lineno}: bad date {date!r}")
            amount = float(dollars)
            if not math.isfinite(amount) or amount < 0:
                amount, clamped = 0.0, clamped + 1
            event = {
                "event_id": f"cdnow-{lineno}",
                "user_id": f"c{int(cust):05d}",
                "type": "purchase",
                "ts": f"{date[:4]}-{date[4:6]}-{date[6:]}T12:00:00Z",
                "amount": round(amount, 2),
                "props": {"cds": int(cds)},
            }
            out.write(json.dumps(event, separators=(",", ":")) + "\n")
            n += 1
            customers.add(cust)
    print(f"wrote {n} purchase events of {len(customers)} customers to {dst}"
          + (f" ({clamped} amounts clamped to 0)" if clamped else ""), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
