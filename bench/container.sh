#!/usr/bin/env bash
# The container runtime (issue 15), on a throwaway PostgreSQL, Redis and a private Podman
# storage (host network, runc; images made offline from the static busybox):
# - deploy overhead for an image already on the node: trigger -> success of an image app,
#   against `podman run -d` + the same health wait (GET /index.html every 50 ms until 200)
#   done by hand, alternating, COUNT rounds each; prints both medians and the ratio
#   (target <= 1.2x, goal 1.05x);
# - control-plane memory per supervised container instance: slipwayd's VmRSS before and
#   with INSTANCES instances of one app running, and the RSS of slipwayd's child processes
#   then (with podman none follows an instance: a `logs -f` per instance was ~40 MB each),
#   per instance (goal < 50 KiB).
#
#   bench/container.sh               COUNT=10 INSTANCES=20
#   SLIPWAYD=build/slipwayd bench/container.sh
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$(pwd)
# shellcheck source=contrib/lib.sh
source contrib/lib.sh

count=${COUNT:-10}
instances=${INSTANCES:-20}
bin=${SLIPWAYD:-$root/build/slipwayd}

sw_ensure_packages "${SW_PACKAGES[@]}"
if [[ -z "${SLIPWAYD:-}" ]]; then
    [[ -f build/build.ninja ]] || meson setup build -Dbuildtype=release
    meson compile -C build >/dev/null
fi
[[ -x "$bin" ]] || sw_die "no slipwayd at $bin"

tmp=$(sw_mktemp_dir)
SW_SLIPWAYD_PID=
export CONTAINERS_CONF=$tmp/containers.conf CONTAINERS_STORAGE_CONF=$tmp/storage.conf
# shellcheck disable=SC2317 # invoked by the trap
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    [[ -n "$SW_SLIPWAYD_PID" ]] && sw_stop_pid "$SW_SLIPWAYD_PID" 20
    podman rm -a -f -t 0 >/dev/null 2>&1 || true
    podman system reset -f >/dev/null 2>&1 || true
    # the overlay storage keeps a mount of its own: let go of what is under $tmp
    awk -v t="$tmp/" 'index($2, t) == 1 {print $2}' /proc/self/mounts | sort -r |
        xargs -r -n1 umount -l 2>/dev/null || true
    sw_redis_stop "$tmp/redis" || true
    sw_pg_stop "$tmp/pg" || true
    rm -rf "$tmp"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

chmod 0711 "$tmp"
printf '[containers]\ndefault_ulimits = []\nnetns = "host"\n[engine]\nruntime = "runc"\n' \
    >"$CONTAINERS_CONF"
printf '[storage]\ndriver = "overlay"\ngraphroot = "%s/graph"\nrunroot = "%s/run"\n' \
    "$tmp" "$tmp" >"$CONTAINERS_STORAGE_CONF"

# The image: busybox httpd serving one file, made offline.
mkdir -p "$tmp/rootfs/bin" "$tmp/rootfs/www"
cp /bin/busybox "$tmp/rootfs/bin/busybox"
for a in sh httpd; do ln -s busybox "$tmp/rootfs/bin/$a"; done
echo bench >"$tmp/rootfs/www/index.html"
tar -C "$tmp/rootfs" -cf "$tmp/rootfs.tar" .
podman import -q --change 'CMD ["/bin/sh", "-c", "exec httpd -f -p $PORT -h /www"]' \
    "$tmp/rootfs.tar" localhost/bench-web:1 >/dev/null

sw_pg_start "$tmp/pg" "$(sw_free_port)" slipway -c fsync=off -c synchronous_commit=off
sw_redis_start "$tmp/redis" "$(sw_free_port)"

port=$(sw_free_port)
base=http://127.0.0.1:$port
lo=$((20000 + RANDOM % 30000))
SLIPWAY_LISTEN=127.0.0.1:$port \
    SLIPWAY_DATABASE_URL=$(sw_pg_url "$tmp/pg" slipway) \
    SLIPWAY_REDIS_URL=$(sw_redis_url "$tmp/redis") \
    SLIPWAY_DATA_DIR=$tmp/data SLIPWAY_NODE_NAME=bench \
    SLIPWAY_RATE_LIMIT=off SLIPWAY_LOG_LEVEL=warn SLIPWAY_DRAIN_MS=0 \
    SLIPWAY_PORT_RANGE=$lo-$((lo + 255)) SLIPWAY_STOP_GRACE_MS=1000 \
    SLIPWAY_MAX_REPLICAS=200 SLIPWAY_CONTAINER_CLI=podman SLIPWAY_CONTAINER_NETWORK=host \
    sw_slipwayd_start "$bin" "$tmp/slipwayd.log"
sw_wait_until 30 sw_http_ok "$base/ready" ||
    sw_die "slipwayd not ready: $(tail -n 20 "$tmp/slipwayd.log")"

echo "container runtime: $count deploys vs podman run by hand, then $instances instances; $(nproc) CPUs"
BASE=$base COUNT=$count INSTANCES=$instances PID=$SW_SLIPWAYD_PID LO=$((lo + 200)) \
    "$SW_PYTHON" - <<'PY'
import json, os, secrets, statistics, subprocess, time, urllib.request

base = os.environ["BASE"] + "/api/v1/"
token = None


def call(method, path, body=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(base + path, data=data, method=method)
    req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("Authorization", "Bearer " + token)
    with urllib.request.urlopen(req, timeout=60) as r:
        return json.loads(r.read() or b"null")


def ok(url):
    try:
        with urllib.request.urlopen(url, timeout=1) as r:
            return r.status == 200
    except OSError:
        return False


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))


cred = {"email": f"bench-{secrets.token_hex(4)}@example.com",
        "password": "pw-" + secrets.token_urlsafe(18)}
call("POST", "auth/setup", cred)
token = call("POST", "auth/login", cred)["token"]
project = call("POST", "projects", {"name": "bench"})["id"]
env_id = call("GET", f"projects/{project}/environments")["data"][0]["id"]
app = call("POST", "apps", {"name": "web", "environment_id": env_id, "runtime": "container",
                            "image": "localhost/bench-web:1",
                            "health_check_path": "/index.html"})["id"]


def deploy(timeout=120):
    t0 = time.monotonic()
    dep = call("POST", f"apps/{app}/deployments")
    while dep["status"] not in ("success", "failed", "cancelled"):
        if time.monotonic() - t0 > timeout:
            raise SystemExit(f"deployment not done after {timeout}s: {dep}")
        time.sleep(0.01)
        dep = call("GET", f"deployments/{dep['id']}")
    if dep["status"] != "success":
        logs = call("GET", f"apps/{app}/logs?lines=30")["data"]
        raise SystemExit(f"deployment {dep['status']}: {dep['error_message']}; app log: " +
                         " | ".join(ln["line"] for ln in logs))
    return time.monotonic() - t0


def by_hand(port):
    t0 = time.monotonic()
    cid = subprocess.run(["podman", "run", "-d", "--network", "host", "-e", f"PORT={port}",
                          "localhost/bench-web:1"], check=True, capture_output=True,
                         text=True).stdout.strip()
    while not ok(f"http://127.0.0.1:{port}/index.html"):
        time.sleep(0.05)
    took = time.monotonic() - t0
    subprocess.run(["podman", "rm", "-f", "-t", "0", cid], check=True, capture_output=True)
    return took


deploy()  # warm-up: the first one pays for caches on both sides
by_hand(int(os.environ["LO"]))
ours, theirs = [], []
for i in range(int(os.environ["COUNT"])):
    ours.append(deploy() * 1000)
    if os.environ.get("TRACE"):
        last = call("GET", f"apps/{app}/deployments?limit=1")["data"][0]["id"]
        d = call("GET", f"deployments/{last}")
        print(f"      created {d['created_at']} started {d['started_at']} "
              f"finished {d['finished_at']}")
    theirs.append(by_hand(int(os.environ["LO"]) + i % 50) * 1000)
    print(f"  #{i + 1:<3} slipway {ours[-1]:8.1f} ms   podman run + wait {theirs[-1]:8.1f} ms")
mo, mt = statistics.median(ours), statistics.median(theirs)
print(f"deploy, image present: slipway median {mo:.0f} ms, by hand median {mt:.0f} ms, "
      f"ratio {mo / mt:.2f}x (target <= 1.2x, goal 1.05x)")

n = int(os.environ["INSTANCES"])
pid = int(os.environ["PID"])
time.sleep(1)
before = rss_kb(pid)
call("PATCH", f"apps/{app}", {"replicas": n})
deploy(timeout=600)


def running_now():
    nodes = call("GET", "nodes")["data"]
    return sum(1 for nd in nodes for i in nd["instances"] if i["state"] == "running")


# the nodes' instance lists come with the heartbeat: wait for it to show them all
deadline = time.monotonic() + 30
while (running := running_now()) < n and time.monotonic() < deadline:
    time.sleep(0.2)
after = rss_kb(pid)
helpers = subprocess.run(["ps", "-o", "rss=", "--ppid", str(pid)], capture_output=True,
                         text=True).stdout.split()
helper_kb = sum(int(x) for x in helpers)
print(f"{running} instances running: slipwayd VmRSS {before} -> {after} kB, "
      f"{(after - before) / n:.1f} kB per instance (goal < 50 KiB); its {len(helpers)} CLI "
      f"child processes hold {helper_kb} kB, {helper_kb / n:.0f} kB per instance")
PY
