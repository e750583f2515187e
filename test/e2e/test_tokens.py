"""API tokens and OAuth2 client_credentials (DESIGN.md §5; the issue 3 contract)."""

import base64
import datetime
import re
import uuid

import pytest

from conftest import detail_fields, error_of, wait_for

TOKEN_RE = re.compile(r"^swt_[A-Za-z0-9_-]{20,}$")
SESSION_RE = re.compile(r"^sws_[A-Za-z0-9_-]{20,}$")


def parse_ts(s):
    return datetime.datetime.fromisoformat(s.replace("Z", "+00:00"))


def test_create_list_delete(owner, auth):
    r = owner.post("tokens", json={"name": "ci", "scopes": ["read", "deploy"]})
    assert r.status_code == 201, r.text
    t = r.json()
    assert set(t) >= {"id", "name", "scopes", "expires_at", "created_at", "token"}
    assert TOKEN_RE.match(t["token"])
    assert t["name"] == "ci" and sorted(t["scopes"]) == ["deploy", "read"]
    assert t["expires_at"] is None
    uuid.UUID(t["id"])
    r = owner.get("tokens")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["pagination"] == {"page": 1, "limit": body["pagination"]["limit"], "total": 1,
                                  "pages": 1, "has_next": False, "has_prev": False}
    [row] = body["data"]
    assert set(row) >= {"id", "name", "scopes", "expires_at", "last_used_at", "created_at"}
    assert "token" not in row and "token_hash" not in row
    assert t["token"] not in r.text
    assert row["id"] == t["id"] and row["last_used_at"] is None
    # using it records last_used_at
    hdr = {"Authorization": f"Bearer {t['token']}"}
    me = auth.call(owner.d, "GET", "auth/me", headers=hdr)
    assert me.status_code == 200, me.text
    principal = me.json()["principal"]
    assert principal["kind"] == "token" and principal["token_id"] == t["id"], principal
    assert sorted(principal["scopes"]) == ["deploy", "read"], principal
    wait_for(lambda: owner.get("tokens").json()["data"][0]["last_used_at"], timeout=5,
             message="last_used_at set")
    r = owner.delete(f"tokens/{t['id']}")
    assert r.status_code == 204, r.text
    wait_for(lambda: auth.call(owner.d, "GET", "auth/me", headers=hdr).status_code == 401,
             timeout=1.0, interval=0.01, message="deleted token refused")
    error_of(owner.delete(f"tokens/{t['id']}"), 404, "RESOURCE_NOT_FOUND")
    assert owner.get("tokens").json()["data"] == []


def test_expiry(owner):
    r = owner.post("tokens", json={"name": "short", "scopes": ["read"], "expires_in": 3600})
    assert r.status_code == 201, r.text
    t = r.json()
    exp = parse_ts(t["expires_at"]) - parse_ts(t["created_at"])
    assert abs(exp.total_seconds() - 3600) < 5, exp


@pytest.mark.parametrize("payload,field", [
    ({"scopes": ["read"]}, "name"),
    ({"name": "", "scopes": ["read"]}, "name"),
    ({"name": "x" * 101, "scopes": ["read"]}, "name"),
    ({"name": "n"}, "scopes"),
    ({"name": "n", "scopes": []}, "scopes"),
    ({"name": "n", "scopes": ["root"]}, "scopes"),
    ({"name": "n", "scopes": "read"}, "scopes"),
    ({"name": "n", "scopes": ["read"], "expires_in": 59}, "expires_in"),
    ({"name": "n", "scopes": ["read"], "expires_in": 315360001}, "expires_in"),
    ({"name": "n", "scopes": ["read"], "expires_in": "soon"}, "expires_in"),
])
def test_create_validation(owner, payload, field):
    r = owner.post("tokens", json=payload)
    error_of(r, 400, "VALIDATION_ERROR")
    assert field in detail_fields(r), r.text


def test_name_bounds(owner):
    assert owner.post("tokens", json={"name": "x" * 100, "scopes": ["read"]}).status_code == 201
    assert owner.post("tokens", json={"name": "x", "scopes": ["admin"],
                                      "expires_in": 60}).status_code == 201
    assert owner.post("tokens", json={"name": "y", "scopes": ["read"],
                                      "expires_in": 315360000}).status_code == 201


def test_list_is_own_and_paginated(owner, auth):
    member = auth.make_user(owner, "member")
    mt = auth.make_token(member, ["read"])
    for i in range(5):
        auth.make_token(owner, ["read"], name=f"t{i}")
    r = owner.get("tokens", params={"limit": 2, "page": 2})
    assert r.status_code == 200, r.text
    body = r.json()
    assert len(body["data"]) == 2
    assert body["pagination"] == {"page": 2, "limit": 2, "total": 5, "pages": 3,
                                  "has_next": True, "has_prev": True}
    assert all(row["id"] != mt.token_id for row in owner.get("tokens",
                                                             params={"limit": 100}).json()["data"])
    assert [row["id"] for row in member.get("tokens").json()["data"]] == [mt.token_id]
    r = owner.get("tokens", params={"limit": 101})
    assert r.status_code == 400 or r.json()["pagination"]["limit"] <= 100


def test_delete_only_own(owner, auth):
    member = auth.make_user(owner, "member")
    mt = auth.make_token(member, ["read"])
    error_of(owner.delete(f"tokens/{mt.token_id}"), 404, "RESOURCE_NOT_FOUND")
    error_of(owner.delete("tokens/not-a-uuid"), 404, "RESOURCE_NOT_FOUND")
    error_of(owner.delete(f"tokens/{uuid.uuid4()}"), 404, "RESOURCE_NOT_FOUND")
    assert mt.get("auth/me").status_code == 200


def test_tokens_need_session_to_create_and_delete(owner, auth):
    tok = auth.make_token(owner, ["admin"])
    error_of(tok.post("tokens", json={"name": "n", "scopes": ["read"]}), 403, "INSUFFICIENT_ROLE")
    error_of(tok.delete(f"tokens/{tok.token_id}"), 403, "INSUFFICIENT_ROLE")
    assert tok.get("tokens").status_code == 200


def test_token_scope_limits(owner, auth):
    read = auth.make_token(owner, ["read"])
    admin = auth.make_token(owner, ["admin"])
    err = error_of(read.get("users"), 403, "INSUFFICIENT_ROLE")
    assert "admin" in err["message"]
    assert admin.get("users").status_code == 200


# --------------------------------------------------------------------------- client_credentials


def _assert_grant(r, scopes):
    assert r.status_code == 200, r.text
    body = r.json()
    assert SESSION_RE.match(body["access_token"])
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 3600
    assert body["scope"].split() == scopes
    return body["access_token"]


def test_client_credentials_form_json_basic(owner, auth):
    tok = auth.make_token(owner, ["read", "write"])
    d = owner.d
    a1 = _assert_grant(auth.call(d, "POST", "auth/token", data={
        "grant_type": "client_credentials", "client_id": tok.token_id,
        "client_secret": tok.token}), tok.scopes)
    a2 = _assert_grant(auth.call(d, "POST", "auth/token", json={
        "grant_type": "client_credentials", "client_id": tok.token_id,
        "client_secret": tok.token}), tok.scopes)
    basic = base64.b64encode(f"{tok.token_id}:{tok.token}".encode()).decode()
    a3 = _assert_grant(auth.call(d, "POST", "auth/token", data={"grant_type": "client_credentials"},
                                 headers={"Authorization": f"Basic {basic}"}), tok.scopes)
    assert len({a1, a2, a3}) == 3
    auth.remember(a1, a2, a3)
    for a in (a1, a2, a3):
        r = auth.call(d, "GET", "auth/me", headers={"Authorization": f"Bearer {a}"})
        assert r.status_code == 200, r.text
        assert sorted(r.json()["principal"]["scopes"]) == ["read", "write"]
        assert r.json()["principal"]["token_id"] == tok.token_id


def test_client_credentials_errors(owner, auth):
    tok = auth.make_token(owner, ["read"])
    d = owner.d
    r = auth.call(d, "POST", "auth/token", data={"grant_type": "client_credentials",
                                                 "client_id": tok.token_id,
                                                 "client_secret": tok.token + "x"})
    error_of(r, 401, "AUTHENTICATION_ERROR")
    r = auth.call(d, "POST", "auth/token", data={"grant_type": "client_credentials",
                                                 "client_id": str(uuid.uuid4()),
                                                 "client_secret": tok.token})
    error_of(r, 401, "AUTHENTICATION_ERROR")
    r = auth.call(d, "POST", "auth/token", data={"grant_type": "client_credentials",
                                                 "client_id": "not-a-uuid",
                                                 "client_secret": tok.token})
    error_of(r, 401, "AUTHENTICATION_ERROR")
    r = auth.call(d, "POST", "auth/token", data={"grant_type": "password",
                                                 "client_id": tok.token_id,
                                                 "client_secret": tok.token})
    error_of(r, 400, "VALIDATION_ERROR")
    assert "grant_type" in detail_fields(r)
    r = auth.call(d, "POST", "auth/token", json={"client_id": tok.token_id,
                                                 "client_secret": tok.token})
    error_of(r, 400, "VALIDATION_ERROR")
    assert "grant_type" in detail_fields(r)


def test_access_token_has_token_scopes_and_dies_with_it(owner, auth):
    tok = auth.make_token(owner, ["read"])
    access = auth.client_credentials(tok)
    assert access.scopes == ["read"]
    assert access.get("auth/me").status_code == 200
    err = error_of(access.get("users"), 403, "INSUFFICIENT_ROLE")
    assert "admin" in err["message"]
    error_of(access.post("tokens", json={"name": "n", "scopes": ["read"]}), 403,
             "INSUFFICIENT_ROLE")
    assert owner.delete(f"tokens/{tok.token_id}").status_code == 204
    wait_for(lambda: access.get("auth/me").status_code == 401, timeout=1.0, interval=0.01,
             message="access token refused after its API token was deleted")
    r = auth.call(owner.d, "POST", "auth/token", data={
        "grant_type": "client_credentials", "client_id": tok.token_id,
        "client_secret": tok.token})
    error_of(r, 401, "AUTHENTICATION_ERROR")
