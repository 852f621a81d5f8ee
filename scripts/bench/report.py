#!/usr/bin/env python3
"""Turns the raw output of a benchmark run into tables.

    report.py summary FILE             one line about one wrk/h2load run, for progress output
    report.py render RAW META HEADER   the whole report as Markdown on stdout

The raw directory is laid out by scripts/bench/run as RAW/<scenario>/r<round>/<target>.wrk (or .h2load,
with the per-request log beside it as .h2log) and RAW/idle_memory/<target>.json. Everything is parsed
here rather than in the shell so the numbers in the report and the ones printed during the run come
from the same code.
"""

import json
import re
import statistics
import sys
from pathlib import Path

# Report order; a scenario that was not run (--only) is simply absent.
SCENARIOS = {
    "small_get": "GET / (13-byte body), 64 connections, wrk -t1.",
    "get_16k": "GET /16k (16 KiB body), 64 connections, wrk -t1.",
    "post_4k": "POST /post with a 4 KiB body, small answer, 64 connections, wrk -t1.",
    "conns_256": "GET / (13-byte body), 256 connections, wrk -t1.",
    "h2c": "GET / over HTTP/2 cleartext (prior knowledge), h2load -t1 -c16 -m16: 16 connections x 16 streams. "
    "Proxies talk HTTP/1.1 to the backend.",
    "default_features": "GET / (13-byte body), 64 connections, wrk -t1; weir runs its production config "
    "(weir-default-features.yaml: request id, metrics with the admin listener, a JSON access log of every "
    "request to a file) against the same peers, which log nothing.",
    "same_features": "GET / (13-byte body), 64 connections, wrk -t1; every proxy does what weir's default "
    "features do: weir on weir-default-features.yaml as in default_features, nginx and HAProxy on ports of "
    "their own that set `X-Forwarded-For/-Proto/-Host` and `Forwarded`, keep or make a request id and send "
    "it upstream and back, and log a JSON line per request with weir's fields to a file (nginx with a "
    "64 KiB buffer, as weir writes in batches; HAProxy a line at a time to standard output, the only "
    "way it writes a file). The same work on all three, so the ratios compare how cheaply each does it.",
    "resilience": "GET / (13-byte body), 64 connections, wrk -t1; weir's route has a retry policy (with its "
    "budget) and a concurrency limit, and its upstream a circuit breaker (weir-resilience.yaml), on a healthy path. Compare its ratios with "
    "small_get's.",
    "least_request": "GET / (13-byte body), 64 connections, wrk -t1; weir balances its two endpoints with "
    "least_request (weir-least-request.yaml) instead of round robin. Compare its ratios with small_get's.",
    "rate_limit_local": "GET / (13-byte body), 64 connections, wrk -t1; weir applies one local rate-limit rule "
    "keyed by client address, never reached (weir-rate-limit-local.yaml). Compare its ratios with small_get's.",
    "rate_limit_redis": "GET / (13-byte body), 64 connections, wrk -t1; weir applies one global rate-limit rule "
    "decided on a local redis-server, never reached (weir-rate-limit-redis.yaml): every request waits for a Redis round trip (the decisions written together go as one call). "
    "Compare with small_get's.",
    "rate_limit_redis_lease": "GET / (13-byte body), 64 connections, wrk -t1; the same global rule with `lease: 100` "
    "(weir-rate-limit-redis.yaml, second listener): one round trip per 100 requests. Compare with small_get's.",
    "tls_h1": "GET / over TLS 1.3 and HTTP/1.1 (no ALPN), 64 keep-alive connections, wrk -t1. Every proxy serves "
    "the same ECDSA P-256 certificate with the same versions, suites and groups (weir-tls.yaml).",
    "tls_h2": "GET / over TLS 1.3 and HTTP/2 (ALPN h2), h2load -t1 -c16 -m16.",
    "tls_handshake": "GET / with `Connection: close`, 64 connections, wrk -t1: a new TCP connection and a full "
    "TLS 1.3 handshake (ECDHE and an ECDSA signature) for every request; wrk never resumes sessions.",
    "tls_resume": "openssl s_time -reuse: one connection at a time, each resuming the first session (TLS 1.3 "
    "ticket), sending GET / and reading the answer. req/s is connections per wall-clock second (counted "
    "in whole seconds by s_time); there is no latency.",
}
TARGETS = ["weir", "weir_plain", "nginx", "haproxy", "passthrough", "backend"]
PEERS = ["nginx", "haproxy"]
LABELS = {"backend": "backend alone (ceiling)", "weir_plain": "weir (plain config)",
          "passthrough": "pass-through (no HTTP work)"}
UNIT_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}


def to_ms(value, unit):
    return float(value) * UNIT_MS[unit]


def parse_wrk(text):
    run = {"tool": "wrk", "latency": "percentiles"}
    if m := re.search(r"^Requests/sec:\s+([\d.]+)", text, re.M):
        run["rps"] = float(m.group(1))
    for pct, key in (("50", "p50"), ("99", "p99")):
        if m := re.search(rf"^\s+{pct}%\s+([\d.]+)(us|ms|s|m|h)\s*$", text, re.M):
            run[key] = to_ms(m.group(1), m.group(2))
    if m := re.search(r"(\d+) requests in", text):
        run["requests"] = int(m.group(1))
    problems = {}
    if m := re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text):
        for name, count in zip(("connect", "read", "write", "timeout"), m.groups()):
            if int(count):
                problems[f"socket {name}"] = int(count)
    # wrk counts any status >= 400 here, despite the wording.
    if m := re.search(r"Non-2xx or 3xx responses: (\d+)", text):
        problems["non-2xx"] = int(m.group(1))
    run["problems"] = problems
    return run


def parse_h2load(text, log_path):
    run = {"tool": "h2load"}
    if m := re.search(r"finished in [\d.]+s, ([\d.]+) req/s", text):
        run["rps"] = float(m.group(1))
    problems = {}
    m = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, "
                  r"(\d+) errored, (\d+) timeout", text)
    if m:
        run["requests"] = int(m.group(4))
        for name, count in zip(("failed", "errored", "timeout"), m.groups()[4:]):
            if int(count):
                problems[name] = int(count)
    if m := re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", text):
        for name, count in zip(("3xx", "4xx", "5xx"), m.groups()[1:]):
            if int(count):
                problems[name] = int(count)
    run["problems"] = problems
    # h2load prints only min/max/mean/sd; its --log-file has every request's duration, so percentiles
    # come from there. Fall back to mean and sd, and say so, if the log is missing.
    durations = []
    if log_path and log_path.exists():
        for line in log_path.read_text().splitlines():
            fields = line.split("\t")
            if len(fields) >= 3 and fields[1].startswith("2"):
                durations.append(int(fields[2]) / 1000.0)  # microseconds
    if durations:
        durations.sort()
        run["p50"] = percentile(durations, 50)
        run["p99"] = percentile(durations, 99)
        run["latency"] = "percentiles"
    elif m := re.search(r"time for request:\s+\S+\s+\S+\s+([\d.]+)(us|ms|s)\s+([\d.]+)(us|ms|s)", text):
        run["p50"] = to_ms(m.group(1), m.group(2))  # mean, reported in the p50 column
        run["p99"] = to_ms(m.group(3), m.group(4))  # sd, reported in the p99 column
        run["latency"] = "mean/sd"
    return run


def parse_stime(text):
    """openssl s_time: the last `N connections in T real seconds` line (the reuse pass)."""
    run = {"tool": "s_time", "problems": {}}
    found = re.findall(r"^(\d+) connections in (\d+) real seconds", text, re.M)
    if found and int(found[-1][1]) > 0:
        count, seconds = map(int, found[-1])
        run["rps"] = count / seconds
        run["requests"] = count
    if re.search(r"error", text, re.I):
        run["problems"]["errors in the output"] = True
    # s_time prints `r` for each resumed connection and `*` for each full handshake.
    reuse_pass = text.partition("session id reuse")[2]
    if full := reuse_pass.count("*"):
        run["problems"]["not resumed"] = full
    return run


def percentile(sorted_values, pct):
    # Nearest rank: the value below which pct% of requests finished, no interpolation to invent.
    rank = max(1, -(-len(sorted_values) * pct // 100))
    return sorted_values[int(rank) - 1]


def parse_file(path):
    path = Path(path)
    text = path.read_text(errors="replace") if path.exists() else ""
    if path.suffix == ".h2load":
        run = parse_h2load(text, path.with_suffix(".h2log"))
    elif path.suffix == ".stime":
        run = parse_stime(text)
    else:
        run = parse_wrk(text)
    if "rps" not in run:
        run["problems"] = {**run.get("problems", {}), "no numbers in the output (run failed)": True}
    return run


def describe_problems(problems):
    # True marks a problem that is not a count.
    return ", ".join(name if count is True else f"{count} {name}" for name, count in problems.items())


def summary(path):
    run = parse_file(path)
    if "rps" not in run:
        return f"FAILED: {describe_problems(run['problems'])}"
    line = f"{run['rps']:>10,.0f} req/s"
    if "p50" in run:
        kind = "mean/sd" if run.get("latency") == "mean/sd" else "p50/p99"
        line += f"  {kind} {run['p50']:.2f}/{run['p99']:.2f} ms"
    if run["problems"]:
        line += f"  ERRORS: {describe_problems(run['problems'])}"
    return line


def fmt(value, digits=2):
    return "n/a" if value is None else f"{value:,.{digits}f}"


def median_of(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def load_scenario(directory):
    """{target: {round: run}} for one scenario directory; a run's CPU seconds, when measured, under "cpu"."""
    runs = {}
    for round_dir in sorted(directory.glob("r*"), key=lambda p: int(p.name[1:])):
        number = int(round_dir.name[1:])
        for raw in sorted(round_dir.iterdir()):
            if raw.suffix in (".wrk", ".h2load", ".stime"):
                runs.setdefault(raw.stem, {})[number] = parse_file(raw)
        for raw in round_dir.glob("*.cpu"):
            if run := runs.get(raw.stem, {}).get(number):
                run["cpu"] = parse_cpu(raw.read_text())
                if run.get("requests") and "proxy" in run["cpu"]:
                    # The proxy's own CPU per request served, microseconds.
                    run["proxy_us"] = run["cpu"]["proxy"] * 1e6 / run["requests"]
    return runs


def parse_cpu(text):
    """`proxy=S backend=S client=S`: CPU seconds each spent during a measured run."""
    return {key: float(value) for key, _, value in (field.partition("=") for field in text.split()) if value}


def round_ratios(runs, peer, metric, own="weir"):
    """`own`'s value over the peer's, round by round, and whether either run of that round had errors."""
    ratios = {}
    for r in sorted(set(runs.get(own, {})) | set(runs.get(peer, {}))):
        mine, theirs = runs.get(own, {}).get(r, {}), runs.get(peer, {}).get(r, {})
        problems = bool(mine.get("problems") or theirs.get("problems"))
        if mine.get(metric) and theirs.get(metric):
            ratios[r] = (mine[metric] / theirs[metric], problems)
        else:
            # No ratio: a missing run is an error; a metric the tool does not measure (s_time has
            # no latency) is not.
            ratios[r] = (None, problems or not mine or not theirs or not (mine.get("rps") and theirs.get("rps")))
    return ratios


def ratio_row(label, runs, rounds, peer, metric, own="weir"):
    """One table row: `own` over `peer` in each round (`!` where a run had errors), then the median."""
    by_round = round_ratios(runs, peer, metric, own)
    cells = ["n/a" if by_round.get(r, (None,))[0] is None
             else f"{by_round[r][0]:.2f}{'!' if by_round[r][1] else ''}" for r in rounds]
    ratios = [ratio for ratio, _ in by_round.values() if ratio is not None]
    return f"| {label} | " + " | ".join(cells) + f" | {fmt(median_of(ratios))} |"


def render_overview(loaded):
    """The medians of weir's per-round ratios for every scenario in one table; details follow."""
    out = ["### Overview", "",
           "Median over rounds of weir ÷ peer. req/s above 1: weir served more; p99 below 1: weir's tail "
           "was shorter; CPU below 1: weir's process spent less CPU (user and kernel) per request served "
           "than the peer's. Where the load generator and the backend bound the throughput, CPU per "
           "request is the fairer measure of the proxy's own efficiency (Redis's CPU, where weir's path uses "
           "it, is not counted). **!**: some run behind the "
           "number had errors (see the scenario).", "",
           "| scenario | req/s vs nginx | req/s vs haproxy | p99 vs nginx | p99 vs haproxy "
           "| CPU/req vs nginx | CPU/req vs haproxy |",
           "|---|---:|---:|---:|---:|---:|---:|"]
    for name, runs in loaded.items():
        if "weir" not in runs:
            continue
        cells = []
        mean_only = any(run.get("latency") == "mean/sd" for t in runs.values() for run in t.values())
        for metric in ("rps", "p50" if mean_only else "p99", "proxy_us"):
            for peer in PEERS:
                if peer not in runs:
                    cells.append("n/a")
                    continue
                ratios = round_ratios(runs, peer, metric).values()
                value = median_of(ratio for ratio, _ in ratios)
                cells.append(fmt(value) + (" (mean)" if metric == "p50" else "")
                             + (" **!**" if any(bad for _, bad in ratios) else ""))
        out.append(f"| {name} | " + " | ".join(cells) + " |")
    out.append("")
    return out


def render_scenario(name, runs):
    out = [f"### {name}", "", SCENARIOS[name], ""]
    targets = [t for t in TARGETS if t in runs]
    rounds = sorted({r for t in targets for r in runs[t]})
    latency_kinds = {run.get("latency") for t in targets for run in runs[t].values()}
    if "mean/sd" in latency_kinds:
        head = "| target | req/s | mean ms | sd ms | errors |"
        out.append("Latency is h2load's mean and standard deviation (no per-request log was available).")
        out.append("")
    else:
        head = "| target | req/s | p50 ms | p99 ms | errors |"
    out += [head, "|---|---:|---:|---:|---|"]
    for target in targets:
        by_round = runs[target]
        label = label_of(name, target)
        errors = [f"r{r}: {describe_problems(run['problems'])}" for r, run in sorted(by_round.items())
                  if run["problems"]]
        rps = median_of(run.get("rps") for run in by_round.values())
        p50 = median_of(run.get("p50") for run in by_round.values())
        p99 = median_of(run.get("p99") for run in by_round.values())
        flag = " **!**" if errors else ""
        out.append(f"| {label}{flag} | {fmt(rps, 0)} | {fmt(p50)} | {fmt(p99)} | "
                   f"{'**' + '; '.join(errors) + '**' if errors else 'none'} |")
    out.append("")
    if "weir" in runs and any(p in runs for p in PEERS):
        cols = "".join(f" r{r} |" for r in rounds)
        out += [f"| weir ÷ peer |{cols} median |", "|---|" + "---:|" * (len(rounds) + 1)]
        # With only mean/sd for latency, compare means: a ratio of standard deviations means little.
        latency = ("p50", "mean") if "mean/sd" in latency_kinds else ("p99", "p99")
        for metric, label in (("rps", "req/s"), latency):
            for peer in (p for p in PEERS if p in runs):
                # A ratio built on a run with errors is shown but marked.
                out.append(ratio_row(f"{label} vs {peer}", runs, rounds, peer, metric))
        out.append("")
    if "passthrough" in runs and any(p in runs for p in PEERS):
        out += passthrough_ratios(runs, rounds)
    if name == "default_features" and "weir_plain" in runs:
        out += feature_cost(runs, rounds)
    out += cpu_per_request(name, runs, targets)
    return out


def label_of(scenario, target):
    """A target's name in a scenario's tables: weir's says which configuration it ran."""
    if target != "weir":
        label = LABELS.get(target, target)
        return f"{label} (same features)" if scenario == "same_features" and target in PEERS else label
    if scenario in ("default_features", "same_features"):
        return "weir (default features)"
    if scenario == "least_request":
        return "weir (least_request)"
    if scenario == "resilience":
        return "weir (retries, breaker, limit)"
    if scenario.startswith("tls_"):
        return "weir (TLS)"
    if scenario in ("rate_limit_local", "rate_limit_redis", "rate_limit_redis_lease"):
        return f"weir ({scenario})"
    return "weir"


def cpu_per_request(name, runs, targets):
    """CPU microseconds per request served, by process, median over rounds."""
    rows = []
    for target in (t for t in targets if t != "backend"):
        per_round = [(run["cpu"], run["requests"]) for run in runs[target].values()
                     if run.get("cpu") and run.get("requests") and not run["problems"]]
        if not per_round:
            continue
        cells = []
        for key in ("proxy", "backend", "client", None):
            values = [(sum(cpu.values()) if key is None else cpu.get(key, 0.0)) * 1e6 / requests
                      for cpu, requests in per_round]
            cells.append(fmt(median_of(values), 1))
        rows.append(f"| {label_of(name, target)} | " + " | ".join(cells) + " |")
    if not rows:
        return []
    return ["CPU per request served, microseconds (median over rounds; runs with errors left out): the "
            "proxy's process (nginx: its worker), the backend's worker, the load generator, and the three "
            "together. Where weir's path also loads Redis, Redis is not counted.", "",
            "| target | proxy | backend | load generator | all three |", "|---|---:|---:|---:|---:|",
            *rows, ""]


def passthrough_ratios(runs, rounds):
    """The pass-through over each peer, round by round: the most any proxy's ratio could be here."""
    cols = "".join(f" r{r} |" for r in rounds)
    out = ["The pass-through copies bytes and does no HTTP work, so no proxy can serve more than it on this "
           "machine: its ratio to a peer is the most any proxy's could be in this scenario.", "",
           f"| pass-through ÷ peer |{cols} median |", "|---|" + "---:|" * (len(rounds) + 1)]
    for peer in (p for p in PEERS if p in runs):
        out.append(ratio_row(f"req/s vs {peer}", runs, rounds, peer, "rps", own="passthrough"))
    out.append("")
    return out


def feature_cost(runs, rounds):
    """weir with its default features over weir on the plain config, measured back to back."""
    cols = "".join(f" r{r} |" for r in rounds)
    out = ["What the features cost: weir (default features) ÷ weir (plain config), each round's two runs "
           "back to back. req/s 0.95 would be a 5% cost.", "",
           f"| weir (default features) ÷ weir (plain config) |{cols} median |",
           "|---|" + "---:|" * (len(rounds) + 1)]
    for metric, label in (("rps", "req/s"), ("p99", "p99")):
        out.append(ratio_row(label, runs, rounds, "weir_plain", metric))
    out.append("")
    return out


def render_idle(directory):
    out = ["### idle_memory", "",
           "10,000 keep-alive connections, each sent one GET / and read the answer, then held open and "
           "idle. Resident memory (VmRSS) of the proxy process (nginx: its worker) before and after, "
           "each read once it had settled.", "",
           "| target | RSS before KiB | RSS after KiB | growth KiB/conn | open at the end | errors |",
           "|---|---:|---:|---:|---:|---|"]
    for target in TARGETS:
        path = directory / f"{target}.json"
        if not path.exists():
            continue
        try:
            result = json.loads(path.read_text().strip().splitlines()[-1])
        except (ValueError, IndexError):
            out.append(f"| {target} **!** | n/a | n/a | n/a | n/a | **no result (see raw output)** |")
            continue
        problems = []
        if result["failed"]:
            problems.append(f"{result['failed']} failed ({result['first_failure']})")
        bad = {k: v for k, v in result["statuses"].items() if not k.startswith("2")}
        if bad:
            problems.append("statuses " + ", ".join(f"{v}x {k}" for k, v in bad.items()))
        if result["still_open"] != result["opened"]:
            problems.append(f"{result['opened'] - result['still_open']} closed by the proxy while idle")
        if not result["settled"]:
            problems.append("RSS did not settle")
        flag = " **!**" if problems else ""
        out.append(f"| {target}{flag} | {result['rss_before_kib']:,} | {result['rss_after_kib']:,} | "
                   f"{fmt(result['kib_per_conn'])} | {result['still_open']:,} of {result['connections']:,} | "
                   f"{'**' + '; '.join(problems) + '**' if problems else 'none'} |")
    out.append("")
    return out


def render(raw, meta_path, header_path):
    meta = {}
    for line in Path(meta_path).read_text().splitlines():
        key, _, value = line.partition("=")
        meta[key] = value
    header = Path(header_path).read_text()
    for key, value in meta.items():
        header = header.replace(f"@{key}@", value)
    out = [header.rstrip("\n"), ""]
    raw = Path(raw)
    loaded = {name: load_scenario(raw / name) for name in SCENARIOS if (raw / name).is_dir()}
    if loaded:
        out += render_overview(loaded)
    for name, runs in loaded.items():
        out += render_scenario(name, runs)
    if (raw / "idle_memory").is_dir():
        out += render_idle(raw / "idle_memory")
    return "\n".join(out).rstrip("\n") + "\n"


def main(argv):
    if len(argv) == 3 and argv[1] == "summary":
        print(summary(argv[2]))
    elif len(argv) == 5 and argv[1] == "render":
        sys.stdout.write(render(*argv[2:]))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv)
