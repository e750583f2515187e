"""The read cache (SLIPWAY_READ_CACHE): GET requests on project-scoped routes may be answered
from a per-process cache, and nobody can tell — a write through the API is seen by the next
read at once, a change made straight in the database (as a worker makes them) or through
another process within a bounded wait, a removed member is refused at once. Every check runs
with the cache on and off: the answers are the same."""

import threading

import pytest

from conftest import parse_metrics
from resources_kit import *  # noqa: F401,F403 - fixtures and helpers

NOTIFY_WAIT = 5.0  # seconds a change made elsewhere may take to reach a cached read


def metric(d, name):
    r = d.get("/metrics")
    assert r.status_code == 200, r.text
    values = [v for n, _, v in parse_metrics(r.text) if n == name]
    assert values, f"{name} missing from /metrics"
    return values[0]


def start(auth, mode, **env):
    full = {"SLIPWAY_RATE_LIMIT": "off", "SLIPWAY_READ_CACHE": mode}
    full.update(env)
    d = auth.daemon(env=full)
    if mode == "on" and full.get("SLIPWAY_HTTP_WORKERS", "1") == "1":
        wait_for(lambda: metric(d, "slipway_read_cache_up") == 1, timeout=10,
                 message="the read cache's listener")
    return d


@pytest.fixture(params=["on", "off"])
def mode(request):
    return request.param


@pytest.fixture
def cd(auth, mode):
    return start(auth, mode)


@pytest.fixture
def owner(auth, cd):
    return auth.setup_owner(cd)


@pytest.fixture
def kit(auth, cd):
    return Res(auth, cd)


@pytest.fixture
def world(kit, owner):
    p = kit.project(owner)
    env = kit.production(owner, p["id"])
    app = kit.app(owner, env["id"], port=3000)
    return {"project": p, "env": env, "app": app}


def get_ok(who, path):
    r = who.get(path)
    assert r.status_code == 200, f"GET {path}: {r.status_code} {r.text}"
    return r.json()


def warm(who, d, mode, path):
    """Reads path until, with the cache on, a read comes from the cache (a notification of an
    earlier change may still empty it once)."""
    first = get_ok(who, path)
    if mode == "off":
        assert get_ok(who, path) == first
        assert metric(d, "slipway_read_cache_hits_total") == 0
        return first

    def from_cache():
        hits = metric(d, "slipway_read_cache_hits_total")
        assert get_ok(who, path) == first
        return metric(d, "slipway_read_cache_hits_total") > hits

    wait_for(from_cache, timeout=NOTIFY_WAIT, message=f"GET {path} from the cache")
    return first


def test_metrics_say_whether_the_cache_answers(cd, mode):
    assert metric(cd, "slipway_read_cache_up") == (1 if mode == "on" else 0)
    for name in ("slipway_read_cache_misses_total", "slipway_read_cache_invalidations_total",
                 "slipway_read_cache_notifications_total", "slipway_read_cache_entries",
                 "slipway_read_cache_bytes"):
        assert metric(cd, name) >= 0


def test_patch_then_get_shows_the_new_value_at_once(cd, mode, owner, world):
    aid = world["app"]["id"]
    warm(owner, cd, mode, f"apps/{aid}")
    for i in range(5):
        r = owner.patch(f"apps/{aid}", json={"port": 4000 + i, "branch": f"b{i}"})
        assert r.status_code == 200, r.text
        got = get_ok(owner, f"apps/{aid}")
        assert got == r.json()
        assert got["port"] == 4000 + i and got["branch"] == f"b{i}"
        assert get_ok(owner, f"apps/{aid}") == got  # and again, from the cache when on
    # the project and environment reads behave the same
    pid, eid = world["project"]["id"], world["env"]["id"]
    warm(owner, cd, mode, f"projects/{pid}")
    r = owner.patch(f"projects/{pid}", json={"description": "changed"})
    assert r.status_code == 200, r.text
    assert get_ok(owner, f"projects/{pid}")["description"] == "changed"
    warm(owner, cd, mode, f"environments/{eid}")
    r = owner.patch(f"environments/{eid}", json={"name": "prod"})
    assert r.status_code == 200, r.text
    assert get_ok(owner, f"environments/{eid}")["name"] == "prod"


def test_deleted_app_is_gone_at_once(cd, mode, owner, world):
    aid = world["app"]["id"]
    warm(owner, cd, mode, f"apps/{aid}")
    assert owner.delete(f"apps/{aid}").status_code == 204
    error_of(owner.get(f"apps/{aid}"), 404, "RESOURCE_NOT_FOUND")


def test_removed_member_gets_404_at_once(cd, mode, kit, owner, world):
    pid, eid, aid = world["project"]["id"], world["env"]["id"], world["app"]["id"]
    member = kit.user(owner)
    kit.member(owner, pid, member, "viewer")
    for path in (f"apps/{aid}", f"projects/{pid}", f"environments/{eid}"):
        warm(member, cd, mode, path)
    r = owner.delete(f"projects/{pid}/members/{member.id}")
    assert r.status_code == 204, r.text
    for path in (f"apps/{aid}", f"projects/{pid}", f"environments/{eid}",
                 f"apps/{aid}/env", f"apps/{aid}/domains"):
        error_of(member.get(path), 404, "RESOURCE_NOT_FOUND")
    # and back in: seen at once too
    kit.member(owner, pid, member, "viewer")
    assert get_ok(member, f"apps/{aid}")["id"] == aid


def test_role_change_applies_at_once(cd, mode, kit, owner, world):
    pid, aid = world["project"]["id"], world["app"]["id"]
    member = kit.user(owner)
    kit.member(owner, pid, member, "developer")
    warm(member, cd, mode, f"apps/{aid}")
    assert member.patch(f"apps/{aid}", json={"port": 4100}).status_code == 200
    kit.member(owner, pid, member, "viewer")
    warm(member, cd, mode, f"apps/{aid}")
    error_of(member.patch(f"apps/{aid}", json={"port": 4101}), 403, "INSUFFICIENT_ROLE")
    assert get_ok(member, f"apps/{aid}")["port"] == 4100


def test_database_changes_reach_cached_reads(auth, cd, mode, kit, owner, world):
    """What a worker (or an operator at a psql prompt) changes is seen within a bounded wait."""
    pid, aid = world["project"]["id"], world["app"]["id"]
    member = kit.user(owner)
    kit.member(owner, pid, member, "viewer")
    warm(owner, cd, mode, f"apps/{aid}")
    warm(member, cd, mode, f"apps/{aid}")
    notified = metric(cd, "slipway_read_cache_notifications_total")
    db = auth.db(cd)
    db.execute("UPDATE apps SET status = 'running', endpoints = '{127.0.0.1:24001}' "
               "WHERE id = %s", (aid,))
    wait_for(lambda: get_ok(owner, f"apps/{aid}")["status"] == "running",
             timeout=NOTIFY_WAIT, message="the database change in a read")
    assert get_ok(owner, f"apps/{aid}")["endpoints"] == ["127.0.0.1:24001"]
    if mode == "on":
        assert metric(cd, "slipway_read_cache_notifications_total") > notified
    db.execute("DELETE FROM project_members WHERE project_id = %s AND user_id = %s",
               (pid, member.id))
    wait_for(lambda: member.get(f"apps/{aid}").status_code == 404,
             timeout=NOTIFY_WAIT, message="the removed membership in a read")


def test_read_under_way_when_a_write_commits_is_not_kept(auth, cd, mode, owner, world):
    """The race the generation counter is for: a read takes its snapshot, a write commits and
    its notification arrives, then the read's (old) answer comes back. It may be answered, but
    must not be kept: the next read shows the write. The database is made to hold the read
    between its snapshot and its answer: sw_app_json waits on an advisory lock the test holds
    whenever it renders the app with port 7000."""
    aid = world["app"]["id"]
    db = auth.db(cd)
    assert owner.patch(f"apps/{aid}", json={"port": 7000}).status_code == 200
    (body,) = db.execute("SELECT prosrc FROM pg_proc WHERE proname = 'sw_app_json'").fetchone()
    db.execute(f"CREATE FUNCTION sw_test_app_json(a apps) RETURNS json LANGUAGE sql STABLE "
               f"AS $body${body}$body$")
    db.execute("""CREATE OR REPLACE FUNCTION sw_app_json(a apps) RETURNS json
        LANGUAGE plpgsql VOLATILE AS $f$
        BEGIN
            IF a.port = 7000 THEN
                PERFORM pg_advisory_lock_shared(4242);
                PERFORM pg_advisory_unlock_shared(4242);
            END IF;
            RETURN sw_test_app_json(a);
        END $f$""")
    # The function change notified nobody: empty the cache with a change that does.
    db.execute("UPDATE apps SET updated_at = updated_at WHERE id = %s", (aid,))
    gate = auth.db(cd)
    gate.execute("SELECT pg_advisory_lock(4242)")
    answers = []
    reader = threading.Thread(target=lambda: answers.append(owner.get(f"apps/{aid}")))
    try:
        wait_for(lambda: get_ok(owner, f"projects/{world['project']['id']}") and db.execute(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = 4242 "
            "AND NOT granted").fetchone()[0] == 0, timeout=NOTIFY_WAIT,
            message="the cache emptied (nothing waits on the gate yet)")
        reader.start()
        wait_for(lambda: db.execute(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = 4242 "
            "AND NOT granted").fetchone()[0] == 1, timeout=NOTIFY_WAIT,
            message="the read to wait between its snapshot and its answer")
        notified = metric(cd, "slipway_read_cache_notifications_total")
        db.execute("UPDATE apps SET port = 7001 WHERE id = %s", (aid,))
        if mode == "on":
            wait_for(lambda: metric(cd, "slipway_read_cache_notifications_total") > notified,
                     timeout=NOTIFY_WAIT, message="the write's notification")
    finally:
        gate.execute("SELECT pg_advisory_unlock(4242)")
        reader.join(timeout=30)
    [old] = answers
    assert old.status_code == 200 and old.json()["port"] == 7000, old.text
    for _ in range(3):
        assert get_ok(owner, f"apps/{aid}")["port"] == 7001


def test_http_workers_see_each_others_writes(auth, mode):
    """With two processes, a write answered by one reaches reads served by the other within a
    bounded wait. Every request opens a new connection, so both processes serve them."""
    d = start(auth, mode, SLIPWAY_HTTP_WORKERS="2")
    owner = auth.setup_owner(d)
    kit = Res(auth, d)
    p = kit.project(owner)
    app = kit.app(owner, kit.production(owner, p["id"])["id"], port=3000)
    aid = app["id"]
    for i in range(1, 4):
        for _ in range(20):  # both processes read, and cache, the current value
            assert get_ok(owner, f"apps/{aid}")["port"] == 3000 + i - 1
        r = owner.patch(f"apps/{aid}", json={"port": 3000 + i})
        assert r.status_code == 200, r.text
        wait_for(lambda: all(get_ok(owner, f"apps/{aid}")["port"] == 3000 + i
                             for _ in range(20)),
                 timeout=NOTIFY_WAIT, message="the write in every process's reads")


def test_listener_loss_empties_the_cache_and_recovers(auth):
    """The listener's connection dies; what changes meanwhile is still seen, and the cache
    comes back once the listener is up again."""
    d = start(auth, "on")
    owner = auth.setup_owner(d)
    kit = Res(auth, d)
    p = kit.project(owner)
    aid = kit.app(owner, kit.production(owner, p["id"])["id"], port=3000)["id"]
    warm(owner, d, "on", f"apps/{aid}")
    db = auth.db(d)
    killed = db.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
        "WHERE datname = current_database() AND pid <> pg_backend_pid() "
        "AND query IN ('LISTEN slipway_read_cache', 'SELECT pg_listening_channels()')"
    ).fetchall()
    assert killed == [(True,)], killed
    db.execute("UPDATE apps SET port = 3999 WHERE id = %s", (aid,))
    wait_for(lambda: get_ok(owner, f"apps/{aid}")["port"] == 3999, timeout=NOTIFY_WAIT,
             message="the change made while the listener was down")
    wait_for(lambda: any(e.get("msg", "").startswith("read cache off") for e in d.logs()),
             timeout=NOTIFY_WAIT, message="the log to say the cache stopped")
    wait_for(lambda: metric(d, "slipway_read_cache_up") == 1, timeout=15,
             message="the listener to come back")
    warm(owner, d, "on", f"apps/{aid}")
    db.execute("UPDATE apps SET port = 3998 WHERE id = %s", (aid,))
    wait_for(lambda: get_ok(owner, f"apps/{aid}")["port"] == 3998, timeout=NOTIFY_WAIT,
             message="a change after the listener came back")
