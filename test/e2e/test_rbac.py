"""The role matrix: every operation in /api/v1/openapi.json, called as every kind of
principal, refused or admitted exactly as its x-slipway-access declares. Routes added later
are covered without editing this file."""

import re
import uuid

import pytest

from conftest import API, new_password, wait_for

ROLES = {"member": 1, "admin": 2, "owner": 3}
SCOPE_IMPLIES = {"read": {"read"}, "write": {"write", "read"}, "deploy": {"deploy", "read"},
                 "admin": {"admin", "write", "deploy", "read"}}
METHODS = ("get", "put", "post", "delete", "patch", "head", "options")


def operations(doc):
    out = []
    for path, item in sorted(doc["paths"].items()):
        for method, op in sorted(item.items()):
            if method in METHODS:
                out.append((method.upper(), path, op))
    return out


def concrete(path):
    return re.sub(r"\{[^}/]+\}", lambda _m: str(uuid.uuid4()), path)


def expected(access, who):
    """None when the request must be admitted, else (status, what the message names)."""
    if access["auth"] == "public":
        return None
    if who["kind"] == "anonymous":
        return (401, None)
    if access["auth"] == "session" and who["kind"] in ("token", "access"):
        return (403, None)
    if access["role"] and ROLES[who["role"]] < ROLES[access["role"]]:
        return (403, access["role"])
    if access["scope"] and who["kind"] in ("token", "access"):
        have = set().union(*(SCOPE_IMPLIES[s] for s in who["scopes"]))
        if access["scope"] not in have:
            return (403, access["scope"])
    return None


class Cast:
    """The principals of the matrix, re-created whenever a call ended one (auth/logout)."""

    def __init__(self, auth, d):
        self.auth = auth
        self.d = d
        self.owner = auth.setup_owner(d)
        self.passwords = {"owner": self.owner.password}
        self.emails = {"owner": self.owner.email}
        self.p = {"owner": self.owner}
        for role in ("admin", "member"):
            pw = new_password()
            u = auth.make_user(self.owner, role, password=pw)
            self.p[role] = u
            self.passwords[role], self.emails[role] = pw, u.email
        for scope in SCOPE_IMPLIES:
            self.p[f"token:{scope}"] = self._token(scope)
        self.p["access:read"] = auth.client_credentials(self._token("read"))
        self.p["access:admin"] = auth.client_credentials(self._token("admin"))

    def _token(self, scope):
        return self.auth.make_token(self._alive("owner"), [scope])

    def _alive(self, name):
        p = self.p[name]
        if p.get("auth/me").status_code != 200:
            p = self.auth.login_principal(self.d, self.emails[name], self.passwords[name])
            self.p[name] = p
        return p

    def who(self, name):
        if name == "anonymous":
            return {"kind": "anonymous"}
        p = self.p[name]
        role = p.user["role"] if p.kind == "session" else "owner"
        return {"kind": p.kind, "role": role, "scopes": p.scopes or []}

    def restore(self):
        """Re-creates any principal whose credentials no longer work."""
        for name in list(self.p):
            p = self.p[name]
            if p.get("auth/me").status_code == 200:
                continue
            if p.kind == "session":
                self._alive(name)
            elif p.kind == "token":
                self.p[name] = self._token(name.split(":")[1])
            else:
                self.p[name] = self.auth.client_credentials(self._token(name.split(":")[1]))


PRINCIPALS = ["anonymous", "member", "admin", "owner", "token:read", "token:write",
              "token:deploy", "token:admin", "access:read", "access:admin"]


@pytest.fixture
def matrix_daemon(auth):
    return auth.daemon(env={"SLIPWAY_RATE_LIMIT": "off", "SLIPWAY_REGISTRATION": "open"})


def test_every_operation_declares_access(auth, matrix_daemon):
    doc = auth.call(matrix_daemon, "GET", "/api/v1/openapi.json").json()
    ops = operations(doc)
    assert len(ops) >= 20, "the identity routes are missing from openapi.json"
    for method, path, op in ops:
        acc = op.get("x-slipway-access")
        assert isinstance(acc, dict), f"{method} {path} has no x-slipway-access"
        assert acc.get("auth") in ("public", "user", "session"), (method, path, acc)
        assert acc.get("role") in (None, "member", "admin", "owner"), (method, path, acc)
        assert acc.get("scope") in (None, "read", "write", "deploy", "admin"), (method, path, acc)
        assert acc.get("project_role") in (None, "viewer", "developer", "admin"), (method, path,
                                                                                   acc)
        if acc["auth"] == "public":
            assert op.get("security") == [], f"{method} {path}: public but has security"
    paths = {(m, p) for m, p, _ in ops}
    for want in [("GET", f"{API}/auth/state"), ("POST", f"{API}/auth/login"),
                 ("GET", f"{API}/auth/me"), ("POST", f"{API}/tokens"),
                 ("DELETE", f"{API}/tokens/{{id}}"), ("PATCH", f"{API}/users/{{id}}")]:
        assert want in paths, want
    access = {(m, p): op["x-slipway-access"] for m, p, op in ops}
    assert access[("GET", f"{API}/auth/state")]["auth"] == "public"
    assert access[("POST", f"{API}/tokens")]["auth"] == "session"
    assert access[("GET", f"{API}/users")] == {"auth": "user", "role": "admin", "scope": "admin",
                                               "project_role": None}
    assert access[("GET", f"{API}/auth/me")]["scope"] == "read"


def test_role_matrix(auth, matrix_daemon):
    d = matrix_daemon
    doc = auth.call(d, "GET", "/api/v1/openapi.json").json()
    cast = Cast(auth, d)
    failures = []
    calls = 0
    for method, path, op in operations(doc):
        access = op.get("x-slipway-access")
        if not isinstance(access, dict):
            failures.append(f"{method} {path}: no x-slipway-access")
            continue
        for name in PRINCIPALS:
            url = concrete(path)
            kw = {"timeout": 15}
            live = "101" in op.get("responses", {})
            if live:
                kw["stream"] = True  # an admitted watcher's stream never ends by itself
            if method not in ("GET", "HEAD", "OPTIONS"):
                kw["json"] = {}
            if name != "anonymous":
                kw["headers"] = cast.p[name].headers()
            r = auth.call(d, method, url, **kw)
            calls += 1
            want = expected(access, cast.who(name))
            got = r.status_code
            label = f"{method} {path} as {name} ({access})"
            if path.startswith(f"{API}/hooks/"):
                # Public, and authenticated by the delivery's signature, whoever calls:
                # no signature is 401 for every principal (test_hooks.py covers the rest).
                if got != 401:
                    failures.append(f"{label}: unsigned delivery got {got}, want 401")
                continue
            if want is None:
                if got in (401, 403):
                    failures.append(f"{label}: want admitted, got {got} {r.text[:160]}")
                if live:
                    r.close()
            else:
                status, names = want
                if got != status:
                    failures.append(f"{label}: want {status}, got {got} {r.text[:160]}")
                else:
                    err = r.json().get("error", {})
                    code = "AUTHENTICATION_ERROR" if status == 401 else "INSUFFICIENT_ROLE"
                    if err.get("code") != code:
                        failures.append(f"{label}: want code {code}, got {err.get('code')}")
                    if names and names not in err.get("message", ""):
                        failures.append(f"{label}: message {err.get('message')!r} does not "
                                        f"name {names!r}")
                    if status == 401 and not r.headers.get("WWW-Authenticate"):
                        failures.append(f"{label}: 401 without WWW-Authenticate")
            if method not in ("GET", "HEAD", "OPTIONS"):
                cast.restore()
    assert calls >= 20 * len(PRINCIPALS)
    assert not failures, f"{len(failures)} of {calls} calls wrong:\n" + "\n".join(failures)


def test_token_never_exceeds_current_role(auth, matrix_daemon):
    d = matrix_daemon
    owner = auth.setup_owner(d)
    admin = auth.make_user(owner, "admin")
    tok = auth.make_token(admin, ["admin"])
    assert tok.get("users").status_code == 200
    r = owner.patch(f"users/{admin.id}", json={"role": "member"})
    assert r.status_code == 200, r.text
    wait_for(lambda: tok.get("users").status_code == 403, timeout=2,
             message="demoted user's admin token refused on GET users")
    err = tok.get("users").json()["error"]
    assert err["code"] == "INSUFFICIENT_ROLE" and "admin" in err["message"]
    assert admin.get("users").status_code == 403
    assert tok.get("auth/me").status_code == 200
