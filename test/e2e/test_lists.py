"""Lists: pagination, sorting and limits on every list endpoint (issue 4, DESIGN.md §4)."""

import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from resources_kit import *  # noqa: F401,F403 - fixtures and helpers

N_APPS = 250


@pytest.fixture
def many_apps(res, root):
    """250 apps in one environment, named app-000 .. app-249, created concurrently."""
    p = res.project(root)
    env = res.production(root, p["id"])
    started = time.monotonic()

    def make(i):
        r = root.post("apps", json={"name": f"app-{i:03d}", "environment_id": env["id"]})
        return r.status_code, r.text

    with ThreadPoolExecutor(max_workers=16) as pool:
        results = list(pool.map(make, range(N_APPS)))
    bad = [x for x in results if x[0] != 201]
    assert not bad, f"{len(bad)} creates failed, first: {bad[0]}"
    elapsed = time.monotonic() - started
    assert elapsed < 20, f"creating {N_APPS} apps took {elapsed:.1f}s"
    return p, env


def test_pages_of_100_100_50(root, many_apps):
    seen = []
    want = [(1, 100, True, False), (2, 100, True, True), (3, 50, False, True)]
    for page, n, has_next, has_prev in want:
        body = listing(root, "apps", page=page, limit=100, sort="name:asc")
        pg = body["pagination"]
        assert len(body["data"]) == n, (page, len(body["data"]))
        assert pg["total"] == N_APPS and pg["pages"] == 3 and pg["limit"] == 100
        assert pg["page"] == page
        assert (pg["has_next"], pg["has_prev"]) == (has_next, has_prev), (page, pg)
        seen += [a["name"] for a in body["data"]]
    assert seen == [f"app-{i:03d}" for i in range(N_APPS)]
    beyond = listing(root, "apps", page=4, limit=100)
    assert beyond["data"] == [] and beyond["pagination"]["total"] == N_APPS
    assert beyond["pagination"]["has_next"] is False


def test_sort_both_ways(root, many_apps):
    asc = listing(root, "apps", sort="name:asc", limit=100)["data"]
    desc = listing(root, "apps", sort="name:desc", limit=100)["data"]
    assert [a["name"] for a in asc] == [f"app-{i:03d}" for i in range(100)]
    assert [a["name"] for a in desc] == [f"app-{i:03d}" for i in range(249, 149, -1)]
    bare = listing(root, "apps", sort="name", limit=5)["data"]
    assert [a["name"] for a in bare] == [f"app-{i:03d}" for i in range(5)]
    last = listing(root, "apps", sort="name:desc", limit=100, page=3)["data"]
    assert [a["name"] for a in last] == [f"app-{i:03d}" for i in range(49, -1, -1)]
    by_created = listing(root, "apps", sort="created_at:desc", limit=100)["data"]
    stamps = [a["created_at"] for a in by_created]
    assert stamps == sorted(stamps, reverse=True)
    for field in ("updated_at", "status", "created_at"):
        assert listing(root, "apps", sort=field, limit=1)["pagination"]["total"] == N_APPS


def test_default_limit_and_offset(root, many_apps):
    body = listing(root, "apps", sort="name")
    assert body["pagination"]["limit"] == 20 and len(body["data"]) == 20
    assert body["pagination"]["pages"] == 13
    off = listing(root, "apps", sort="name", offset=245, limit=100)
    assert [a["name"] for a in off["data"]] == [f"app-{i:03d}" for i in range(245, 250)]
    assert off["pagination"]["total"] == N_APPS
    mid = listing(root, "apps", sort="name", offset=10, limit=3)
    assert [a["name"] for a in mid["data"]] == ["app-010", "app-011", "app-012"]
    assert mid["pagination"]["has_prev"] is True and mid["pagination"]["has_next"] is True
    one = listing(root, "apps", limit=1)
    assert one["pagination"]["pages"] == N_APPS and len(one["data"]) == 1


def test_filters_combine_with_pagination(res, root, many_apps):
    p, env = many_apps
    other = res.project(root)
    res.app(root, res.production(root, other["id"])["id"], "elsewhere")
    body = listing(root, "apps", project_id=p["id"], limit=100, page=3)
    assert body["pagination"]["total"] == N_APPS and len(body["data"]) == 50
    assert listing(root, "apps")["pagination"]["total"] == N_APPS + 1
    assert listing(root, "apps", project_id=other["id"])["pagination"]["total"] == 1


LIST_PATHS = ["projects", "apps", "domains", "audit"]


def test_bad_list_parameters(res, root):
    w = res.world(root)
    pid, aid = w["project"]["id"], w["app"]["id"]
    paths = LIST_PATHS + [f"projects/{pid}/members", f"projects/{pid}/environments",
                          f"apps/{aid}/env", f"apps/{aid}/domains"]
    failures = []
    for path in paths:
        for params, field in [({"limit": 101}, "limit"), ({"limit": 0}, "limit"),
                              ({"limit": -1}, "limit"), ({"limit": "ten"}, "limit"),
                              ({"page": 0}, "page"), ({"page": "x"}, "page"),
                              ({"offset": -1}, "offset"),
                              ({"sort": "no_such_field"}, "sort"),
                              ({"sort": "created_at:up"}, "sort"), ({"sort": ":asc"}, "sort")]:
            r = root.get(path, params=params)
            fields = []
            if r.status_code == 400:
                fields = [d.get("field") for d in r.json()["error"].get("details") or []]
            if r.status_code != 400 or field not in fields:
                failures.append(f"GET {path} {params}: {r.status_code} {fields} {r.text[:100]}")
        body = listing(root, path, limit=100)
        assert body["pagination"]["limit"] == 100
    assert not failures, f"{len(failures)} wrong:\n" + "\n".join(failures)


def test_enum_filters_name_what_they_accept(root):
    for path, field, accepted in [
            ("apps", "status", "idle, deploying, running, stopped, crashed"),
            ("deployments", "status",
             "pending, building, deploying, success, failed, cancelled, rolled_back"),
            ("nodes", "status", "up, lost, stopped"), ("nodes", "role", "api, worker, all")]:
        r = root.get(path, params={field: "Running"})  # case matters
        assert r.status_code == 400, (path, r.text)
        assert r.json()["error"]["details"] == [
            {"field": field, "message": f"must be one of {accepted}"}], (path, r.text)
        assert root.get(path, params={field: accepted.split(", ")[-1]}).status_code == 200


def test_projects_list_sort_and_role(res, root):
    m = res.user(root, "member")
    names = ["delta", "Alpha", "charlie", "bravo"]
    for n in names:
        res.project(m, name=n)
    res.project(root, name="hidden")
    mine = listing(m, "projects", sort="name:asc")
    got = [p["name"] for p in mine["data"]]
    assert sorted(got, key=str.lower) == sorted(names, key=str.lower) and len(got) == 4
    assert got == sorted(got, key=str.lower) or got == sorted(got)
    desc = [p["name"] for p in listing(m, "projects", sort="name:desc")["data"]]
    assert desc == list(reversed(got))
    assert [p["name"] for p in listing(m, "projects", sort="created_at")["data"]] == names
    assert all(p["role"] == "admin" for p in mine["data"])
    assert mine["pagination"]["total"] == 4
    assert listing(root, "projects")["pagination"]["total"] == 5
    assert [p["name"] for p in listing(m, "projects", sort="updated_at:desc")["data"]][0] == "bravo"


def test_members_sort(res, root):
    p = res.project(root)
    users = [res.user(root, "member") for _ in range(3)]
    for u, role in zip(users, ("viewer", "developer", "viewer")):
        res.member(root, p["id"], u, role)
    by_email = [m["email"] for m in listing(root, f"projects/{p['id']}/members",
                                            sort="email:asc")["data"]]
    assert by_email == sorted([root.email] + [u.email for u in users])
    by_email_desc = [m["email"] for m in listing(root, f"projects/{p['id']}/members",
                                                 sort="email:desc")["data"]]
    assert by_email_desc == list(reversed(by_email))
    roles = [m["role"] for m in listing(root, f"projects/{p['id']}/members", sort="role")["data"]]
    # alphabetical or by rank: either way grouped and monotonic
    assert roles in (sorted(roles), sorted(roles, reverse=True)), roles
    created = [m["user_id"] for m in listing(root, f"projects/{p['id']}/members",
                                             sort="created_at")["data"]]
    assert created == [root.id] + [u.id for u in users]
    page = listing(root, f"projects/{p['id']}/members", limit=3, page=2, sort="created_at")
    assert [m["user_id"] for m in page["data"]] == [users[2].id]
    assert page["pagination"]["total"] == 4 and page["pagination"]["has_prev"]


def test_env_list_is_paginated_by_key(res, root):
    p = res.project(root)
    app = res.app(root, res.production(root, p["id"])["id"])
    keys = [f"K{i:02d}" for i in range(25)]
    res.bulk_env(root, app["id"], {k: secret_value(k) for k in reversed(keys)})
    first = listing(root, f"apps/{app['id']}/env")
    assert [x["key"] for x in first["data"]] == keys[:20]
    assert first["pagination"]["total"] == 25 and first["pagination"]["has_next"]
    second = listing(root, f"apps/{app['id']}/env", page=2)
    assert [x["key"] for x in second["data"]] == keys[20:]
