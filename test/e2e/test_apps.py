"""Apps: create, read, update, delete, validation and filters (issue 4, DESIGN.md §5)."""

import uuid

import pytest

from resources_kit import *  # noqa: F401,F403 - fixtures and helpers

APP_KEYS = {"id", "name", "project_id", "environment_id", "repo_url", "branch", "build_command",
            "start_command", "dockerfile_path", "runtime", "port", "health_check_path",
            "replicas", "resources", "auto_deploy", "status", "endpoints",
            "active_deployment_id", "created_at", "updated_at"}


@pytest.fixture
def env(res, root):
    p = res.project(root)
    return res.production(root, p["id"])


def test_create_defaults(res, root, env):
    r = root.post("apps", json={"name": "web", "environment_id": env["id"]})
    assert r.status_code == 201, r.text
    a = r.json()
    assert set(a) >= APP_KEYS, APP_KEYS - set(a)
    uuid.UUID(a["id"])
    assert a["name"] == "web" and a["environment_id"] == env["id"]
    assert a["project_id"] == env["project_id"]
    assert a["branch"] == "main" and a["runtime"] == "process" and a["port"] == 3000
    assert a["health_check_path"] == "/" and a["replicas"] == 1 and a["auto_deploy"] is False
    assert a["status"] == "idle" and a["endpoints"] == [] and a["active_deployment_id"] is None
    assert isinstance(a["resources"], dict)
    got = root.get(f"apps/{a['id']}")
    assert got.status_code == 200, got.text
    assert got.json() == a


def test_create_all_fields(res, root, env):
    body = {"name": "api", "environment_id": env["id"], "project_id": env["project_id"],
            "repo_url": "https://git.example.com/team/api.git", "branch": "release/v1.2",
            "build_command": "make", "start_command": "./api --port $PORT",
            "dockerfile_path": "deploy/Dockerfile", "runtime": "container", "port": 8080,
            "health_check_path": "/healthz", "replicas": 3,
            "resources": {"cpu": "500m", "memory": "512Mi"}, "auto_deploy": True}
    r = root.post("apps", json=body)
    assert r.status_code == 201, r.text
    a = r.json()
    for k, v in body.items():
        assert a[k] == v, (k, a[k], v)
    assert root.get(f"apps/{a['id']}").json() == a


REPOS_OK = ["https://github.com/a/b", "https://host/x.git", "ssh://git@host:22/a/b.git",
            "git@github.com:a/b.git", "gitlab.deploy@git.example.com:team/app.git",
            "root@127.0.0.1:/srv/git/app.git"]


def test_repo_url_accepted(root, env):
    for i, repo in enumerate(REPOS_OK):
        r = root.post("apps", json={"name": f"r{i}", "environment_id": env["id"],
                                    "repo_url": repo})
        assert r.status_code == 201, f"{repo}: {r.status_code} {r.text}"
        assert r.json()["repo_url"] == repo


INVALID = [
    ("name", ""), ("name", "Web"), ("name", "-web"), ("name", "web-"), ("name", "w_b"),
    ("name", "a" * 64), ("name", "web.app"), ("name", 5), ("name", None),
    ("repo_url", "http://host/a"), ("repo_url", "ftp://host/a"), ("repo_url", "host/a"),
    ("repo_url", "file:///srv/git/a"), ("repo_url", "https://"), ("repo_url", 7),
    ("repo_url", "-oProxyCommand=x@host:a"), ("repo_url", "@host:a"), ("repo_url", "u@host:"),
    ("repo_url", "u@-host:a"), ("repo_url", "u$x@host:a"), ("repo_url", "u@host/a"),
    ("repo_url", "a/b@host:c"), ("repo_url", "u@[::1]:repo"), ("repo_url", "u@h]:repo"),
    ("branch", "a..b"), ("branch", "has space"), ("branch", "-x"), ("branch", "/x"),
    ("branch", "x/"), ("branch", "x.lock"), ("branch", "a~1"), ("branch", "a^"),
    ("branch", "a:b"), ("branch", "a?"), ("branch", "a*"), ("branch", "a[b"),
    ("branch", "a\\b"), ("branch", "a\tb"), ("branch", "b" * 256), ("branch", ""),
    ("runtime", "vm"), ("runtime", ""), ("port", 0), ("port", 65536), ("port", -1),
    ("port", "80"), ("port", 80.5), ("health_check_path", "health"), ("health_check_path", ""),
    ("replicas", 0), ("replicas", 11), ("replicas", "2"),
    ("resources", {"cpu": "abc"}), ("resources", {"cpu": "-1"}), ("resources", {"memory": "12XB"}),
    ("resources", {"memory": "lots"}), ("resources", {"gpu": "1"}), ("resources", "big"),
    ("auto_deploy", "yes"), ("auto_deploy", 1), ("build_command", 5),
]


def test_create_validation(res, root, env):
    failures = []
    for field, value in INVALID:
        r = root.post("apps", json={"name": "web", "environment_id": env["id"], field: value})
        if r.status_code != 400:
            failures.append(f"{field}={value!r}: want 400, got {r.status_code} {r.text[:120]}")
            continue
        err = r.json()["error"]
        fields = [d.get("field") or "" for d in err.get("details") or []]
        if err.get("code") != "VALIDATION_ERROR" or \
                not any(f == field or f.startswith(field + ".") for f in fields):
            failures.append(f"{field}={value!r}: code {err.get('code')}, details {fields}")
    assert not failures, f"{len(failures)} of {len(INVALID)} wrong:\n" + "\n".join(failures)
    assert listing(root, "apps")["pagination"]["total"] == 0


def test_create_required_and_unknown_fields(res, root, env):
    assert_invalid(root.post("apps", json={"environment_id": env["id"]}), "name")
    assert_invalid(root.post("apps", json={"name": "web"}), "environment_id")
    assert_invalid(root.post("apps", json={"name": "web", "environment_id": "nope"}),
                   "environment_id")
    r = root.post("apps", json={"name": "web", "environment_id": env["id"], "colour": "red"})
    err = error_of(r, 400, "VALIDATION_ERROR")
    assert "colour" in r.text, err
    error_of(root.post("apps", json={"name": "web", "environment_id": str(uuid.uuid4())}), 404,
             "RESOURCE_NOT_FOUND")
    error_of(root.post("apps", json=["web"]), 400, "VALIDATION_ERROR")
    assert listing(root, "apps")["pagination"]["total"] == 0


def test_project_id_must_match_environment(res, root, env):
    other = res.project(root)
    assert_invalid(root.post("apps", json={"name": "web", "environment_id": env["id"],
                                           "project_id": other["id"]}), "project_id")
    assert_invalid(root.post("apps", json={"name": "web", "environment_id": env["id"],
                                           "project_id": str(uuid.uuid4())}), "project_id")
    assert listing(root, "apps")["pagination"]["total"] == 0


def test_limits_accepted_at_the_edges(root, env):
    for i, (field, value) in enumerate([("port", 1), ("port", 65535), ("replicas", 10),
                                        ("name", "a" * 63), ("name", "0"),
                                        ("branch", "b" * 255), ("resources", {"cpu": "2"}),
                                        ("resources", {"cpu": "0.5", "memory": "1Gi"}),
                                        ("resources", {"memory": "100M"})]):
        body = {"name": f"edge{i}", "environment_id": env["id"], field: value}
        r = root.post("apps", json=body)
        assert r.status_code == 201, f"{field}={value!r}: {r.status_code} {r.text}"
        got = r.json()[field]
        if isinstance(value, dict):
            got = {k: got.get(k) for k in value}
        assert got == value, (field, got, value)


def test_name_unique_per_environment(res, root, env):
    res.app(root, env["id"], "web")
    error_of(root.post("apps", json={"name": "web", "environment_id": env["id"]}), 409,
             "RESOURCE_CONFLICT")
    staging = res.environment(root, env["project_id"], "staging")
    res.app(root, staging["id"], "web")
    assert listing(root, "apps")["pagination"]["total"] == 2


def test_patch_app(res, root, env):
    a = res.app(root, env["id"], "web")
    changes = {"repo_url": "git@host:x/y.git", "branch": "dev", "port": 9000, "replicas": 2,
               "runtime": "container", "health_check_path": "/up", "auto_deploy": True,
               "resources": {"cpu": "250m", "memory": "256Mi"}, "start_command": "run",
               "build_command": "build", "dockerfile_path": "Dockerfile"}
    r = root.patch(f"apps/{a['id']}", json=changes)
    assert r.status_code == 200, r.text
    b = r.json()
    for k, v in changes.items():
        assert b[k] == v, (k, b[k])
    assert b["name"] == "web" and b["id"] == a["id"] and b["updated_at"] >= a["updated_at"]
    r = root.patch(f"apps/{a['id']}", json={"name": "web2"})
    assert r.status_code == 200 and r.json()["name"] == "web2" and r.json()["port"] == 9000
    assert root.get(f"apps/{a['id']}").json() == r.json()


def test_patch_validation(res, root, env):
    a = res.app(root, env["id"], "web")
    res.app(root, env["id"], "taken")
    other_env = res.environment(root, env["project_id"], "staging")
    assert_invalid(root.patch(f"apps/{a['id']}", json={"environment_id": other_env["id"]}),
                   "environment_id")
    assert_invalid(root.patch(f"apps/{a['id']}", json={"project_id": env["project_id"]}),
                   "project_id")
    for field, value in [("name", "Bad"), ("port", 0), ("replicas", 11), ("branch", "a..b"),
                         ("repo_url", "http://x/y"), ("runtime", "vm"),
                         ("health_check_path", "x"), ("resources", {"memory": "1 GB"})]:
        err = error_of(root.patch(f"apps/{a['id']}", json={field: value}), 400,
                       "VALIDATION_ERROR")
        fields = [d.get("field") or "" for d in err.get("details") or []]
        assert any(f == field or f.startswith(field + ".") for f in fields), (field, fields)
    error_of(root.patch(f"apps/{a['id']}", json={"name": "taken"}), 409, "RESOURCE_CONFLICT")
    error_of(root.patch(f"apps/{a['id']}", json={"bogus": 1}), 400, "VALIDATION_ERROR")
    assert root.get(f"apps/{a['id']}").json() == a


def test_delete_app(res, root, env):
    a = res.app(root, env["id"], "web")
    res.set_env(root, a["id"], "K")
    dom = res.domain(root, a["id"])
    r = root.delete(f"apps/{a['id']}")
    assert r.status_code == 204 and r.content == b"", r.text
    for path in (f"apps/{a['id']}", f"apps/{a['id']}/env", f"apps/{a['id']}/domains"):
        error_of(root.get(path), 404, "RESOURCE_NOT_FOUND")
    error_of(root.delete(f"apps/{a['id']}"), 404, "RESOURCE_NOT_FOUND")
    error_of(root.delete(f"domains/{dom['id']}"), 404, "RESOURCE_NOT_FOUND")
    conn = res.db
    assert conn.execute("SELECT count(*) FROM app_env WHERE app_id = %s",
                        (a["id"],)).fetchone()[0] == 0
    assert conn.execute("SELECT count(*) FROM domains WHERE app_id = %s",
                        (a["id"],)).fetchone()[0] == 0
    # name and hostname are free again
    b = res.app(root, env["id"], "web")
    res.domain(root, b["id"], dom["hostname"])


def test_unknown_and_malformed_app_ids(root):
    for aid in (str(uuid.uuid4()), "x", "00000000-0000-0000-0000-00000000000g"):
        error_of(root.get(f"apps/{aid}"), 404, "RESOURCE_NOT_FOUND")
        error_of(root.patch(f"apps/{aid}", json={"port": 80}), 404, "RESOURCE_NOT_FOUND")
        error_of(root.delete(f"apps/{aid}"), 404, "RESOURCE_NOT_FOUND")


def test_list_filters(res, root):
    p1, p2 = res.project(root), res.project(root)
    e1 = res.production(root, p1["id"])
    e1b = res.environment(root, p1["id"], "staging")
    e2 = res.production(root, p2["id"])
    a1 = res.app(root, e1["id"], "one")
    a2 = res.app(root, e1b["id"], "two")
    a3 = res.app(root, e2["id"], "three")
    ids = lambda **q: sorted(a["id"] for a in listing(root, "apps", **q)["data"])  # noqa: E731
    assert ids() == sorted([a1["id"], a2["id"], a3["id"]])
    assert ids(project_id=p1["id"]) == sorted([a1["id"], a2["id"]])
    assert ids(project_id=p2["id"]) == [a3["id"]]
    assert ids(environment_id=e1b["id"]) == [a2["id"]]
    assert ids(project_id=p2["id"], environment_id=e1["id"]) == []
    assert ids(status="idle") == sorted([a1["id"], a2["id"], a3["id"]])
    for st in ("running", "deploying", "stopped", "crashed"):
        assert ids(status=st) == []
    assert ids(project_id=str(uuid.uuid4())) == []
    assert_invalid(root.get("apps", params={"status": "sleeping"}), "status")
    assert_invalid(root.get("apps", params={"project_id": "nope"}), "project_id")
    assert_invalid(root.get("apps", params={"environment_id": "nope"}), "environment_id")
    body = listing(root, "apps", project_id=p1["id"])
    assert body["pagination"]["total"] == 2


def test_max_replicas_configurable(auth):
    d = auth.daemon(env={"SLIPWAY_RATE_LIMIT": "off", "SLIPWAY_MAX_REPLICAS": "3"})
    o = auth.setup_owner(d)
    r = o.post("projects", json={"name": "p"})
    assert r.status_code == 201, r.text
    env = o.get(f"projects/{r.json()['id']}/environments").json()["data"][0]
    assert o.post("apps", json={"name": "a", "environment_id": env["id"], "replicas": 3}) \
        .status_code == 201
    assert_invalid(o.post("apps", json={"name": "b", "environment_id": env["id"],
                                        "replicas": 4}), "replicas")


def test_file_repos_when_allowed(auth):
    d = auth.daemon(env={"SLIPWAY_RATE_LIMIT": "off", "SLIPWAY_ALLOW_FILE_REPOS": "true"})
    o = auth.setup_owner(d)
    r = o.post("projects", json={"name": "p"})
    env = o.get(f"projects/{r.json()['id']}/environments").json()["data"][0]
    r = o.post("apps", json={"name": "a", "environment_id": env["id"],
                             "repo_url": "file:///srv/git/a.git"})
    assert r.status_code == 201, r.text
    assert r.json()["repo_url"] == "file:///srv/git/a.git"
    assert_invalid(o.post("apps", json={"name": "b", "environment_id": env["id"],
                                        "repo_url": "file:relative"}), "repo_url")
