"""Isolation between projects: user A is admin of P, user B admin of Q (both instance
members). B tries every route that takes an id of P's project, environments, apps, env vars
and domains — every attempt is 404 and changes nothing in the database; lists never show
P's items; the audit list filtered to P is empty for B."""

import re
import uuid

import pytest

from resources_kit import *  # noqa: F401,F403 - fixtures and helpers

METHODS = ("get", "put", "post", "patch", "delete")


@pytest.fixture
def two_teams(res, root):
    a = res.user(root, "member")
    b = res.user(root, "member")
    wa = res.world(a)
    staging = res.environment(a, wa["project"]["id"], "staging")
    wa["staging"] = staging
    wa["app2"] = res.app(a, staging["id"], "second")
    wb = res.world(b)
    return a, b, wa, wb


def ids_for(wa, a):
    return {
        "project": wa["project"]["id"],
        "environment": wa["env"]["id"],
        "app": wa["app"]["id"],
        "domain": wa["domain"]["id"],
        "user": a.id,
        "key": "DATABASE_URL",
    }


def attempts(b, wa, wb, a):
    """(method, path, body) of every route that takes an id of P's, with bodies that would
    succeed if B could see P."""
    pid, eid, aid = wa["project"]["id"], wa["env"]["id"], wa["app"]["id"]
    did, sid = wa["domain"]["id"], wa["staging"]["id"]
    v = secret_value("iso")
    return [
        ("GET", f"projects/{pid}", None),
        ("PATCH", f"projects/{pid}", {"name": "stolen", "description": "x"}),
        ("DELETE", f"projects/{pid}", None),
        ("GET", f"projects/{pid}/members", None),
        ("PUT", f"projects/{pid}/members/{b.id}", {"role": "admin"}),
        ("PUT", f"projects/{pid}/members/{a.id}", {"role": "viewer"}),
        ("DELETE", f"projects/{pid}/members/{a.id}", None),
        ("GET", f"projects/{pid}/environments", None),
        ("POST", f"projects/{pid}/environments", {"name": "intruder"}),
        ("GET", f"environments/{eid}", None),
        ("PATCH", f"environments/{eid}", {"name": "renamed"}),
        ("DELETE", f"environments/{eid}", None),
        ("DELETE", f"environments/{sid}", None),
        ("POST", "apps", {"name": "intruder", "environment_id": eid}),
        ("POST", "apps", {"name": "intruder", "environment_id": eid, "project_id": pid}),
        ("GET", f"apps/{aid}", None),
        ("PATCH", f"apps/{aid}", {"repo_url": "https://evil.example.com/x.git"}),
        ("DELETE", f"apps/{aid}", None),
        ("GET", f"apps/{aid}/env", None),
        ("PUT", f"apps/{aid}/env", {"vars": {"INJECTED": v}}),
        ("PUT", f"apps/{aid}/env/DATABASE_URL", {"value": v}),
        ("PUT", f"apps/{aid}/env/NEW_KEY", {"value": v}),
        ("DELETE", f"apps/{aid}/env/DATABASE_URL", None),
        ("DELETE", f"apps/{aid}/env/NO_SUCH_KEY", None),
        ("GET", f"apps/{aid}/domains", None),
        ("POST", f"apps/{aid}/domains", {"hostname": hostname("intruder")}),
        ("GET", f"domains/{did}", None),
        ("DELETE", f"domains/{did}", None),
        ("GET", f"apps/{aid}/deployments", None),
        ("POST", f"apps/{aid}/deployments", {}),
        ("POST", f"apps/{aid}/start", None),
        ("POST", f"apps/{aid}/restart", None),
        ("POST", f"apps/{aid}/stop", None),
        ("GET", f"apps/{aid}/logs", None),
        ("GET", f"apps/{aid}/branches", None),
        ("GET", f"apps/{aid}/logs/stream", None),
        ("GET", f"apps/{aid}/deploy-key", None),
        ("POST", f"apps/{aid}/deploy-key", None),
        ("GET", f"apps/{aid}/known-hosts", None),
        ("PUT", f"apps/{aid}/known-hosts",
         {"known_hosts": ["evil.example ssh-ed25519 "
                          "AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"]}),
        ("GET", f"apps/{aid}/hook", None),
        ("POST", f"apps/{aid}/hook/rotate", None),
    ]


def test_other_project_is_invisible(res, root, two_teams):
    a, b, wa, wb = two_teams
    conn = res.db
    before = snapshot(conn)
    failures = []
    tried = attempts(b, wa, wb, a)
    for method, path, body in tried:
        r = b.call(method, path, json=body)
        if r.status_code != 404:
            failures.append(f"{method} {path}: want 404, got {r.status_code} {r.text[:160]}")
        elif r.json()["error"]["code"] != "RESOURCE_NOT_FOUND":
            failures.append(f"{method} {path}: code {r.json()['error']['code']}")
        for secret in wa["values"]:
            if secret in r.text:
                failures.append(f"{method} {path}: answer holds one of P's env values")
    assert not failures, f"{len(failures)} of {len(tried)} attempts wrong:\n" + "\n".join(failures)
    after = snapshot(conn)
    changed = {t for t in before if before[t] != after[t]}
    assert not changed, f"B's attempts changed {changed}"
    # A still sees everything as it was
    assert a.get(f"apps/{wa['app']['id']}").json()["repo_url"] == wa["app"]["repo_url"]
    assert len(listing(a, f"apps/{wa['app']['id']}/env")["data"]) == 2


def test_lists_hide_other_project(res, root, two_teams):
    a, b, wa, wb = two_teams
    pid = wa["project"]["id"]
    p_app_ids = {wa["app"]["id"], wa["app2"]["id"]}
    projects = listing(b, "projects", limit=100)
    assert [p["id"] for p in projects["data"]] == [wb["project"]["id"]]
    assert projects["pagination"]["total"] == 1
    apps = listing(b, "apps", limit=100)
    assert {x["id"] for x in apps["data"]} == {wb["app"]["id"]}
    assert apps["pagination"]["total"] == 1
    for params in ({"project_id": pid}, {"environment_id": wa["env"]["id"]},
                   {"environment_id": wa["staging"]["id"]}):
        r = b.get("apps", params=params)
        assert r.status_code in (200, 404), r.text
        if r.status_code == 200:
            assert r.json()["data"] == [] and r.json()["pagination"]["total"] == 0, r.text
        else:
            error_of(r, 404, "RESOURCE_NOT_FOUND")
    envs = listing(b, "environments", limit=100)
    assert [x["id"] for x in envs["data"]] == [wb["env"]["id"]]
    assert envs["pagination"]["total"] == 1
    assert listing(b, "environments", project_id=pid)["data"] == []
    domains = listing(b, "domains", limit=100)
    assert [x["id"] for x in domains["data"]] == [wb["domain"]["id"]]
    audit = listing(b, "audit", limit=100)
    assert audit["data"] and {e["project_id"] for e in audit["data"]} == {wb["project"]["id"]}
    r = b.get("audit", params={"project_id": pid})
    assert r.status_code in (200, 404), r.text
    if r.status_code == 200:
        assert r.json()["data"] == [] and r.json()["pagination"]["total"] == 0
    for e in listing(b, "audit", actor_id=a.id, limit=100)["data"]:
        assert e["project_id"] != pid, e
    assert not p_app_ids & {x["id"] for x in listing(b, "apps", limit=100)["data"]}
    # B's own project is fully usable, and A sees none of it
    error_of(a.get(f"apps/{wb['app']['id']}"), 404, "RESOURCE_NOT_FOUND")
    assert [p["id"] for p in listing(a, "projects")["data"]] == [pid]


def test_every_project_route_is_covered(res, root, two_teams, rdaemon):
    """Every documented route with a path id under projects, environments, apps or domains
    is in attempts(): a route added later fails here until the isolation test covers it."""
    a, b, wa, wb = two_teams
    doc = root.get("openapi.json").json()
    tried = attempts(b, wa, wb, a)
    covered = set()
    for method, path, _ in tried:
        full = f"{API}/{path}"
        template, _op = match_route(doc, method, full)
        covered.add((method, template))
    missing = []
    for template, item in doc["paths"].items():
        if not re.match(rf"^{API}/(projects|environments|apps|domains)/\{{", template):
            continue
        for method in METHODS:
            if method in item and (method.upper(), template) not in covered:
                missing.append(f"{method.upper()} {template}")
    assert ("POST", f"{API}/apps") in covered
    assert not missing, f"routes without an isolation attempt: {missing}"


def test_other_members_cannot_be_added_to_foreign_project_by_id_guess(res, root, two_teams):
    """A random project id and a foreign one answer the same way."""
    a, b, wa, wb = two_teams
    foreign = b.get(f"projects/{wa['project']['id']}")
    unknown = b.get(f"projects/{uuid.uuid4()}")
    assert foreign.status_code == unknown.status_code == 404
    fe, ue = foreign.json()["error"], unknown.json()["error"]
    assert (fe["code"], fe["message"]) == (ue["code"], ue["message"])
