"""Projects, members, environments and project roles (issue 4, DESIGN.md §5)."""

import uuid

from resources_kit import *  # noqa: F401,F403 - fixtures and helpers

PROJECT_KEYS = {"id", "name", "description", "created_by", "created_at", "updated_at", "role"}
ENV_KEYS = {"id", "project_id", "name", "applications", "created_at", "updated_at"}
MEMBER_KEYS = {"user_id", "email", "name", "role", "created_at", "updated_at"}


def test_create_project(res, root):
    r = root.post("projects", json={"name": "Shop", "description": "the shop"})
    assert r.status_code == 201, r.text
    p = r.json()
    assert set(p) >= PROJECT_KEYS, p
    uuid.UUID(p["id"])
    assert p["name"] == "Shop" and p["description"] == "the shop"
    assert p["created_by"] == root.id and p["role"] == "admin"
    got = root.get(f"projects/{p['id']}")
    assert got.status_code == 200, got.text
    assert {k: got.json()[k] for k in ("id", "name", "description")} == \
        {"id": p["id"], "name": "Shop", "description": "the shop"}
    # every project starts with "production"
    envs = res.environments(root, p["id"])
    assert [e["name"] for e in envs] == ["production"]
    assert set(envs[0]) >= ENV_KEYS and envs[0]["project_id"] == p["id"]
    # the creator is its admin
    members = listing(root, f"projects/{p['id']}/members")["data"]
    assert [(m["user_id"], m["role"]) for m in members] == [(root.id, "admin")]
    assert set(members[0]) >= MEMBER_KEYS and members[0]["email"] == root.email


def test_description_optional(root):
    r = root.post("projects", json={"name": "bare"})
    assert r.status_code == 201, r.text
    assert r.json()["description"] in ("", None)


def test_create_validation(root):
    assert_invalid(root.post("projects", json={}), "name")
    assert_invalid(root.post("projects", json={"name": ""}), "name")
    assert_invalid(root.post("projects", json={"name": "x" * 101}), "name")
    assert_invalid(root.post("projects", json={"name": 7}), "name")
    assert_invalid(root.post("projects", json={"name": "ok", "description": "d" * 1001}),
                   "description")
    assert root.post("projects", json={"name": "x" * 100, "description": "d" * 1000}) \
        .status_code == 201
    r = root.post("projects", data="{not json", headers={"Content-Type": "application/json"})
    error_of(r, 400, "VALIDATION_ERROR")
    assert listing(root, "projects")["pagination"]["total"] == 1


def test_name_unique_case_insensitive(root):
    assert root.post("projects", json={"name": "Payments"}).status_code == 201
    error_of(root.post("projects", json={"name": "payments"}), 409, "RESOURCE_CONFLICT")
    error_of(root.post("projects", json={"name": "PAYMENTS"}), 409, "RESOURCE_CONFLICT")
    assert listing(root, "projects")["pagination"]["total"] == 1


def test_member_can_create_project(auth, res, root):
    m = res.user(root, "member")
    p = res.project(m)
    assert p["created_by"] == m.id and p["role"] == "admin"
    members = listing(m, f"projects/{p['id']}/members")["data"]
    assert [(x["user_id"], x["role"]) for x in members] == [(m.id, "admin")]
    # the owner sees it too, with the effective role admin
    assert root.get(f"projects/{p['id']}").json()["role"] == "admin"


def test_patch_project(res, root):
    p = res.project(root, name="alpha")
    res.project(root, name="beta")
    r = root.patch(f"projects/{p['id']}", json={"name": "gamma", "description": "new"})
    assert r.status_code == 200, r.text
    assert r.json()["name"] == "gamma" and r.json()["description"] == "new"
    assert r.json()["updated_at"] >= p["updated_at"]
    r = root.patch(f"projects/{p['id']}", json={"description": "only"})
    assert r.status_code == 200 and r.json()["name"] == "gamma", r.text
    error_of(root.patch(f"projects/{p['id']}", json={"name": "BETA"}), 409, "RESOURCE_CONFLICT")
    assert_invalid(root.patch(f"projects/{p['id']}", json={"name": ""}), "name")
    assert_invalid(root.patch(f"projects/{p['id']}", json={"description": "d" * 1001}),
                   "description")
    assert root.get(f"projects/{p['id']}").json()["name"] == "gamma"


def test_unknown_and_malformed_ids(root):
    for pid in (str(uuid.uuid4()), "not-a-uuid", "1"):
        error_of(root.get(f"projects/{pid}"), 404, "RESOURCE_NOT_FOUND")
        error_of(root.patch(f"projects/{pid}", json={"name": "n"}), 404, "RESOURCE_NOT_FOUND")
        error_of(root.delete(f"projects/{pid}"), 404, "RESOURCE_NOT_FOUND")
        error_of(root.get(f"projects/{pid}/members"), 404, "RESOURCE_NOT_FOUND")
        error_of(root.get(f"projects/{pid}/environments"), 404, "RESOURCE_NOT_FOUND")
        error_of(root.post(f"projects/{pid}/environments", json={"name": "staging"}), 404,
                 "RESOURCE_NOT_FOUND")
        error_of(root.get(f"environments/{pid}"), 404, "RESOURCE_NOT_FOUND")
        error_of(root.patch(f"environments/{pid}", json={"name": "x"}), 404,
                 "RESOURCE_NOT_FOUND")
        error_of(root.delete(f"environments/{pid}"), 404, "RESOURCE_NOT_FOUND")


def test_delete_project_cascades(res, root):
    w = res.world(root)
    pid = w["project"]["id"]
    staging = res.environment(root, pid, "staging")
    res.app(root, staging["id"], name="worker")
    other = res.world(root)  # must survive
    conn = res.db
    before = last_audit_id(conn)
    r = root.delete(f"projects/{pid}")
    assert r.status_code == 204, r.text
    assert r.content == b""
    for table, col in (("projects", "id"), ("environments", "project_id"), ("apps", "project_id"),
                       ("project_members", "project_id")):
        n = conn.execute(f"SELECT count(*) FROM {table} WHERE {col} = %s", (pid,)).fetchone()[0]
        assert n == 0, f"{table} still holds {n} rows of the deleted project"
    assert conn.execute("SELECT count(*) FROM app_env WHERE app_id = %s",
                        (w["app"]["id"],)).fetchone()[0] == 0
    assert conn.execute("SELECT count(*) FROM domains WHERE app_id = %s",
                        (w["app"]["id"],)).fetchone()[0] == 0
    rows = audit_rows(conn, before)
    assert [(x["action"], x["project_id"]) for x in rows] == [("project.deleted", pid)], rows
    details = rows[0]["details"]
    assert {k: details.get(k) for k in ("apps", "environments", "domains")} == \
        {"apps": 2, "environments": 2, "domains": 1}, rows[0]
    error_of(root.get(f"projects/{pid}"), 404, "RESOURCE_NOT_FOUND")
    error_of(root.get(f"apps/{w['app']['id']}"), 404, "RESOURCE_NOT_FOUND")
    error_of(root.get(f"environments/{staging['id']}"), 404, "RESOURCE_NOT_FOUND")
    error_of(root.delete(f"projects/{pid}"), 404, "RESOURCE_NOT_FOUND")
    # the other project is untouched, and the freed hostname and name can be used again
    assert root.get(f"apps/{other['app']['id']}").status_code == 200
    assert root.get(f"apps/{other['app']['id']}/env").json()["pagination"]["total"] == 2
    p2 = res.project(root, name=w["project"]["name"])
    app2 = res.app(root, res.production(root, p2["id"])["id"])
    res.domain(root, app2["id"], w["domain"]["hostname"])


# --------------------------------------------------------------------------- members


def test_members_put_change_delete(res, root):
    p = res.project(root)
    pid = p["id"]
    u = res.user(root, "member")
    r = root.call("PUT", f"projects/{pid}/members/{u.id}", json={"role": "viewer"})
    assert r.status_code == 200, r.text
    m = r.json()
    assert set(m) >= MEMBER_KEYS and m["user_id"] == u.id and m["role"] == "viewer"
    assert m["email"] == u.email
    r = root.call("PUT", f"projects/{pid}/members/{u.id}", json={"role": "developer"})
    assert r.status_code == 200 and r.json()["role"] == "developer", r.text
    roles = {x["user_id"]: x["role"] for x in listing(root, f"projects/{pid}/members")["data"]}
    assert roles == {root.id: "admin", u.id: "developer"}
    # the member now sees the project with their role
    assert u.get(f"projects/{pid}").json()["role"] == "developer"
    assert [x["id"] for x in listing(u, "projects")["data"]] == [pid]
    r = root.delete(f"projects/{pid}/members/{u.id}")
    assert r.status_code == 204, r.text
    error_of(u.get(f"projects/{pid}"), 404, "RESOURCE_NOT_FOUND")
    error_of(root.delete(f"projects/{pid}/members/{u.id}"), 404, "RESOURCE_NOT_FOUND")


def test_member_errors(res, root):
    pid = res.project(root)["id"]
    u = res.user(root, "member")
    for role in ("owner", "Admin", "", None, 3):
        assert_invalid(root.call("PUT", f"projects/{pid}/members/{u.id}", json={"role": role}),
                       "role")
    assert_invalid(root.call("PUT", f"projects/{pid}/members/{u.id}", json={}), "role")
    for who in (str(uuid.uuid4()), "nope"):
        error_of(root.call("PUT", f"projects/{pid}/members/{who}", json={"role": "viewer"}),
                 404, "RESOURCE_NOT_FOUND")
        error_of(root.delete(f"projects/{pid}/members/{who}"), 404, "RESOURCE_NOT_FOUND")
    error_of(root.call("PUT", f"projects/{uuid.uuid4()}/members/{u.id}", json={"role": "viewer"}),
             404, "RESOURCE_NOT_FOUND")
    assert [x["user_id"] for x in listing(root, f"projects/{pid}/members")["data"]] == [root.id]


def test_last_admin_protected(res, root):
    m = res.user(root, "member")
    pid = res.project(m)["id"]  # m is its only admin
    error_of(m.call("PUT", f"projects/{pid}/members/{m.id}", json={"role": "developer"}), 409,
             "RESOURCE_CONFLICT")
    error_of(m.delete(f"projects/{pid}/members/{m.id}"), 409, "RESOURCE_CONFLICT")
    # instance owner is no project member: demoting m still leaves no project admin
    error_of(root.call("PUT", f"projects/{pid}/members/{m.id}", json={"role": "viewer"}), 409,
             "RESOURCE_CONFLICT")
    res.member(m, pid, root, "admin")
    r = m.call("PUT", f"projects/{pid}/members/{m.id}", json={"role": "viewer"})
    assert r.status_code == 200, r.text
    roles = {x["user_id"]: x["role"] for x in listing(root, f"projects/{pid}/members")["data"]}
    assert roles == {m.id: "viewer", root.id: "admin"}
    error_of(root.delete(f"projects/{pid}/members/{root.id}"), 409, "RESOURCE_CONFLICT")


# --------------------------------------------------------------------------- environments


def test_environments_crud(res, root):
    pid = res.project(root)["id"]
    r = root.post(f"projects/{pid}/environments", json={"name": "staging"})
    assert r.status_code == 201, r.text
    env = r.json()
    assert set(env) >= ENV_KEYS and env["name"] == "staging" and env["project_id"] == pid
    got = root.get(f"environments/{env['id']}")
    assert got.status_code == 200 and got.json()["id"] == env["id"], got.text
    error_of(root.post(f"projects/{pid}/environments", json={"name": "staging"}), 409,
             "RESOURCE_CONFLICT")
    error_of(root.post(f"projects/{pid}/environments", json={"name": "production"}), 409,
             "RESOURCE_CONFLICT")
    # the same name in another project is fine
    assert root.post(f"projects/{res.project(root)['id']}/environments",
                     json={"name": "staging"}).status_code == 201
    r = root.patch(f"environments/{env['id']}", json={"name": "preview"})
    assert r.status_code == 200 and r.json()["name"] == "preview", r.text
    error_of(root.patch(f"environments/{env['id']}", json={"name": "production"}), 409,
             "RESOURCE_CONFLICT")
    names = sorted(e["name"] for e in res.environments(root, pid))
    assert names == ["preview", "production"]
    r = root.delete(f"environments/{env['id']}")
    assert r.status_code == 204, r.text
    error_of(root.get(f"environments/{env['id']}"), 404, "RESOURCE_NOT_FOUND")
    error_of(root.delete(f"environments/{env['id']}"), 404, "RESOURCE_NOT_FOUND")


def test_environment_validation(res, root):
    pid = res.project(root)["id"]
    env = res.environment(root, pid, "qa")
    for bad in ("", "Staging", "-a", "a-", "a_b", "a" * 64, "a.b", 5, None):
        assert_invalid(root.post(f"projects/{pid}/environments", json={"name": bad}), "name")
        assert_invalid(root.patch(f"environments/{env['id']}", json={"name": bad}), "name")
    assert_invalid(root.post(f"projects/{pid}/environments", json={}), "name")
    assert root.post(f"projects/{pid}/environments", json={"name": "a" * 63}).status_code == 201
    assert sorted(e["name"] for e in res.environments(root, pid)) == \
        sorted(["production", "qa", "a" * 63])


def test_environment_with_apps_not_deletable(res, root):
    pid = res.project(root)["id"]
    env = res.environment(root, pid, "staging")
    app = res.app(root, env["id"])
    error_of(root.delete(f"environments/{env['id']}"), 409, "RESOURCE_CONFLICT")
    assert root.get(f"environments/{env['id']}").status_code == 200
    assert root.delete(f"apps/{app['id']}").status_code == 204
    assert root.delete(f"environments/{env['id']}").status_code == 204


def test_environment_list_sort(res, root):
    pid = res.project(root)["id"]
    for n in ("delta", "alpha", "charlie"):
        res.environment(root, pid, n)
    asc = [e["name"] for e in listing(root, f"projects/{pid}/environments", sort="name:asc")["data"]]
    assert asc == ["alpha", "charlie", "delta", "production"]
    desc = [e["name"] for e in listing(root, f"projects/{pid}/environments", sort="name:desc")["data"]]
    assert desc == list(reversed(asc))
    created = [e["name"] for e in listing(root, f"projects/{pid}/environments",
                                          sort="created_at")["data"]]
    assert created == ["production", "delta", "alpha", "charlie"]
    assert_invalid(root.get(f"projects/{pid}/environments", params={"sort": "bogus"}), "sort")


def test_environments_count_apps_and_list_across_projects(auth, res, root):
    """Miso's environments: applications {total, active} on each, and GET environments over
    every project the caller can see, paginated; another tenant sees none of them."""
    p1, p2 = res.project(root), res.project(root)
    prod1 = res.production(root, p1["id"])
    staging1 = res.environment(root, p1["id"], "staging")
    prod2 = res.production(root, p2["id"])
    a1 = res.app(root, prod1["id"])
    res.app(root, prod1["id"])
    res.app(root, staging1["id"])
    counts = {e["id"]: e["applications"] for e in listing(root, "environments", limit=100)["data"]}
    assert counts == {prod1["id"]: {"total": 2, "active": 0},
                      staging1["id"]: {"total": 1, "active": 0},
                      prod2["id"]: {"total": 0, "active": 0}}, counts
    # the same counts wherever an environment is read
    assert root.get(f"environments/{prod1['id']}").json()["applications"] == \
        {"total": 2, "active": 0}
    assert {e["id"]: e["applications"] for e in res.environments(root, p1["id"])} == \
        {prod1["id"]: {"total": 2, "active": 0}, staging1["id"]: {"total": 1, "active": 0}}
    assert root.delete(f"apps/{a1['id']}").status_code == 204
    assert root.get(f"environments/{prod1['id']}").json()["applications"]["total"] == 1

    # paginated and filtered like every list
    page = listing(root, "environments", limit=2, sort="created_at:asc")
    assert [e["id"] for e in page["data"]] == [prod1["id"], prod2["id"]], page
    assert page["pagination"]["total"] == 3 and page["pagination"]["has_next"], page
    page2 = listing(root, "environments", limit=2, page=2, sort="created_at:asc")
    assert [e["id"] for e in page2["data"]] == [staging1["id"]], page2
    only = listing(root, "environments", project_id=p2["id"])["data"]
    assert [e["id"] for e in only] == [prod2["id"]]
    named = listing(root, "environments", name="staging")["data"]
    assert [e["id"] for e in named] == [staging1["id"]]
    assert_invalid(root.get("environments", params={"project_id": "nope"}), "project_id")
    assert_invalid(root.get("environments", params={"limit": 101}), "limit")

    # another tenant: a member of no project sees nothing, a member of p2 only p2's
    outsider = res.user(root, "member")
    body = listing(outsider, "environments")
    assert body["data"] == [] and body["pagination"]["total"] == 0, body
    assert listing(outsider, "environments", project_id=p1["id"])["data"] == []
    viewer = res.user(root, "member")
    res.member(root, p2["id"], viewer, "viewer")
    assert [e["id"] for e in listing(viewer, "environments", limit=100)["data"]] == \
        [prod2["id"]]


# --------------------------------------------------------------------------- project roles


def _team(res, root):
    """A project created by an instance member (its admin) with a viewer, a developer, a
    second admin and an outsider who is a member of the instance but not of the project."""
    creator = res.user(root, "member")
    p = res.project(creator)
    env = res.production(creator, p["id"])
    app = res.app(creator, env["id"])
    res.set_env(creator, app["id"], "SECRET_ONE")
    dom = res.domain(creator, app["id"])
    team = {"creator": creator}
    for role in ("viewer", "developer", "admin"):
        u = res.user(root, "member")
        res.member(creator, p["id"], u, role)
        team[role] = u
    team["outsider"] = res.user(root, "member")
    return team, p, env, app, dom


def test_viewer_reads_only(res, root):
    team, p, env, app, dom = _team(res, root)
    v = team["viewer"]
    pid, aid = p["id"], app["id"]
    for path in (f"projects/{pid}", f"projects/{pid}/members", f"projects/{pid}/environments",
                 f"environments/{env['id']}", f"apps/{aid}", f"apps/{aid}/env",
                 f"apps/{aid}/domains"):
        r = v.get(path)
        assert r.status_code == 200, f"viewer GET {path}: {r.status_code} {r.text}"
    assert v.get(f"projects/{pid}").json()["role"] == "viewer"
    assert aid in [a["id"] for a in listing(v, "apps")["data"]]
    assert dom["id"] in [x["id"] for x in listing(v, "domains")["data"]]
    writes = [
        ("PATCH", f"projects/{pid}", {"description": "v"}, "admin"),
        ("DELETE", f"projects/{pid}", None, "admin"),
        ("PUT", f"projects/{pid}/members/{v.id}", {"role": "admin"}, "admin"),
        ("DELETE", f"projects/{pid}/members/{team['developer'].id}", None, "admin"),
        ("POST", f"projects/{pid}/environments", {"name": "vstage"}, "developer"),
        ("PATCH", f"environments/{env['id']}", {"name": "prod2"}, "developer"),
        ("DELETE", f"environments/{env['id']}", None, "admin"),
        ("POST", "apps", {"name": "vapp", "environment_id": env["id"]}, "developer"),
        ("PATCH", f"apps/{aid}", {"port": 8080}, "developer"),
        ("DELETE", f"apps/{aid}", None, "admin"),
        ("PUT", f"apps/{aid}/env", {"vars": {"V": secret_value()}}, "developer"),
        ("PUT", f"apps/{aid}/env/V2", {"value": secret_value()}, "developer"),
        ("DELETE", f"apps/{aid}/env/SECRET_ONE", None, "developer"),
        ("POST", f"apps/{aid}/domains", {"hostname": hostname("v")}, "developer"),
        ("DELETE", f"domains/{dom['id']}", None, "admin"),
    ]
    before = snapshot(res.db)
    for method, path, body, needed in writes:
        r = v.call(method, path, json=body)
        err = error_of(r, 403, "INSUFFICIENT_ROLE")
        assert needed in err["message"], f"{method} {path}: message {err['message']!r} " \
                                         f"does not name {needed!r}"
    assert snapshot(res.db) == before


def test_developer_creates_but_does_not_delete(res, root):
    team, p, env, app, dom = _team(res, root)
    dv = team["developer"]
    pid, aid = p["id"], app["id"]
    r = dv.post(f"projects/{pid}/environments", json={"name": "devstage"})
    assert r.status_code == 201, r.text
    env2 = r.json()
    assert dv.patch(f"environments/{env2['id']}", json={"name": "devstage2"}).status_code == 200
    r = dv.post("apps", json={"name": "devapp", "environment_id": env["id"]})
    assert r.status_code == 201, r.text
    app2 = r.json()
    assert dv.patch(f"apps/{aid}", json={"port": 8081}).status_code == 200
    res.set_env(dv, aid, "DEV_KEY")
    res.bulk_env(dv, aid, {"DEV_BULK": secret_value()})
    assert dv.delete(f"apps/{aid}/env/DEV_KEY").status_code == 204
    dom2 = res.domain(dv, aid)
    before = snapshot(res.db)
    for method, path, body in [
        ("DELETE", f"apps/{app2['id']}", None),
        ("DELETE", f"environments/{env2['id']}", None),
        ("DELETE", f"domains/{dom2['id']}", None),
        ("PATCH", f"projects/{pid}", {"description": "dev"}),
        ("DELETE", f"projects/{pid}", None),
        ("PUT", f"projects/{pid}/members/{team['outsider'].id}", {"role": "viewer"}),
        ("PUT", f"projects/{pid}/members/{dv.id}", {"role": "admin"}),
        ("DELETE", f"projects/{pid}/members/{team['viewer'].id}", None),
    ]:
        err = error_of(dv.call(method, path, json=body), 403, "INSUFFICIENT_ROLE")
        assert "admin" in err["message"], (method, path, err)
    assert snapshot(res.db) == before


def test_project_admin_does_everything(res, root):
    team, p, env, app, dom = _team(res, root)
    a = team["admin"]
    pid = p["id"]
    assert a.patch(f"projects/{pid}", json={"description": "by admin"}).status_code == 200
    res.member(a, pid, team["outsider"], "viewer")
    assert a.delete(f"projects/{pid}/members/{team['outsider'].id}").status_code == 204
    assert a.delete(f"domains/{dom['id']}").status_code == 204
    assert a.delete(f"apps/{app['id']}").status_code == 204
    env2 = res.environment(a, pid, "temp")
    assert a.delete(f"environments/{env2['id']}").status_code == 204
    assert a.delete(f"projects/{pid}").status_code == 204
    error_of(team["creator"].get(f"projects/{pid}"), 404, "RESOURCE_NOT_FOUND")


def test_instance_admin_is_admin_everywhere(res, root):
    team, p, env, app, dom = _team(res, root)
    ia = res.user(root, "admin")
    assert ia.get(f"projects/{p['id']}").json()["role"] == "admin"
    assert p["id"] in [x["id"] for x in listing(ia, "projects")["data"]]
    assert ia.delete(f"domains/{dom['id']}").status_code == 204
    assert ia.delete(f"projects/{p['id']}").status_code == 204


def test_non_member_sees_404(res, root):
    team, p, env, app, dom = _team(res, root)
    o = team["outsider"]
    assert listing(o, "projects")["data"] == []
    assert listing(o, "apps")["data"] == []
    assert listing(o, "domains")["data"] == []
    before = snapshot(res.db)
    for method, path, body in [
        ("GET", f"projects/{p['id']}", None),
        ("PATCH", f"projects/{p['id']}", {"description": "x"}),
        ("GET", f"environments/{env['id']}", None),
        ("GET", f"apps/{app['id']}", None),
        ("PATCH", f"apps/{app['id']}", {"port": 9}),
        ("GET", f"apps/{app['id']}/env", None),
        ("DELETE", f"domains/{dom['id']}", None),
        ("PUT", f"projects/{p['id']}/members/{o.id}", {"role": "admin"}),
    ]:
        error_of(o.call(method, path, json=body), 404, "RESOURCE_NOT_FOUND")
    assert snapshot(res.db) == before


def test_token_scopes_apply(auth, res, root):
    """A read-scoped token of a project admin reads but cannot write."""
    w = res.world(root)
    tok = auth.make_token(root, ["read"])
    assert tok.get(f"apps/{w['app']['id']}").status_code == 200
    err = error_of(tok.patch(f"apps/{w['app']['id']}", json={"port": 81}), 403,
                   "INSUFFICIENT_ROLE")
    assert "write" in err["message"]
    wt = auth.make_token(root, ["write"])
    assert wt.patch(f"apps/{w['app']['id']}", json={"port": 81}).status_code == 200
