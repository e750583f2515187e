#!/usr/bin/env bash
# Routing at scale through a real Caddy (issue 14): APPS apps with a domain each, written
# straight into PostgreSQL (one transaction; every app's endpoints are one tiny HTTP server,
# `python3 -m http.server`, and its active release a made-up id), then:
#   1. bulk: that commit -> Caddy holds Slipway's one route (the NOTIFY path into an empty
#      Caddy), and -> every host answered 200 through Caddy (its upstreams come from slipwayd's
#      DNS responder, so no host is in Caddy's config);
#   2. request latency through Caddy over all APPS hosts against over 50 of them (Caddy 2.6
#      keeps at most 100 SRV names in its cache; beyond that a request may first ask
#      slipwayd's DNS responder);
#   3. one more domain, ADD times: POST apps/:id/domains -> slipwayd's DNS responder answers
#      the app's upstreams for it (target < 100 ms), then its first request through Caddy;
#      and a client polling Caddy from the POST on (Caddy keeps the edge's answer for a host
#      SLIPWAY_PROXY_REFRESH_MS long). Anchor: one more route in a Caddy server of APPS host
#      routes, what a domain cost when each domain was a Caddy route;
#   4. full reconcile, ROUNDS times: Caddy restarted empty, then a NOTIFY slipway_routes (what
#      any routing change sends) -> Slipway's route back (target < 2 s), and -> all APPS hosts
#      answered 200 in one pass; and once, with no NOTIFY, restart -> whole again by the
#      reconciler's timer alone (SLIPWAY_PROXY_RECONCILE_MS, default 10 s).
#
#   bench/proxy_scale.sh                     APPS=1000 ADD=20 ROUNDS=3
#   SLIPWAYD=build/slipwayd bench/proxy_scale.sh
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=contrib/lib.sh
source contrib/lib.sh
# shellcheck source=bench/proxy_lib.sh
source bench/proxy_lib.sh

pb_init

# The one upstream every route points at.
www_port=$(sw_free_port)
mkdir -p "$tmp/www"
echo ok >"$tmp/www/index.html"
(cd "$tmp/www" && exec "$SW_PYTHON" -m http.server "$www_port" --bind 127.0.0.1 \
    >/dev/null 2>&1) &
www_pid=$!
sw_wait_until 20 sw_http_ok "http://127.0.0.1:$www_port/" || sw_die "the upstream did not start"

pb_caddy_start
pb_slipwayd_start

echo "routing at scale through Caddy $(caddy version | awk '{print $1}'): ${APPS:-1000} apps;" \
    "$(nproc) CPUs"
APPS=${APPS:-1000} ADD=${ADD:-20} ROUNDS=${ROUNDS:-3} WWW=127.0.0.1:$www_port \
    ANCHOR_PORT=$(sw_free_port) \
    CADDY_DIR=$tmp/caddy CADDY_PID=$PB_CADDY_PID pb_python - <<'PY'
import json, os, signal, statistics, subprocess, time, urllib.error, urllib.request

from proxy_kit import (CADDY_ADMIN, Api, Through, caddy_config, caddy_routes,
                       insert_routed_apps, pct, sql, srv_target, summary)

n, adds, rounds = int(os.environ["APPS"]), int(os.environ["ADD"]), int(os.environ["ROUNDS"])
api = Api()
api.environment("scale")
hosts = [f"app-{i}.scale.test" for i in range(n)]


def wait(cond, timeout, what, every=0.01):
    t0 = time.monotonic()
    while not cond():
        if time.monotonic() - t0 > timeout:
            raise SystemExit(f"timed out after {timeout}s waiting for {what}")
        time.sleep(every)
    return time.monotonic()


def all_answer(names):
    """One pass over names through Caddy: (failures, per-request ms)."""
    c, bad, ms = Through(""), [], []
    for h in names:
        c.host = h
        t0 = time.perf_counter()
        status, rel = c.get()
        ms.append((time.perf_counter() - t0) * 1000)
        # only an app's answer carries the header (the edge's 404 and 503 do not)
        if status != 200 or not rel:
            bad.append(h)
    return bad, ms


def whole():
    return caddy_routes() == ["slipway-apps"]


# 1. the bulk insert: one transaction, one NOTIFY
t0 = time.monotonic()
insert_routed_apps(n, os.environ["WWW"])
committed = time.monotonic()
routed = wait(whole, 60, "Slipway's route in Caddy")
left = list(hosts)
while left:
    left, _ = all_answer(left)
    if time.monotonic() - routed > 60:
        raise SystemExit(f"{len(left)} hosts never answered 200, e.g. {left[:3]}")
answered = time.monotonic()
print(f"bulk: {n} apps and domains inserted in {(committed - t0) * 1000:.0f} ms; commit -> "
      f"Slipway's route in Caddy {(routed - committed) * 1000:.0f} ms; -> every host answered "
      f"200 {(answered - committed) * 1000:.0f} ms")

# 2. request latency: all hosts in turn (beyond Caddy's 100-name SRV cache) against 50
def in_turn(names, passes):
    ms = []
    for _ in range(passes):
        bad, took = all_answer(names)
        if bad:
            raise SystemExit(f"{len(bad)} hosts did not answer 200, e.g. {bad[:3]}")
        ms += took
    return ms


in_turn(hosts[:50], 1)
few = in_turn(hosts[:50], max(1, 2 * n // 50))
many = in_turn(hosts, 2)
direct, direct_ms = Through("upstream", port=int(os.environ["WWW"].rsplit(":", 1)[1])), []
for _ in range(len(few)):
    t0 = time.perf_counter()
    direct.get()
    direct_ms.append((time.perf_counter() - t0) * 1000)
print(summary(f"through Caddy, 50 hosts in turn ({len(few)} requests)", few))
print(summary(f"through Caddy, all {n} hosts in turn ({len(many)} requests)", many))
print(f"ratio all/50: median {statistics.median(many) / statistics.median(few):.2f}, "
      f"p99 {pct(many, 99) / pct(few, 99):.2f}")
print(summary("straight to the upstream, same client", direct_ms))

# 3. one more domain, ADD times, each on another app. Applied: POST -> slipwayd's DNS
# responder answers the app's upstreams for it (asked directly: Caddy is not asked, so it has
# nothing cached for the host, as for a host nobody has visited); then one request through
# Caddy must be served by the app.
targets = [row.split("|") for row in
           sql(f"SELECT id, active_deployment_id FROM apps ORDER BY name LIMIT {max(1, adds)}")
           .split()]
applied, first = [], []
for k in range(adds):
    host = f"more-{k}.scale.test"
    app, release = targets[k % len(targets)]
    t0 = time.monotonic()
    api.call("POST", f"apps/{app}/domains", {"hostname": host})
    t = wait(lambda: (srv_target(host) or "edge").split(".")[0] == release, 10,
             f"{host} in slipwayd's DNS answers", every=0.001)
    applied.append((t - t0) * 1000)
    t1 = time.perf_counter()
    got = Through(host).get()
    first.append((time.perf_counter() - t1) * 1000)
    if got != (200, release):
        raise SystemExit(f"{host}: through Caddy {got}, not (200, {release})")
print(summary("one more domain: POST -> applied (slipwayd answers it)", applied) +
      " (target < 100 ms)")
print(summary("  then its first request through Caddy (a DNS lookup, then the app)", first))

# A client asking through Caddy from the POST on sees it later: Caddy keeps the edge's answer
# for the host SLIPWAY_PROXY_REFRESH_MS long (the default is 50 ms).
polled = []
for k in range(adds):
    host = f"polled-{k}.scale.test"
    app, release = targets[k % len(targets)]
    c = Through(host)
    t0 = time.monotonic()
    api.call("POST", f"apps/{app}/domains", {"hostname": host})
    done = wait(lambda: c.get() == (200, release), 10, f"{host} through Caddy", every=0.002)
    polled.append((done - t0) * 1000)
print(summary("one more domain, a client polling Caddy from the POST: -> 200", polled))


# The anchor: what one more domain cost when each domain was a route in Caddy, in this run:
# a foreign server holding n host routes, one more route added to it (PUT routes/0), which
# Caddy 2.6 answers by provisioning the whole config again. Removed afterwards.
def admin(method, path, body=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(CADDY_ADMIN + path, data=data, method=method,
                                 headers={"Content-Type": "application/json"})
    t0 = time.perf_counter()
    with urllib.request.urlopen(req, timeout=60) as r:
        r.read()
    return (time.perf_counter() - t0) * 1000


def host_route(h):
    return {"match": [{"host": [h]}], "terminal": True,
            "handle": [{"handler": "reverse_proxy", "upstreams": [{"dial": os.environ["WWW"]}]}]}


anchor_server = "/config/apps/http/servers/bench-anchor"
admin("PUT", anchor_server, {"listen": [f"127.0.0.1:{os.environ['ANCHOR_PORT']}"],
                             "routes": [host_route(h) for h in hosts]})
load_ms = []
for k in range(max(5, adds // 2)):
    load_ms.append(admin("PUT", anchor_server + "/routes/0", host_route(f"anchor-{k}.test")))
admin("DELETE", anchor_server)
print(summary(f"anchor: one more route in a Caddy server of {n} host routes", load_ms))
print(f"ratio applied / anchor: median "
      f"{statistics.median(applied) / statistics.median(load_ms):.2f}")

# 4. Caddy restarted empty: with a NOTIFY right away, then once by the timer alone
caddy_dir = os.environ["CADDY_DIR"]
caddy = {"pid": int(os.environ["CADDY_PID"]), "proc": None}


def restart_caddy():
    if caddy["proc"]:
        caddy["proc"].terminate()
        caddy["proc"].wait(10)
    else:
        os.kill(caddy["pid"], signal.SIGTERM)
        wait(lambda: not os.path.exists(f"/proc/{caddy['pid']}"), 10, "Caddy to stop")
    env = dict(os.environ, HOME=caddy_dir, XDG_DATA_HOME=caddy_dir + "/data",
               XDG_CONFIG_HOME=caddy_dir + "/config")
    log = open(caddy_dir + "/caddy.log", "ab")
    caddy["proc"] = subprocess.Popen(["caddy", "run", "--config", caddy_dir + "/caddy.json"],
                                     env=env, stdout=log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, cwd=caddy_dir)

    def up():
        try:
            return caddy_routes() == []
        except OSError:
            return False
    return wait(up, 20, "Caddy's admin API", every=0.005)


def every_host_answers():
    left = list(hosts)
    while left:
        left, _ = all_answer(left)


try:
    full, served = [], []
    for r in range(rounds):
        up = restart_caddy()
        sql("NOTIFY slipway_routes")
        t = wait(whole, 30, "Slipway's route again")
        full.append((t - up) * 1000)
        every_host_answers()
        served.append((time.monotonic() - up) * 1000)
        print(f"  round {r + 1}: Caddy restarted empty, NOTIFY -> Slipway's route "
              f"{full[-1]:.0f} ms; -> all {n} hosts answered 200 {served[-1]:.0f} ms")
    print(summary("full reconcile into an empty Caddy: up -> route back", full) +
          " (target < 2 s)")
    print(summary(f"  then all {n} hosts answered 200 (one pass of this client, "
                  "one request at a time)", served))
    up = restart_caddy()
    t = wait(whole, 60, "Slipway's route again by the timer")
    left = list(hosts)
    while left:
        left, _ = all_answer(left)
    print(f"timer alone: Caddy up -> Slipway's route {(t - up) * 1000:.0f} ms; -> every host "
          f"answered 200 {(time.monotonic() - up) * 1000:.0f} ms")
finally:
    if caddy["proc"]:
        caddy["proc"].terminate()
        caddy["proc"].wait(10)
PY
# the Caddy pb_caddy_start made was stopped and replaced by the Python side's
PB_CADDY_PID=
sw_stop_pid "$www_pid" 10
