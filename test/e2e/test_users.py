"""User administration: GET/POST users, GET/PATCH/DELETE users/:id (the issue 3 contract)."""

import uuid

import pytest

from conftest import detail_fields, error_of, new_email, new_password, wait_for


def test_create_get_list(owner, auth):
    email = new_email("new")
    r = owner.post("users", json={"email": "  " + email.upper(), "password": new_password(),
                                  "name": "New"})
    assert r.status_code == 201, r.text
    u = r.json()
    assert u["email"] == email and u["role"] == "member" and u["name"] == "New"
    assert u["totp_enabled"] is False
    assert "password_hash" not in u and "password" not in u
    uuid.UUID(u["id"])
    r = owner.get(f"users/{u['id']}")
    assert r.status_code == 200 and r.json() == u
    r = owner.get("users")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["pagination"]["total"] == 2 and body["pagination"]["page"] == 1
    assert {x["email"] for x in body["data"]} == {owner.email, email}
    for role in ("admin", "owner"):
        r = owner.post("users", json={"email": new_email(role), "password": new_password(),
                                      "role": role})
        assert r.status_code == 201 and r.json()["role"] == role, r.text


def test_list_pagination(owner, auth):
    for _ in range(4):
        assert owner.post("users", json={"email": new_email(),
                                         "password": new_password()}).status_code == 201
    body = owner.get("users", params={"limit": 2, "page": 3}).json()
    assert len(body["data"]) == 1
    assert body["pagination"] == {"page": 3, "limit": 2, "total": 5, "pages": 3,
                                  "has_next": False, "has_prev": True}


@pytest.mark.parametrize("payload,field", [
    ({"password": "long-enough-pw"}, "email"),
    ({"email": "bad-email", "password": "long-enough-pw"}, "email"),
    ({"email": "ok@example.com"}, "password"),
    ({"email": "ok@example.com", "password": "123456789"}, "password"),
    ({"email": "ok@example.com", "password": "p" * 257}, "password"),
    ({"email": "ok@example.com", "password": "long-enough-pw", "role": "root"}, "role"),
    ({"email": "ok@example.com", "password": "long-enough-pw", "name": 7}, "name"),
])
def test_create_validation(owner, payload, field):
    r = owner.post("users", json=payload)
    error_of(r, 400, "VALIDATION_ERROR")
    assert field in detail_fields(r), r.text


def test_duplicate_email_409(owner):
    r = owner.post("users", json={"email": owner.email.upper(), "password": new_password()})
    error_of(r, 409, "RESOURCE_CONFLICT")


def test_unknown_and_malformed_ids_404(owner):
    for path in (f"users/{uuid.uuid4()}", "users/not-a-uuid", "users/1"):
        error_of(owner.get(path), 404, "RESOURCE_NOT_FOUND")
        error_of(owner.patch(path, json={"name": "x"}), 404, "RESOURCE_NOT_FOUND")
        error_of(owner.delete(path), 404, "RESOURCE_NOT_FOUND")


def test_patch(owner, auth):
    m = auth.make_user(owner, "member")
    r = owner.patch(f"users/{m.id}", json={"name": "Renamed", "role": "admin"})
    assert r.status_code == 200, r.text
    assert r.json()["name"] == "Renamed" and r.json()["role"] == "admin"
    assert r.json()["updated_at"] >= m.user["updated_at"]
    wait_for(lambda: m.get("users").status_code == 200, timeout=2,
             message="promoted user's session gets admin rights")
    r = owner.patch(f"users/{m.id}", json={"role": "superuser"})
    error_of(r, 400, "VALIDATION_ERROR")
    assert "role" in detail_fields(r)
    r = owner.patch(f"users/{m.id}", json={"password": "short"})
    error_of(r, 400, "VALIDATION_ERROR")
    assert "password" in detail_fields(r)


def test_admin_password_reset_revokes_sessions(owner, auth):
    m = auth.make_user(owner, "member")
    new = new_password()
    r = owner.patch(f"users/{m.id}", json={"password": new})
    assert r.status_code == 200, r.text
    wait_for(lambda: m.get("auth/me").status_code == 401, timeout=1.0, interval=0.01,
             message="reset user's session refused")
    assert auth.login(owner.d, m.email, m.password).status_code == 401
    assert auth.login(owner.d, m.email, new).status_code == 200


def test_admin_cannot_touch_owners(owner, auth):
    admin = auth.make_user(owner, "admin")
    other_admin = auth.make_user(owner, "admin")
    member = auth.make_user(owner, "member")
    for r in (admin.patch(f"users/{owner.id}", json={"name": "pwned"}),
              admin.patch(f"users/{owner.id}", json={"role": "member"}),
              admin.patch(f"users/{owner.id}", json={"password": new_password()}),
              admin.delete(f"users/{owner.id}"),
              admin.patch(f"users/{member.id}", json={"role": "owner"}),
              admin.patch(f"users/{admin.id}", json={"role": "owner"}),
              admin.post("users", json={"email": new_email(), "password": new_password(),
                                        "role": "owner"})):
        err = error_of(r, 403, "INSUFFICIENT_ROLE")
        assert "owner" in err["message"], err
    assert owner.get("auth/me").json()["role"] == "owner"
    assert auth.login(owner.d, owner.email, owner.password).status_code == 200
    # admins manage members and admins
    assert admin.patch(f"users/{member.id}", json={"role": "admin"}).status_code == 200
    assert admin.delete(f"users/{other_admin.id}").status_code == 204
    assert admin.get(f"users/{owner.id}").status_code == 200


def test_members_cannot_manage_users(owner, auth):
    m = auth.make_user(owner, "member")
    for r in (m.get("users"), m.get(f"users/{owner.id}"),
              m.post("users", json={"email": new_email(), "password": new_password()}),
              m.patch(f"users/{m.id}", json={"role": "admin"}), m.delete(f"users/{owner.id}")):
        err = error_of(r, 403, "INSUFFICIENT_ROLE")
        assert "admin" in err["message"]


def test_last_owner_protected(owner, auth):
    error_of(owner.patch(f"users/{owner.id}", json={"role": "admin"}), 409, "RESOURCE_CONFLICT")
    error_of(owner.delete(f"users/{owner.id}"), 409, "RESOURCE_CONFLICT")
    second = auth.make_user(owner, "owner")
    assert second.user["role"] == "owner"
    r = second.patch(f"users/{owner.id}", json={"role": "admin"})
    assert r.status_code == 200, r.text
    error_of(second.delete(f"users/{second.id}"), 409, "RESOURCE_CONFLICT")
    error_of(second.patch(f"users/{second.id}", json={"role": "member"}), 409,
             "RESOURCE_CONFLICT")
    assert second.patch(f"users/{owner.id}", json={"role": "owner"}).status_code == 200
    assert owner.delete(f"users/{second.id}").status_code == 204


def test_delete_user(owner, auth):
    m = auth.make_user(owner, "member")
    t = auth.make_token(m, ["read"])
    assert owner.delete(f"users/{m.id}").status_code == 204
    wait_for(lambda: m.get("auth/me").status_code == 401 and t.get("auth/me").status_code == 401,
             timeout=1.0, interval=0.01, message="deleted user's credentials refused")
    error_of(owner.get(f"users/{m.id}"), 404, "RESOURCE_NOT_FOUND")
    error_of(owner.delete(f"users/{m.id}"), 404, "RESOURCE_NOT_FOUND")
    assert auth.login(owner.d, m.email, m.password).status_code == 401
    # the email is free again
    assert owner.post("users", json={"email": m.email, "password": new_password()}
                      ).status_code == 201
