#!/usr/bin/env bash
# Switch latency through a real Caddy (issue 14): from "new instance healthy" to "Caddy serves
# it". The hello example (contrib/examples/hello) with one domain is redeployed COUNT times
# while a client asks Caddy for that domain over one keep-alive connection as fast as it can
# (a request about every 1-2 ms); for each deployment the latency is the first answer through
# Caddy carrying the new Slipway-Release minus the timestamp of the deployment log's
# "instance on port N is healthy" line (both the wall clock of this machine, ms). Targets:
# median < 50 ms, p99 < 1 s. Also printed: healthy -> success (the deployment's own probe
# through Caddy, then the database switch).
#
# Each REFRESH value (SLIPWAY_PROXY_REFRESH_MS: how long Caddy holds an SRV answer) gets its
# own slipwayd, Caddy and empty database. APPS other routed apps (written straight into
# PostgreSQL, as bench/proxy_scale.sh does) measure the switch with that many routes.
# PROXY=nginx measures the nginx driver instead (REFRESH does not apply: every switch is a
# rendered file and a graceful reload).
#
#   bench/proxy_switch.sh                    COUNT=30 REFRESH="100 50" APPS=0 PROXY=caddy
#   SLIPWAYD=build/slipwayd bench/proxy_switch.sh
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=contrib/lib.sh
source contrib/lib.sh
# shellcheck source=bench/proxy_lib.sh
source bench/proxy_lib.sh

count=${COUNT:-30}
refresh=${REFRESH:-100 50}
proxy=${PROXY:-caddy}
[[ $proxy == caddy || $proxy == nginx ]] || sw_die "PROXY must be caddy or nginx"
[[ $proxy == caddy ]] || refresh=100

pb_init

if [[ $proxy == caddy ]]; then
    version="Caddy $(caddy version | awk '{print $1}')"
else
    version=$(nginx -v 2>&1 | sed 's/^nginx version: //')
fi
echo "switch latency through $version: $count redeployments per setting," \
    "${APPS:-0} other routed apps; $(nproc) CPUs"
pg_port=$(cat "$tmp/pg/port")
for ms in $refresh; do
    # an empty database and Caddy for each setting
    sw_as_pg "$SW_PG_BIN/dropdb" -h "$tmp/pg/sock" -p "$pg_port" -U postgres --if-exists slipway
    sw_as_pg "$SW_PG_BIN/createdb" -h "$tmp/pg/sock" -p "$pg_port" -U postgres slipway
    if [[ $proxy == caddy ]]; then
        pb_caddy_start
        pb_slipwayd_start SLIPWAY_PROXY_REFRESH_MS="$ms" SLIPWAY_DATA_DIR="$tmp/data-$ms"
        echo "-- SLIPWAY_PROXY_REFRESH_MS=$ms"
        proxy_pid=$PB_CADDY_PID
    else
        pb_nginx_start
        pb_slipwayd_start SLIPWAY_PROXY=nginx SLIPWAY_NGINX_CONF="$PB_NGINX_CONF" \
            SLIPWAY_NGINX_INCLUDE="$PB_NGINX_INCLUDE" SLIPWAY_DATA_DIR="$tmp/data-nginx"
        echo "-- nginx"
        proxy_pid=$PB_NGINX_PID
    fi
    COUNT=$count APPS=${APPS:-0} SLIPWAYD_PID=$SW_SLIPWAYD_PID PROXY_PID=$proxy_pid \
        PROXY=$proxy NGINX_INCLUDE=${PB_NGINX_INCLUDE:-} \
        pb_python - <<'PY'
import os, re, threading, time, urllib.request
from datetime import datetime

from proxy_kit import Api, Through, hello_repo, insert_routed_apps, summary

NGINX = os.environ["PROXY"] == "nginx"
NAME = "nginx" if NGINX else "Caddy"
api = Api()
app = api.hello_app(api.environment(), "switch", hello_repo())
api.call("POST", f"apps/{app}/domains", {"hostname": "switch.test"})
first = api.deploy(app)
others = int(os.environ["APPS"])
if others:
    # other routed apps (never asked for): every reconcile round reads and compares them all
    insert_routed_apps(others, "127.0.0.1:9", "other")
    t0 = time.monotonic()

    def routed():
        if NGINX:  # the last inserted host's server block is in the rendered file
            return f"other-{others - 1}.scale.test" in open(os.environ["NGINX_INCLUDE"]).read()
        # the last inserted host is in slipwayd's table: Caddy sends it on (to nothing there,
        # 502) rather than to the edge's 404
        return Through(f"other-{others - 1}.scale.test").get()[0] not in (0, 404)

    while not routed():
        if time.monotonic() - t0 > 60:
            raise SystemExit(f"the proxy never held {others + 1} routes")
        time.sleep(0.05)

# The watcher: every change of Slipway-Release seen through Caddy, with when it was first seen.
seen = {}
stop = threading.Event()
gaps = []
slow = []  # (sent, took, release) of requests over 50 ms


def watch():
    c = Through("switch.test")
    last, prev_t = None, None
    while not stop.is_set():
        sent = time.time()
        status, rel = c.get()
        now = time.time()
        if prev_t is not None:
            gaps.append(now - prev_t)
        prev_t = now
        if now - sent > 0.05:
            slow.append((sent, now - sent, rel))
        if status == 200 and rel != last:
            seen.setdefault(rel, now)
            last = rel
        elif status != 200:
            print(f"  through {NAME}: {status}")
        time.sleep(0.001)


t = threading.Thread(target=watch, daemon=True)
t.start()
while first["id"] not in seen:
    time.sleep(0.01)


def healthy_at(dep_id):
    lines = api.call("GET", f"deployments/{dep_id}/logs?lines=1000")["data"]
    at = [ln["timestamp"] for ln in lines if ln["line"].startswith("instance on port")
          and ln["line"].endswith("is healthy")]
    if not at:
        raise SystemExit(f"no healthy line in {dep_id}'s log")
    return datetime.fromisoformat(at[-1].replace("Z", "+00:00")).timestamp()


def cpu(pid, children=False):
    """CPU seconds pid has used (with children: and its waited-for children too)."""
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])
    if children:
        ticks += int(fields[13]) + int(fields[14])
    return ticks / os.sysconf("SC_CLK_TCK")


def counters():
    """slipwayd's proxy counters, and the CPU seconds slipwayd and the proxy have used (nginx:
    its master, the workers it has replaced, and the ones it has now)."""
    with urllib.request.urlopen(os.environ["BASE"] + "/metrics", timeout=10) as r:
        text = r.read().decode()
    got = {m[0]: float(m[1]) for m in re.findall(r"^slipway_proxy_(\w+)_total (\S+)$", text, re.M)}
    got["SLIPWAYD_PID"] = cpu(os.environ["SLIPWAYD_PID"])
    proxy = os.environ["PROXY_PID"]
    got["PROXY_PID"] = cpu(proxy, NGINX)
    if NGINX:
        for task in os.listdir(f"/proc/{proxy}/task"):
            for child in open(f"/proc/{proxy}/task/{task}/children").read().split():
                try:
                    got["PROXY_PID"] += cpu(child)
                except OSError:
                    pass  # a worker that just ended: counted with the master's children
    return got


before = counters()
switch, to_success = [], []
for i in range(int(os.environ["COUNT"])):
    dep = api.deploy(app)
    done = time.time()
    while dep["id"] not in seen:
        if time.time() - done > 10:
            raise SystemExit(f"{NAME} never served {dep['id']}")
        time.sleep(0.005)
    healthy = healthy_at(dep["id"])
    finished = datetime.fromisoformat(dep["finished_at"].replace("Z", "+00:00")).timestamp()
    switch.append((seen[dep["id"]] - healthy) * 1000)
    to_success.append((finished - healthy) * 1000)
    stalls = [took for sent, took, _ in slow if healthy - 1 <= sent <= seen[dep["id"]]]
    print(f"  #{i + 1:<3} healthy -> through {NAME} {switch[-1]:7.1f} ms, "
          f"healthy -> success {to_success[-1]:7.1f} ms" +
          (f"  ({len(stalls)} requests over 50 ms meanwhile, the longest "
           f"{max(stalls) * 1000:.0f} ms)" if stalls else ""))
stop.set()
t.join(10)
after = counters()
k = len(switch)
print(f"per deployment: {(after['rounds'] - before['rounds']) / k:.1f} reconcile rounds, "
      f"{(after['changes'] - before['changes']) / k:.1f} {NAME} changes; CPU "
      f"{(after['SLIPWAYD_PID'] - before['SLIPWAYD_PID']) / k * 1000:.0f} ms slipwayd, "
      f"{(after['PROXY_PID'] - before['PROXY_PID']) / k * 1000:.0f} ms {NAME}")
gaps.sort()
print(summary(f"healthy -> first answer through {NAME} with the new release", switch) +
      " (targets: median < 50 ms, p99 < 1 s)")
print(summary("healthy -> success (the deployment's own probe and switch)", to_success))
print(f"watcher: {len(gaps)} requests, interval median {gaps[len(gaps) // 2] * 1000:.1f} ms, "
      f"max {gaps[-1] * 1000:.1f} ms")
PY
    sw_stop_pid "$SW_SLIPWAYD_PID" 20
    SW_SLIPWAYD_PID=
    pb_caddy_stop
    pb_nginx_stop
done
