"""Identity: first-run setup, registration, login and logout, sessions and their cookie,
password changes, CSRF, login limits, revocation across processes, storage, audit and logs
(DESIGN.md §5, §8; the issue 3 contract)."""

import re
import time

import pytest

from conftest import (API, WRONG_LOGIN_MESSAGE, detail_fields, error_of, new_email,
                      new_password, parse_set_cookie, request_from, set_cookies, wait_for)

SESSION_RE = re.compile(r"^sws_[A-Za-z0-9_-]{20,}$")


def session_cookie(resp):
    found = [parse_set_cookie(v) for v in set_cookies(resp)]
    found = [c for c in found if c[0] == "slipway_session"]
    assert len(found) == 1, f"expected one slipway_session Set-Cookie, got {set_cookies(resp)}"
    return found[0]


def assert_user(u, email=None, role=None):
    assert set(u) >= {"id", "email", "name", "role", "totp_enabled", "created_at",
                      "updated_at"}, u
    assert "password_hash" not in u and "password" not in u and "totp_secret" not in u
    if email is not None:
        assert u["email"] == email
    if role is not None:
        assert u["role"] == role


def assert_unauthenticated(r):
    error_of(r, 401, "AUTHENTICATION_ERROR")
    assert r.headers.get("WWW-Authenticate", "").startswith("Bearer"), dict(r.headers)


# --------------------------------------------------------------------------- state, setup


def test_state_before_and_after_setup(auth):
    d = auth.daemon()
    r = auth.call(d, "GET", "auth/state")
    assert r.status_code == 200, r.text
    assert r.json() == {"needs_setup": True, "authenticated": False, "user": None,
                        "registration": "closed"}
    owner = auth.setup_owner(d)
    r = auth.call(d, "GET", "auth/state")
    assert r.json()["needs_setup"] is False
    assert r.json()["authenticated"] is False and r.json()["user"] is None
    r = owner.get("auth/state")
    body = r.json()
    assert body["authenticated"] is True and body["needs_setup"] is False
    assert_user(body["user"], owner.email, "owner")
    # the cookie works for it too
    r = auth.call(d, "GET", "auth/state", headers={"Cookie": f"slipway_session={owner.token}"})
    assert r.json()["authenticated"] is True


def test_setup_creates_owner_once(auth):
    d = auth.daemon()
    email, password = new_email("owner"), new_password()
    r = auth.call(d, "POST", "auth/setup",
                  json={"email": "  " + email.upper() + " ", "password": password, "name": "O"})
    assert r.status_code == 201, r.text
    body = r.json()
    assert SESSION_RE.match(body["token"]), body["token"][:8]
    assert body["expires_at"]
    assert_user(body["user"], email, "owner")
    assert body["user"]["name"] == "O" and body["user"]["totp_enabled"] is False
    session_cookie(r)
    r = auth.call(d, "POST", "auth/setup", json={"email": new_email(), "password": new_password()})
    error_of(r, 409, "RESOURCE_CONFLICT")
    # the normalised email logs in, whatever its case
    r = auth.login(d, email.upper(), password)
    assert r.status_code == 200, r.text


@pytest.mark.parametrize("payload,field", [
    ({"password": "long-enough-pw"}, "email"),
    ({"email": "a@example.com"}, "password"),
    ({"email": "not-an-email", "password": "long-enough-pw"}, "email"),
    ({"email": "a@nodot", "password": "long-enough-pw"}, "email"),
    ({"email": "x" * 250 + "@example.com", "password": "long-enough-pw"}, "email"),
    ({"email": "a@example.com", "password": "short9chr"}, "password"),
    ({"email": "a@example.com", "password": "p" * 257}, "password"),
    ({"email": 42, "password": "long-enough-pw"}, "email"),
])
def test_setup_validation(auth, payload, field):
    d = auth.daemon()
    r = auth.call(d, "POST", "auth/setup", json=payload)
    error_of(r, 400, "VALIDATION_ERROR")
    assert field in detail_fields(r), r.text
    assert auth.call(d, "GET", "auth/state").json()["needs_setup"] is True


def test_setup_password_length_bounds(auth):
    d = auth.daemon()
    r = auth.call(d, "POST", "auth/setup", json={"email": new_email(), "password": "p" * 256})
    assert r.status_code == 201, r.text
    d2 = auth.daemon()
    r = auth.call(d2, "POST", "auth/setup", json={"email": new_email(), "password": "p" * 10})
    assert r.status_code == 201, r.text


def test_setup_rejects_bad_json(auth):
    d = auth.daemon()
    r = auth.call(d, "POST", "auth/setup", data=b"{not json",
                  headers={"Content-Type": "application/json"})
    error_of(r, 400, "VALIDATION_ERROR")


# --------------------------------------------------------------------------- register


def test_register_closed_by_default(owner, auth):
    r = auth.call(owner.d, "POST", "auth/register",
                  json={"email": new_email(), "password": new_password()})
    error_of(r, 403, "REGISTRATION_CLOSED")


def test_register_open(auth):
    d = auth.daemon(env={"SLIPWAY_REGISTRATION": "open"})
    assert auth.call(d, "GET", "auth/state").json()["registration"] == "open"
    owner = auth.setup_owner(d)
    email, password = new_email("reg"), new_password()
    r = auth.call(d, "POST", "auth/register",
                  json={"email": email, "password": password, "name": "Reg"})
    assert r.status_code == 201, r.text
    body = r.json()
    assert SESSION_RE.match(body["token"])
    assert_user(body["user"], email, "member")
    session_cookie(r)
    r = auth.call(d, "POST", "auth/register", json={"email": email, "password": new_password()})
    error_of(r, 409, "RESOURCE_CONFLICT")
    r = auth.call(d, "POST", "auth/register", json={"email": owner.email.upper(),
                                                    "password": new_password()})
    error_of(r, 409, "RESOURCE_CONFLICT")
    r = auth.call(d, "POST", "auth/register", json={"email": "nope", "password": "short"})
    error_of(r, 400, "VALIDATION_ERROR")
    assert {"email", "password"} <= set(detail_fields(r)), r.text


# --------------------------------------------------------------------------- login, logout, me


def test_login_and_me(owner, auth):
    d = owner.d
    r = auth.login(d, owner.email, owner.password)
    assert r.status_code == 200, r.text
    body = r.json()
    assert SESSION_RE.match(body["token"]) and body["token"] != owner.token
    assert body["expires_at"]
    assert_user(body["user"], owner.email, "owner")
    r = auth.call(d, "GET", "auth/me", headers={"Authorization": f"Bearer {body['token']}"})
    assert r.status_code == 200, r.text
    me = r.json()
    assert_user(me, owner.email, "owner")
    assert me["principal"]["kind"] == "session"
    assert me["principal"]["token_id"] is None
    assert set(me["principal"]["scopes"]) == {"read", "write", "deploy", "admin"}


def test_login_failures_look_the_same(owner, auth):
    d = owner.d
    wrong = auth.login(d, owner.email, owner.password + "x")
    unknown = auth.login(d, new_email("ghost"), owner.password)
    for r in (wrong, unknown):
        assert_unauthenticated(r)
        assert r.json()["error"]["message"] == WRONG_LOGIN_MESSAGE
        assert not set_cookies(r) or all(parse_set_cookie(c)[0] != "slipway_session"
                                         or parse_set_cookie(c)[2].get("max-age") == "0"
                                         for c in set_cookies(r))


@pytest.mark.parametrize("payload,field", [
    ({}, "email"), ({"email": "a@example.com"}, "password"), ({"password": "x" * 12}, "email"),
    ({"email": ["a"], "password": "x" * 12}, "email"),
])
def test_login_validation(owner, auth, payload, field):
    r = auth.call(owner.d, "POST", "auth/login", json=payload)
    error_of(r, 400, "VALIDATION_ERROR")
    assert field in detail_fields(r), r.text


def test_me_requires_principal(owner, auth):
    d = owner.d
    assert_unauthenticated(auth.call(d, "GET", "auth/me"))
    assert_unauthenticated(auth.call(d, "GET", "auth/me",
                                     headers={"Authorization": "Bearer sws_" + "A" * 43}))
    assert_unauthenticated(auth.call(d, "GET", "auth/me",
                                     headers={"Cookie": "slipway_session=sws_bogus"}))
    assert_unauthenticated(auth.call(d, "GET", "auth/me", headers={"Authorization": "Basic eDp5"}))


def test_invalid_bearer_refused_even_on_public_route(owner, auth):
    d = owner.d
    bad = {"Authorization": "Bearer sws_" + "B" * 43}
    assert_unauthenticated(auth.call(d, "GET", "auth/state", headers=bad))
    # an invalid cookie on a public route is ignored
    r = auth.call(d, "GET", "auth/state", headers={"Cookie": "slipway_session=sws_nope"})
    assert r.status_code == 200 and r.json()["authenticated"] is False


def test_bearer_wins_over_cookie(owner, auth):
    d = owner.d
    member = auth.make_user(owner, "member")
    r = auth.call(d, "GET", "auth/me", headers={"Authorization": f"Bearer {member.token}",
                                                "Cookie": f"slipway_session={owner.token}"})
    assert r.status_code == 200 and r.json()["email"] == member.email


def test_logout(owner, auth):
    d = owner.d
    other = auth.login_principal(d, owner.email, owner.password)
    r = other.post("auth/logout")
    assert r.status_code == 204, r.text
    name, value, attrs = session_cookie(r)
    assert value == "" and attrs.get("max-age") == "0", set_cookies(r)
    assert attrs.get("path") == "/"
    assert_unauthenticated(other.get("auth/me"))
    assert_unauthenticated(other.post("auth/logout"))
    assert owner.get("auth/me").status_code == 200  # only that session ended
    assert_unauthenticated(auth.call(d, "POST", "auth/logout"))


def test_logout_with_api_token_is_400(owner, auth):
    tok = auth.make_token(owner, ["admin"])
    r = tok.post("auth/logout")
    error_of(r, 400, "VALIDATION_ERROR")
    assert tok.get("auth/me").status_code == 200


# --------------------------------------------------------------------------- password


def test_password_change(owner, auth):
    d = owner.d
    other = auth.login_principal(d, owner.email, owner.password)
    new = new_password()
    r = owner.post("auth/password", json={"current": owner.password + "x", "new": new})
    error_of(r, 400, "VALIDATION_ERROR")
    assert "current" in detail_fields(r)
    r = owner.post("auth/password", json={"current": owner.password, "new": "short"})
    error_of(r, 400, "VALIDATION_ERROR")
    assert set(detail_fields(r)) & {"new", "password"}, r.text
    r = owner.post("auth/password", json={"current": owner.password})
    error_of(r, 400, "VALIDATION_ERROR")
    assert "new" in detail_fields(r), r.text
    assert other.get("auth/me").status_code == 200  # nothing changed yet
    r = owner.post("auth/password", json={"current": owner.password, "new": new})
    assert r.status_code == 204, r.text
    assert owner.get("auth/me").status_code == 200  # the calling session stays
    wait_for(lambda: other.get("auth/me").status_code == 401, timeout=2,
             message="other session revoked")
    assert_unauthenticated(auth.login(d, owner.email, owner.password))
    assert auth.login(d, owner.email, new).status_code == 200


def test_password_change_needs_session(owner, auth):
    tok = auth.make_token(owner, ["admin"])
    r = tok.post("auth/password", json={"current": owner.password, "new": new_password()})
    error_of(r, 403, "INSUFFICIENT_ROLE")
    assert_unauthenticated(auth.call(owner.d, "POST", "auth/password",
                                     json={"current": "x" * 12, "new": "y" * 12}))


# --------------------------------------------------------------------------- cookies, CSRF


def assert_session_cookie(resp, token, secure):
    name, value, attrs = session_cookie(resp)
    assert value == token
    assert attrs.get("httponly") is True, attrs
    assert attrs.get("samesite") == "Lax", attrs
    assert attrs.get("path") == "/", attrs
    assert int(attrs.get("max-age", "0")) > 0, attrs
    if secure:
        assert attrs.get("secure") is True, attrs
    else:
        assert "secure" not in attrs, attrs
    allowed = {"path", "max-age", "httponly", "samesite", "secure", "expires"}
    assert set(attrs) <= allowed, attrs
    assert "domain" not in attrs


@pytest.mark.parametrize("env,secure", [
    ({}, False),
    ({"SLIPWAY_COOKIE_SECURE": "true"}, True),
    ({"SLIPWAY_PUBLIC_URL": "https://slipway.example.com"}, True),
    ({"SLIPWAY_PUBLIC_URL": "http://slipway.example.com"}, False),
], ids=["default", "cookie-secure", "https-public-url", "http-public-url"])
def test_cookie_flags(auth, env, secure):
    d = auth.daemon(env=dict(env, SLIPWAY_REGISTRATION="open"))
    email, password = new_email("owner"), new_password()
    r = auth.call(d, "POST", "auth/setup", json={"email": email, "password": password})
    assert r.status_code == 201, r.text
    assert_session_cookie(r, r.json()["token"], secure)
    r = auth.login(d, email, password)
    assert r.status_code == 200
    assert_session_cookie(r, r.json()["token"], secure)
    r = auth.call(d, "POST", "auth/register", json={"email": new_email(), "password": password})
    assert r.status_code == 201, r.text
    assert_session_cookie(r, r.json()["token"], secure)


def _cookie_post_tokens(auth, owner, headers):
    h = {"Cookie": f"slipway_session={owner.token}"}
    h.update(headers)
    return auth.call(owner.d, "POST", "tokens", json={"name": "csrf", "scopes": ["read"]},
                     headers=h)


def test_csrf_origin_check(owner, auth):
    d = owner.d
    r = _cookie_post_tokens(auth, owner, {"Origin": "http://evil.example"})
    err = error_of(r, 403, "INSUFFICIENT_ROLE")
    assert "origin" in err["message"].lower()
    r = _cookie_post_tokens(auth, owner, {})
    err = error_of(r, 403, "INSUFFICIENT_ROLE")
    assert "origin" in err["message"].lower()
    r = _cookie_post_tokens(auth, owner, {"Referer": "http://evil.example/x"})
    error_of(r, 403, "INSUFFICIENT_ROLE")
    # no public URL configured: Origin equal to http://<Host> passes
    assert _cookie_post_tokens(auth, owner, {"Origin": d.url}).status_code == 201
    assert _cookie_post_tokens(auth, owner, {"Referer": d.url + "/ui/tokens"}).status_code == 201
    # bearer requests are exempt
    r = owner.post("tokens", json={"name": "b", "scopes": ["read"]},
                   headers={"Origin": "http://evil.example"})
    assert r.status_code == 201, r.text
    # safe methods are exempt
    r = auth.call(d, "GET", "tokens", headers={"Cookie": f"slipway_session={owner.token}",
                                               "Origin": "http://evil.example"})
    assert r.status_code == 200, r.text
    assert len(owner.get("tokens").json()["data"]) == 3


def test_csrf_allowed_origins_and_public_url(auth):
    d = auth.daemon(env={"SLIPWAY_PUBLIC_URL": "https://paas.example.com",
                         "SLIPWAY_ALLOWED_ORIGINS": "http://a.example:8080,http://b.example"})
    owner = auth.setup_owner(d)
    for ok in ("https://paas.example.com", "http://a.example:8080", "http://b.example"):
        r = _cookie_post_tokens(auth, owner, {"Origin": ok})
        assert r.status_code == 201, (ok, r.text)
    for bad in ("http://paas.example.com", "http://a.example", "https://b.example",
                "http://b.example.evil.com", d.url, "null"):
        r = _cookie_post_tokens(auth, owner, {"Origin": bad})
        error_of(r, 403, "INSUFFICIENT_ROLE")


# --------------------------------------------------------------------------- brute force


def test_login_rate_limit_per_address(auth, redis_factory):
    d = auth.daemon(redis=redis_factory())
    owner = auth.setup_owner(d)
    for i in range(5):
        r = auth.login(d, owner.email, f"wrong-password-{i}")
        assert_unauthenticated(r)
        assert r.json()["error"]["message"] == WRONG_LOGIN_MESSAGE
    r = auth.login(d, owner.email, "wrong-password-6")
    error_of(r, 429, "RATE_LIMIT_EXCEEDED")
    retry = r.headers.get("Retry-After")
    assert retry is not None and retry.isdigit() and 1 <= int(retry) <= 60, retry
    r = auth.login(d, owner.email, owner.password)
    error_of(r, 429, "RATE_LIMIT_EXCEEDED")
    assert r.headers.get("Retry-After")
    # another address is not limited, though the account is locked: same 401 as a wrong password
    r = request_from(d, "127.0.0.2", "POST", f"{API}/auth/login",
                     {"email": new_email("ghost"), "password": "whatever-pw"})
    assert r.status_code == 401, r.text
    # sessions already issued keep working
    assert owner.get("auth/me").status_code == 200


def test_login_lock_per_account_across_addresses(auth, redis_factory):
    d = auth.daemon(redis=redis_factory())
    owner = auth.setup_owner(d)
    other = auth.make_user(owner, "member")
    for i, ip in enumerate(["127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.3", "127.0.0.2"]):
        r = request_from(d, ip, "POST", f"{API}/auth/login",
                         {"email": owner.email, "password": f"wrong-password-{i}"})
        assert r.status_code == 401, (ip, r.text)
        assert r.json()["error"]["message"] == WRONG_LOGIN_MESSAGE
    r = request_from(d, "127.0.0.9", "POST", f"{API}/auth/login",
                     {"email": owner.email, "password": owner.password})
    assert r.status_code == 401, r.text
    err = r.json()["error"]
    assert err["code"] == "AUTHENTICATION_ERROR" and err["message"] == WRONG_LOGIN_MESSAGE
    assert "token" not in r.json()
    r = auth.login(d, owner.email, owner.password)  # from 127.0.0.1 too
    assert r.status_code == 401 and r.json()["error"]["message"] == WRONG_LOGIN_MESSAGE
    # other accounts are unaffected
    assert auth.login(d, other.email, other.password).status_code == 200


def test_successful_logins_are_not_limited(owner, auth):
    for _ in range(12):
        r = auth.login(owner.d, owner.email, owner.password)
        assert r.status_code == 200, r.text


# --------------------------------------------------------------------------- revocation


def _revoked_within(principal_b, act, bound=1.0):
    """Runs act() (whose response ends the credential); polls principal_b until 401.
    Returns seconds between act's response and the first 401 on the other daemon."""
    assert principal_b.get("auth/me").status_code == 200  # cached on B
    act()
    t0 = time.monotonic()
    wait_for(lambda: principal_b.get("auth/me", timeout=2).status_code == 401, timeout=5,
             interval=0.01, message="revocation on the other daemon")
    elapsed = time.monotonic() - t0
    assert elapsed <= bound, f"revoked on the other daemon after {elapsed:.3f}s"
    return elapsed


@pytest.fixture
def pair(auth):
    a = auth.daemon()
    b = auth.daemon(database_url=a.database_url)
    owner = auth.setup_owner(a)
    return a, b, owner


def test_logout_revokes_on_other_process(auth, pair):
    a, b, owner = pair
    s = auth.login_principal(a, owner.email, owner.password)
    sb = s.on(b)
    assert sb.get("auth/me").status_code == 200

    def act():
        assert s.post("auth/logout").status_code == 204

    _revoked_within(sb, act)
    assert owner.on(b).get("auth/me").status_code == 200


def test_password_change_revokes_on_other_process(auth, pair):
    a, b, owner = pair
    s = auth.login_principal(a, owner.email, owner.password)
    new = new_password()

    def act():
        r = owner.post("auth/password", json={"current": owner.password, "new": new})
        assert r.status_code == 204, r.text

    _revoked_within(s.on(b), act)
    assert owner.on(b).get("auth/me").status_code == 200


def test_user_deletion_revokes_on_other_process(auth, pair):
    a, b, owner = pair
    admin = auth.make_user(owner, "admin")
    victim = auth.make_user(owner, "member")
    tok_b = auth.make_token(victim, ["read"]).on(b)
    assert tok_b.get("auth/me").status_code == 200

    def act():
        r = admin.delete(f"users/{victim.id}")
        assert r.status_code == 204, r.text

    _revoked_within(victim.on(b), act)
    wait_for(lambda: tok_b.get("auth/me").status_code == 401, timeout=1.0, interval=0.01,
             message="deleted user's API token refused on B")


def test_api_token_deletion_revokes_on_other_process(auth, pair):
    a, b, owner = pair
    tok = auth.make_token(owner, ["read"])
    access = auth.client_credentials(tok)

    def act():
        assert owner.delete(f"tokens/{tok.token_id}").status_code == 204

    assert access.on(b).get("auth/me").status_code == 200
    _revoked_within(tok.on(b), act)
    wait_for(lambda: access.on(b).get("auth/me").status_code == 401, timeout=1.0,
             interval=0.01, message="access token of a deleted API token refused on B")


# --------------------------------------------------------------------------- storage, audit


def _all_rows_text(conn, table):
    return [row[0] for row in conn.execute(f"SELECT t::text FROM {table} t")]  # noqa: S608


def test_storage_holds_no_secrets(owner, auth):
    d = owner.d
    s2 = auth.login_principal(d, owner.email, owner.password)
    tok = auth.make_token(owner, ["read", "write"])
    access = auth.client_credentials(tok)
    conn = auth.db(d)
    (ph,) = conn.execute("SELECT password_hash FROM users WHERE id = %s",
                         (owner.id,)).fetchone()
    assert ph.startswith("$argon2id$"), ph[:12]
    assert owner.password not in ph
    sessions = _all_rows_text(conn, "sessions")
    tokens = _all_rows_text(conn, "api_tokens")
    assert len(sessions) >= 3 and len(tokens) == 1
    for secret in (owner.token, s2.token, tok.token, access.token):
        body = secret.split("_", 1)[1]
        for row in sessions + tokens:
            assert secret not in row and body not in row
    (n,) = conn.execute("SELECT count(*) FROM sessions WHERE token_hash ~ '^[0-9a-f]{64}$'"
                        ).fetchone()
    assert n == len(sessions)
    for row in _all_rows_text(conn, "users"):
        assert owner.password not in row


def test_audit_log(owner, auth):
    d = owner.d
    conn = auth.db(d)
    assert auth.login(d, owner.email, owner.password + "!").status_code == 401
    s = auth.login_principal(d, owner.email, owner.password)
    member = auth.make_user(owner, "member")
    assert owner.patch(f"users/{member.id}", json={"name": "Renamed"}).status_code == 200
    tok = auth.make_token(owner, ["read"])
    assert owner.delete(f"tokens/{tok.token_id}").status_code == 204
    new = new_password()
    assert owner.post("auth/password", json={"current": owner.password,
                                             "new": new}).status_code == 204
    wait_for(lambda: s.get("auth/me").status_code == 401, timeout=2,
             message="other session revoked by the password change")
    s3 = auth.login_principal(d, owner.email, new)
    assert s3.post("auth/logout").status_code == 204
    assert owner.delete(f"users/{member.id}").status_code == 204

    def rows():
        return conn.execute("SELECT action, actor_id::text, actor_email, resource, resource_id,"
                            " address, t::text FROM audit_log t ORDER BY id").fetchall()

    want = {"auth.setup", "auth.login", "auth.login_failed", "auth.logout",
            "auth.password_changed", "token.created", "token.revoked", "user.created",
            "user.updated", "user.deleted"}
    got = wait_for(lambda: (lambda rs: rs if want <= {r[0] for r in rs} else None)(rows()),
                   timeout=5, message="audit rows")
    by_action = {}
    for r in got:
        by_action.setdefault(r[0], []).append(r)
    for action in ("auth.login", "auth.login_failed", "auth.logout", "auth.password_changed",
                   "token.created", "user.created"):
        assert any(r[5] == "127.0.0.1" for r in by_action[action]), (action, by_action[action])
    assert any(r[1] == owner.id for r in by_action["auth.login"])
    assert any(r[4] == member.id for r in by_action["user.deleted"])
    assert any(r[4] == tok.token_id for r in by_action["token.revoked"])
    assert any(r[2] == owner.email for r in by_action["auth.login_failed"])
    secrets = auth.secrets | {owner.password + "!"}
    for r in got:
        for s in secrets:
            assert s not in r[6], f"secret in audit row {r[0]}"


def test_no_secret_in_error_messages(owner, auth):
    pw = "Secret-Password-" + new_password()
    r = auth.call(owner.d, "POST", "users",
                  json={"email": "bad", "password": pw},
                  headers=owner.headers())
    assert r.status_code == 400
    assert pw not in r.text
    r = auth.login(owner.d, "bad", pw)
    assert pw not in r.text


def test_logs_hold_no_secret_after_a_busy_session(owner, auth):
    """Exercises every credential path, then relies on the `auth` fixture's log scan (and
    scans here too, so the failure is a test failure)."""
    d = owner.d
    s = auth.login_principal(d, owner.email, owner.password)
    auth.login(d, owner.email, owner.password + "-wrong")
    tok = auth.make_token(s, ["admin"])
    access = auth.client_credentials(tok)
    access.get("auth/me")
    tok.get("users")
    r = s.post("auth/totp/enroll")
    assert r.status_code == 200, r.text
    new = new_password()
    s.post("auth/password", json={"current": owner.password, "new": new})
    s.post("auth/logout")
    assert auth.secrets
    assert not auth.leaked_in_logs(), auth.leaked_in_logs()
