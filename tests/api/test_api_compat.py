"""Clients of the tutorial API keep working, and hostile input stays a 4xx: trailing-slash
spellings, an ``id`` in PUT/PATCH bodies, forged cursors, short search terms, tokens never
cached, and 422s that never echo a secret. Through HTTP, on SQLite and PostgreSQL."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.api import make_post

# --- Trailing slashes ---------------------------------------------------------------------------


@pytest.mark.parametrize("prefix", ["", "/api/v1"])
async def test_tutorial_paths_with_a_trailing_slash_answer_directly(make_client, new_user, prefix):
    client = await make_client(prefix=prefix)
    user = await new_user(client, prefix=prefix)

    registered = await client.post(
        f"{prefix}/users/", json={"email": "slash@example.com", "password": "long enough 1"}
    )
    assert registered.status_code == 201, registered.text
    created = await client.post(
        f"{prefix}/posts/", json={"title": "Slash", "content": "x"}, headers=user.headers
    )
    assert created.status_code == 201, created.text
    post_id = created.json()["id"]

    listed = await client.get(f"{prefix}/posts/", headers=user.headers)
    assert listed.status_code == 200
    assert [post["id"] for post in listed.json()] == [post_id]
    one = await client.get(f"{prefix}/posts/{post_id}/", headers=user.headers)
    assert one.status_code == 200
    assert one.json()["id"] == post_id
    other = await new_user(client, prefix=prefix)
    voted = await client.post(
        f"{prefix}/vote/", json={"post_id": post_id, "dir": 1}, headers=other.headers
    )
    assert voted.status_code == 201, voted.text
    assert voted.json()["votes"] == 1
    me = await client.get(f"{prefix}/users/me/", headers=user.headers)
    assert me.status_code == 200
    assert me.json()["id"] == user.id
    # Without a token the answer is postkit's 401, not a redirect to follow.
    anonymous = await client.get(f"{prefix}/posts/")
    assert anonymous.status_code == 401
    assert "location" not in anonymous.headers


async def test_slash_spellings_are_not_documented_twice(client):
    paths = client.app.openapi()["paths"]
    assert "/posts" in paths
    assert "/posts/" not in paths
    assert not [path for path in paths if path.endswith("/") and path != "/"]
    assert client.app.url_path_for("postkit:login") == "/login"


# --- An id in the body of PUT and PATCH ---------------------------------------------------------


async def test_put_and_patch_accept_the_path_id_in_the_body(client, new_user):
    user = await new_user(client)
    post = await make_post(client, user)
    url = f"/posts/{post['id']}"

    replaced = await client.put(
        url, json={"id": post["id"], "title": "New", "content": "Body"}, headers=user.headers
    )
    assert replaced.status_code == 200, replaced.text
    assert replaced.json()["title"] == "New"
    patched = await client.patch(
        url, json={"id": post["id"], "title": "Newer"}, headers=user.headers
    )
    assert patched.status_code == 200, patched.text
    assert patched.json()["id"] == post["id"]
    assert patched.json()["title"] == "Newer"


@pytest.mark.parametrize("method", ["PUT", "PATCH"])
async def test_a_different_body_id_is_a_clear_422(client, new_user, method):
    user = await new_user(client)
    post = await make_post(client, user, title="Kept")
    body = {"id": post["id"] + 1, "title": "Changed", "content": "x"}
    response = await client.request(method, f"/posts/{post['id']}", json=body, headers=user.headers)
    assert response.status_code == 422
    (error,) = response.json()["detail"]
    assert error["loc"] == ["body", "id"]
    assert f"({post['id'] + 1})" in error["msg"]
    assert f"({post['id']})" in error["msg"]
    unchanged = await client.get(f"/posts/{post['id']}", headers=user.headers)
    assert unchanged.json()["title"] == "Kept"


@pytest.mark.parametrize(
    ("method", "extra"),
    [("PUT", {"owner_id": 1}), ("PATCH", {"owner_id": 1}), ("PUT", {"id": None})],
)
async def test_other_body_fields_are_still_refused(client, new_user, method, extra):
    user = await new_user(client)
    post = await make_post(client, user)
    body = {"title": "T", "content": "C", **extra}
    response = await client.request(method, f"/posts/{post['id']}", json=body, headers=user.headers)
    assert response.status_code == 422, response.text


# --- PATCH null ---------------------------------------------------------------------------------


@pytest.mark.parametrize("field", ["title", "content", "published"])
async def test_patch_null_is_refused_and_documented_as_such(client, new_user, field):
    user = await new_user(client)
    post = await make_post(client, user)
    response = await client.patch(f"/posts/{post['id']}", json={field: None}, headers=user.headers)
    assert response.status_code == 422
    assert "may be omitted but not null" in response.text
    schema = client.app.openapi()["components"]["schemas"]["PostPatch"]["properties"][field]
    assert "anyOf" not in schema
    assert schema["type"] in {"string", "boolean"}
    assert "default" not in schema


# --- Forged cursors -----------------------------------------------------------------------------


def _cursor(payload: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(payload).encode()).rstrip(b"=").decode()


@pytest.mark.parametrize(
    ("stamp", "status"),
    [
        ("0001-01-01T00:00:00+14:00", 400),  # before the first representable UTC instant
        ("9999-12-31T23:59:59.999999-14:00", 400),  # after the last one
        ("2026-01-01T00:00:00", 400),  # no timezone: not a cursor postkit issued
        ("0001-01-01T00:00:00+00:00", 200),
        ("9999-12-31T23:59:59+00:00", 200),
        ("2026-01-01T09:00:00+14:00", 200),
    ],
)
async def test_extreme_cursor_timestamps_answer_400_or_a_page(client, new_user, stamp, status):
    user = await new_user(client)
    await make_post(client, user)
    response = await client.get(
        "/posts", params={"cursor": _cursor({"s": "new", "k": stamp, "i": 1})}, headers=user.headers
    )
    assert response.status_code == status, response.text
    if status == 400:
        assert response.json()["code"] == "INVALID_CURSOR"


_json_scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=40)
_timestamps = st.datetimes(timezones=st.timezones()).map(lambda moment: moment.isoformat())
_json_values = st.recursive(
    _json_scalars | _timestamps,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(), children),
    max_leaves=6,
)
_cursor_payloads = st.one_of(
    st.fixed_dictionaries(
        {"s": st.sampled_from(["new", "top"]) | _json_values, "k": _json_values, "i": _json_values}
    ),
    st.dictionaries(st.sampled_from(["s", "k", "i", "x"]), _json_values),
    _json_values,
)


@pytest.fixture
async def reader_headers(client, new_user) -> dict[str, str]:
    user = await new_user(client)
    await make_post(client, user)
    return user.headers


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(payload=_cursor_payloads, sort=st.sampled_from(["new", "top"]))
async def test_forged_cursors_of_every_shape_are_400(client, reader_headers, payload, sort):
    cursor = _cursor(payload)
    response = await client.get(
        "/posts", params={"cursor": cursor, "sort": sort}, headers=reader_headers
    )
    if len(cursor) > 512:  # longer than any cursor postkit issues: refused by the schema
        assert response.status_code == 422
        return
    assert response.status_code in {200, 400}, (cursor, response.text)
    if response.status_code == 400:
        assert response.json()["code"] == "INVALID_CURSOR"


# --- Search terms too short for the index --------------------------------------------------------


async def test_short_search_terms_are_refused_with_the_minimum(make_client, new_user):
    client = await make_client()
    user = await new_user(client)
    await make_post(client, user, title="abc")
    for term in ["", "a", "ab"]:
        response = await client.get("/posts", params={"search": term}, headers=user.headers)
        assert response.status_code == 422, term
        (error,) = response.json()["detail"]
        assert error["loc"] == ["query", "search"]
        assert "at least 3 characters" in error["msg"]
    found = await client.get("/posts", params={"search": "abc"}, headers=user.headers)
    assert [post["title"] for post in found.json()] == ["abc"]
    (parameter,) = [
        p
        for p in client.app.openapi()["paths"]["/posts"]["get"]["parameters"]
        if p["name"] == "search"
    ]
    string = next(s for s in parameter["schema"]["anyOf"] if s.get("type") == "string")
    assert string["minLength"] == 3
    assert "at least 3 characters" in parameter["description"]


async def test_the_search_minimum_is_a_setting(make_client, new_user):
    client = await make_client(search_min_length=1)
    user = await new_user(client)
    await make_post(client, user, title="x marks")
    found = await client.get("/posts", params={"search": "x"}, headers=user.headers)
    assert found.status_code == 200
    assert len(found.json()) == 1
    stricter = await make_client(search_min_length=5)
    other = await new_user(stricter)
    refused = await stricter.get("/posts", params={"search": "four"}, headers=other.headers)
    assert refused.status_code == 422
    assert "at least 5 characters" in refused.text


# --- Token responses are never cached -----------------------------------------------------------


async def test_login_and_refresh_answers_are_not_cacheable(client, new_user):
    user = await new_user(client)
    login = await client.post("/login", data={"username": user.email, "password": user.password})
    refresh = await client.post("/token/refresh", json={"refresh_token": user.refresh_token})
    for response in (login, refresh):
        assert response.status_code == 200, response.text
        assert response.headers["cache-control"] == "no-store"
        assert response.headers["pragma"] == "no-cache"
    paths = client.app.openapi()["paths"]
    for path in ("/login", "/token/refresh"):
        headers = paths[path]["post"]["responses"]["200"]["headers"]
        assert headers["Cache-Control"]["schema"]["enum"] == ["no-store"]
        assert headers["Pragma"]["schema"]["enum"] == ["no-cache"]


async def test_private_reads_are_not_cacheable(client, new_user):
    """The own account (its email) and the session list are never stored by a browser cache
    (found missing by the attacker's review)."""
    user = await new_user(client)
    for path in ("/users/me", "/sessions"):
        response = await client.get(path, headers=user.headers)
        assert response.status_code == 200, response.text
        assert response.headers["cache-control"] == "no-store"


# --- 422s never echo a secret -------------------------------------------------------------------

SECRET = "Sh0rt!"


def _assert_not_echoed(response: Any, *secrets: str) -> None:
    assert response.status_code == 422, response.text
    for secret in secrets:
        assert secret not in response.text, response.text


async def test_registration_422_does_not_echo_the_password(client):
    short = await client.post("/users", json={"email": "a@example.com", "password": SECRET})
    _assert_not_echoed(short, SECRET)
    (error,) = short.json()["detail"]
    assert error["loc"] == ["body", "password"]
    assert "input" not in error
    assert error["ctx"] == {"min_length": 8}
    # A refused extra field reports its own value but hides the password beside it.
    extra = await client.post(
        "/users",
        json={"email": "a@example.com", "password": "long secret 123", "owner": "x"},
    )
    _assert_not_echoed(extra, "long secret 123")
    # So does an error about the whole body.
    listed = await client.post("/users", json=[{"password": "long secret 456"}])
    _assert_not_echoed(listed, "long secret 456")


async def test_login_form_422_does_not_echo_the_password(client):
    too_long = "p" * 4097
    response = await client.post("/login", data={"username": "someone", "password": too_long})
    _assert_not_echoed(response, too_long)
    bad_grant = await client.post(
        "/login", data={"username": "x", "password": SECRET, "grant_type": "nope"}
    )
    _assert_not_echoed(bad_grant, SECRET)


async def test_account_change_422_does_not_echo_passwords(client, new_user):
    user = await new_user(client)
    response = await client.patch(
        "/users/me",
        json={"password": SECRET, "current_password": "c" * 5000},
        headers=user.headers,
    )
    _assert_not_echoed(response, SECRET, "c" * 5000)
    assert {tuple(error["loc"]) for error in response.json()["detail"]} == {
        ("body", "password"),
        ("body", "current_password"),
    }


async def test_refresh_422_does_not_echo_the_token(client):
    token = "r" * 600
    response = await client.post("/token/refresh", json={"refresh_token": token})
    _assert_not_echoed(response, token)
    wrong_type = await client.post("/token/refresh", json={"refresh_token": 12345678})
    _assert_not_echoed(wrong_type, "12345678")


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("application/x-www-form-urlencoded", f"email=x3@example.com&password={SECRET}"),
        ("text/plain", f'{{"refresh_token":"{SECRET}"}}'),
        ("application/json", f'"{SECRET}"'),
    ],
)
async def test_a_body_that_is_not_an_object_is_not_echoed(client, new_user, content_type, body):
    """A form, or JSON sent as text, is refused without its content in the answer: it may hold
    a password or a token (the outsider's curl review found them echoed)."""
    user = await new_user(client)
    for method, path in [
        ("POST", "/users"),
        ("POST", "/token/refresh"),
        ("DELETE", "/users/me"),
        ("PATCH", "/users/me"),
    ]:
        response = await client.request(
            method,
            path,
            content=body.encode(),
            headers={"content-type": content_type, **user.headers},
        )
        assert response.status_code == 422, (path, response.text)
        _assert_not_echoed(response, SECRET)


async def test_an_unknown_fields_value_is_not_echoed(client):
    """A misnamed password field is refused without its value."""
    response = await client.post(
        "/users", json={"email": "a@example.com", "password": "long enough 1", "pasword": SECRET}
    )
    assert response.status_code == 422
    assert response.json()["detail"][0]["type"] == "extra_forbidden"
    _assert_not_echoed(response, SECRET)
