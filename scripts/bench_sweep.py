"""Benchmark of the janitor: create N sessions (half expired), time `stats` and `sweep`.

Run through ``scripts/bench_sweep`` (which sets up the virtualenv):

    ./scripts/bench_sweep 10000 100000 1000000        # on /dev/shm, prints a Markdown table

For each N it creates a fresh flat directory of N session files (copies of two real
session files made by the store, one expired and one live, with the mtime mirror set as
the store sets it), then measures what a flat directory costs at that size (creating,
looking up present and absent names, listing, unlinking) and runs the real command
line, ``python -m sqlite_session stats`` and ``sweep``, each in its own child process
whose peak RSS is read with ``os.wait4``. The directory is removed at the end.
``--sizing`` also reports the tmpfs bytes per small session created through the store.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass

from sqlite_session.ids import new_session_id
from sqlite_session.serializer import TaggedJSONSerializer
from sqlite_session.store import SUFFIX, Changes, SessionStore

SAMPLE = 20_000  # names kept for the lookup measurement


@dataclass
class Child:
    seconds: float  # wall time of the process, start-up (~0.4 s of imports) included
    max_rss_kib: int
    output: str


def run_child(*args: str) -> Child:
    """Run ``python -m sqlite_session ARGS`` and measure its wall time and peak RSS."""
    start = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "sqlite_session", *args], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    output = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{args} failed with status {proc.returncode}")
    return Child(seconds, usage.ru_maxrss, output.strip())


def templates(directory: str) -> tuple[bytes, float, bytes, float]:
    """The bytes of one expired and one live session file, and their expiries."""
    store = SessionStore(directory)
    now = time.time()
    out: list[bytes | float] = []
    for expires_at in (now - 3600, now + 7 * 86400):
        sid = new_session_id()
        store.create(sid, Changes(upserts={"user": b"42"}, expires_at=expires_at))
        path = store.path_for(sid)
        with open(path, "rb") as f:
            out += [f.read(), expires_at]
        os.unlink(path)
    return out[0], out[1], out[2], out[3]  # type: ignore[return-value]


def populate(directory: str, n: int) -> tuple[float, list[str]]:
    """Write N session files, every other one expired; returns (seconds, sample of names)."""
    expired, expired_at, live, live_at = templates(directory)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
    sample: list[str] = []
    every = max(1, n // SAMPLE)
    start = time.perf_counter()
    for i in range(n):
        name = new_session_id() + SUFFIX
        data, expires_at = (expired, expired_at) if i % 2 else (live, live_at)
        fd = os.open(os.path.join(directory, name), flags, 0o600)
        os.write(fd, data)
        os.utime(fd, (expires_at, expires_at))
        os.close(fd)
        if i % every == 0:
            sample.append(name)
    return time.perf_counter() - start, sample


def lookups(directory: str, names: list[str]) -> tuple[float, float]:
    """Microseconds per lstat of a present name, and of an absent one."""
    random.shuffle(names)
    start = time.perf_counter()
    for name in names:
        os.lstat(os.path.join(directory, name))
    present = (time.perf_counter() - start) / len(names) * 1e6
    missing = [os.path.join(directory, new_session_id() + SUFFIX) for _ in names]
    start = time.perf_counter()
    for path in missing:
        with contextlib.suppress(FileNotFoundError):
            os.lstat(path)
    absent = (time.perf_counter() - start) / len(missing) * 1e6
    return present, absent


def listing(directory: str) -> float:
    start = time.perf_counter()
    with os.scandir(directory) as entries:
        for _ in entries:
            pass
    return time.perf_counter() - start


def unlink_all(directory: str) -> tuple[int, float]:
    start = time.perf_counter()
    count = 0
    with os.scandir(directory) as entries:
        for entry in entries:
            os.unlink(entry.path)
            count += 1
    return count, time.perf_counter() - start


def mib(kib: int) -> str:
    return f"{kib / 1024:.0f} MiB"


def bench(base: str, n: int) -> str:
    directory = os.path.join(base, f"bench-sweep-{n}")
    shutil.rmtree(directory, ignore_errors=True)
    os.mkdir(directory, 0o700)
    try:
        created, sample = populate(directory, n)
        present, absent = lookups(directory, sample)
        listed = listing(directory)
        stats = run_child("stats", "--json", directory)
        stats_seconds = float(json.loads(stats.output)["seconds"])
        swept = run_child("sweep", directory)
        match = re.search(r" in ([0-9.]+) s", swept.output)
        assert match is not None, swept.output
        sweep_seconds = float(match.group(1))
        remaining = sum(1 for name in os.listdir(directory) if name.endswith(SUFFIX))
        if remaining != n - n // 2:
            raise SystemExit(f"sweep left {remaining} sessions, expected {n - n // 2}")
        unlinked, unlink_seconds = unlink_all(directory)
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    print(f"  N={n}: {swept.output}", file=sys.stderr)
    return (
        f"| {n:,} | {n / created:,.0f}/s | {present:.1f} / {absent:.1f} µs | {listed:.2f} s "
        f"| {stats_seconds:.2f} s | {n / stats_seconds:,.0f}/s | {mib(stats.max_rss_kib)} "
        f"| {sweep_seconds:.1f} s | {n / sweep_seconds:,.0f}/s | {mib(swept.max_rss_kib)} "
        f"| {unlinked / unlink_seconds:,.0f}/s |"
    )


def sizing(base: str, n: int = 10_000) -> str:
    """Bytes on disk per small session, created through the store like the app does."""
    directory = tempfile.mkdtemp(prefix="bench-sizing-", dir=base)
    try:
        store = SessionStore(directory)
        encode = TaggedJSONSerializer().dumps
        session = {"user_id": 12345, "csrf": "x" * 43, "cart": ["apple", "pear"], "_fresh": True}
        upserts = {key: encode(value) for key, value in session.items()}
        start = time.perf_counter()
        for _ in range(n):
            store.create(new_session_id(), Changes(upserts=upserts, expires_at=time.time() + 3600))
        seconds = time.perf_counter() - start
        on_disk = sum(e.stat().st_blocks * 512 for e in os.scandir(directory))
        size = sum(e.stat().st_size for e in os.scandir(directory))
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    return (
        f"{n:,} small sessions (4 keys) through the store: {on_disk / n:,.0f} bytes on disk "
        f"per session ({size / n:,.0f} bytes of file), {n / seconds:,.0f} creates/s"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sizes", nargs="*", type=int, default=[10_000, 100_000])
    default_base = "/dev/shm" if os.path.isdir("/dev/shm") else tempfile.gettempdir()
    parser.add_argument("--dir", default=default_base, help=f"where to work ({default_base})")
    parser.add_argument("--sizing", action="store_true", help="also measure bytes per session")
    args = parser.parse_args()
    fs = subprocess.run(
        ["stat", "-f", "-c", "%T", args.dir], capture_output=True, text=True, check=False
    ).stdout.strip()
    print(
        f"{time.strftime('%Y-%m-%d')}, {os.cpu_count()} CPUs, Linux {platform.release()}, "
        f"Python {platform.python_version()}, {args.dir} ({fs})\n"
    )
    if args.sizing:
        print(sizing(args.dir) + "\n")
    print(
        "| sessions | create | lstat present / absent | list dir | stats | stats rate "
        "| stats peak RSS | sweep (half expired) | sweep rate | sweep peak RSS | unlink |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for n in args.sizes:
        print(bench(args.dir, n), flush=True)


if __name__ == "__main__":
    main()
