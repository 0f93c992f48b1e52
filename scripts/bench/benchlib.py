#!/usr/bin/env python3
"""Number crunching and hot-reload probing for scripts/bench.sh (standard library only).

Subcommands:
  parse-wrk FILE             one TSV line: requests seconds rps p50_ms p99_ms non2xx sock_errors
  reload ...                 rewrite a route file COUNT times, time write -> served; JSON out
  report RAW.tsv [RELOAD...] markdown tables (per-peer medians, per-round ratios, side-by-side
                             pairs, targets)
"""

import argparse
import http.client
import json
import os
import re
import statistics
import sys
import time

UNIT_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}


def to_ms(text):
    m = re.fullmatch(r"([0-9.]+)(us|ms|s|m)", text)
    if not m:
        raise ValueError(f"unparsable latency {text!r}")
    return float(m.group(1)) * UNIT_MS[m.group(2)]


def parse_wrk(text):
    """The figures bench.sh records from `wrk --latency` output."""
    m = re.search(r"(\d+) requests in ([0-9.]+)(us|ms|s|m)", text)
    if not m:
        raise ValueError("no 'N requests in T' line: wrk failed?")
    requests, seconds = int(m.group(1)), to_ms(m.group(2) + m.group(3)) / 1000.0
    rps = re.search(r"Requests/sec:\s+([0-9.]+)", text)
    p50 = re.search(r"^\s+50%\s+(\S+)", text, re.M)
    p99 = re.search(r"^\s+99%\s+(\S+)", text, re.M)
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    return {
        "requests": requests,
        "seconds": seconds,
        "rps": float(rps.group(1)) if rps else requests / max(seconds, 1e-9),
        "p50_ms": to_ms(p50.group(1)) if p50 else float("nan"),
        "p99_ms": to_ms(p99.group(1)) if p99 else float("nan"),
        "non2xx": int(non2xx.group(1)) if non2xx else 0,
        "sock_errors": sum(int(g) for g in sock.groups()) if sock else 0,
        "sock_detail": ("connect {}, read {}, write {}, timeout {}".format(*sock.groups())
                        if sock else "none"),
    }


def cmd_parse_wrk(args):
    with open(args.file, encoding="utf-8", errors="replace") as f:
        r = parse_wrk(f.read())
    print("\t".join(str(r[k]) for k in
                    ("requests", "seconds", "rps", "p50_ms", "p99_ms", "non2xx", "sock_errors")))
    return 0


# --- hot reload ---------------------------------------------------------------------------

def rss_kib(pid):
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def http_get(port, path, host="127.0.0.1", timeout=2.0):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path, headers={"Host": host})
        resp = conn.getresponse()
        return resp.status, resp.read().decode("utf-8", "replace")
    finally:
        conn.close()


def metric(admin_port, name):
    """A gauge from /metrics, or None when absent. (Not /config: with many routes it dumps
    the whole snapshot, which is slow and would load the gateway while it is measured.)"""
    try:
        _, body = http_get(admin_port, "/metrics")
    except OSError:
        return None
    m = re.search(rf"^{name}(?:\{{[^}}]*\}})?\s+(\S+)", body, re.M)
    return float(m.group(1)) if m else None


def route_yaml(seq, host):
    return f"""type: MeshHTTPRoute
mesh: default
name: bench-reload
spec:
  targetRef:
    kind: MeshGateway
    name: bench-gateway
  to:
    - targetRef:
        kind: Mesh
      hostnames:
        - {host}
      rules:
        - matches:
            - path:
                type: Exact
                value: /bench/reload-{seq}
          default:
            backendRefs:
              - kind: MeshService
                name: bench-backend
"""


class Poller:
    """Keep-alive GETs on one connection; reconnects when the gateway closes it."""

    def __init__(self, port, host):
        self.port, self.host, self.conn = port, host, None

    def status(self, path):
        for _ in range(2):
            try:
                if self.conn is None:
                    self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2.0)
                self.conn.request("GET", path, headers={"Host": self.host})
                resp = self.conn.getresponse()
                resp.read()
                return resp.status
            except (OSError, http.client.HTTPException):
                if self.conn is not None:
                    self.conn.close()
                self.conn = None
        return 0


def cmd_reload(args):
    """Write a new route COUNT times; after each, poll until it answers 200 (bounded)."""
    if args.cpu is not None:
        os.sched_setaffinity(0, {args.cpu})
    poller = Poller(args.port, args.host)
    rss_before = rss_kib(args.pid)
    out = {"served_ms": [], "compile_s": [], "timeouts": 0, "generations": [],
           "rss_before_kib": rss_before, "rss_max_kib": rss_before}
    target = os.path.join(args.dir, "zz-bench-reload.yaml")
    staging = os.path.join(args.staging, "zz-bench-reload.yaml")
    for i in range(args.count):
        seq = f"{args.tag}{i}"
        path = f"/bench/reload-{seq}"
        if poller.status(path) == 200:
            raise SystemExit(f"{path} already served before the write: stale policy dir?")
        with open(staging, "w", encoding="utf-8") as f:
            f.write(route_yaml(seq, args.host))
        # rename(2) into the watched directory: one atomic file event, no half-written file.
        os.replace(staging, target)
        t0 = time.monotonic()
        deadline = t0 + args.timeout
        served = False
        while time.monotonic() < deadline:
            if poller.status(path) == 200:
                served = True
                break
            time.sleep(0.001)
        if served:
            out["served_ms"].append((time.monotonic() - t0) * 1000.0)
        else:
            out["timeouts"] += 1
        cs = metric(args.admin, "meshgate_config_compile_seconds")
        if cs is not None:
            out["compile_s"].append(cs)
        out["generations"].append(metric(args.admin, "meshgate_config_generation"))
        out["rss_max_kib"] = max(out["rss_max_kib"], rss_kib(args.pid))
        time.sleep(args.gap)
    out["rss_after_kib"] = rss_kib(args.pid)
    json.dump(out, sys.stdout)
    print()
    return 0


# --- report -------------------------------------------------------------------------------

COLUMNS = ["round", "peer", "requests", "seconds", "rps", "p50_ms", "p99_ms", "non2xx",
           "sock_errors", "cpu_ticks", "clk_tck", "rss_kib", "upstream_conns", "user_ticks"]


def read_tsv(path, columns, text_columns):
    """Rows of one of bench.sh's TSVs as dicts: the first `text_columns` stay text, the rest
    are numbers; `cpu_us` is added (CPU µs per request)."""
    with open(path, encoding="utf-8") as f:
        for line in f:
            if not line.strip() or line.startswith("#"):
                continue
            row = dict(zip(columns, line.rstrip("\n").split("\t")))
            for k in columns[text_columns:]:
                row[k] = float(row[k])
            row["cpu_us"] = row["cpu_ticks"] / row["clk_tck"] * 1e6 / max(row["requests"], 1)
            if "user_ticks" in row:
                row["user_us"] = row["user_ticks"] / row["clk_tck"] * 1e6 / max(row["requests"], 1)
            yield row


def load_raw(path):
    runs = list(read_tsv(path, COLUMNS, 2))
    for row in runs:
        row["round"] = int(row["round"])
    return runs


PAIR_COLUMNS = ["pair", "round", "peer", "requests", "seconds", "rps", "p50_ms", "p99_ms", "non2xx",
                "sock_errors", "cpu_ticks", "clk_tck"]


def load_pairs(path):
    """{pair: {round: {peer: row}}} from bench.sh's side-by-side TSV."""
    pairs = {}
    for row in read_tsv(path, PAIR_COLUMNS, 3):
        pairs.setdefault(row["pair"], {}).setdefault(int(row["round"]), {})[row["peer"]] = row
    return pairs


def pair_ratios(rounds, a, b, key):
    """Per-round a/b of `key` (rounds where both ran and b is non-zero)."""
    return [r[a][key] / r[b][key] for _, r in sorted(rounds.items())
            if a in r and b in r and r[b][key] > 0]


def print_pairs(pairs):
    """Side-by-side table; returns {pair: (median, min, max) of the req/s ratio}."""
    if not pairs:
        return {}
    print("\n### Side by side (both proxies on the proxy CPU at the same moment)\n")
    print("| pair A:B | rounds | req/s A ÷ B, median (min–max) | CPU µs/req A ÷ B | req/s A / B (medians) "
          "| errors |")
    print("|---|---:|---:|---:|---:|---:|")
    out = {}
    for pair, rounds in pairs.items():
        a, b = pair.split(":")
        rps = pair_ratios(rounds, a, b, "rps")
        cpu = pair_ratios(rounds, a, b, "cpu_us")
        if not rps:
            continue
        out[pair] = (statistics.median(rps), min(rps), max(rps))
        med = lambda p, k: statistics.median(r[p][k] for r in rounds.values() if p in r)  # noqa: E731
        errors = int(sum(r[p]["non2xx"] + r[p]["sock_errors"] for r in rounds.values() for p in r))
        print(f"| {pair} | {len(rps)} | {ratio_cell(out[pair])} | "
              f"{ratio_cell((statistics.median(cpu), min(cpu), max(cpu))) if cpu else '—'} | "
              f"{fmt(med(a, 'rps'))} / {fmt(med(b, 'rps'))} | {errors} |")
    print("\nEach round loads both proxies at once, one `wrk -c32` each, with both pinned to the "
          "proxy CPU: the scheduler gives each about half of it, so the ratio is what each gets "
          "done with the same CPU at the same moment, and the machine's noise hits both alike. "
          "Latencies are not comparable with the table above (each proxy waits for the other's "
          "time slices), so none are given.")
    return out


def fmt(x, digits=0):
    if x is None or x != x:
        return "n/a"
    return f"{x:,.{digits}f}"


def per_round_ratio(runs, peer, ref, key):
    """Median over rounds of peer/ref, each ratio taken within one round."""
    by = {(r["peer"], r["round"]): r[key] for r in runs}
    ratios = [by[(peer, rd)] / by[(ref, rd)]
              for rd in sorted({r["round"] for r in runs})
              if (peer, rd) in by and (ref, rd) in by and by[(ref, rd)] > 0]
    return (statistics.median(ratios), min(ratios), max(ratios)) if ratios else None


def ratio_cell(rr):
    if rr is None:
        return "—"
    med, lo, hi = rr
    return f"{med:.2f} ({lo:.2f}–{hi:.2f})"


def cmd_report(args):
    runs = load_raw(args.raw)
    peers = []
    for r in runs:
        if r["peer"] not in peers:
            peers.append(r["peer"])
    has = set(peers)
    rounds = len({r["round"] for r in runs})
    print(f"Rounds: {rounds}; per run `wrk -t1 -c32 --latency`, peers interleaved per round.\n")
    print("| peer | req/s median | req/s range | p50 ms | p99 ms | CPU µs/req | of it user, system "
          "| RSS MiB | req/s ÷ nginx | req/s ÷ bare | CPU ÷ nginx | user CPU ÷ nginx "
          "| new upstream conns | errors |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    summary = {}
    for p in peers:
        rs = [r for r in runs if r["peer"] == p]
        med = lambda k: statistics.median(r[k] for r in rs)  # noqa: E731
        s = {
            "rps": med("rps"), "lo": min(r["rps"] for r in rs), "hi": max(r["rps"] for r in rs),
            "p50": med("p50_ms"), "p99": med("p99_ms"), "cpu": med("cpu_us"), "user": med("user_us"),
            "rss": max(r["rss_kib"] for r in rs) / 1024.0,
            "conns": int(sum(r["upstream_conns"] for r in rs)),
            "errors": int(sum(r["non2xx"] + r["sock_errors"] for r in rs)),
            "vs_nginx": per_round_ratio(runs, p, "nginx", "rps") if "nginx" in has and p != "nginx" else None,
            "vs_bare": per_round_ratio(runs, p, "bare", "rps") if "bare" in has and p != "bare" else None,
            "cpu_vs_nginx": per_round_ratio(runs, p, "nginx", "cpu_us") if "nginx" in has and p != "nginx" else None,
            "user_vs_nginx": per_round_ratio(runs, p, "nginx", "user_us") if "nginx" in has and p != "nginx" else None,
        }
        summary[p] = s
        print(f"| {p} | {fmt(s['rps'])} | {fmt(s['lo'])}–{fmt(s['hi'])} | {fmt(s['p50'], 2)} "
              f"| {fmt(s['p99'], 2)} | {fmt(s['cpu'], 1)} "
              f"| {fmt(s['user'], 1)}, {fmt(s['cpu'] - s['user'], 1)} | {fmt(s['rss'], 1)} "
              f"| {ratio_cell(s['vs_nginx'])} | {ratio_cell(s['vs_bare'])} "
              f"| {ratio_cell(s['cpu_vs_nginx'])} | {ratio_cell(s['user_vs_nginx'])} "
              f"| {s['conns']} | {s['errors']} |")
    print("\nRatios are medians (min–max) of per-round ratios; CPU is split into user mode (the "
          "proxy's own code) and system (the kernel's socket and epoll work); "
          "RSS is the largest VmRSS seen after a "
          "run; \"new upstream conns\" counts connections the backend accepted during the measured "
          "runs (all rounds; 0 = every request reused a pooled connection); errors = wrk non-2xx "
          "responses + socket errors.")

    reload = None
    if args.reload_idle and os.path.exists(args.reload_idle):
        with open(args.reload_idle, encoding="utf-8") as f:
            reload = {"idle": json.load(f)}
        if args.reload_load and os.path.exists(args.reload_load):
            with open(args.reload_load, encoding="utf-8") as f:
                reload["load"] = json.load(f)
        if args.reload_wrk and os.path.exists(args.reload_wrk):
            with open(args.reload_wrk, encoding="utf-8", errors="replace") as f:
                reload["wrk"] = parse_wrk(f.read())
        print_reload(reload, args.debounce_ms, args.target_peer)

    paired = print_pairs(load_pairs(args.pairs)) if args.pairs and os.path.exists(args.pairs) else {}
    print_targets(summary, reload, args.debounce_ms, args.target_peer, paired)
    return 0


def print_reload(reload, debounce_ms, peer):
    idle, load, wrk = reload["idle"], reload.get("load"), reload.get("wrk")
    print(f"\n### Hot reload ({peer})\n")
    print("| figure | value |")
    print("|---|---:|")
    served = idle["served_ms"]
    if served:
        print(f"| policy write → new route served, median (min–max) of {len(served)} | "
              f"{statistics.median(served):.0f} ms ({min(served):.0f}–{max(served):.0f}) |")
        print(f"| same, debounce ({debounce_ms:.0f} ms) excluded | "
              f"{statistics.median(served) - debounce_ms:.0f} ms |")
    print(f"| reloads not served within the timeout | {idle['timeouts'] + (load or {}).get('timeouts', 0)} |")
    cs = idle["compile_s"] + (load or {}).get("compile_s", [])
    print("| snapshot build (load + validate + compile), median (max) | " +
          (f"{statistics.median(cs) * 1000:.0f} ms ({max(cs) * 1000:.0f})" if cs else "n/a") + " |")
    if load:
        n = len(load["served_ms"]) + load["timeouts"]
        if load["served_ms"]:
            sm = load["served_ms"]
            print(f"| write → served under wrk load, median (max) of {n} | "
                  f"{statistics.median(sm):.0f} ms ({max(sm):.0f}) |")
        if wrk:
            lost = wrk["non2xx"] + wrk["sock_errors"]
            print(f"| requests lost during {n} reloads under load (non-2xx + socket errors) | "
                  f"{lost} of {wrk['requests']:,} |")
            print(f"| … of which non-2xx / socket errors | {wrk['non2xx']} / {wrk['sock_detail']} |")
            print(f"| p99 under wrk load during the reloads | {wrk['p99_ms']:.1f} ms |")
        print(f"| RSS before → max → after the {n} reloads | {load['rss_before_kib'] / 1024:.1f} → "
              f"{load['rss_max_kib'] / 1024:.1f} → {load['rss_after_kib'] / 1024:.1f} MiB |")


def print_targets(summary, reload, debounce_ms, peer, paired=None):
    s = summary.get(peer)
    if s is None:
        return
    # Issue 5's targets are for up to 10,000 routes; issue 21 set the memory of 100,000.
    count = re.search(r"\d+$", peer)  # mg100000: 100,000 routes
    routes = int(count.group()) if count else 0
    rss_limit, rss_from = (160, "issue 21") if routes > 10_000 else (64, "issue 5")
    print(f"\n### Targets ({peer}: issue 5's, RSS {rss_from}'s)\n")
    lines = []
    if s["vs_bare"]:
        lines.append(("req/s ≥ 1.3× bare Pingora", f"{s['vs_bare'][0]:.2f}×", s["vs_bare"][0] >= 1.3))
    side = (paired or {}).get(f"{peer}:bare")
    if side:
        lines.append(("… the same, side by side", f"{ratio_cell(side)}×", side[0] >= 1.3))
    # Not targets: what Pingora reaches with meshgate's settings and no per-request work at
    # all, i.e. the most any application on it can claw back against the default.
    tuned = summary.get("baretuned", {}).get("vs_bare")
    if tuned:
        lines.append(("(reference) bare Pingora tuned as meshgate ÷ bare", f"{ratio_cell(tuned)}×", None))
    for pair, name in (("baretuned:bare", "(reference) tuned ÷ bare, side by side"),
                       (f"{peer}:baretuned", f"(reference) {peer} ÷ tuned bare Pingora, side by side")):
        if pair in (paired or {}):
            lines.append((name, f"{ratio_cell(paired[pair])}×", None))
    if s["vs_nginx"]:
        lines.append(("req/s ≥ 0.65× nginx (aim)", f"{s['vs_nginx'][0]:.2f}×", s["vs_nginx"][0] >= 0.65))
    if s["cpu_vs_nginx"]:
        lines.append(("CPU µs/req ≤ 1.5× nginx (aim)", f"{s['cpu_vs_nginx'][0]:.2f}×",
                      s["cpu_vs_nginx"][0] <= 1.5))
    if "bare" in summary:
        lines.append(("p99 ≤ bare Pingora p99", f"{s['p99']:.2f} vs {summary['bare']['p99']:.2f} ms",
                      s["p99"] <= summary["bare"]["p99"]))
    lines.append((f"RSS ≤ {rss_limit} MiB", f"{s['rss']:.1f} MiB", s["rss"] <= rss_limit))
    if reload and reload["idle"]["served_ms"]:
        v = statistics.median(reload["idle"]["served_ms"]) - debounce_ms
        lines.append(("change served ≤ 100 ms after the file event (debounce excluded)", f"{v:.0f} ms", v <= 100))
    if reload and reload.get("wrk"):
        lost = reload["wrk"]["non2xx"] + reload["wrk"]["sock_errors"]
        lines.append(("0 requests lost during reloads", str(lost), lost == 0))
    print("| target | measured | met |")
    print("|---|---:|:---:|")
    for name, value, ok in lines:
        print(f"| {name} | {value} | {'—' if ok is None else 'yes' if ok else '**no**'} |")


def main(argv=None):
    p = argparse.ArgumentParser(description="helpers for scripts/bench.sh")
    sub = p.add_subparsers(dest="cmd", required=True)
    w = sub.add_parser("parse-wrk")
    w.add_argument("file")
    w.set_defaults(fn=cmd_parse_wrk)
    r = sub.add_parser("reload")
    r.add_argument("--port", type=int, required=True, help="gateway listener port")
    r.add_argument("--admin", type=int, required=True, help="admin port")
    r.add_argument("--pid", type=int, required=True, help="gateway PID (for VmRSS)")
    r.add_argument("--dir", required=True, help="the gateway's policy directory")
    r.add_argument("--staging", required=True, help="directory on the same filesystem, not watched")
    r.add_argument("--count", type=int, default=5)
    r.add_argument("--gap", type=float, default=0.3, help="seconds between reloads")
    r.add_argument("--timeout", type=float, default=60.0, help="max seconds to wait per reload")
    r.add_argument("--tag", default="r", help="route path prefix, unique per call")
    r.add_argument("--host", default="bench.example.com")
    r.add_argument("--cpu", type=int, default=None, help="pin the poller to this CPU")
    r.set_defaults(fn=cmd_reload)
    rp = sub.add_parser("report")
    rp.add_argument("raw")
    rp.add_argument("--reload-idle")
    rp.add_argument("--reload-load")
    rp.add_argument("--reload-wrk")
    rp.add_argument("--debounce-ms", type=float, default=100.0)
    rp.add_argument("--target-peer", default="mg10000")
    rp.add_argument("--pairs", help="side-by-side TSV from bench.sh (PAIRS)")
    rp.set_defaults(fn=cmd_report)
    args = p.parse_args(argv)
    return args.fn(args)


if __name__ == "__main__":
    sys.exit(main())
