#!/usr/bin/env python3
"""Load for scripts/upgrade-test: clients that keep connections alive and clients that open a new
connection per request, against a weir that is upgraded meanwhile, plus the slow upstream its
/slow route proxies to (so requests are in flight when the old process drains).

Usage: upgrade_load.py serve-upstream PORT | load URL SECONDS_MAX STOP_FILE
Prints one JSON summary when STOP_FILE appears. A request fails when it gets anything but 200, or
an error. A keep-alive connection that the server closed while idle (the drain closes idle
keep-alive connections) raises before any answer; like browsers and curl, the client then retries
that request once on a new connection, and counts it under keepalive_retried. A connection
refused is counted under refused, and is a failure too."""

import http.client
import http.server
import json
import os
import sys
import threading
import time
import urllib.parse


class Slow(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        if self.path.startswith("/slow"):
            time.sleep(0.3)
        body = b"upstream"
        self.send_response(200)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


class Counts:
    def __init__(self):
        self.lock = threading.Lock()
        self.values = {"ok": 0, "failed": 0, "refused": 0, "keepalive_retried": 0}
        self.errors = []

    def add(self, key, error=None):
        with self.lock:
            self.values[key] += 1
            if error is not None and len(self.errors) < 20:
                self.errors.append(error)


def one_request(conn, path):
    conn.request("GET", path)
    response = conn.getresponse()
    response.read()
    return response.status, response.getheader("connection", "")


def worker(host, port, keepalive, stop, counts, index):
    conn = None
    n = 0
    while not stop.is_set():
        n += 1
        path = "/slow" if n % 10 == index % 10 else "/"
        reused = conn is not None
        if conn is None:
            conn = http.client.HTTPConnection(host, port, timeout=10)
        try:
            status, connection = one_request(conn, path)
        except ConnectionRefusedError as error:
            counts.add("refused", f"{path}: {error!r}")
            conn = None
            continue
        except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError) as error:
            conn.close()
            conn = None
            if not reused:
                counts.add("failed", f"{path} (new connection): {error!r}")
                continue
            counts.add("keepalive_retried")
            try:
                conn = http.client.HTTPConnection(host, port, timeout=10)
                status, connection = one_request(conn, path)
            except Exception as error:  # noqa: BLE001 - every error is a failed request here
                counts.add("refused" if isinstance(error, ConnectionRefusedError) else "failed", f"{path} retry: {error!r}")
                conn = None
                continue
        except Exception as error:  # noqa: BLE001
            counts.add("failed", f"{path}: {error!r}")
            conn.close()
            conn = None
            continue
        counts.add("ok" if status == 200 else "failed", None if status == 200 else f"{path}: status {status}")
        if not keepalive or connection.lower() == "close":
            conn.close()
            conn = None


def load(url, seconds_max, stop_file):
    parsed = urllib.parse.urlparse(url)
    stop, counts = threading.Event(), Counts()
    threads = [
        threading.Thread(target=worker, args=(parsed.hostname, parsed.port, i % 2 == 0, stop, counts, i))
        for i in range(8)
    ]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    while not os.path.exists(stop_file) and time.monotonic() - started < seconds_max:
        time.sleep(0.05)
    stop.set()
    for thread in threads:
        thread.join()
    summary = dict(counts.values, seconds=round(time.monotonic() - started, 1), errors=counts.errors)
    print(json.dumps(summary))


def main():
    if sys.argv[1] == "serve-upstream":
        server = http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[2])), Slow)
        server.daemon_threads = True
        server.serve_forever()
    else:
        load(sys.argv[2], float(sys.argv[3]), sys.argv[4])


if __name__ == "__main__":
    main()
