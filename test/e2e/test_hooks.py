"""Push hooks: POST /api/v1/hooks/:app_id from GitHub, Gitea and GitLab; the hook's URL and
secret under apps/:id/hook (issue 7 item 1; DESIGN.md §5 "Git push hooks", §8).

Every delivery is built the way the git host builds it: the push payload names the commit
the test just pushed to the app's repository, and the signature is computed over the exact
bytes sent.
"""

import hashlib
import hmac
import json
import threading
import time
import uuid

import pytest

from conftest import request_from
from deploy_kit import *  # noqa: F401,F403 - fixtures and helpers

ZERO = "0" * 40


# --------------------------------------------------------------------------- deliveries


def push_payload(repo, sha, ref=None, before=None, message="change", deleted=False,
                 provider="github"):
    """A push event's body, with the fields GitHub, Gitea and GitLab send."""
    ref = ref or f"refs/heads/{repo.branch}"
    author = {"name": "Slipway Test", "email": "test@example.com", "username": "tester"}
    commit = {"id": sha, "message": message, "timestamp": "2026-11-23T09:00:00Z",
              "url": f"https://git.example.com/acme/hello/commit/{sha}", "author": author,
              "committer": author, "added": [], "removed": [], "modified": ["VERSION"]}
    repository = {"id": 140, "name": "hello", "full_name": "acme/hello",
                  "clone_url": repo.url, "default_branch": repo.branch}
    if provider == "gitlab":
        return {"object_kind": "push", "event_name": "push", "before": before or ZERO,
                "after": ZERO if deleted else sha, "ref": ref,
                "checkout_sha": None if deleted else sha, "user_name": "Slipway Test",
                "user_email": "test@example.com", "project_id": 15,
                "project": {"id": 15, "name": "hello", "git_http_url": repo.url},
                "commits": [] if deleted else [commit],
                "total_commits_count": 0 if deleted else 1, "repository": repository}
    return {"ref": ref, "before": before or ZERO, "after": ZERO if deleted else sha,
            "created": False, "deleted": deleted, "forced": False,
            "compare": f"https://git.example.com/acme/hello/compare/{before}...{sha}",
            "commits": [] if deleted else [commit], "head_commit": None if deleted else commit,
            "repository": repository, "pusher": {"name": "tester", "email": "test@example.com"},
            "sender": {"login": "tester", "id": 1}}


def hex_hmac(secret, body):
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def github_headers(secret, body, event="push", delivery=None):
    h = {"Content-Type": "application/json", "User-Agent": "GitHub-Hookshot/044aadd",
         "X-GitHub-Event": event, "X-GitHub-Delivery": delivery or str(uuid.uuid4()),
         "X-GitHub-Hook-ID": "292430182"}
    if secret is not None:
        h["X-Hub-Signature-256"] = "sha256=" + hex_hmac(secret, body)
    return h


def gitea_headers(secret, body, event="push", delivery=None):
    delivery = delivery or str(uuid.uuid4())
    # Gitea also sends GitHub's and Gogs's headers (without a GitHub signature here).
    return {"Content-Type": "application/json", "X-Gitea-Event": event,
            "X-Gitea-Delivery": delivery, "X-GitHub-Event": event,
            "X-GitHub-Delivery": delivery, "X-Gogs-Event": event,
            "X-Gitea-Signature": hex_hmac(secret, body)}


def gitlab_headers(token, event="Push Hook", key=None):
    return {"Content-Type": "application/json", "X-Gitlab-Event": event,
            "X-Gitlab-Token": token, "Idempotency-Key": key or str(uuid.uuid4()),
            "X-Gitlab-Event-UUID": str(uuid.uuid4()), "X-Gitlab-Instance": "https://gitlab.com"}


def encode(payload):
    return json.dumps(payload, separators=(",", ":")).encode()


def deliver(d, app_id, body, headers):
    return d.request("POST", f"{API}/hooks/{app_id}", data=body, headers=headers)


def deliver_from(source_ip, d, app_id, body, headers):
    return request_from(d, source_ip, "POST", f"{API}/hooks/{app_id}", data=body, headers=headers)


def github_push(d, app_id, secret, payload, delivery=None):
    body = encode(payload)
    return deliver(d, app_id, body, github_headers(secret, body, delivery=delivery))


# --------------------------------------------------------------------------- state


def hooked_app(auth, dres, droot, repo, **fields):
    """A hello app with auto_deploy on and a hook secret; returns (app, secret)."""
    fields.setdefault("auto_deploy", True)
    app = hello_app(dres, droot, repo, **fields)
    r = droot.post(f"apps/{app['id']}/hook/rotate")
    assert r.status_code == 200, r.text
    secret = r.json()["secret"]
    auth.remember(secret)
    return app, secret


def deployments_of(db, app_id):
    return db.execute("SELECT id, commit_sha, commit_author FROM deployments WHERE app_id = %s "
                      "ORDER BY deployment_number", (app_id,)).fetchall()


def side_effects(db, app_id):
    """What a delivery could have changed: deployments, the counter, deliveries, audit."""
    return (
        db.execute("SELECT count(*) FROM deployments WHERE app_id = %s", (app_id,)).fetchone(),
        db.execute("SELECT deployment_counter FROM apps WHERE id = %s", (app_id,)).fetchone(),
        db.execute("SELECT count(*) FROM hook_deliveries WHERE app_id = %s", (app_id,)).fetchone(),
        db.execute("SELECT max(id) FROM audit_log").fetchone(),
    )


def assert_refused(r):
    return error_of(r, 401, "AUTHENTICATION_ERROR")["message"]


# --------------------------------------------------------------------------- GitHub


def test_github_push_deploys_the_pushed_commit(auth, ddaemon, droot, dres, hello_repo):
    app, secret = hooked_app(auth, dres, droot, hello_repo)
    before = hello_repo.head()
    sha = hello_repo.version("v2", "release v2")
    # the branch moves on before the delivery lands: the pushed commit is what deploys
    hello_repo.version("v3", "release v3")
    r = github_push(ddaemon, app["id"], secret,
                    push_payload(hello_repo, sha, before=before, message="release v2"))
    assert r.status_code == 202, r.text
    body = r.json()
    assert body["action"] == "deployed" and set(body) == {"action", "deployment"}, body
    dep = body["deployment"]
    assert set(dep) >= DEP_KEYS | {"commit_author"}, dep
    assert dep["app_id"] == app["id"] and dep["status"] == "pending", dep
    assert dep["ref"] == hello_repo.branch and dep["commit_sha"] == sha, dep
    assert dep["commit_message"] == "release v2", dep
    assert dep["commit_author"] == "Slipway Test <test@example.com>", dep

    done, history = Deployments(droot).wait_terminal(dep["id"])
    assert done["status"] == "success", (done, history)
    assert done["commit_hash"] == sha, done
    assert done["commit_message"].strip() == "release v2", done
    assert done["commit_author"] == "Slipway Test <test@example.com>", done
    got = droot.get(f"apps/{app['id']}").json()
    assert fetch(got["endpoints"][0]) == (200, "v2"), got

    db = auth.db(ddaemon)
    actor_id, actor_email, details = db.execute(
        "SELECT actor_id, actor_email, details FROM audit_log WHERE action = "
        "'deployment.created' AND resource_id = %s", (dep["id"],)).fetchone()
    assert actor_id is None and actor_email == "hook:github", (actor_id, actor_email)
    assert details["provider"] == "github" and details["commit_sha"] == sha, details
    delivered = db.execute("SELECT provider, deployment_id::text FROM hook_deliveries "
                           "WHERE app_id = %s", (app["id"],)).fetchall()
    assert delivered == [("github", dep["id"])], delivered


def test_bad_signatures_change_nothing(auth, ddaemon, droot, dres, hello_repo):
    app, secret = hooked_app(auth, dres, droot, hello_repo)
    bare = hello_app(dres, droot, hello_repo, auto_deploy=True)  # no hook secret
    db = auth.db(ddaemon)
    sha = hello_repo.version("v2")
    body = encode(push_payload(hello_repo, sha))
    good = github_headers(secret, body)
    altered = body.replace(b'"message":"change"', b'"message":"chbnge"')
    assert len(altered) == len(body) and altered != body
    flipped = bytearray(body)
    flipped[len(body) // 2] ^= 0x01
    sig = good["X-Hub-Signature-256"]
    wrong_digit = sig[:-1] + ("0" if sig[-1] != "0" else "1")
    cases = [
        ("missing header", app["id"], body, github_headers(None, body)),
        ("wrong secret", app["id"], body, github_headers("not-" + secret, body)),
        ("body changed by one byte", app["id"], bytes(flipped), good),
        ("body altered, same length", app["id"], altered, good),
        ("digest changed", app["id"], body, {**good, "X-Hub-Signature-256": wrong_digit}),
        ("no sha256= prefix", app["id"], body, {**good, "X-Hub-Signature-256": sig[7:]}),
        ("legacy sha1 header only", app["id"], body,
         {k: v for k, v in good.items() if k != "X-Hub-Signature-256"} |
         {"X-Hub-Signature": "sha1=" + hmac.new(secret.encode(), body, "sha1").hexdigest()}),
        ("empty body", app["id"], b"", good),
        # the signature is judged before any parsing: not JSON is still a 401, not a 400
        ("not JSON, unsigned", app["id"], b"{not json", github_headers(None, b"{not json")),
        ("not JSON, wrong secret", app["id"], b"{not json",
         github_headers("not-" + secret, b"{not json")),
        ("gitea header, wrong secret", app["id"], body, gitea_headers("x" * 64, body)),
        ("gitlab token, wrong", app["id"], body, gitlab_headers("x" * 64)),
        ("gitlab token, prefix of the secret", app["id"], body, gitlab_headers(secret[:-1])),
        ("app without a hook secret", bare["id"], body, github_headers(secret, body)),
        ("app without a secret, empty signature", bare["id"], body,
         {**good, "X-Hub-Signature-256": "sha256="}),
        ("unknown app", str(uuid.uuid4()), body, good),
        ("not an app id", "not-a-uuid", body, good),
    ]
    before = {a: side_effects(db, a) for a in (app["id"], bare["id"])}
    messages = set()
    for what, app_id, data, headers in cases:
        r = deliver(ddaemon, app_id, data, headers)
        assert r.status_code == 401, f"{what}: {r.status_code} {r.text}"
        messages.add(assert_refused(r))
    # one answer whatever the reason: nobody learns which apps exist or have a hook
    assert len(messages) == 1, messages
    for a, snap in before.items():
        assert side_effects(db, a) == snap, a
    assert droot.get(f"apps/{app['id']}/deployments").json()["data"] == []
    # the genuine delivery still works afterwards
    r = deliver(ddaemon, app["id"], body, good)
    assert r.status_code == 202, r.text


def test_repeated_delivery_deploys_once(auth, ddaemon, droot, dres, hello_repo):
    app, secret = hooked_app(auth, dres, droot, hello_repo)
    db = auth.db(ddaemon)
    sha = hello_repo.version("v2")
    payload = push_payload(hello_repo, sha)
    delivery = str(uuid.uuid4())
    first = github_push(ddaemon, app["id"], secret, payload, delivery=delivery)
    assert first.status_code == 202, first.text
    again = github_push(ddaemon, app["id"], secret, payload, delivery=delivery)
    assert again.status_code == 200, again.text
    assert again.json()["action"] == "duplicate", again.json()
    assert len(deployments_of(db, app["id"])) == 1

    # racing redeliveries: exactly one of them deploys
    sha3 = hello_repo.version("v3")
    payload = push_payload(hello_repo, sha3, before=sha)
    delivery = str(uuid.uuid4())
    answers = []
    barrier = threading.Barrier(4)

    def send():
        barrier.wait()
        answers.append(github_push(ddaemon, app["id"], secret, payload, delivery=delivery))

    threads = [threading.Thread(target=send) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    codes = sorted(r.status_code for r in answers)
    assert codes == [200, 200, 200, 202], [(r.status_code, r.text) for r in answers]
    assert {r.json()["action"] for r in answers} == {"deployed", "duplicate"}
    deps = deployments_of(db, app["id"])
    assert [d[1] for d in deps] == [sha, sha3], deps
    # the same delivery id at another app is another delivery
    other, other_secret = hooked_app(auth, dres, droot, hello_repo)
    r = github_push(ddaemon, other["id"], other_secret, payload, delivery=delivery)
    assert r.status_code == 202, r.text
    deps = Deployments(droot)
    done, _ = deps.wait_terminal(r.json()["deployment"]["id"])
    assert done["status"] == "success" and done["commit_hash"] == sha3, done
    done, _ = deps.wait_terminal(deployments_of(db, app["id"])[-1][0])
    assert done["status"] == "success" and done["commit_hash"] == sha3, done


def test_what_does_not_deploy(auth, ddaemon, droot, dres, hello_repo):
    app, secret = hooked_app(auth, dres, droot, hello_repo)
    db = auth.db(ddaemon)
    main_sha = hello_repo.head()
    feature_sha = hello_repo.commit({"VERSION": "feature\n"}, "feature work", branch="feature")
    hello_repo.git("tag", "v1.0", main_sha)
    hello_repo.git("push", "-q", "origin", "refs/tags/v1.0")
    cases = [
        ("another branch", "push", push_payload(hello_repo, feature_sha, ref="refs/heads/feature"),
         "feature"),
        ("a tag push", "push", push_payload(hello_repo, main_sha, ref="refs/tags/v1.0"), "tag"),
        ("a branch deletion (deleted)", "push",
         push_payload(hello_repo, main_sha, deleted=True), "deleted"),
        ("a branch deletion (zero after)", "push",
         {**push_payload(hello_repo, main_sha), "after": ZERO}, "deleted"),
        ("another event", "issues", {"action": "opened", "issue": {"number": 1}}, "issues"),
    ]
    before = side_effects(db, app["id"])
    for what, event, payload, reason in cases:
        body = encode(payload)
        r = deliver(ddaemon, app["id"], body, github_headers(secret, body, event=event))
        assert r.status_code == 200, f"{what}: {r.status_code} {r.text}"
        got = r.json()
        assert got["action"] == "ignored", (what, got)
        assert reason in got["reason"], (what, got)
    body = encode({"zen": "Keep it logically awesome.", "hook_id": 1,
                   "hook": {"type": "Repository", "events": ["push"]}})
    r = deliver(ddaemon, app["id"], body, github_headers(secret, body, event="ping"))
    assert r.status_code == 200 and r.json()["action"] == "pong", r.text

    # auto_deploy off: a push to the branch is answered and ignored too
    r = droot.patch(f"apps/{app['id']}", json={"auto_deploy": False})
    assert r.status_code == 200 and r.json()["auto_deploy"] is False, r.text
    r = github_push(ddaemon, app["id"], secret, push_payload(hello_repo, main_sha))
    assert r.status_code == 200 and r.json()["action"] == "ignored", r.text
    assert "auto_deploy" in r.json()["reason"], r.json()

    # a signed body that is not a push payload: 400, and still nothing happens
    for body in (b"{not json", encode({"ref": "refs/heads/main", "after": "abc"})):
        r = deliver(ddaemon, app["id"], body, github_headers(secret, body))
        error_of(r, 400, "VALIDATION_ERROR")
    after = side_effects(db, app["id"])
    assert after[:3] == before[:3], (before, after)
    assert deployments_of(db, app["id"]) == []


# --------------------------------------------------------------------------- Mezzanine


def test_bare_signed_ref_deploys_the_branch_head(auth, ddaemon, droot, dres, hello_repo):
    """Mezzanine-style: only X-Hub-Signature-256 and {"ref": ...}, no event header."""
    app, secret = hooked_app(auth, dres, droot, hello_repo)
    db = auth.db(ddaemon)
    sha = hello_repo.version("v2", "release v2")

    def bare(payload, key=secret):
        body = encode(payload)
        return deliver(ddaemon, app["id"], body,
                       {"Content-Type": "application/json",
                        "X-Hub-Signature-256": "sha256=" + hex_hmac(key, body)})

    # refused without a good signature, and without any
    before = side_effects(db, app["id"])
    assert_refused(bare({"ref": f"refs/heads/{hello_repo.branch}"}, key="wrong"))
    body = encode({"ref": f"refs/heads/{hello_repo.branch}"})
    assert_refused(deliver(ddaemon, app["id"], body, {"Content-Type": "application/json"}))
    # another branch, a tag: ignored; a bad after: 400
    r = bare({"ref": "refs/heads/feature"})
    assert r.status_code == 200 and r.json()["action"] == "ignored", r.text
    assert "feature" in r.json()["reason"], r.json()
    r = bare({"ref": "refs/tags/v1"})
    assert r.status_code == 200 and r.json()["action"] == "ignored", r.text
    error_of(bare({"ref": f"refs/heads/{hello_repo.branch}", "after": "abc"}), 400,
             "VALIDATION_ERROR")
    error_of(bare({"branch": hello_repo.branch}), 400, "VALIDATION_ERROR")
    assert side_effects(db, app["id"])[:3] == before[:3]

    r = bare({"ref": f"refs/heads/{hello_repo.branch}"})
    assert r.status_code == 202, r.text
    dep = r.json()["deployment"]
    assert r.json()["action"] == "deployed" and dep["ref"] == hello_repo.branch, r.json()
    done, history = Deployments(droot).wait_terminal(dep["id"])
    assert done["status"] == "success", (done, history)
    assert done["commit_hash"] == sha, done  # the branch's head when it was fetched
    got = droot.get(f"apps/{app['id']}").json()
    assert fetch(got["endpoints"][0]) == (200, "v2"), got


# --------------------------------------------------------------------------- Gitea, GitLab


def test_gitea_push(auth, ddaemon, droot, dres, hello_repo):
    app, secret = hooked_app(auth, dres, droot, hello_repo)
    db = auth.db(ddaemon)
    sha = hello_repo.version("v2", "gitea v2")
    body = encode(push_payload(hello_repo, sha, message="gitea v2", provider="gitea"))
    headers = gitea_headers(secret, body)
    flipped = body.replace(b"gitea v2", b"gitea v3")
    assert assert_refused(deliver(ddaemon, app["id"], flipped, headers))
    unsigned = {k: v for k, v in headers.items() if k != "X-Gitea-Signature"}
    assert assert_refused(deliver(ddaemon, app["id"], body, unsigned))
    wrong = dict(headers, **{"X-Gitea-Signature": hex_hmac("wrong", body)})
    assert assert_refused(deliver(ddaemon, app["id"], body, wrong))
    r = deliver(ddaemon, app["id"], body, headers)
    assert r.status_code == 202, r.text
    dep = r.json()["deployment"]
    assert dep["commit_sha"] == sha and dep["commit_author"] == "Slipway Test <test@example.com>"
    again = deliver(ddaemon, app["id"], body, headers)
    assert again.status_code == 200 and again.json()["action"] == "duplicate", again.text
    # another branch, a tag push and a deletion of the app's branch, Gitea style
    feature = hello_repo.commit({"VERSION": "f\n"}, "feature", branch="feature")
    for payload in (push_payload(hello_repo, feature, ref="refs/heads/feature"),
                    push_payload(hello_repo, sha, ref="refs/tags/v2"),
                    push_payload(hello_repo, sha, deleted=True, provider="gitea")):
        b = encode(payload)
        r = deliver(ddaemon, app["id"], b, gitea_headers(secret, b))
        assert r.status_code == 200 and r.json()["action"] == "ignored", r.text
    done, _ = Deployments(droot).wait_terminal(dep["id"])
    assert done["status"] == "success" and done["commit_hash"] == sha, done
    assert db.execute("SELECT actor_email FROM audit_log WHERE resource_id = %s",
                      (dep["id"],)).fetchone() == ("hook:gitea",)
    assert len(deployments_of(db, app["id"])) == 1


def test_gitlab_push(auth, ddaemon, droot, dres, hello_repo):
    app, secret = hooked_app(auth, dres, droot, hello_repo)
    db = auth.db(ddaemon)
    before = hello_repo.head()
    sha = hello_repo.version("v2", "gitlab v2")
    body = encode(push_payload(hello_repo, sha, before=before, message="gitlab v2",
                               provider="gitlab"))
    key = str(uuid.uuid4())
    assert assert_refused(deliver(ddaemon, app["id"], body, gitlab_headers("wrong", key=key)))
    untokened = {k: v for k, v in gitlab_headers(secret, key=key).items()
                 if k != "X-Gitlab-Token"}
    assert assert_refused(deliver(ddaemon, app["id"], body, untokened))
    assert assert_refused(deliver(ddaemon, app["id"], body, gitlab_headers(secret[:-1], key=key)))
    r = deliver(ddaemon, app["id"], body, gitlab_headers(secret, key=key))
    assert r.status_code == 202, r.text
    dep = r.json()["deployment"]
    assert dep["commit_sha"] == sha and dep["commit_message"] == "gitlab v2", dep
    # a retry carries the same Idempotency-Key (and a new event UUID)
    again = deliver(ddaemon, app["id"], body, gitlab_headers(secret, key=key))
    assert again.status_code == 200 and again.json()["action"] == "duplicate", again.text
    # without Idempotency-Key, the event UUID is the delivery's key
    event_uuid = str(uuid.uuid4())
    sha3 = hello_repo.version("v3", "gitlab v3")
    b3 = encode(push_payload(hello_repo, sha3, before=sha, provider="gitlab"))
    h3 = {k: v for k, v in gitlab_headers(secret).items() if k != "Idempotency-Key"}
    h3["X-Gitlab-Event-UUID"] = event_uuid
    assert deliver(ddaemon, app["id"], b3, h3).status_code == 202
    r = deliver(ddaemon, app["id"], b3, h3)
    assert r.status_code == 200 and r.json()["action"] == "duplicate", r.text
    # another branch, tag pushes and branch deletions, GitLab style
    feature = hello_repo.commit({"VERSION": "f\n"}, "feature", branch="feature")
    other = encode(push_payload(hello_repo, feature, ref="refs/heads/feature", provider="gitlab"))
    r = deliver(ddaemon, app["id"], other, gitlab_headers(secret))
    assert r.status_code == 200 and r.json()["action"] == "ignored", r.text
    tag = encode(push_payload(hello_repo, sha, ref="refs/tags/v2", provider="gitlab"))
    r = deliver(ddaemon, app["id"], tag, gitlab_headers(secret, event="Tag Push Hook"))
    assert r.status_code == 200 and r.json()["action"] == "ignored", r.text
    gone = encode(push_payload(hello_repo, sha, deleted=True, provider="gitlab"))
    r = deliver(ddaemon, app["id"], gone, gitlab_headers(secret))
    assert r.status_code == 200 and r.json()["action"] == "ignored", r.text
    assert [d[1] for d in deployments_of(db, app["id"])] == [sha, sha3]
    deps = Deployments(droot)
    first, _ = deps.wait_terminal(dep["id"])
    assert first["status"] == "success" and first["commit_hash"] == sha, first
    last, _ = deps.wait_terminal(deployments_of(db, app["id"])[-1][0])
    assert last["status"] == "success" and last["commit_hash"] == sha3, last


# --------------------------------------------------------------------------- secret


def test_rotate_and_show(auth, ddaemon, droot, dres, hello_repo):
    app = hello_app(dres, droot, hello_repo, auto_deploy=True)
    db = auth.db(ddaemon)
    info = droot.get(f"apps/{app['id']}/hook")
    assert info.status_code == 200, info.text
    assert info.json() == {"url": f"{ddaemon.url}{API}/hooks/{app['id']}", "configured": False,
                           "created_at": None, "rotated_at": None}

    r1 = droot.post(f"apps/{app['id']}/hook/rotate")
    assert r1.status_code == 200, r1.text
    first = r1.json()
    auth.remember(first["secret"])
    assert set(first) == {"url", "secret", "configured", "created_at", "rotated_at"}, first
    assert first["url"] == f"{ddaemon.url}{API}/hooks/{app['id']}"
    assert len(first["secret"]) == 64 and int(first["secret"], 16) >= 0
    r2 = droot.post(f"apps/{app['id']}/hook/rotate")
    second = r2.json()
    auth.remember(second["secret"])
    assert second["secret"] != first["secret"]
    assert second["created_at"] == first["created_at"]
    assert parse_ts(second["rotated_at"]) > parse_ts(first["rotated_at"])

    info = droot.get(f"apps/{app['id']}/hook").json()
    assert info["configured"] is True and "secret" not in info, info
    assert info["rotated_at"] == second["rotated_at"]
    for s in (first["secret"], second["secret"]):
        assert s not in droot.get(f"apps/{app['id']}/hook").text
        assert s not in droot.get("audit").text

    # the old secret stops working at once; the new one works
    sha = hello_repo.head()
    body = encode(push_payload(hello_repo, sha))
    assert_refused(deliver(ddaemon, app["id"], body, github_headers(first["secret"], body)))
    ping = encode({"zen": "hi"})
    r = deliver(ddaemon, app["id"], ping, github_headers(second["secret"], ping, event="ping"))
    assert r.status_code == 200 and r.json()["action"] == "pong", r.text

    # stored sealed, bound to the app: never the secret itself
    (sealed,) = db.execute("SELECT secret_sealed FROM app_hooks WHERE app_id = %s",
                           (app["id"],)).fetchone()
    assert sealed.startswith("v1.") and second["secret"] not in sealed
    dump = db.execute("SELECT string_agg(t::text, ' ') FROM (SELECT * FROM app_hooks) t"
                      ).fetchone()[0]
    assert first["secret"] not in dump and second["secret"] not in dump
    audit = db.execute("SELECT actor_id::text, action, details::text FROM audit_log WHERE "
                       "resource_id = %s AND action = 'app.hook_rotated'", (app["id"],)).fetchall()
    assert len(audit) == 2 and all(a[0] == droot.id for a in audit), audit
    assert all(first["secret"] not in a[2] and second["secret"] not in a[2] for a in audit)

    # a sealed secret moved to another app does not open there: it is bound to its app
    other = hello_app(dres, droot, hello_repo, auto_deploy=True)
    db.execute("INSERT INTO app_hooks (app_id, secret_sealed) VALUES (%s, %s)",
               (other["id"], sealed))
    assert_refused(deliver(ddaemon, other["id"], body, github_headers(second["secret"], body)))
    assert deployments_of(db, other["id"]) == []


def test_public_url(auth, dres, droot, hello_repo):
    d = auth.daemon(env=make_deploy_env(SLIPWAY_PUBLIC_URL="https://paas.example.com/"))
    owner = auth.setup_owner(d)
    res = Res(auth, d)
    app = hello_app(res, owner, hello_repo)
    r = owner.post(f"apps/{app['id']}/hook/rotate")
    assert r.status_code == 200, r.text
    auth.remember(r.json()["secret"])
    assert r.json()["url"] == f"https://paas.example.com/api/v1/hooks/{app['id']}"
    assert owner.get(f"apps/{app['id']}/hook").json()["url"] == r.json()["url"]


def test_access(auth, ddaemon, droot, dres, hello_repo):
    app, secret = hooked_app(auth, dres, droot, hello_repo)
    pid = app["project_id"]
    viewer, developer, stranger = (dres.user(droot) for _ in range(3))
    dres.member(droot, pid, viewer, "viewer")
    dres.member(droot, pid, developer, "developer")
    for who in (viewer, developer):
        r = who.post(f"apps/{app['id']}/hook/rotate")
        error_of(r, 403, "INSUFFICIENT_ROLE")
        info = who.get(f"apps/{app['id']}/hook")
        assert info.status_code == 200 and info.json()["configured"] is True, info.text
    error_of(stranger.post(f"apps/{app['id']}/hook/rotate"), 404)
    error_of(stranger.get(f"apps/{app['id']}/hook"), 404)
    # an API token needs the write scope to rotate, even for an admin
    reader = auth.make_token(droot, ["read", "deploy"])
    error_of(reader.post(f"apps/{app['id']}/hook/rotate"), 403)
    anon = ddaemon.request("POST", f"{API}/apps/{app['id']}/hook/rotate")
    assert anon.status_code == 401, anon.text
    # nobody's rotation attempt changed the secret
    ping = encode({"zen": "hi"})
    r = deliver(ddaemon, app["id"], ping, github_headers(secret, ping, event="ping"))
    assert r.status_code == 200 and r.json()["action"] == "pong", r.text
    # and the hook itself needs no session: a cookie or bearer is not what proves it
    r = deliver(ddaemon, app["id"], ping,
                {**github_headers(None, ping, event="ping"),
                 "Authorization": f"Bearer {droot.token}"})
    assert_refused(r)


# --------------------------------------------------------------------------- limits


def test_rate_limit_per_app(auth, ddaemon, droot, dres, hello_repo):
    """Unsigned floods spend their sender's budget for the app, never the git host's; signed
    deliveries share one budget per app, whatever their sender."""
    app, secret = hooked_app(auth, dres, droot, hello_repo)
    other, other_secret = hooked_app(auth, dres, droot, hello_repo)
    ping = encode({"zen": "hi"})
    codes = []
    for _ in range(45):
        r = deliver(ddaemon, app["id"], ping, github_headers("wrong", ping, event="ping"))
        codes.append(r.status_code)
        if r.status_code == 429:
            limited = r
    assert set(codes) == {401, 429}, codes
    assert 30 <= codes.count(401) <= 33, codes  # a burst of 30, refilled at one a second
    assert codes.index(429) >= 30 and codes[-1] == 429, codes
    error_of(limited, 429, "RATE_LIMIT_EXCEEDED")
    assert int(limited.headers["Retry-After"]) >= 1, limited.headers
    # 30 deliveries refilled at one a second: the bucket is full again in 30 s
    assert limited.headers.get("X-RateLimit-Window") == "30", limited.headers
    # spent before any signature work: a good signature from the flooding sender waits too
    r = deliver(ddaemon, app["id"], ping, github_headers(secret, ping, event="ping"))
    assert r.status_code == 429, r.text
    # the git host, elsewhere, is not held up by the flood
    r = deliver_from("127.0.0.2", ddaemon, app["id"], ping,
                     github_headers(secret, ping, event="ping"))
    assert r.status_code == 200 and r.json()["action"] == "pong", r.text
    # signed deliveries from several senders share the app's budget: 30, less the one above,
    # and one more for each second the loop took
    t0 = time.monotonic()
    codes = [deliver_from(f"127.0.0.{3 + i // 15}", ddaemon, app["id"], ping,
                          github_headers(secret, ping, event="ping")).status_code
             for i in range(40)]
    took = time.monotonic() - t0
    assert set(codes) == {200, 429}, codes
    assert 29 <= codes.count(200) <= 30 + took, (codes, took)
    # the budgets are per app
    r = deliver(ddaemon, other["id"], ping, github_headers(other_secret, ping, event="ping"))
    assert r.status_code == 200 and r.json()["action"] == "pong", r.text
    # and they refill
    wait_for(lambda: deliver(ddaemon, app["id"], ping,
                             github_headers(secret, ping, event="ping")).status_code == 200,
             timeout=5, interval=0.25, message="the hook budget to refill")


def test_unsigned_flood_from_many_senders_is_capped_per_app(auth, ddaemon, droot, dres,
                                                           hello_repo):
    """Each sender stays inside its own budget, yet together they meet the app's ceiling on
    unverified requests (ten times a sender's), so a spread-out flood costs at most that."""
    app, secret = hooked_app(auth, dres, droot, hello_repo)
    ping = encode({"zen": "hi"})
    bad = github_headers("wrong", ping, event="ping")
    t0 = time.monotonic()
    codes = [deliver_from(f"127.0.1.{1 + i // 25}", ddaemon, app["id"], ping, bad).status_code
             for i in range(325)]  # 13 senders, 25 each: under a sender's burst of 30
    took = time.monotonic() - t0
    assert set(codes) == {401, 429}, codes
    assert 300 <= codes.count(401) <= 300 + 10 * took + 1, (codes.count(401), took)
    assert codes.index(429) >= 300, codes


def test_body_is_bounded(auth, ddaemon, droot, dres, hello_repo):
    app, secret = hooked_app(auth, dres, droot, hello_repo)
    db = auth.db(ddaemon)
    sha = hello_repo.head()
    payload = push_payload(hello_repo, sha)
    payload["padding"] = "x" * (1024 * 1024 + 1)
    body = encode(payload)
    r = deliver(ddaemon, app["id"], body, github_headers(secret, body))
    error_of(r, 413, "PAYLOAD_TOO_LARGE")
    assert deployments_of(db, app["id"]) == []
