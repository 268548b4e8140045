"""Benchmark of the janitor: create N sessions (half expired), time `stats` and `sweep`.

Run through ``scripts/bench_sweep`` (which sets up the virtualenv):

    ./scripts/bench_sweep 10000 100000 1000000        # on /dev/shm, prints a Markdown table

For each N it creates a fresh flat directory of N session files (copies of two real
session files made by the store, one expired and one live, with the mtime mirror set as
the store sets it), then measures what a flat directory costs at that size (creating,
looking up present and absent names, listing, unlinking) and runs the real command
line, ``python -m sqlite_session stats`` and ``sweep`` (a full sweep, then a no-op one),
each in its own child process whose peak RSS is read with ``os.wait4``. The reference
row is a plain ``find DIR -name '*.session' ! -newermt @NOW -delete`` (what Debian's
PHP session cleaner does) run on an identical copy of the directory, side by side. The
directories are removed at the end.
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
from sqlite_session.store.mirror import set_mirror

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
        set_mirror(fd, expires_at)
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


def find_delete(directory: str, now: float) -> float:
    """Seconds a plain ``find -delete`` takes to remove the sessions expired by ``now``."""
    command = ["find", directory, "-maxdepth", "1", "-name", "*" + SUFFIX]
    command += ["!", "-newermt", f"@{now:.0f}", "-delete"]
    start = time.perf_counter()
    subprocess.run(command, check=True)
    return time.perf_counter() - start


def swept_seconds(child: Child) -> float:
    match = re.search(r" in ([0-9.]+) s", child.output)
    assert match is not None, child.output
    return float(match.group(1))


def mib(kib: int) -> str:
    return f"{kib / 1024:.0f} MiB"


def left(directory: str) -> int:
    return sum(1 for name in os.listdir(directory) if name.endswith(SUFFIX))


def bench(base: str, n: int) -> tuple[str, str]:
    """The janitor's row and the reference row for N sessions."""
    directory = os.path.join(base, f"bench-sweep-{n}")
    reference = os.path.join(base, f"bench-find-{n}")
    for path in (directory, reference):
        shutil.rmtree(path, ignore_errors=True)
        os.mkdir(path, 0o700)
    try:
        created, sample = populate(directory, n)
        populate(reference, n)
        present, absent = lookups(directory, sample)
        listed = listing(directory)
        stats = run_child("stats", "--json", directory)
        stats_seconds = float(json.loads(stats.output)["seconds"])
        found_seconds = find_delete(reference, time.time())
        swept = run_child("sweep", directory)
        sweep_seconds = swept_seconds(swept)
        noop_seconds = swept_seconds(run_child("sweep", directory))
        if left(directory) != n - n // 2 or left(reference) != n - n // 2:
            raise SystemExit(f"left {left(directory)} and {left(reference)}, not {n - n // 2}")
        unlinked, unlink_seconds = unlink_all(directory)
    finally:
        for path in (directory, reference):
            shutil.rmtree(path, ignore_errors=True)
    print(f"  N={n}: {swept.output}", file=sys.stderr)
    live = n - n // 2
    row = (
        f"| {n:,} | {n / created:,.0f}/s | {present:.1f} / {absent:.1f} µs | {listed:.2f} s "
        f"| {stats_seconds:.2f} s | {n / stats_seconds:,.0f}/s | {mib(stats.max_rss_kib)} "
        f"| {sweep_seconds:.2f} s | {n / sweep_seconds:,.0f}/s | {mib(swept.max_rss_kib)} "
        f"| {sweep_seconds / found_seconds:.2f}x | {live / noop_seconds:,.0f}/s "
        f"| {unlinked / unlink_seconds:,.0f}/s |"
    )
    reference_row = (
        f"| {n:,} | `find -delete` of the same expired half, on a copy "
        f"| {found_seconds:.2f} s | {n / found_seconds:,.0f}/s |"
    )
    return row, reference_row


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
        "| stats peak RSS | sweep (half expired) | sweep rate | sweep peak RSS "
        "| sweep / find | no-op sweep | unlink |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    references = []
    for n in args.sizes:
        row, reference_row = bench(args.dir, n)
        references.append(reference_row)
        print(row, flush=True)
    print("\n| sessions | reference | time | rate |\n|---|---|---|---|")
    print("\n".join(references))


if __name__ == "__main__":
    main()
