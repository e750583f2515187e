"""Env vars: keys and flags in, values never out; sealed at rest (issue 4, DESIGN.md §5).

Every response of this module (and of every resources module) is recorded by the
response_log fixture, which fails the module if a value stored here shows up in any body."""

import json
import uuid

import pytest

from resources_kit import *  # noqa: F401,F403 - fixtures and helpers
from resources_kit import Record

ENV_KEYS = {"key", "build_time", "runtime", "has_value", "updated_at"}


@pytest.fixture
def app(res, root):
    p = res.project(root)
    return res.app(root, res.production(root, p["id"])["id"])


def sealed(conn, app_id, key):
    row = conn.execute("SELECT value_sealed FROM app_env WHERE app_id = %s AND key = %s",
                       (app_id, key)).fetchone()
    return row[0] if row else None


def test_leak_check_can_fail():
    """The response_log check itself: a body holding a value, raw or JSON-escaped, is found."""
    v = 'sv-check-"quoted"-é-' + uuid.uuid4().hex
    raw = Record("GET", "/x", "", 200, "application/json", json.dumps({"v": v}).encode(), "t")
    utf = Record("GET", "/x", "", 200, "application/json",
                 json.dumps({"v": v}, ensure_ascii=False).encode(), "t")
    clean = Record("GET", "/x", "", 200, "application/json", b'{"v": "other"}', "t")
    assert [r for r, _ in leaks([raw, utf, clean], {v})] == [raw, utf]


def test_put_one_and_list(res, root, app):
    aid = app["id"]
    value = secret_value("db")
    r = root.call("PUT", f"apps/{aid}/env/DATABASE_URL", json={"value": value})
    assert r.status_code == 200, r.text
    SECRET_VALUES.add(value)
    item = r.json()
    assert set(item) >= ENV_KEYS and "value" not in item and "value_sealed" not in item
    assert item == {**item, "key": "DATABASE_URL", "build_time": False, "runtime": True,
                    "has_value": True}
    res.set_env(root, aid, "BUILD_TOKEN", build_time=True, runtime=False)
    body = listing(root, f"apps/{aid}/env")
    assert [x["key"] for x in body["data"]] == ["BUILD_TOKEN", "DATABASE_URL"]
    assert body["pagination"]["total"] == 2
    flags = {x["key"]: (x["build_time"], x["runtime"], x["has_value"]) for x in body["data"]}
    assert flags == {"BUILD_TOKEN": (True, False, True), "DATABASE_URL": (False, True, True)}
    for x in body["data"]:
        assert set(x) >= ENV_KEYS and "value" not in x


def test_update_reseals(res, root, app):
    aid = app["id"]
    conn = res.db
    v1, first = res.set_env(root, aid, "TOKEN")
    c1 = sealed(conn, aid, "TOKEN")
    v2, second = res.set_env(root, aid, "TOKEN", build_time=True)
    c2 = sealed(conn, aid, "TOKEN")
    assert c1 != c2 and v1 != v2
    assert second["build_time"] is True and second["updated_at"] >= first["updated_at"]
    # same value again: a fresh nonce, so a fresh ciphertext
    res.set_env(root, aid, "TOKEN", v2)
    assert sealed(conn, aid, "TOKEN") != c2
    assert conn.execute("SELECT count(*) FROM app_env WHERE app_id = %s",
                        (aid,)).fetchone()[0] == 1


def test_bulk_upsert(res, root, app):
    aid = app["id"]
    res.set_env(root, aid, "KEEP", build_time=True)
    pairs = {"A_ONE": secret_value("a"), "B_TWO": secret_value("b"), "KEEP": secret_value("k")}
    body = res.bulk_env(root, aid, pairs)
    assert [x["key"] for x in body["data"]] == ["A_ONE", "B_TWO", "KEEP"]
    assert all(x["has_value"] for x in body["data"])
    listed = listing(root, f"apps/{aid}/env")["data"]
    assert [x["key"] for x in listed] == ["A_ONE", "B_TWO", "KEEP"]
    conn = res.db
    for k, v in pairs.items():
        c = sealed(conn, aid, k)
        assert c.startswith("v1.") and v not in c
    r = root.call("PUT", f"apps/{aid}/env", json={"vars": {}})
    assert r.status_code in (200, 400), r.text
    assert len(listing(root, f"apps/{aid}/env")["data"]) == 3


def test_sealed_at_rest(res, root, app):
    aid = app["id"]
    values = {}
    for k in ("S1", "S2", "_under", "camelCase9"):
        values[k], _ = res.set_env(root, aid, k)
    big = "x" * 65536
    r = root.call("PUT", f"apps/{aid}/env/BIG", json={"value": big})
    assert r.status_code == 200, r.status_code
    uni = secret_value("uni") + "-ünïcødé-\"quote\"-\\-\n"
    res.set_env(root, aid, "UNI", uni)
    values["UNI"] = uni
    conn = res.db
    rows = dict(conn.execute("SELECT key, value_sealed FROM app_env WHERE app_id = %s",
                             (aid,)).fetchall())
    assert set(rows) == set(values) | {"BIG"}
    for k, v in values.items():
        c = rows[k]
        assert c.startswith("v1."), c[:10]
        assert c != v and v not in c and v.encode().hex() not in c
    assert "x" * 64 not in rows["BIG"]
    # nothing else in the database holds a value either
    dump = "\n".join(t for tbl in snapshot(conn).values() for t in tbl)
    for v in values.values():
        assert json.dumps(v)[1:-1] not in dump and v not in dump


def test_ciphertext_bound_to_app_and_key(res, root):
    """The same value sealed for two apps gives two ciphertexts (fresh nonce, the app id in
    the associated data). Decrypting with a wrong app id is covered by the secret box's
    unit tests: the API has no way to read a value back."""
    p = res.project(root)
    env = res.production(root, p["id"])
    a, b = res.app(root, env["id"]), res.app(root, env["id"])
    v = secret_value("same")
    res.set_env(root, a["id"], "K", v)
    res.set_env(root, b["id"], "K", v)
    conn = res.db
    assert sealed(conn, a["id"], "K") != sealed(conn, b["id"], "K")


def test_delete_key(res, root, app):
    aid = app["id"]
    res.set_env(root, aid, "GONE")
    res.set_env(root, aid, "STAYS")
    r = root.delete(f"apps/{aid}/env/GONE")
    assert r.status_code == 204 and r.content == b"", r.text
    assert [x["key"] for x in listing(root, f"apps/{aid}/env")["data"]] == ["STAYS"]
    error_of(root.delete(f"apps/{aid}/env/GONE"), 404, "RESOURCE_NOT_FOUND")
    error_of(root.delete(f"apps/{aid}/env/NEVER"), 404, "RESOURCE_NOT_FOUND")
    assert sealed(res.db, aid, "GONE") is None


def test_key_validation(res, root, app):
    aid = app["id"]
    for key in ("1ABC", "A-B", "A.B", "A%20B", "%C3%A9", "K" * 256):
        r = root.call("PUT", f"apps/{aid}/env/{key}", json={"value": secret_value()})
        assert_invalid(r, "key")
    assert root.call("PUT", f"apps/{aid}/env/{'K' * 255}",
                     json={"value": secret_value()}).status_code == 200
    for key in ("1ABC", "A-B", "", "A B", "K" * 256):
        r = root.call("PUT", f"apps/{aid}/env", json={"vars": {key: secret_value()}})
        err = error_of(r, 400, "VALIDATION_ERROR")
        fields = [d.get("field") or "" for d in err.get("details") or []]
        # an overlong key may be cut short in the field name
        assert any(f in (f"vars.{key}", "key") or
                   (f.startswith("vars.") and len(f) > 5 and f"vars.{key}".startswith(f))
                   for f in fields), (key[:20], fields)
    assert [x["key"] for x in listing(root, f"apps/{aid}/env")["data"]] == ["K" * 255]


def test_value_validation(res, root, app):
    aid = app["id"]
    assert_invalid(root.call("PUT", f"apps/{aid}/env/BIG", json={"value": "x" * 65537}), "value")
    assert_invalid(root.call("PUT", f"apps/{aid}/env/NUM", json={"value": 5}), "value")
    assert_invalid(root.call("PUT", f"apps/{aid}/env/NUL", json={"value": None}), "value")
    assert_invalid(root.call("PUT", f"apps/{aid}/env/MISSING", json={}), "value")
    assert_invalid(root.call("PUT", f"apps/{aid}/env/F", json={"value": "v", "build_time": "no"}),
                   "build_time")
    assert_invalid(root.call("PUT", f"apps/{aid}/env/F", json={"value": "v", "runtime": 1}),
                   "runtime")
    r = root.call("PUT", f"apps/{aid}/env", json={"vars": {"A": 5}})
    err = error_of(r, 400, "VALIDATION_ERROR")
    assert any((d.get("field") or "").startswith("vars") for d in err["details"]), err
    assert_invalid(root.call("PUT", f"apps/{aid}/env", json={}), "vars")
    assert_invalid(root.call("PUT", f"apps/{aid}/env", json={"vars": ["A"]}), "vars")
    many = {f"K{i}": secret_value() for i in range(101)}
    assert_invalid(root.call("PUT", f"apps/{aid}/env", json={"vars": many}), "vars")
    assert listing(root, f"apps/{aid}/env")["pagination"]["total"] == 0
    hundred = {f"K{i:03d}": secret_value() for i in range(100)}
    res.bulk_env(root, aid, hundred)
    assert listing(root, f"apps/{aid}/env", limit=100)["pagination"]["total"] == 100


def test_unknown_app(root):
    aid = str(uuid.uuid4())
    error_of(root.get(f"apps/{aid}/env"), 404, "RESOURCE_NOT_FOUND")
    error_of(root.call("PUT", f"apps/{aid}/env", json={"vars": {"A": secret_value()}}), 404,
             "RESOURCE_NOT_FOUND")
    error_of(root.call("PUT", f"apps/{aid}/env/A", json={"value": secret_value()}), 404,
             "RESOURCE_NOT_FOUND")
    error_of(root.delete(f"apps/{aid}/env/A"), 404, "RESOURCE_NOT_FOUND")


def test_audit_never_holds_values(res, root, app):
    aid = app["id"]
    conn = res.db
    before = last_audit_id(conn)
    v1, _ = res.set_env(root, aid, "ONE")
    pairs = {"TWO": secret_value(), "THREE": secret_value()}
    res.bulk_env(root, aid, pairs)
    assert root.delete(f"apps/{aid}/env/ONE").status_code == 204
    rows = audit_rows(conn, before)
    assert [r["action"] for r in rows] == ["env.set", "env.set", "env.deleted"], rows
    assert rows[0]["details"].get("keys") == ["ONE"], rows[0]
    assert sorted(rows[1]["details"].get("keys")) == ["THREE", "TWO"], rows[1]
    assert all(r["project_id"] == app["project_id"] for r in rows)
    text = json.dumps(rows, default=str)
    for v in [v1, *pairs.values()]:
        assert v not in text
    dump = "\n".join(snapshot(conn, ("audit_log",))["audit_log"])
    for v in [v1, *pairs.values()]:
        assert v not in dump
    # and through the API
    r = root.get("audit", params={"project_id": app["project_id"], "limit": 100})
    assert r.status_code == 200, r.text
    for v in [v1, *pairs.values()]:
        assert v not in r.text


def test_values_absent_from_every_read(res, root):
    """Reads every endpoint that touches an app after storing values; response_log fails
    the module if any value shows up."""
    w = res.world(root)
    aid, pid = w["app"]["id"], w["project"]["id"]
    for path in (f"apps/{aid}", "apps", f"apps/{aid}/env", f"apps/{aid}/domains", "domains",
                 f"projects/{pid}", "projects", "audit", f"projects/{pid}/environments",
                 f"environments/{w['env']['id']}"):
        r = root.get(path)
        assert r.status_code == 200, f"{path}: {r.status_code} {r.text}"
        for v in w["values"]:
            assert v not in r.text, path
    mine = [rec for rec in RECORDS if rec.path.startswith(f"{API}/apps/{aid}")]
    assert mine, "response_log recorded nothing: the leak check would be vacuous"
