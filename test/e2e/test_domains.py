"""Domains: hostname validation, instance-wide uniqueness, listing and deletion (issue 4)."""

import uuid

import pytest

from resources_kit import *  # noqa: F401,F403 - fixtures and helpers

DOMAIN_KEYS = {"id", "app_id", "hostname", "created_at"}


@pytest.fixture
def app(res, root):
    p = res.project(root)
    return res.app(root, res.production(root, p["id"])["id"])


def test_create_list_delete(res, root, app):
    aid = app["id"]
    r = root.post(f"apps/{aid}/domains", json={"hostname": "Shop.Example.COM"})
    assert r.status_code == 201, r.text
    dom = r.json()
    assert set(dom) >= DOMAIN_KEYS and dom["app_id"] == aid
    assert dom["hostname"] == "shop.example.com"
    uuid.UUID(dom["id"])
    second = res.domain(root, aid, "www.shop.example.com")
    body = listing(root, f"apps/{aid}/domains")
    assert sorted(x["id"] for x in body["data"]) == sorted([dom["id"], second["id"]])
    assert body["pagination"]["total"] == 2
    for x in body["data"]:
        assert set(x) >= DOMAIN_KEYS
    assert sorted(x["hostname"] for x in listing(root, "domains")["data"]) == \
        ["shop.example.com", "www.shop.example.com"]
    r = root.delete(f"domains/{dom['id']}")
    assert r.status_code == 204 and r.content == b"", r.text
    assert [x["id"] for x in listing(root, f"apps/{aid}/domains")["data"]] == [second["id"]]
    error_of(root.delete(f"domains/{dom['id']}"), 404, "RESOURCE_NOT_FOUND")
    for bad in (str(uuid.uuid4()), "nope"):
        error_of(root.delete(f"domains/{bad}"), 404, "RESOURCE_NOT_FOUND")
        error_of(root.get(f"apps/{bad}/domains"), 404, "RESOURCE_NOT_FOUND")
        error_of(root.post(f"apps/{bad}/domains", json={"hostname": hostname()}), 404,
                 "RESOURCE_NOT_FOUND")


INVALID_HOSTS = [
    "", "localhost", "example", "-a.example.com", "a-.example.com", "a_b.example.com",
    "a..example.com", ".example.com", "example.com.", "a" * 64 + ".example.com",
    ".".join(["a" * 63] * 4) + ".com", "1.2.3.4", "127.0.0.1", "::1", "[::1]",
    "*.example.com", "a.*.example.com", "exämple.com", "пример.рф", "a b.example.com",
    "example.com:8080", "http://example.com", "example.com/path", "ex!ample.com",
]


def test_hostname_validation(res, root, app):
    failures = []
    for host in INVALID_HOSTS + [5, None]:
        r = root.post(f"apps/{app['id']}/domains", json={"hostname": host})
        if r.status_code != 400:
            failures.append(f"{host!r}: want 400, got {r.status_code} {r.text[:100]}")
            continue
        err = r.json()["error"]
        fields = [d.get("field") for d in err.get("details") or []]
        if err["code"] != "VALIDATION_ERROR" or "hostname" not in fields:
            failures.append(f"{host!r}: {err['code']} {fields}")
    assert not failures, "\n".join(failures)
    assert_invalid(root.post(f"apps/{app['id']}/domains", json={}), "hostname")
    assert listing(root, f"apps/{app['id']}/domains")["data"] == []


def test_hostname_edges_accepted(res, root, app):
    longest = ".".join(["a" * 63] * 3 + ["b" * 61])  # 253 characters
    assert len(longest) == 253
    for host in ("xn--exmple-cua.com", "a.b", "0.example.com", "my-app.example.co.uk",
                 "a" * 63 + ".example.com", longest, "123.example.com"):
        r = root.post(f"apps/{app['id']}/domains", json={"hostname": host})
        assert r.status_code == 201, f"{host}: {r.status_code} {r.text}"
        assert r.json()["hostname"] == host


def test_hostname_unique_across_instance(res, root, app):
    res.domain(root, app["id"], "api.example.com")
    other_project = res.project(root)
    other = res.app(root, res.production(root, other_project["id"])["id"])
    for host in ("api.example.com", "API.example.com"):
        error_of(root.post(f"apps/{other['id']}/domains", json={"hostname": host}), 409,
                 "RESOURCE_CONFLICT")
        error_of(root.post(f"apps/{app['id']}/domains", json={"hostname": host}), 409,
                 "RESOURCE_CONFLICT")
    # even for someone who cannot see the app holding it
    m = res.user(root, "member")
    mp = res.project(m)
    mapp = res.app(m, res.production(m, mp["id"])["id"])
    error_of(m.post(f"apps/{mapp['id']}/domains", json={"hostname": "api.example.com"}), 409,
             "RESOURCE_CONFLICT")
    assert res.db.execute("SELECT count(*) FROM domains").fetchone()[0] == 1


def test_wildcards_when_enabled(auth):
    d = auth.daemon(env={"SLIPWAY_RATE_LIMIT": "off", "SLIPWAY_ALLOW_WILDCARD_DOMAINS": "true"})
    o = auth.setup_owner(d)
    r = Res(auth, d)
    p = r.project(o)
    a = r.app(o, r.production(o, p["id"])["id"])
    got = o.post(f"apps/{a['id']}/domains", json={"hostname": "*.Apps.Example.com"})
    assert got.status_code == 201, got.text
    assert got.json()["hostname"] == "*.apps.example.com"
    for bad in ("a.*.example.com", "**.example.com", "*example.com", "*.*.example.com"):
        assert_invalid(o.post(f"apps/{a['id']}/domains", json={"hostname": bad}), "hostname")


def test_domains_list_visibility_and_sort(res, root):
    m = res.user(root, "member")
    mine = res.project(m)
    mapp = res.app(m, res.production(m, mine["id"])["id"])
    theirs = res.project(root)
    tapp = res.app(root, res.production(root, theirs["id"])["id"])
    for h in ("c.example.com", "a.example.com", "b.example.com"):
        res.domain(m, mapp["id"], h)
    res.domain(root, tapp["id"], "hidden.example.com")
    asc = [x["hostname"] for x in listing(m, "domains", sort="hostname:asc")["data"]]
    assert asc == ["a.example.com", "b.example.com", "c.example.com"]
    desc = [x["hostname"] for x in listing(m, "domains", sort="hostname:desc")["data"]]
    assert desc == list(reversed(asc))
    created = [x["hostname"] for x in listing(m, "domains", sort="created_at")["data"]]
    assert created == ["c.example.com", "a.example.com", "b.example.com"]
    assert listing(m, "domains")["pagination"]["total"] == 3
    assert listing(root, "domains")["pagination"]["total"] == 4
    assert_invalid(root.get("domains", params={"sort": "app_id"}), "sort")
    page = listing(m, "domains", sort="hostname", limit=2, page=2)
    assert [x["hostname"] for x in page["data"]] == ["c.example.com"]
    assert page["pagination"]["has_prev"] is True and page["pagination"]["has_next"] is False


def test_developer_cannot_delete_domain(res, root, app):
    dom = res.domain(root, app["id"])
    dev = res.user(root, "member")
    res.member(root, app["project_id"], dev, "developer")
    err = error_of(dev.delete(f"domains/{dom['id']}"), 403, "INSUFFICIENT_ROLE")
    assert "admin" in err["message"]
    assert [x["id"] for x in listing(root, f"apps/{app['id']}/domains")["data"]] == [dom["id"]]


def test_names_that_are_slipways_own_are_refused(auth):
    """The control plane's own host and every name under SLIPWAY_APPS_DOMAIN (another app's
    generated name) can never be claimed, or one tenant could take another's traffic."""
    d = auth.daemon(env={"SLIPWAY_RATE_LIMIT": "off", "SLIPWAY_ALLOW_WILDCARD_DOMAINS": "true",
                         "SLIPWAY_APPS_DOMAIN": "apps.test",
                         "SLIPWAY_PUBLIC_URL": "https://Slipway.Test:8443/"})
    o = auth.setup_owner(d)
    r = Res(auth, d)
    a = r.app(o, r.production(o, r.project(o)["id"])["id"])
    for bad, why in (("slipway.test", "SLIPWAY_PUBLIC_URL"), ("SLIPWAY.test", "SLIPWAY_PUBLIC_URL"),
                     ("apps.test", "SLIPWAY_APPS_DOMAIN"), ("web.shop.apps.test", "SLIPWAY_APPS_DOMAIN"),
                     ("*.apps.test", "SLIPWAY_APPS_DOMAIN"), ("*.shop.Apps.test", "SLIPWAY_APPS_DOMAIN")):
        got = o.post(f"apps/{a['id']}/domains", json={"hostname": bad})
        assert_invalid(got, "hostname")
        assert why in got.text, got.text
    for ok in ("apps.test.example.com", "myapps.test", "slipway.test.example.com", "*.example.test"):
        got = o.post(f"apps/{a['id']}/domains", json={"hostname": ok})
        assert got.status_code == 201, f"{ok}: {got.text}"
    assert sorted(x["hostname"] for x in listing(o, f"apps/{a['id']}/domains")["data"]) == \
        ["*.example.test", "apps.test.example.com", "myapps.test", "slipway.test.example.com"]
