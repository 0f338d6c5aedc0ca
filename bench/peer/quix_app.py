#!/usr/bin/env python3
"""Quix Streams churn-feature app (peer baseline).

Copied from the team's shared/peer/quix_app.py for scripts/bench.sh, with one change: messages
the app cannot decode or process (the load generator's deliberately broken ones, which churnguard
dead-letters) are skipped and counted toward TARGET through the error callbacks, as churnguard
counts its rejections; without it the first malformed message stops the app.

Variants (argv[1]):
  main       : stateful apply, per-user RocksDB state holding day buckets
               [day, events, purchases, spend] for the last 90 days; computes
               events/purchases/spend over 7/30/90 days (event time, from `ts`)
               and emits an alert to topic `alerts` when
                 tenure >= 90 days and events_30d < 0.25 * (events_90d / 3)
               (at most one alert per user per 30 days).
  stateless  : JSON deserialize + count only (no state, no output).
  count_state: per-user event counter in state (state.get/set), no windows,
               no output -- isolates the RocksDB/state cost.
  windows    : Quix native windowing API: three branches, each a
               sliding_window(7d / 30d / 90d, grace 2h) on event time (`ts`)
               with .agg(events=Count(), purchases=Count("pamt"), spend=Sum("pamt"))
               .current(); no alert rule (combining the three branch outputs would
               need a join, which Quix has no built-in for here) -- measures the
               cost of the built-in window machinery only.
Env: FETCH_WAIT_MS (default 500, librdkafka's) -> consumer fetch.wait.max.ms.
Env: NO_CHANGELOG=1 -> Application(use_changelog_topics=False).

Stops (app.stop()) when TARGET (1,000,000) rows have gone through the pipeline.
Usage: quix_app.py VARIANT CONSUMER_GROUP
"""
import os
import sys
import time
from datetime import datetime, timezone

T_START = time.perf_counter()

from quixstreams import Application, State  # noqa: E402

VARIANT = sys.argv[1]
GROUP = sys.argv[2]
BOOTSTRAP = os.environ.get("BOOTSTRAP", "127.0.0.1:19092")
TARGET = int(os.environ.get("TARGET", "1000000"))
STATE_DIR = os.environ.get("STATE_DIR", f"./state/{GROUP}")
DAY = 86400

cnt = {"n": 0, "alerts": 0, "t_first": None, "t_done": None, "skipped": 0}


def skip_bad(exc, row_or_message, logger) -> bool:
    # Broken input: count it as handled (like churnguard's dead-lettering) and go on.
    cnt["skipped"] += 1
    counter(None)
    return True


app = Application(
    broker_address=BOOTSTRAP,
    on_consumer_error=skip_bad,
    on_processing_error=skip_bad,
    consumer_group=GROUP,
    auto_offset_reset="earliest",
    state_dir=STATE_DIR,
    consumer_extra_config={"session.timeout.ms": 6000, "heartbeat.interval.ms": 1000,
                           # The bench gives every consumer the same fetch.wait.max.ms.
                           "fetch.wait.max.ms": int(os.environ.get("FETCH_WAIT_MS", "500"))},
    loglevel=os.environ.get("LOGLEVEL", "INFO"),
    use_changelog_topics=os.environ.get("NO_CHANGELOG") != "1",
)

def ts_extractor(value, headers, timestamp, timestamp_type) -> int:
    return parse_ts(value["ts"]) * 1000


activity = app.topic(
    os.environ.get("TOPIC", "activity"), key_deserializer="str", value_deserializer="json",
    timestamp_extractor=ts_extractor if VARIANT == "windows" else None,
)
alerts_topic = app.topic("alerts", key_serializer="str", value_serializer="json")

sdf = app.dataframe(activity)


def counter(_value):
    n = cnt["n"] + 1
    cnt["n"] = n
    if n == 1:
        cnt["t_first"] = time.perf_counter()
    elif n % 100000 == 0:
        print(f"progress {n} t={time.perf_counter() - T_START:.1f}s", flush=True)
    if n >= TARGET:
        cnt["t_done"] = time.perf_counter()
        app.stop()


_epoch_cache = {}


def parse_ts(s: str) -> int:
    # "2026-01-05T10:00:00Z" -> epoch seconds (cache the date part)
    d = s[:10]
    base = _epoch_cache.get(d)
    if base is None:
        base = int(datetime.strptime(d, "%Y-%m-%d").replace(tzinfo=timezone.utc).timestamp())
        _epoch_cache[d] = base
    return base + int(s[11:13]) * 3600 + int(s[14:16]) * 60 + int(s[17:19])


def features(value: dict, state: State):
    ts = parse_ts(value["ts"])
    day = ts // DAY
    is_p = value["type"] == "purchase"
    amt = value.get("amount") or 0.0

    buckets = state.get("b")  # list of [day, events, purchases, spend], ascending day
    if buckets is None:
        buckets = []
        first = day
        state.set("first", day)
    else:
        first = state.get("first", day)

    # update the day bucket (events are roughly in order; search from the end)
    i = len(buckets) - 1
    while i >= 0 and buckets[i][0] > day:
        i -= 1
    if i >= 0 and buckets[i][0] == day:
        b = buckets[i]
        b[1] += 1
        if is_p:
            b[2] += 1
            b[3] += amt
    else:
        buckets.insert(i + 1, [day, 1, 1 if is_p else 0, amt if is_p else 0.0])

    # prune buckets older than 90 days (relative to this event's day)
    lo90 = day - 89
    if buckets[0][0] < lo90:
        buckets = [b for b in buckets if b[0] >= lo90]

    lo7, lo30 = day - 6, day - 29
    e7 = p7 = e30 = p30 = e90 = p90 = 0
    s7 = s30 = s90 = 0.0
    for d, e, p, s in buckets:
        if d > day:
            continue
        e90 += e; p90 += p; s90 += s
        if d >= lo30:
            e30 += e; p30 += p; s30 += s
            if d >= lo7:
                e7 += e; p7 += p; s7 += s
    state.set("b", buckets)

    alert = None
    if day - first >= 89 and e30 < 0.25 * (e90 / 3.0):
        last = state.get("la", -10**9)
        if day - last >= 30:
            state.set("la", day)
            alert = {
                "user_id": value["user_id"],
                "ts": value["ts"],
                "rule": "events_30d < 25% of 90d avg per 30d",
                "events_7d": e7, "events_30d": e30, "events_90d": e90,
                "purchases_7d": p7, "purchases_30d": p30, "purchases_90d": p90,
                "spend_7d": round(s7, 2), "spend_30d": round(s30, 2), "spend_90d": round(s90, 2),
            }
    return alert


def count_state(value: dict, state: State):
    state.set("n", state.get("n", 0) + 1)
    return value


def count_alert(v):
    cnt["alerts"] += 1


if VARIANT == "main":
    sdf = sdf.apply(features, stateful=True)
    sdf = sdf.update(counter)
    sdf = sdf.filter(lambda v: v is not None)
    sdf = sdf.update(count_alert)
    sdf = sdf.to_topic(alerts_topic)
elif VARIANT == "stateless":
    sdf = sdf.update(counter)
elif VARIANT == "count_state":
    sdf = sdf.apply(count_state, stateful=True)
    sdf = sdf.update(counter)
elif VARIANT == "windows":
    from datetime import timedelta
    from quixstreams.dataframe.windows import Count, Sum

    def prep(v):
        v["pamt"] = v["amount"] if v["type"] == "purchase" else None

    sdf = sdf.update(prep)
    sdf = sdf.update(counter)
    for days in (7, 30, 90):
        (
            sdf.sliding_window(duration_ms=timedelta(days=days), grace_ms=timedelta(hours=2), name=f"w{days}d")
            .agg(events=Count(), purchases=Count("pamt"), spend=Sum("pamt"))
            .current()
        )
else:
    raise SystemExit(f"unknown variant {VARIANT}")

app.run()
t_end = time.perf_counter()
cpu = time.process_time()
ru = __import__("resource").getrusage(__import__("resource").RUSAGE_SELF)
n = cnt["n"]
t_first, t_done = cnt["t_first"], cnt["t_done"]
print(f"RESULT variant={VARIANT} group={GROUP} count={n} alerts={cnt['alerts']} skipped={cnt['skipped']}")
print(f"RESULT startup(t_first-start)={t_first - T_START:.2f}s "
      f"process(first->{n})={t_done - t_first:.2f}s "
      f"total(start->{n})={t_done - T_START:.2f}s "
      f"total_incl_final_commit={t_end - T_START:.2f}s")
print(f"RESULT RATE_FROM_FIRST {n/(t_done - t_first):,.0f} ev/s  "
      f"RATE_TOTAL {n/(t_done - T_START):,.0f} ev/s  "
      f"cpu={cpu:.2f}s maxrss={ru.ru_maxrss/1024:.0f}MiB")
