"""The per-element cost of one session value, against the stdlib's json on the same value.

Part of ``./scripts/bench`` (the "values" rows; ``./scripts/bench --only values`` runs just
them). For each value, two requests through Flask's
test client on one sqlite_session session, each timed against the same request on an
empty list, in pairs taken in a random order:

- read: ``len(session[key])``,
- nested change: ``session[key].append(x)`` then ``.pop()``, saved without reassignment.

The "extra" of a value is the median of the pairs' differences: what the value's size
adds to the request. In the same loop, ``json.loads(json.dumps(value))`` is timed on the
same value, and each extra is reported as a multiple of it (the target: at most 2).
"""

from __future__ import annotations

import gc
import json
import random
import statistics
import sys
import time
from dataclasses import dataclass
from typing import Any

from flask import Flask, session
from flask.testing import FlaskClient

TARGET = 2.0  # extra cost at most this multiple of json.loads + json.dumps
EMPTY = "empty"


def sample_values(rng: random.Random) -> dict[str, list[Any]]:
    """The measured values, distinct elements each (no shared objects to shortcut)."""

    def ints(n: int) -> list[int]:
        return [rng.randrange(10**9) for _ in range(n)]

    def item(i: int) -> dict[str, Any]:
        name, price = f"item {rng.randrange(10**6)}", rng.randrange(10**4) / 100
        return {"id": i, "name": name, "price": price, "qty": rng.randrange(1, 10),
                "gift": rng.random() < 0.5}  # fmt: skip

    return {
        "10 ints": ints(10),
        "100 ints": ints(100),
        "1,000 ints": ints(1000),
        "1,000 short strings": [f"{rng.getrandbits(40):010x}" for _ in range(1000)],
        "200 dicts of 5 fields": [item(i) for i in range(200)],
    }


def add_value_views(app: Flask, values: dict[str, list[Any]]) -> None:
    """``/values/setup`` stores every value (and an empty list); the two measured views."""
    keys = {name: f"v{i}" for i, name in enumerate([EMPTY, *values])}

    @app.get("/values/setup")
    def values_setup() -> str:
        session[keys[EMPTY]] = []
        for name, value in values.items():
            session[keys[name]] = value
        return "ok"

    @app.get("/values/read/<key>")
    def values_read(key: str) -> str:
        return str(len(session[key]))

    @app.get("/values/nested/<key>")
    def values_nested(key: str) -> str:
        value = session[key]
        value.append(1)
        value.pop()
        return "ok"

    app.config["BENCH_VALUE_KEYS"] = keys


@dataclass(frozen=True)
class ValueRow:
    name: str
    json_us: float  # json.loads + json.dumps of the value
    read_extra_us: float
    nested_extra_us: float

    @property
    def read_ratio(self) -> float:
        return self.read_extra_us / self.json_us

    @property
    def nested_ratio(self) -> float:
        return self.nested_extra_us / self.json_us


def json_round_trip_us(value: Any, loops: int) -> float:
    """µs per ``json.loads(json.dumps(value))``, averaged over ``loops`` calls."""
    dumps, loads, clock = json.dumps, json.loads, time.perf_counter_ns
    start = clock()
    for _ in range(loops):
        loads(dumps(value))
    return (clock() - start) / 1000 / loops


def calibrated_loops(value: Any, sample_us: float = 100.0) -> int:
    """How many json round trips of ``value`` make one sample of about ``sample_us``."""
    once = statistics.median(json_round_trip_us(value, 1) for _ in range(21))
    return max(1, round(sample_us / once))


def request_us(client: FlaskClient, path: str) -> float:
    clock = time.perf_counter_ns
    start = clock()
    response = client.get(path)
    elapsed = (clock() - start) / 1000
    if response.status_code != 200:
        raise RuntimeError(f"{path}: HTTP {response.status_code}")
    return elapsed


def paired_extra(client: FlaskClient, path: str, empty_path: str, flip: bool) -> float:
    """µs a request on the value takes more than one on the empty list.

    Four requests, value-empty-empty-value (empty-value-value-empty when ``flip``): the
    difference of the pairs cancels a drift of the host's speed and the cost of coming
    first after other work.
    """
    first, second = (empty_path, path) if flip else (path, empty_path)
    outer = request_us(client, first)
    inner = request_us(client, second) + request_us(client, second)
    outer += request_us(client, first)
    extra = (outer - inner) / 2
    return -extra if flip else extra


def run_value_bench(app: Flask, repeats: int, pairs: int) -> list[ValueRow]:
    """Median extra µs of each value's read and nested change on ``app`` (on
    sqlite_session), and each value's json time.

    ``pairs`` measurements of each per repeat (each of four requests, see
    :func:`paired_extra`), the values in a new random order each repeat.
    """
    rng = random.Random(16)
    values = sample_values(rng)
    add_value_views(app, values)
    keys: dict[str, str] = app.config["BENCH_VALUE_KEYS"]
    client = app.test_client()
    client.get("/values/setup")
    loops = {name: calibrated_loops(value) for name, value in values.items()}
    samples: dict[tuple[str, str], list[float]] = {
        (name, what): [] for name in values for what in ("json", "read", "nested")
    }
    for name in values:  # warm up
        for op in ("read", "nested"):
            paired_extra(client, f"/values/{op}/{keys[name]}", f"/values/{op}/v0", False)
    for rep in range(repeats):
        order = list(values)
        rng.shuffle(order)
        gc.collect()
        for name in order:
            samples[name, "json"].append(json_round_trip_us(values[name], loops[name]))
            for pair in range(pairs):
                for op in ("read", "nested"):
                    path, empty = f"/values/{op}/{keys[name]}", f"/values/{op}/{keys[EMPTY]}"
                    samples[name, op].append(paired_extra(client, path, empty, pair % 2 == 1))
            samples[name, "json"].append(json_round_trip_us(values[name], loops[name]))
        if (rep + 1) % 10 == 0:
            print(f"  values repeat {rep + 1}/{repeats}", file=sys.stderr)
    med = {cell: statistics.median(s) for cell, s in samples.items()}
    return [ValueRow(name, med[name, "json"], med[name, "read"], med[name, "nested"])
            for name in values]  # fmt: skip


def value_table(rows: list[ValueRow]) -> list[str]:
    """The report's lines for these rows (markdown)."""
    lines = ["| value | json.loads + json.dumps | read: extra | ratio | nested change: extra "
             "| ratio |", "|---|---|---|---|---|---|"]  # fmt: skip
    for row in rows:
        lines.append(
            f"| {row.name} | {row.json_us:,.1f} µs | {row.read_extra_us:,.1f} µs | "
            f"{row.read_ratio:.2f} x | {row.nested_extra_us:,.1f} µs | {row.nested_ratio:.2f} x |"
        )
    return lines


def value_targets(rows: list[ValueRow]) -> list[tuple[str, str, bool]]:
    """One target row per value: both extras at most TARGET x json's time."""
    out = []
    for row in rows:
        got = f"read {row.read_ratio:.2f} x, nested change {row.nested_ratio:.2f} x"
        worst = max(row.read_ratio, row.nested_ratio)
        out.append((f"{row.name}: extra ≤ {TARGET:g} x json's", got, worst <= TARGET))
    return out
