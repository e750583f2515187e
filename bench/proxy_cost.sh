#!/usr/bin/env bash
# Caddy's cost (issue 14): one app instance deployed by slipwayd with a domain, asked by wrk
# (keep-alive) through Caddy (Host: the domain) and straight at the instance's endpoint,
# alternating, ROUNDS times each. Prints the medians of requests per second and of p99, and
# their ratios (through Caddy / straight). Not a target: the figure tells users what the edge
# proxy costs, not what Slipway does. Two apps from the hello example's repository:
# - nginx as the app, one worker answering `return 200` (keep-alive on both hops; cheap per
#   request, so Caddy's share shows), also through a second Caddy server with a plain
#   reverse_proxy to the same instance (no SRV upstreams, no header: Caddy without our route);
# - the hello example's own server.py, Python's ThreadingHTTPServer speaking HTTP/1.0: it
#   closes every connection after one answer, so straight to it wrk reconnects each time, and
#   through Caddy wrk keeps its connections to Caddy while Caddy opens one per request.
#
#   bench/proxy_cost.sh                 DURATION=10 ROUNDS=3 CLIENTS=16 THREADS=2
#   SLIPWAYD=build/slipwayd bench/proxy_cost.sh
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=contrib/lib.sh
source contrib/lib.sh
# shellcheck source=bench/proxy_lib.sh
source bench/proxy_lib.sh

pb_init "${SW_BENCH_PACKAGES[@]}"
pb_caddy_start
pb_slipwayd_start

echo "one app instance: through Caddy $(caddy version | awk '{print $1}') vs" \
    "straight; $(nproc) CPUs"
DURATION=${DURATION:-10} ROUNDS=${ROUNDS:-3} CLIENTS=${CLIENTS:-16} THREADS=${THREADS:-2} \
    pb_python - <<'PY'
import json, os, re, socket, statistics, subprocess, urllib.request

from proxy_kit import CADDY_ADMIN, CADDY_PORT, Api, Through, hello_repo

api = Api()
# A keep-alive app that costs little per request, so Caddy's share shows: nginx answering
# from its config (the port is only known when the instance starts).
NGINX = """worker_processes 1;
pid nginx.pid;
events { worker_connections 1024; }
http {
    access_log off;
    client_body_temp_path tmp; proxy_temp_path tmp; fastcgi_temp_path tmp;
    uwsgi_temp_path tmp; scgi_temp_path tmp;
    server {
        listen 127.0.0.1:PORT;
        location / { default_type text/plain; return 200 "ok\\n"; }
    }
}
"""
env_id, repo = api.environment(), hello_repo({"nginx.tmpl": NGINX})
apps = {"nginx.test": ("/", {
            "start_command": "mkdir -p /tmp/ngx/tmp && sed s/PORT/$PORT/ nginx.tmpl "
                             ">/tmp/ngx/nginx.conf && exec /usr/sbin/nginx -e stderr -p /tmp/ngx "
                             "-c /tmp/ngx/nginx.conf -g 'daemon off;'",
            "health_check_path": "/"}),
        "hello.test": ("/", {})}
endpoints = {}
for host, (path, fields) in apps.items():
    app = api.hello_app(env_id, host.split(".")[0], repo, **fields)
    api.call("POST", f"apps/{app}/domains", {"hostname": host})
    dep = api.deploy(app)
    endpoints[host] = api.call("GET", f"apps/{app}")["endpoints"][0]
    assert Through(host).get(path) == (200, dep["id"]), f"Caddy does not serve {host}"

UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def wrk(url, *headers):
    args = ["wrk", "-t", os.environ["THREADS"], "-c", os.environ["CLIENTS"], "-d",
            os.environ["DURATION"] + "s", "--latency"]
    for h in headers:
        args += ["-H", h]
    out = subprocess.run(args + [url], check=True, capture_output=True, text=True).stdout
    rps = re.search(r"^Requests/sec:\s+([\d.]+)", out, re.M)
    p99 = re.search(r"^\s+99%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
    if not rps or not p99:
        raise SystemExit(f"wrk {url}: no rate or p99 in\n{out}")
    rps, (v, unit) = float(rps.group(1)), p99.groups()
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)|Socket errors: (.*)", out)
    return rps, float(v) * UNITS[unit], errors.group(0) if errors else ""


def static_server(host):
    """A second Caddy server, on its own port, with a plain reverse_proxy to the instance (no
    dynamic SRV upstreams, no header): what Caddy costs without Slipway's route."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    cfg = {"listen": [f"127.0.0.1:{port}"], "automatic_https": {"disable": True},
           "routes": [{"handle": [{"handler": "reverse_proxy",
                                   "upstreams": [{"dial": endpoints[host]}]}]}]}
    req = urllib.request.Request(CADDY_ADMIN + "/config/apps/http/servers/bench-static",
                                 data=json.dumps(cfg).encode(), method="PUT",
                                 headers={"Content-Type": "application/json"})
    urllib.request.urlopen(req, timeout=30).read()
    return port


def compare(host, path, what, static=False):
    sides = {"through Caddy": (f"http://127.0.0.1:{CADDY_PORT}{path}", f"Host: {host}")}
    if static:
        sides["Caddy, static"] = (f"http://127.0.0.1:{static_server(host)}{path}",)
    sides["straight"] = (f"http://{endpoints[host]}{path}",)
    got = {name: [] for name in sides}
    print(f"== {what}: GET {path}, {os.environ['CLIENTS']} clients, {os.environ['THREADS']} "
          f"threads, {os.environ['DURATION']}s, {os.environ['ROUNDS']} rounds; instance at "
          f"{endpoints[host]}")
    for i in range(int(os.environ["ROUNDS"])):
        for name, args in sides.items():
            rps, p99, errors = wrk(*args)
            got[name].append((rps, p99))
            print(f"  round {i + 1} {name:<14} {rps:10.1f} req/s  p99 {p99:8.2f} ms  {errors}")
    med = {name: (statistics.median(r for r, _ in v), statistics.median(p for _, p in v))
           for name, v in got.items()}
    for name, (rps, p99) in med.items():
        print(f"median {name:<14} {rps:10.1f} req/s  p99 {p99:8.2f} ms")
    s_rps, s_p99 = med["straight"]
    for name, (rps, p99) in med.items():
        if name != "straight":
            print(f"ratio {name} / straight: throughput {rps / s_rps:.2f}, p99 {p99 / s_p99:.2f}")


compare("nginx.test", "/", "nginx 'return 200' as the app (keep-alive on both hops)", static=True)
compare("hello.test", "/", "the hello example's server.py (HTTP/1.0: a connection per request)")
PY
