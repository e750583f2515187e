"""Audit: one row per mutation with the right action and project, and who may read what
(issue 4, DESIGN.md §5)."""

import uuid

from resources_kit import *  # noqa: F401,F403 - fixtures and helpers

ENTRY_KEYS = {"id", "at", "actor_id", "actor_email", "action", "resource", "resource_id",
              "project_id", "address", "details"}


class Trail:
    """Checks that each step writes exactly the audit rows it should, and no others."""

    def __init__(self, conn, actor):
        self.conn = conn
        self.actor = actor
        self.mark = last_audit_id(conn)

    def expect(self, resp, status, action, project_id, resource_id=None):
        assert resp.status_code == status, f"{action}: {resp.status_code} {resp.text}"
        rows = audit_rows(self.conn, self.mark)
        self.mark = max([self.mark] + [r["id"] for r in rows])
        assert len(rows) == 1, f"{action}: want one audit row, got {rows}"
        row = rows[0]
        assert row["action"] == action, row
        assert row["project_id"] == project_id, (action, row)
        assert row["actor_id"] == self.actor.id, (action, row)
        assert row["address"] == "127.0.0.1", (action, row)
        assert row["resource"], (action, row)
        if resource_id is not None:
            assert row["resource_id"] == resource_id, (action, row)
        return row

    def none(self, resp, status):
        assert resp.status_code == status, resp.text
        rows = audit_rows(self.conn, self.mark)
        assert rows == [], f"a refused request wrote audit rows: {rows}"


def test_every_mutation_writes_one_row(res, root):
    t = Trail(res.db, root)
    r = root.post("projects", json={"name": "audited"})
    p = r.json()
    pid = p["id"]
    t.expect(r, 201, "project.created", pid, pid)
    t.expect(root.patch(f"projects/{pid}", json={"description": "d"}), 200, "project.updated",
             pid, pid)
    r = root.post(f"projects/{pid}/environments", json={"name": "staging"})
    env = r.json()
    t.expect(r, 201, "environment.created", pid, env["id"])
    t.expect(root.patch(f"environments/{env['id']}", json={"name": "stage"}), 200,
             "environment.updated", pid, env["id"])
    r = root.post("apps", json={"name": "web", "environment_id": env["id"]})
    app = r.json()
    t.expect(r, 201, "app.created", pid, app["id"])
    t.expect(root.patch(f"apps/{app['id']}", json={"port": 8000}), 200, "app.updated", pid,
             app["id"])
    v = secret_value("audit")
    SECRET_VALUES.add(v)
    row = t.expect(root.call("PUT", f"apps/{app['id']}/env/KEY", json={"value": v}), 200,
                   "env.set", pid)
    assert row["details"].get("keys") == ["KEY"], row
    pairs = {"B": secret_value(), "A": secret_value()}
    row = t.expect(root.call("PUT", f"apps/{app['id']}/env", json={"vars": pairs}), 200,
                   "env.set", pid)
    assert sorted(row["details"].get("keys")) == ["A", "B"], row
    t.expect(root.delete(f"apps/{app['id']}/env/KEY"), 204, "env.deleted", pid)
    r = root.post(f"apps/{app['id']}/domains", json={"hostname": "audit.example.com"})
    dom = r.json()
    t.expect(r, 201, "domain.created", pid, dom["id"])
    t.expect(root.delete(f"domains/{dom['id']}"), 204, "domain.deleted", pid, dom["id"])
    u = res.user(root, "member")
    t.mark = last_audit_id(res.db)  # creating and logging in the user wrote identity rows
    t.expect(root.call("PUT", f"projects/{pid}/members/{u.id}", json={"role": "viewer"}), 200,
             "member.set", pid)
    t.expect(root.call("PUT", f"projects/{pid}/members/{u.id}", json={"role": "developer"}),
             200, "member.set", pid)
    t.expect(root.delete(f"projects/{pid}/members/{u.id}"), 204, "member.removed", pid)
    t.expect(root.delete(f"apps/{app['id']}"), 204, "app.deleted", pid, app["id"])
    t.expect(root.delete(f"environments/{env['id']}"), 204, "environment.deleted", pid,
             env["id"])
    t.expect(root.delete(f"projects/{pid}"), 204, "project.deleted", pid, pid)
    dump = "\n".join(snapshot(res.db, ("audit_log",))["audit_log"])
    for value in [v, *pairs.values()]:
        assert value not in dump


def test_refused_mutations_write_nothing(res, root):
    w = res.world(root)
    pid, aid = w["project"]["id"], w["app"]["id"]
    res.project(root, name="taken")
    t = Trail(res.db, root)
    t.none(root.post("projects", json={"name": "TAKEN"}), 409)
    t.none(root.post("projects", json={}), 400)
    t.none(root.patch(f"projects/{uuid.uuid4()}", json={"name": "x"}), 404)
    t.none(root.post(f"projects/{pid}/environments", json={"name": "production"}), 409)
    t.none(root.post("apps", json={"name": w["app"]["name"], "environment_id": w["env"]["id"]}),
           409)
    t.none(root.post(f"apps/{aid}/domains", json={"hostname": w["domain"]["hostname"]}), 409)
    t.none(root.delete(f"apps/{aid}/env/NOPE"), 404)
    t.none(root.delete(f"environments/{w['env']['id']}"), 409)
    viewer = res.user(root, "member")
    res.member(root, pid, viewer, "viewer")
    t.mark = last_audit_id(res.db)
    t.none(viewer.patch(f"apps/{aid}", json={"port": 1234}), 403)


def test_entry_shape_and_filters(res, root):
    w = res.world(root)
    pid = w["project"]["id"]
    body = listing(root, "audit", project_id=pid, limit=100)
    entries = body["data"]
    assert entries, body
    for e in entries:
        assert set(e) >= ENTRY_KEYS, e
        assert e["project_id"] == pid
    assert {e["action"] for e in entries} >= {"project.created", "app.created", "env.set",
                                              "domain.created"}
    created = [e for e in entries if e["action"] == "project.created"][0]
    assert created["actor_id"] == root.id and created["actor_email"] == root.email
    assert created["address"] == "127.0.0.1" and created["resource_id"] == pid
    # default order: newest first
    ats = [e["at"] for e in entries]
    assert ats == sorted(ats, reverse=True)
    asc = listing(root, "audit", project_id=pid, sort="at:asc", limit=100)["data"]
    assert [e["id"] for e in asc] == [e["id"] for e in reversed(entries)]
    by_action = listing(root, "audit", project_id=pid, sort="action", limit=100)["data"]
    assert [e["action"] for e in by_action] == sorted(e["action"] for e in entries)
    only = listing(root, "audit", action="env.set", limit=100)["data"]
    assert only and all(e["action"] == "env.set" for e in only)
    assert len(only) == 2  # two single PUTs in world()
    apps = listing(root, "audit", resource="app", limit=100)["data"]
    assert apps and all(e["resource"] == "app" for e in apps)
    m = res.user(root, "member")
    res.project(m)
    mine = listing(root, "audit", actor_id=m.id, limit=100)["data"]
    assert mine and all(e["actor_id"] == m.id for e in mine)
    assert "project.created" in [e["action"] for e in mine]
    assert listing(root, "audit", actor_id=str(uuid.uuid4()))["data"] == []
    assert listing(root, "audit", project_id=pid, action="app.created")["pagination"]["total"] == 1
    assert_invalid(root.get("audit", params={"actor_id": "x"}), "actor_id")
    assert_invalid(root.get("audit", params={"project_id": "x"}), "project_id")
    assert_invalid(root.get("audit", params={"sort": "actor_email"}), "sort")
    assert_invalid(root.get("audit", params={"sort": "at:sideways"}), "sort")


def test_pagination(res, root):
    p = res.project(root)
    for i in range(6):
        root.patch(f"projects/{p['id']}", json={"description": f"rev {i}"})
    q = {"project_id": p["id"], "action": "project.updated", "limit": 4}
    first = listing(root, "audit", page=1, **q)
    second = listing(root, "audit", page=2, **q)
    assert first["pagination"]["total"] == 6 and first["pagination"]["pages"] == 2
    assert first["pagination"]["has_next"] and not first["pagination"]["has_prev"]
    assert not second["pagination"]["has_next"] and second["pagination"]["has_prev"]
    ids = [e["id"] for e in first["data"]] + [e["id"] for e in second["data"]]
    assert len(ids) == 6 and len(set(ids)) == 6
    via_offset = listing(root, "audit", offset=4, **q)["data"]
    assert [e["id"] for e in via_offset] == [e["id"] for e in second["data"]]


def test_visibility(res, root):
    """Owner and instance admins see everything; a project admin sees their projects'
    entries only; a member who is admin of no project sees nothing."""
    ia = res.user(root, "admin")
    pa = res.user(root, "member")
    viewer = res.user(root, "member")
    loner = res.user(root, "member")
    p = res.project(pa)
    app = res.app(pa, res.production(pa, p["id"])["id"])
    res.member(pa, p["id"], viewer, "viewer")
    q = res.project(root)
    res.app(root, res.production(root, q["id"])["id"])
    total = res.db.execute("SELECT count(*) FROM audit_log").fetchone()[0]

    everything = listing(root, "audit", limit=100)
    assert everything["pagination"]["total"] == total
    assert listing(ia, "audit", limit=100)["pagination"]["total"] >= total
    # identity rows without a project are visible to instance admins
    assert any(e["project_id"] is None for e in everything["data"])

    seen = listing(pa, "audit", limit=100)["data"]
    assert seen and {e["project_id"] for e in seen} == {p["id"]}
    assert app["id"] in {e["resource_id"] for e in seen}
    want = res.db.execute("SELECT count(*) FROM audit_log WHERE project_id = %s",
                          (p["id"],)).fetchone()[0]
    assert listing(pa, "audit")["pagination"]["total"] == want
    assert listing(pa, "audit", project_id=q["id"])["data"] == []

    for who in (viewer, loner):
        body = listing(who, "audit", limit=100)
        assert body["data"] == [] and body["pagination"]["total"] == 0, body
        assert listing(who, "audit", project_id=p["id"])["data"] == []
