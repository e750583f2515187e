"""Helpers and fixtures for the resources e2e tests (issue 4: projects, members,
environments, apps, env vars, domains, audit, lists, rate limits, OpenAPI).

Import everything into a test module with `from resources_kit import *`; that brings the
fixtures below into the module:

  rdaemon      a daemon with SLIPWAY_RATE_LIMIT=off (lists create hundreds of rows)
  root         its owner (a conftest Principal)
  res          Res: create projects, environments, apps, env vars, domains, members
  response_log module-scoped, autouse: records every response any `requests` call of the
               module receives (RECORDS) and, at the end of the module, fails if a value the
               module stored as an env var (SECRET_VALUES) appears in any of them

Helpers: snapshot(conn) (every resource row, for "changed nothing" checks), audit_rows,
assert_invalid (400 VALIDATION_ERROR naming a field), listing (GET a list and check its
envelope), OpenAPI lookups (match_route, response_schema) and RESOURCE_ROUTES, the routes
the issue 4 contract promises.
"""

import json
import re
import secrets
import threading
import urllib.parse
import uuid

import pytest
import requests

from conftest import API, detail_fields, error_of, new_email, new_password, wait_for

__all__ = [
    "API", "RECORDS", "SECRET_VALUES", "RESOURCE_ROUTES", "IDENTITY_ROUTES", "Record", "Res",
    "assert_invalid", "audit_rows", "detail_fields", "error_of", "listing", "leaks",
    "match_route", "new_email", "new_password", "secret_value", "snapshot", "wait_for",
    "response_schema", "response_log", "rdaemon", "root", "res", "hostname", "uid",
    "last_audit_id",
]

# --------------------------------------------------------------------------- capture

RECORDS = []  # every response seen while a resources module ran, in order
SECRET_VALUES = set()  # every env var value any resources test stored
_lock = threading.Lock()
_original_request = requests.Session.request
_installed = [0]


class Record:
    __slots__ = ("method", "path", "query", "status", "content_type", "body", "module")

    def __init__(self, method, path, query, status, content_type, body, module):
        self.method = method
        self.path = path
        self.query = query
        self.status = status
        self.content_type = content_type
        self.body = body
        self.module = module

    def json(self):
        return json.loads(self.body)

    def __repr__(self):
        return f"<{self.method} {self.path} -> {self.status} ({self.module})>"


_current_module = ["?"]


def _recording_request(self, method, url, *args, **kwargs):
    resp = _original_request(self, method, url, *args, **kwargs)
    if kwargs.get("stream"):
        # A live stream is the caller's to read at its own pace (reading it here would wait
        # for its end); the tests that stream check what they read themselves.
        return resp
    parts = urllib.parse.urlsplit(resp.url or url)
    rec = Record(method.upper(), parts.path, parts.query, resp.status_code,
                 resp.headers.get("Content-Type", ""), resp.content, _current_module[0])
    with _lock:
        RECORDS.append(rec)
    return resp


def _install():
    if _installed[0] == 0:
        requests.Session.request = _recording_request
    _installed[0] += 1


def _uninstall():
    _installed[0] -= 1
    if _installed[0] == 0:
        requests.Session.request = _original_request


def secret_value(tag="v"):
    """A fresh, distinctive env var value; remembered so no response may ever contain it."""
    v = f"sv-{tag}-{secrets.token_hex(12)}"
    SECRET_VALUES.add(v)
    return v


def _forms(value):
    """The byte strings a value would show up as in a body: raw and JSON-escaped."""
    raw = value.encode()
    ascii_escaped = json.dumps(value)[1:-1].encode()
    utf8_escaped = json.dumps(value, ensure_ascii=False)[1:-1].encode()
    return {raw, ascii_escaped, utf8_escaped}


def leaks(records, values):
    """[(record, value prefix)] for every record whose body holds one of values."""
    out = []
    forms = [(v, _forms(v)) for v in values if len(v) >= 6]
    for rec in records:
        for v, fs in forms:
            if any(f in rec.body for f in fs):
                out.append((rec, v[:10] + "..."))
    return out


@pytest.fixture(scope="module", autouse=True)
def response_log(request):
    """Records every response of the module; fails the module's last test if any body holds
    an env var value the suite stored."""
    start = len(RECORDS)
    _current_module[0] = request.module.__name__
    _install()
    yield RECORDS
    _uninstall()
    mine = RECORDS[start:]
    found = leaks(mine, set(SECRET_VALUES))
    assert not found, f"env var values found in response bodies: {found[:10]}"


# --------------------------------------------------------------------------- fixtures


@pytest.fixture
def rdaemon(auth):
    return auth.daemon(env={"SLIPWAY_RATE_LIMIT": "off"})


@pytest.fixture
def root(auth, rdaemon):
    return auth.setup_owner(rdaemon)


@pytest.fixture
def res(auth, rdaemon):
    return Res(auth, rdaemon)


def uid(tag="x"):
    return f"{tag}-{uuid.uuid4().hex[:8]}"


def hostname(tag="app"):
    return f"{tag}-{uuid.uuid4().hex[:8]}.example.com"


class Res:
    """Builders that assert the happy path, so tests read as what they check."""

    def __init__(self, auth, d):
        self.auth = auth
        self.d = d
        self._db = None

    @property
    def db(self):
        if self._db is None:
            self._db = self.auth.db(self.d)
        return self._db

    def user(self, by, role="member"):
        return self.auth.make_user(by, role)

    def project(self, who, name=None, description=None):
        body = {"name": name or uid("proj")}
        if description is not None:
            body["description"] = description
        r = who.post("projects", json=body)
        assert r.status_code == 201, f"POST projects: {r.status_code} {r.text}"
        return r.json()

    def environments(self, who, pid):
        r = who.get(f"projects/{pid}/environments", params={"limit": 100})
        assert r.status_code == 200, r.text
        return r.json()["data"]

    def production(self, who, pid):
        [env] = [e for e in self.environments(who, pid) if e["name"] == "production"]
        return env

    def environment(self, who, pid, name=None):
        r = who.post(f"projects/{pid}/environments", json={"name": name or uid("env")})
        assert r.status_code == 201, f"POST environments: {r.status_code} {r.text}"
        return r.json()

    def app(self, who, env_id, name=None, **fields):
        body = {"name": name or uid("app"), "environment_id": env_id}
        body.update(fields)
        r = who.post("apps", json=body)
        assert r.status_code == 201, f"POST apps: {r.status_code} {r.text}"
        return r.json()

    def set_env(self, who, app_id, key, value=None, **flags):
        value = value if value is not None else secret_value(key)
        SECRET_VALUES.add(value)
        self.auth.remember(value)
        body = {"value": value}
        body.update(flags)
        r = who.call("PUT", f"apps/{app_id}/env/{key}", json=body)
        assert r.status_code == 200, f"PUT env/{key}: {r.status_code} {r.text}"
        return value, r.json()

    def bulk_env(self, who, app_id, pairs):
        for v in pairs.values():
            SECRET_VALUES.add(v)
            self.auth.remember(v)
        r = who.call("PUT", f"apps/{app_id}/env", json={"vars": pairs})
        assert r.status_code == 200, f"PUT env: {r.status_code} {r.text}"
        return r.json()

    def domain(self, who, app_id, host=None):
        r = who.post(f"apps/{app_id}/domains", json={"hostname": host or hostname()})
        assert r.status_code == 201, f"POST domains: {r.status_code} {r.text}"
        return r.json()

    def member(self, who, pid, user, role):
        r = who.call("PUT", f"projects/{pid}/members/{user.id}", json={"role": role})
        assert r.status_code == 200, f"PUT member {role}: {r.status_code} {r.text}"
        return r.json()

    def world(self, who):
        """A project with its production environment, one app, two env vars and a domain."""
        p = self.project(who)
        env = self.production(who, p["id"])
        app = self.app(who, env["id"])
        v1, _ = self.set_env(who, app["id"], "DATABASE_URL")
        v2, _ = self.set_env(who, app["id"], "API_KEY", build_time=True)
        dom = self.domain(who, app["id"])
        return {"project": p, "env": env, "app": app, "values": [v1, v2], "domain": dom}


# --------------------------------------------------------------------------- checks


RESOURCE_TABLES = ("projects", "project_members", "environments", "apps", "app_env", "domains",
                   "audit_log")


def snapshot(conn, tables=RESOURCE_TABLES):
    """{table: sorted row texts}: compare two snapshots to prove nothing changed."""
    out = {}
    for t in tables:
        rows = conn.execute(f"SELECT row_to_json(t)::text FROM {t} t").fetchall()  # noqa: S608
        out[t] = sorted(r[0] for r in rows)
    return out


def last_audit_id(conn):
    return conn.execute("SELECT coalesce(max(id), 0) FROM audit_log").fetchone()[0]


def audit_rows(conn, after=0):
    rows = conn.execute(
        "SELECT id, actor_id::text, action, resource, resource_id, project_id::text, address,"
        " details FROM audit_log WHERE id > %s ORDER BY id", (after,)).fetchall()
    keys = ("id", "actor_id", "action", "resource", "resource_id", "project_id", "address",
            "details")
    return [dict(zip(keys, r)) for r in rows]


def assert_invalid(resp, field, status=400):
    """resp is a VALIDATION_ERROR naming field in its details."""
    err = error_of(resp, status, "VALIDATION_ERROR")
    fields = [d.get("field") for d in err.get("details") or []]
    assert field in fields, f"want details field {field!r}, got {fields}: {resp.text}"
    return err


def listing(who, path, expect=200, **params):
    """GETs a list endpoint (params are query parameters) and checks the envelope; returns
    the body."""
    r = who.get(path, params=params)
    assert r.status_code == expect, f"GET {path} {params}: {r.status_code} {r.text}"
    body = r.json()
    if expect != 200:
        return body
    assert set(body) >= {"data", "pagination"}, body
    pg = body["pagination"]
    assert set(pg) >= {"page", "limit", "total", "pages", "has_next", "has_prev"}, pg
    assert isinstance(body["data"], list)
    assert len(body["data"]) <= pg["limit"]
    return body


# --------------------------------------------------------------------------- OpenAPI

# The routes of the issue 4 contract, as OpenAPI path templates.
RESOURCE_ROUTES = [
    ("GET", "/api/v1/projects"), ("POST", "/api/v1/projects"),
    ("GET", "/api/v1/projects/{id}"), ("PATCH", "/api/v1/projects/{id}"),
    ("DELETE", "/api/v1/projects/{id}"),
    ("GET", "/api/v1/projects/{id}/members"),
    ("PUT", "/api/v1/projects/{id}/members/{user_id}"),
    ("DELETE", "/api/v1/projects/{id}/members/{user_id}"),
    ("GET", "/api/v1/projects/{id}/environments"), ("POST", "/api/v1/projects/{id}/environments"),
    ("GET", "/api/v1/environments/{id}"), ("PATCH", "/api/v1/environments/{id}"),
    ("DELETE", "/api/v1/environments/{id}"),
    ("GET", "/api/v1/apps"), ("POST", "/api/v1/apps"),
    ("GET", "/api/v1/apps/{id}"), ("PATCH", "/api/v1/apps/{id}"), ("DELETE", "/api/v1/apps/{id}"),
    ("GET", "/api/v1/apps/{id}/env"), ("PUT", "/api/v1/apps/{id}/env"),
    ("PUT", "/api/v1/apps/{id}/env/{key}"), ("DELETE", "/api/v1/apps/{id}/env/{key}"),
    ("GET", "/api/v1/apps/{id}/domains"), ("POST", "/api/v1/apps/{id}/domains"),
    ("GET", "/api/v1/domains"), ("DELETE", "/api/v1/domains/{id}"),
    ("GET", "/api/v1/audit"),
]

IDENTITY_ROUTES = [
    ("GET", "/api/v1/openapi.json"), ("GET", "/api/v1/auth/state"),
    ("POST", "/api/v1/auth/setup"), ("POST", "/api/v1/auth/register"),
    ("POST", "/api/v1/auth/login"), ("POST", "/api/v1/auth/logout"),
    ("GET", "/api/v1/auth/me"), ("POST", "/api/v1/auth/password"),
    ("POST", "/api/v1/auth/token"), ("POST", "/api/v1/auth/totp/enroll"),
    ("POST", "/api/v1/auth/totp/confirm"), ("DELETE", "/api/v1/auth/totp"),
    ("GET", "/api/v1/tokens"), ("POST", "/api/v1/tokens"), ("DELETE", "/api/v1/tokens/{id}"),
    ("GET", "/api/v1/users"), ("POST", "/api/v1/users"), ("GET", "/api/v1/users/{id}"),
    ("PATCH", "/api/v1/users/{id}"), ("DELETE", "/api/v1/users/{id}"),
]


def _template_regex(template):
    parts = re.split(r"(\{[^}/]+\})", template)
    rx = "".join("[^/]+" if p.startswith("{") else re.escape(p) for p in parts)
    return re.compile(f"^{rx}$")


def match_route(doc, method, path):
    """(template, operation) of doc for a concrete method and path, or (None, None). Literal
    templates win over templated ones, as a router would have it."""
    best = None
    for template, item in doc.get("paths", {}).items():
        op = item.get(method.lower()) if isinstance(item, dict) else None
        if op is None or not _template_regex(template).match(path):
            continue
        literal = template.count("{") == 0
        if best is None or (literal and best[0].count("{") > 0):
            best = (template, op)
    return best or (None, None)


def response_schema(op, status):
    """The JSON schema of op's response for status (exact code, then 2XX, then default), or
    (None, reason)."""
    responses = op.get("responses", {})
    resp = responses.get(str(status)) or responses.get(f"{str(status)[0]}XX")
    if resp is None:
        return None, f"status {status} not documented"
    content = resp.get("content") or {}
    media = content.get("application/json")
    if media is None:
        return None, "no application/json content"
    return media.get("schema"), None
