"""TOTP (RFC 6238) enrolment, login with codes and recovery codes, and switching it off."""

import base64
import re
import urllib.parse

from conftest import detail_fields, error_of, totp_code, totp_step, wait_for

B32_RE = re.compile(r"^[A-Z2-7]{16,}=*$")


def enroll(p):
    r = p.post("auth/totp/enroll")
    assert r.status_code == 200, r.text
    body = r.json()
    assert B32_RE.match(body["secret"]), body["secret"]
    p.kit.remember(body["secret"])
    return body


def enable(p):
    """Enrols and confirms; returns (secret, recovery codes, step used to confirm)."""
    secret = enroll(p)["secret"]
    step = totp_step()
    r = p.post("auth/totp/confirm", json={"code": totp_code(secret, counter=step)})
    assert r.status_code == 200, r.text
    codes = r.json()["recovery_codes"]
    p.kit.remember(codes)
    return secret, codes, step


def totp_error(r):
    err = error_of(r, 401, "AUTHENTICATION_ERROR")
    assert "totp" in detail_fields(r), r.text
    return err


def test_enroll_shape(owner):
    body = enroll(owner)
    url = urllib.parse.urlsplit(body["otpauth_url"])
    assert url.scheme == "otpauth" and url.netloc == "totp"
    assert urllib.parse.unquote(url.path) == f"/Slipway:{owner.email}"
    q = dict(urllib.parse.parse_qsl(url.query))
    assert q == {"secret": body["secret"], "issuer": "Slipway", "algorithm": "SHA1",
                 "digits": "6", "period": "30"}
    assert len(base64.b32decode(body["secret"] + "=" * (-len(body["secret"]) % 8))) >= 16
    # nothing is on until confirmed
    assert owner.get("auth/me").json()["totp_enabled"] is False
    assert owner.kit.login(owner.d, owner.email, owner.password).status_code == 200


def test_full_flow(owner, auth):
    d = owner.d
    secret, codes, step = enable(owner)
    assert len(codes) == 10 and len(set(codes)) == 10
    assert all(isinstance(c, str) and len(c) >= 8 for c in codes)
    assert owner.get("auth/me").json()["totp_enabled"] is True
    error_of(owner.post("auth/totp/enroll"), 409, "RESOURCE_CONFLICT")
    # a password alone is not enough (failure 1 at most)
    r = auth.login(d, owner.email, owner.password)
    totp_error(r)
    assert [x for x in r.json()["error"]["details"] if x["field"] == "totp"][0]["message"] == \
        "is required"
    assert "token" not in r.json()
    # a fresh code logs in; the code used to confirm is spent, and the next step's is taken
    # already (one step of clock drift either way), so no waiting for the clock
    code = totp_code(secret, counter=step + 1)
    r = auth.login(d, owner.email, owner.password, totp=code)
    assert r.status_code == 200, r.text
    assert r.json()["user"]["totp_enabled"] is True
    # the same code again is a replay (failure 2)
    totp_error(auth.login(d, owner.email, owner.password, totp=code))
    # a recovery code works once (failure 3 on reuse)
    r = auth.login(d, owner.email, owner.password, totp=codes[0])
    assert r.status_code == 200, r.text
    totp_error(auth.login(d, owner.email, owner.password, totp=codes[0]))
    assert auth.login(d, owner.email, owner.password, totp=codes[1]).status_code == 200
    # switching it off: a wrong code is refused (failure 4 at most)
    r = owner.delete("auth/totp", json={"code": totp_code(secret, counter=step + 1000)})
    error_of(r, 400, "VALIDATION_ERROR")
    assert "code" in detail_fields(r)
    assert owner.delete("auth/totp", json={"password": owner.password}).status_code == 204
    assert owner.get("auth/me").json()["totp_enabled"] is False
    r = auth.login(d, owner.email, owner.password)
    assert r.status_code == 200, r.text


def test_wrong_code_refused(owner, auth):
    secret, _, step = enable(owner)
    wrong = totp_code(secret, counter=step + 1000)
    totp_error(auth.login(owner.d, owner.email, owner.password, totp=wrong))
    totp_error(auth.login(owner.d, owner.email, owner.password, totp="12345"))
    # a wrong password with a right code is the plain wrong-password answer
    r = auth.login(owner.d, owner.email, owner.password + "x", totp=totp_code(secret))
    assert error_of(r, 401, "AUTHENTICATION_ERROR")["message"] == "invalid email or password"


def test_disable_with_code(owner, auth):
    secret, _, step = enable(owner)
    r = owner.delete("auth/totp", json={"password": owner.password + "x"})
    error_of(r, 400, "VALIDATION_ERROR")
    assert "password" in detail_fields(r)
    r = owner.delete("auth/totp", json={})
    error_of(r, 400, "VALIDATION_ERROR")
    assert owner.delete("auth/totp",
                        json={"code": totp_code(secret, counter=step + 1)}).status_code == 204
    assert owner.get("auth/me").json()["totp_enabled"] is False
    assert auth.login(owner.d, owner.email, owner.password).status_code == 200


def test_confirm_errors(owner):
    error_of(owner.post("auth/totp/confirm", json={"code": "123456"}), 409, "RESOURCE_CONFLICT")
    first = enroll(owner)["secret"]
    second = enroll(owner)["secret"]
    assert first != second
    step = totp_step()
    r = owner.post("auth/totp/confirm", json={"code": totp_code(first, counter=step)})
    if totp_code(first, counter=step) != totp_code(second, counter=step):
        error_of(r, 400, "VALIDATION_ERROR")
        assert "code" in detail_fields(r)
    r = owner.post("auth/totp/confirm", json={})
    error_of(r, 400, "VALIDATION_ERROR")
    assert "code" in detail_fields(r)
    r = owner.post("auth/totp/confirm", json={"code": totp_code(second, counter=step)})
    assert r.status_code == 200, r.text
    owner.kit.remember(r.json()["recovery_codes"])
    error_of(owner.post("auth/totp/confirm", json={"code": totp_code(second)}), 409,
             "RESOURCE_CONFLICT")


def test_totp_needs_session(owner, auth):
    tok = auth.make_token(owner, ["admin"])
    error_of(tok.post("auth/totp/enroll"), 403, "INSUFFICIENT_ROLE")
    error_of(tok.post("auth/totp/confirm", json={"code": "123456"}), 403, "INSUFFICIENT_ROLE")
    error_of(tok.delete("auth/totp", json={"password": owner.password}), 403, "INSUFFICIENT_ROLE")


def test_storage(owner, auth):
    secret, codes, _ = enable(owner)
    conn = auth.db(owner.d)
    stored, enabled = conn.execute("SELECT totp_secret, totp_enabled FROM users WHERE id = %s",
                                   (owner.id,)).fetchone()
    assert enabled is True
    raw = base64.b32decode(secret + "=" * (-len(secret) % 8))
    assert stored.startswith("v1."), stored[:8]
    for needle in (secret, secret.lower(), secret.rstrip("="), raw.hex(),
                   base64.b64encode(raw).decode().rstrip("="),
                   base64.urlsafe_b64encode(raw).decode().rstrip("=")):
        assert needle not in stored
    rows = [r[0] for r in conn.execute("SELECT t::text FROM totp_recovery_codes t "
                                       "WHERE user_id = %s", (owner.id,))]
    assert len(rows) == 10
    everything = "\n".join(r[0] for r in conn.execute(
        "SELECT t::text FROM totp_recovery_codes t UNION ALL SELECT u::text FROM users u"))
    for c in codes:
        assert c not in everything and c.replace("-", "") not in everything


def test_audit_totp(owner, auth):
    secret, _, step = enable(owner)
    assert owner.delete("auth/totp", json={"password": owner.password}).status_code == 204
    conn = auth.db(owner.d)
    wait_for(lambda: {"auth.totp_enabled", "auth.totp_disabled"} <= {
        r[0] for r in conn.execute("SELECT action FROM audit_log")}, timeout=5,
        message="totp audit rows")
    for (row,) in conn.execute("SELECT t::text FROM audit_log t"):
        assert secret not in row
