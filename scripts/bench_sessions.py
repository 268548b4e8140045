"""Benchmark sqlite_session against the session stores a Flask user would otherwise pick.

Run it through ``./scripts/bench`` (which sets up the environment). In one process and
one run, the same scenarios go through Flask's test client (with its cookie jar) against:

- ``none``: bare Flask whose views never touch the session (the floor),
- ``cookie``: Flask's default signed-cookie session,
- ``fs-cachelib``, ``fs-sqlalchemy``, ``fs-redis``: Flask-Session 0.8 with its defaults on
  cachelib's FileSystemCache (threshold 0), SQLAlchemy on a SQLite file, and a real
  redis-server started here (127.0.0.1, free port, no persistence, stopped by PID),
- ``sqlite_session`` with its defaults.

Then the "values" rows (``bench_values.py``): what the size of one value adds to reading it
and to a saved nested change, against json.loads + json.dumps of the same value.

All session directories and databases live on /dev/shm. Systems and scenarios are
interleaved in small slices across many repeats, so a slow patch of a shared machine
lands on every system alike; each figure is the median over all requests of a cell.
Then: tmpfs bytes per small session (10,000 sessions) and requests per second under
gunicorn (2 workers) driven over HTTP by wrk from another process, with a Lua script that
keeps each connection's cookie.

Flask-Session runs with its defaults (SESSION_PERMANENT and SESSION_REFRESH_EACH_REQUEST
true), which rewrite the whole session at the end of every request that loads it; that is
what its users get. The nested-append view sets ``session.modified = True`` because the
peers need it to persist a nested change (sqlite_session does not). The big session holds
1,000 distinct values: with one value repeated, pickle's memo stored it once and the peers
that pickle the whole session did a fraction of the work.

``--only`` runs a subset (scenario names, ``values``, ``tmpfs``, ``gunicorn``) and then
writes no file unless ``--out`` is given.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import platform
import random
import re
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

from bench_values import ValueRow, run_value_bench, value_table, value_targets
from flask import Flask, session
from flask.testing import FlaskClient

ROOT = Path(__file__).resolve().parent.parent
SHM = Path("/dev/shm") if Path("/dev/shm").is_dir() else Path(tempfile.gettempdir())
SECRET = "bench secret key"
SMALL = {"user": "alice", "theme": "dark", "lang": "en", "n": 0, "cart": []}
BIG_KEYS = 1000
BIG_VALUE = 1024  # bytes per value of the big session
NESTED_MAX = 100  # the nested scenario's list grows to this many items, then starts again
FLASK_SESSION = ("fs-cachelib", "fs-sqlalchemy", "fs-redis")
SYSTEMS = ("none", "cookie", *FLASK_SESSION, "sqlite_session")


@dataclass(frozen=True)
class Scenario:
    name: str
    label: str
    path: str
    setup: str  # the route that builds the session this scenario's client carries
    big: bool = False


SCENARIOS = (
    Scenario("untouched", "untouched request with a session cookie", "/untouched", "/setup/small"),
    Scenario("read", "read 1 key of a 5-key session", "/read", "/setup/small"),
    Scenario("rw", "read + write 1 key of a 5-key session", "/rw", "/setup/small"),
    Scenario("big_read", "read 1 key of 1,000 keys x 1 KB", "/big/read", "/setup/big", True),
    Scenario("big_write", "write 1 key of 1,000 keys x 1 KB", "/big/write", "/setup/big", True),
    Scenario("nested", f"nested append to a list of up to {NESTED_MAX}", "/nested", "/setup/small"),
)
SECTIONS = ("values", "tmpfs", "gunicorn")  # what --only can name besides the scenarios


# -- the apps -------------------------------------------------------------------------


def add_views(app: Flask, touch: bool) -> None:
    """The benchmark's routes; with ``touch`` False they never look at the session."""
    values = [secrets.token_hex(BIG_VALUE // 2) for _ in range(BIG_KEYS)]  # all distinct
    fresh = [secrets.token_hex(BIG_VALUE // 2) for _ in range(64)]  # what big_write writes
    counter = iter(range(10**12))

    @app.get("/setup/small")
    def setup_small() -> str:
        if touch:
            session.update({k: list(v) if isinstance(v, list) else v for k, v in SMALL.items()})
        return "ok"

    @app.get("/setup/big")
    def setup_big() -> str:
        if touch:
            session.update({f"b{i:03d}": values[i] for i in range(BIG_KEYS)})
        return "ok"

    @app.get("/untouched")
    def untouched() -> str:
        return "ok"

    @app.get("/read")
    def read() -> str:
        return str(session.get("theme")) if touch else "dark"

    @app.get("/rw")
    def rw() -> str:
        if not touch:
            return "0"
        n = session.get("n")
        if n is None:  # a fresh client (the gunicorn run): build the 5-key session first
            session.update(SMALL)
            n = 0
        session["n"] = n + 1
        return str(n)

    @app.get("/big/distinct")
    def big_distinct() -> str:
        return str(len({session.get(f"b{i:03d}") for i in range(BIG_KEYS)}))

    @app.get("/big/read")
    def big_read() -> str:
        return str(len(session.get("b500", ""))) if touch else "1024"

    @app.get("/big/write")
    def big_write() -> str:
        if touch:
            session["b500"] = fresh[next(counter) % len(fresh)]
        return "ok"

    @app.get("/nested")
    def nested() -> str:
        if touch:
            cart = session["cart"]
            cart.append(1)
            if len(cart) >= NESTED_MAX:
                cart.clear()
            session.modified = True  # the peers need this; sqlite_session tracks it itself
        return "ok"


def make_app(system: str, work: Path, redis_port: int | None = None) -> Flask:
    """A Flask app on ``system`` with its storage under ``work``."""
    app = Flask(f"bench_{system}")
    work.mkdir(parents=True, exist_ok=True)
    if system != "none":  # without a secret key bare Flask never even parses the cookie
        app.config["SECRET_KEY"] = SECRET
    if system.startswith("fs-"):
        from flask_session import Session

        if system == "fs-cachelib":
            from cachelib import FileSystemCache

            app.config["SESSION_TYPE"] = "cachelib"
            app.config["SESSION_CACHELIB"] = FileSystemCache(str(work / "cachelib"), threshold=0)
        elif system == "fs-redis":
            from redis import Redis

            app.config["SESSION_TYPE"] = "redis"
            app.config["SESSION_REDIS"] = Redis(host="127.0.0.1", port=redis_port)
        else:
            from flask_sqlalchemy import SQLAlchemy

            app.config["SQLALCHEMY_DATABASE_URI"] = f"sqlite:///{work / 'sessions.sqlite'}"
            app.config["SESSION_TYPE"] = "sqlalchemy"
            app.config["SESSION_SQLALCHEMY"] = SQLAlchemy(app)
        Session(app)
    elif system == "sqlite_session":
        from sqlite_session import SqliteSessionInterface

        app.session_interface = SqliteSessionInterface(work / "sqlite_session")
    add_views(app, touch=system != "none")
    return app


def gunicorn_app() -> Flask:
    """The app gunicorn serves: ``BENCH_SYSTEM`` on ``BENCH_WORK``."""
    return make_app(os.environ["BENCH_SYSTEM"], Path(os.environ["BENCH_WORK"]))


# -- servers ----------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on port {port} after {timeout} s")


@contextlib.contextmanager
def server(args: list[str], port: int, env: dict[str, str] | None = None) -> Iterator[None]:
    """Run a server process for the block; stop it by its PID afterwards."""
    proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_for_port(port, proc)
        yield
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def redis_server(port: int) -> contextlib.AbstractContextManager[None]:
    args = ["redis-server", "--bind", "127.0.0.1", "--port", str(port), "--save", "",
            "--appendonly", "no", "--daemonize", "no"]  # fmt: skip
    return server(args, port)


# -- the test-client benchmark --------------------------------------------------------------


def time_slice(client: FlaskClient, path: str, n: int, out: list[float]) -> None:
    """``n`` requests to ``path``, each one's duration in µs appended to ``out``."""
    clock = time.perf_counter_ns
    for _ in range(n):
        start = clock()
        response = client.get(path)
        out.append((clock() - start) / 1000)
        if response.status_code != 200:
            raise RuntimeError(f"{path}: HTTP {response.status_code}")


def build_clients(
    apps: dict[str, Flask], scenarios: list[Scenario]
) -> dict[tuple[str, str], FlaskClient]:
    """One client (one cookie jar, one session) per system and scenario."""
    clients = {}
    for system, app in apps.items():
        for sc in scenarios:
            if sc.big and system == "cookie":
                continue  # a 1 MB cookie: browsers cap cookies at 4 KB
            client = app.test_client()
            client.get(sc.setup)
            if system == "none":  # carry a cookie of the usual size all the same
                client.set_cookie("session", secrets.token_urlsafe(64))
            elif system != "cookie" and client.get_cookie("session") is None:
                raise RuntimeError(f"{system}: no session cookie after {sc.setup}")
            if system != "none" and not sc.big and client.get("/read").text != "dark":
                raise RuntimeError(f"{system}: the session does not hold its data")
            if system != "none" and sc.big and client.get("/big/distinct").text != str(BIG_KEYS):
                raise RuntimeError(f"{system}: the big session does not hold distinct values")
            clients[system, sc.name] = client
    return clients


def run_client_bench(
    apps: dict[str, Flask], scenarios: list[Scenario], repeats: int, slice_size: int
) -> dict[tuple[str, str], float]:
    """Median µs per request of every (system, scenario), interleaved in small slices.

    Each repeat takes the scenarios in a new random order and runs one slice of every
    system for a scenario back to back, in a new random order too: the systems compared
    in a ratio are measured moments apart. This host's speed changes from second to
    second (bare Flask 113 or 170 µs per request); with every cell's slices at random
    places in the repeat, the `none` cells of one run, identical work, differed by 4%.
    """
    clients = build_clients(apps, scenarios)
    samples: dict[tuple[str, str], list[float]] = {cell: [] for cell in clients}
    rng = random.Random(5)
    for cell, client in clients.items():  # warm up: imports, pools, caches
        time_slice(client, dict((s.name, s.path) for s in scenarios)[cell[1]], 5, [])
    for rep in range(repeats):
        order = list(scenarios)
        rng.shuffle(order)
        gc.collect()
        for sc in order:
            systems = [system for system in apps if (system, sc.name) in clients]
            rng.shuffle(systems)
            for system in systems:
                time_slice(clients[system, sc.name], sc.path, slice_size, samples[system, sc.name])
        if (rep + 1) % 10 == 0:
            print(f"  repeat {rep + 1}/{repeats}", file=sys.stderr)
    return {cell: statistics.median(values) for cell, values in samples.items()}


# -- tmpfs use --------------------------------------------------------------------------------


def tmpfs_bytes(app: Flask, directory: Path, sessions: int) -> tuple[float, float]:
    """Bytes (sum of st_blocks x 512) and files per session after ``sessions`` small ones."""
    for _ in range(sessions):
        app.test_client().get("/setup/small")
    blocks = files = 0
    for entry in os.scandir(directory):
        if entry.is_file(follow_symlinks=False):
            blocks += entry.stat(follow_symlinks=False).st_blocks
            files += 1
    return blocks * 512 / sessions, files / sessions


# -- gunicorn + wrk ------------------------------------------------------------------------------

KEEP_COOKIE_LUA = """
-- Each wrk thread drives one connection and keeps that connection's session cookie.
local cookie = nil
request = function()
  if cookie then return wrk.format(nil, nil, {["Cookie"] = cookie}) end
  return wrk.format(nil, nil)
end
response = function(status, headers, body)
  local c = headers["Set-Cookie"]
  if c then cookie = string.match(c, "^[^;]+") end
end
"""


def wrk_rps(port: int, path: str, seconds: int, script: Path) -> float:
    out = subprocess.run(
        ["wrk", "-t2", "-c2", f"-d{seconds}s", "-s", str(script), f"http://127.0.0.1:{port}{path}"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    if "Non-2xx" in out:
        raise RuntimeError(f"wrk saw errors on {path}:\n{out}")
    match = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if match is None:
        raise RuntimeError(f"cannot parse wrk output:\n{out}")
    return float(match.group(1))


def run_gunicorn_bench(work: Path, rounds: int, seconds: int) -> dict[str, float]:
    """Requests/s (median of ``rounds``) for each (system, route) served by gunicorn -w 2."""
    script = work / "keep_cookie.lua"
    script.write_text(KEEP_COOKIE_LUA)
    runs = {"none /untouched": ("none", "/untouched"), "cookie /rw": ("cookie", "/rw"),
            "sqlite_session /untouched": ("sqlite_session", "/untouched"),
            "sqlite_session /rw": ("sqlite_session", "/rw")}  # fmt: skip
    results: dict[str, list[float]] = {name: [] for name in runs}
    with contextlib.ExitStack() as stack:
        ports = {}
        for system in ("none", "cookie", "sqlite_session"):
            port = ports[system] = free_port()
            env = dict(os.environ, BENCH_SYSTEM=system, BENCH_WORK=str(work / f"gunicorn-{system}"))
            args = [sys.executable, "-m", "gunicorn", "-w", "2", "-b", f"127.0.0.1:{port}",
                    "--pythonpath", str(ROOT / "scripts"),
                    "bench_sessions:gunicorn_app()"]  # fmt: skip
            stack.enter_context(server(args, port, env))
        for system, path in runs.values():  # warm up every worker
            wrk_rps(ports[system], path, 1, script)
        order = list(runs.items())
        for _ in range(rounds):  # interleaved, in a new order each round
            random.shuffle(order)
            for name, (system, path) in order:
                results[name].append(wrk_rps(ports[system], path, seconds, script))
    return {name: statistics.median(values) for name, values in results.items()}


# -- report -------------------------------------------------------------------------------


def versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for dist in ("flask", "werkzeug", "apsw", "flask-session", "cachelib", "sqlalchemy",
                 "flask-sqlalchemy", "redis", "msgspec", "gunicorn"):  # fmt: skip
        found[dist] = metadata.version(dist)
    found["sqlite"] = __import__("apsw").sqlite_lib_version()
    for tool, flag in (("redis-server", "--version"), ("wrk", "-v")):
        proc = subprocess.run([tool, flag], capture_output=True, text=True)
        found[tool] = (proc.stdout + proc.stderr).split("\n")[0].strip()
    return found


def machine() -> str:
    model = "unknown CPU"
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        match = re.search(r"Model name:\s+(.+)", lscpu)
        model = match.group(1).strip() if match else model
    return f"{os.cpu_count()} cores, {model}, {platform.system()} {platform.release()}"


def targets(
    med: dict[tuple[str, str], float], tmpfs: float | None, rps: dict[str, float]
) -> list[tuple[str, str, bool]]:
    """Each target of the scenarios that ran: what it asks, what was measured, whether met."""

    def over(system: str, scenario: str) -> float:
        return med[system, scenario] - med["none", scenario]

    def ran(*scenarios: str) -> bool:
        return all(("none", sc) in med for sc in scenarios)

    ours = "sqlite_session"
    rows = []
    if ran("untouched"):
        ratio = med[ours, "untouched"] / med["none", "untouched"]
        rows.append(("untouched ≤ 1.03 x none", f"{ratio:.3f} x none", ratio <= 1.03))
    for sc in ("read", "rw", "nested"):
        if ran(sc):
            got = over(ours, sc) / over("cookie", sc)
            detail = f"({over(ours, sc):.0f} vs {over('cookie', sc):.0f} µs)"
            rows.append((f"{sc}: overhead ≤ 0.5 x cookie's", f"{got:.2f} x cookie's {detail}",
                         got <= 0.5))  # fmt: skip
    for big, small in (("big_read", "read"), ("big_write", "rw")):
        if ran(big, small):
            got = med[ours, big] / med[ours, small]
            rows.append((f"{big} ≤ 1.2 x own {small}", f"{got:.2f} x", got <= 1.2))
        if ran(big):
            fastest = min(over(fs, big) for fs in FLASK_SESSION)
            factor = fastest / max(over(ours, big), 1e-9)
            rows.append((f"{big}: overhead ≥ 20 x smaller than fastest Flask-Session",
                         f"{factor:.1f} x smaller ({over(ours, big):.0f} vs {fastest:.0f} µs)",
                         factor >= 20))  # fmt: skip
    if tmpfs is not None:
        rows.append(("tmpfs ≤ 4096 B per small session", f"{tmpfs:.0f} B", tmpfs <= 4096))
    if rps:
        got = rps["sqlite_session /rw"] / rps["none /untouched"]
        same_server = rps["sqlite_session /rw"] / rps["sqlite_session /untouched"]
        rows.append(("gunicorn rps read+write ≥ 0.8 x no session",
                     f"{got:.2f} x bare Flask ({same_server:.2f} x an untouched request of "
                     "the same server)", got >= 0.8))  # fmt: skip
    return rows


def write_report(med: dict[tuple[str, str], float], info: dict[str, Any]) -> str:
    lines = []
    if med:
        head = "| scenario | " + " | ".join(f"`{s}`" for s in SYSTEMS) + " |"
        lines += [head, "|---" * (len(SYSTEMS) + 1) + "|"]
    for sc in SCENARIOS:
        if ("none", sc.name) not in med:
            continue
        cells = []
        for system in SYSTEMS:
            if (system, sc.name) not in med:
                cells.append("n/a")
                continue
            value = med[system, sc.name]
            text = f"{value:,.0f} µs<br>{value / med['none', sc.name]:.2f}x none"
            if ("cookie", sc.name) in med and system != "none":
                text += f"<br>{value / med['cookie', sc.name]:.2f}x cookie"
            cells.append(text)
        lines.append(f"| {sc.label} | " + " | ".join(cells) + " |")
    if info["values"]:
        lines += ["", "Values (`sqlite_session`): what a value's size adds to a request that "
                  "reads it (`len(session[key])`) and to one that changes it in place and saves "
                  "it (`append` then `pop`), over the same request on an empty list; against "
                  "`json.loads` + `json.dumps` of the same value, timed in the same loop.", "",
                  *value_table(info["values"])]  # fmt: skip
    if info["tmpfs"]:
        lines += ["", "| tmpfs use, 10,000 small sessions | bytes per session "
                  "| files per session |", "|---|---|---|"]  # fmt: skip
    for system, (size, files) in info["tmpfs"].items():
        lines.append(f"| `{system}` | {size:,.0f} | {files:.2f} |")
    if info["rps"]:
        lines += ["", "| gunicorn -w 2, wrk -t2 -c2, one session per connection | requests/s |",
                  "|---|---|"]  # fmt: skip
    for name, value in info["rps"].items():
        lines.append(f"| `{name}` | {value:,.0f} |")
    lines += ["", "| target | measured | met |", "|---|---|---|"]
    for what, got, met in info["targets"]:
        lines.append(f"| {what} | {got} | {'yes' if met else '**no**'} |")
    lines += ["", f"Measured {info['date']} on {info['machine']}; "
              f"{info['repeats']} interleaved repeats x {info['slice']} requests per cell; "
              "median µs per test-client request (values: median of the paired differences, "
              f"{info['repeats']} repeats x {info['slice']} pairs).",
              "Versions: " + ", ".join(f"{k} {v}" for k, v in info["versions"].items())
              + "."]  # fmt: skip
    return "\n".join(lines) + "\n"


def plot(path: Path, med: dict[tuple[str, str], float]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(11, 5))
    width = 0.8 / len(SYSTEMS)
    for i, system in enumerate(SYSTEMS):
        xs = [j + i * width for j, sc in enumerate(SCENARIOS) if (system, sc.name) in med]
        ys = [med[system, sc.name] for sc in SCENARIOS if (system, sc.name) in med]
        ax.bar(xs, ys, width, label=system)
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(SCENARIOS))])
    ax.set_xticklabels([sc.label.replace(" of ", "\nof ") for sc in SCENARIOS], fontsize=8)
    ax.set_yscale("log")
    ax.set_ylabel("median µs per request (Flask test client, log scale)")
    ax.set_title("Flask session stores: cost per request (lower is better)")
    ax.legend(fontsize=8, ncol=3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=40)
    parser.add_argument("--slice", type=int, default=15, help="requests per cell per repeat")
    parser.add_argument("--tmpfs-sessions", type=int, default=10_000)
    parser.add_argument("--wrk-seconds", type=int, default=3)
    parser.add_argument("--wrk-rounds", type=int, default=7)
    parser.add_argument("--only", type=lambda text: text.split(","), default=None,
                        help="comma-separated subset of: " + ", ".join(
                            [sc.name for sc in SCENARIOS] + list(SECTIONS)))  # fmt: skip
    parser.add_argument("--out", type=Path, help="default: docs/bench.md for a full run")
    parser.add_argument("--plot", type=Path, help="default: docs/bench.png for a full run")
    parser.add_argument("--json", type=Path, help="also dump the raw medians here")
    args = parser.parse_args()
    names = [sc.name for sc in SCENARIOS] + list(SECTIONS)
    only = set(args.only or names)
    if not only <= set(names):
        parser.error(f"unknown in --only: {', '.join(sorted(only - set(names)))}")
    if args.only is None:
        args.out = args.out or ROOT / "docs" / "bench.md"
        args.plot = args.plot or ROOT / "docs" / "bench.png"
    scenarios = [sc for sc in SCENARIOS if sc.name in only]
    work = Path(tempfile.mkdtemp(prefix="sqlite-session-bench-", dir=SHM))
    med: dict[tuple[str, str], float] = {}
    rows: list[ValueRow] = []
    tmpfs = {}
    rps: dict[str, float] = {}
    try:
        if scenarios:
            redis_port = free_port()
            with redis_server(redis_port):
                apps = {system: make_app(system, work / system, redis_port) for system in SYSTEMS}
                print("test-client scenarios ...", file=sys.stderr)
                med = run_client_bench(apps, scenarios, args.repeats, args.slice)
        if "values" in only:
            print("values ...", file=sys.stderr)
            values_app = make_app("sqlite_session", work / "values")
            rows = run_value_bench(values_app, args.repeats, args.slice)
        if "tmpfs" in only:
            print("tmpfs use ...", file=sys.stderr)
            for system, sub in (("sqlite_session", "sqlite_session"), ("fs-cachelib", "cachelib")):
                directory = work / "tmpfs" / system
                app = make_app(system, directory)
                tmpfs[system] = tmpfs_bytes(app, directory / sub, args.tmpfs_sessions)
        if "gunicorn" in only:
            print("gunicorn + wrk ...", file=sys.stderr)
            rps = run_gunicorn_bench(work, args.wrk_rounds, args.wrk_seconds)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    ours_tmpfs = tmpfs["sqlite_session"][0] if tmpfs else None
    info = {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine(),
        "versions": versions(),
        "repeats": args.repeats,
        "slice": args.slice,
        "values": rows,
        "tmpfs": tmpfs,
        "rps": rps,
        "targets": targets(med, ours_tmpfs, rps) + value_targets(rows),
    }
    report = write_report(med, info)
    print(report)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(report)
    if args.plot and med:
        plot(args.plot, med)
    if args.json:
        raw = {f"{system} {scenario}": value for (system, scenario), value in med.items()}
        args.json.write_text(json.dumps({"medians": raw, **info}, indent=1, default=str))


if __name__ == "__main__":
    main()
