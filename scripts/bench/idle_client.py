#!/usr/bin/env python3
"""Idle keep-alive connections against one proxy, and what they cost it in resident memory.

Opens N connections, sends one GET on each and reads the whole response (so the proxy has really
served it and reached its keep-alive idle state, not merely accepted a socket), then leaves them all
open and idle and reads the proxy's VmRSS. Prints one JSON object. Standard library only, so the
harness needs nothing beyond python3.
"""

import argparse
import asyncio
import json
import math
import resource
import socket
import sys
import time

# Linux value; Python only exposes the name on some builds.
IP_BIND_ADDRESS_NO_PORT = getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24)


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


async def settled_rss(pid, interval, tries=20, agreeing=3):
    """RSS once `agreeing` readings an interval apart agree: allocators and the kernel take a moment
    to account for a burst of connections, and a reading mid-burst would undercount. Three, not two:
    a proxy may settle its idle connections into a smaller form a moment after they go idle (weir
    parks them after a second), and two readings can meet on the way down."""
    readings = [rss_kib(pid)]
    for _ in range(tries):
        await asyncio.sleep(interval)
        readings.append(rss_kib(pid))
        recent = readings[-agreeing:]
        if len(recent) == agreeing and max(recent) - min(recent) <= max(64, recent[0] // 200):
            return recent[-1], True
    return readings[-1], False


def raise_nofile(needed):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= needed:
        return
    if hard < needed and hard != resource.RLIM_INFINITY:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (needed, needed))
            return
        except (ValueError, PermissionError):
            sys.exit(f"idle_client: RLIMIT_NOFILE hard limit {hard} < {needed}; run with `ulimit -n {needed}` as root")
    resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))


def port_range_size():
    with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
        low, high = (int(x) for x in f.read().split())
    return high - low + 1


def pick_sources(connections, requested):
    """Source addresses to spread connections over. With IP_BIND_ADDRESS_NO_PORT the kernel picks the
    port at connect time per (source, destination) pair, so each source gives a whole ephemeral range
    towards one proxy port. Use at most half of it per source: earlier runs may have left TIME_WAIT
    entries. 127.0.0.1 is skipped since wrk's closed connections linger there."""
    per_source = port_range_size() // 2
    needed = max(1, math.ceil(connections / per_source))
    count = max(requested, needed)
    if count > 250:
        sys.exit("idle_client: too many connections for the ephemeral port range")
    return [f"127.0.0.{i}" for i in range(2, 2 + count)]


async def read_response(reader):
    """Reads one response with Content-Length framing (all the proxies send it for this backend)
    and returns its status."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            length = int(value.strip())
        elif name.strip().lower() == "transfer-encoding":
            raise RuntimeError("chunked response; this client only reads Content-Length bodies")
    if length:
        await reader.readexactly(length)
    return status


async def open_one(host, port, source, request):
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setblocking(False)
    sock.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
    sock.bind((source, 0))
    try:
        await asyncio.get_running_loop().sock_connect(sock, (host, port))
    except BaseException:
        sock.close()
        raise
    # A small read buffer limit: this client holds 10,000 of these and only ever reads short responses.
    reader, writer = await asyncio.open_connection(sock=sock, limit=64 * 1024)
    writer.write(request)
    await writer.drain()
    status = await read_response(reader)
    return reader, writer, status


async def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--pid", type=int, required=True, help="process whose VmRSS is measured")
    parser.add_argument("--connections", type=int, default=10_000)
    parser.add_argument("--sources", type=int, default=4, help="at least this many source addresses")
    parser.add_argument("--parallel", type=int, default=200, help="connections being opened at once")
    parser.add_argument("--settle", type=float, default=1.0, help="seconds between RSS readings")
    parser.add_argument("--path", default="/")
    args = parser.parse_args()

    raise_nofile(args.connections + 1024)
    sources = pick_sources(args.connections, args.sources)
    request = f"GET {args.path} HTTP/1.1\r\nHost: bench\r\n\r\n".encode()

    # One request first so the baseline already includes whatever the proxy sets up lazily on its first
    # request (upstream connection, buffers), which is not a per-connection cost.
    for _ in range(3):
        reader, writer, _status = await open_one(args.host, args.port, sources[0], request)
        writer.close()
    before, before_settled = await settled_rss(args.pid, args.settle)

    # Bounded parallelism: opening 10,000 at once would overflow listen backlogs and measure SYN
    # retries instead of memory.
    gate = asyncio.Semaphore(args.parallel)
    open_conns, failures, statuses = [], [], {}

    async def one(i):
        async with gate:
            try:
                reader, writer, status = await asyncio.wait_for(
                    open_one(args.host, args.port, sources[i % len(sources)], request), 30
                )
            except Exception as error:  # noqa: BLE001 - every failure is counted and reported
                failures.append(f"{type(error).__name__}: {error}")
                return
            statuses[status] = statuses.get(status, 0) + 1
            open_conns.append((reader, writer))

    started = time.monotonic()
    await asyncio.gather(*(one(i) for i in range(args.connections)))
    open_seconds = time.monotonic() - started
    after, after_settled = await settled_rss(args.pid, args.settle)
    # A proxy that quietly closed idle connections would look cheap; count the ones still open.
    still_open = sum(1 for reader, _ in open_conns if not reader.at_eof())

    opened = len(open_conns)
    result = {
        "connections": args.connections,
        "opened": opened,
        "still_open": still_open,
        "failed": len(failures),
        "first_failure": failures[0] if failures else None,
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "sources": sources,
        "open_seconds": round(open_seconds, 2),
        "rss_before_kib": before,
        "rss_after_kib": after,
        "settled": before_settled and after_settled,
        "kib_per_conn": round((after - before) / opened, 3) if opened else None,
    }
    print(json.dumps(result))
    for _, writer in open_conns:
        writer.close()


if __name__ == "__main__":
    asyncio.run(main())
