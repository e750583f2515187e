"""The https git token (issue 5 item 3): write-only on POST/PATCH apps, sealed at rest with
the app id as associated data, shown only as has_git_token, handed to the fetch for https
repositories. There is no https git server here: test/unit/deploy/git.c checks that libgit2
sends the token when a server asks; these tests check the API, the storage and the worker's
use of it."""

import secrets

from deploy_kit import *  # noqa: F401,F403 - fixtures and helpers


def new_token(auth):
    value = "ghp_" + secrets.token_hex(16)
    SECRET_VALUES.add(value)
    auth.remember(value)
    return value


def sealed_of(res, app_id):
    return res.db.execute("SELECT git_token_sealed FROM apps WHERE id = %s",
                          (app_id,)).fetchone()[0]


def test_token_is_write_only_and_sealed(auth, droot, dres):
    token = new_token(auth)
    p = dres.project(droot)
    env = dres.production(droot, p["id"])
    app = dres.app(droot, env["id"], repo_url="https://git.example.com/org/private.git",
                   git_token=token)
    assert app["has_git_token"] is True and "git_token" not in app, app
    sealed = sealed_of(dres, app["id"])
    assert sealed.startswith("v1.") and token not in sealed, sealed

    got = droot.get(f"apps/{app['id']}").json()
    assert got["has_git_token"] is True and "git_token" not in got
    listed = droot.get("apps", params={"project_id": p["id"]}).json()["data"]
    assert [a["has_git_token"] for a in listed] == [True]

    # A new token: new ciphertext; other fields leave it alone.
    other = new_token(auth)
    r = droot.patch(f"apps/{app['id']}", json={"git_token": other})
    assert r.status_code == 200 and r.json()["has_git_token"] is True, r.text
    resealed = sealed_of(dres, app["id"])
    assert resealed != sealed and other not in resealed
    r = droot.patch(f"apps/{app['id']}", json={"branch": "dev"})
    assert r.status_code == 200 and r.json()["has_git_token"] is True
    assert sealed_of(dres, app["id"]) == resealed

    # null clears it.
    r = droot.patch(f"apps/{app['id']}", json={"git_token": None})
    assert r.status_code == 200 and r.json()["has_git_token"] is False, r.text
    assert sealed_of(dres, app["id"]) == ""

    plain = dres.app(droot, env["id"])
    assert plain["has_git_token"] is False


def test_token_validation(auth, droot, dres):
    p = dres.project(droot)
    env = dres.production(droot, p["id"])
    app = dres.app(droot, env["id"])
    for bad in ("", "x" * 4097, 42, ["t"], "tok\nen"):
        r = droot.patch(f"apps/{app['id']}", json={"git_token": bad})
        assert_invalid(r, "git_token")
    r = droot.post("apps", json={"name": uid("app"), "environment_id": env["id"],
                                 "git_token": ""})
    assert_invalid(r, "git_token")
    assert sealed_of(dres, app["id"]) == ""


def test_worker_opens_the_token_for_https(auth, droot, dres):
    """The worker decrypts the token for an https URL and says so; nothing listens on port 1,
    so the fetch then fails on the connection, never on the token, and names no secret."""
    token = new_token(auth)
    p = dres.project(droot)
    env = dres.production(droot, p["id"])
    app = dres.app(droot, env["id"], repo_url="https://127.0.0.1:1/org/private.git",
                   build_command="true", start_command="true", git_token=token)
    deps = Deployments(droot)
    dep, _ = deps.deploy(app["id"])
    assert dep["status"] == "failed", dep
    assert dep["error_message"].startswith("clone failed:"), dep
    assert "decrypt" not in dep["error_message"] and token not in dep["error_message"], dep
    lines = [ln["line"] for ln in deps.all_logs(dep["id"])]
    assert any("with the app's token" in ln for ln in lines), lines


def test_token_never_in_openapi_responses(droot):
    doc = droot.get("/api/v1/openapi.json").json()
    app = doc["components"]["schemas"]["App"]
    assert "has_git_token" in app["properties"] and "git_token" not in app["properties"]
    assert "git_token" in doc["components"]["schemas"]["AppUpdate"]["properties"]
