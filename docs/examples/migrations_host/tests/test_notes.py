"""The notes app through HTTP, on a database migrated with the app's composed history."""

from notesapp.models import Note
from sqlalchemy import select


async def test_a_note_belongs_to_its_author(postkit_client, postkit_make_user, postkit_act_as):
    grace, _password = await postkit_make_user(username="grace")
    headers = await postkit_act_as(grace)  # a real session, no login round trip

    created = await postkit_client.post("/api/notes", json={"title": "Hi"}, headers=headers)

    assert created.status_code == 201, created.text
    assert created.json()["author_id"] == grace.id


async def test_notes_are_private(postkit_make_user, postkit_auth_client):
    ada = await postkit_auth_client((await postkit_make_user()).user)
    bob = await postkit_auth_client((await postkit_make_user()).user)
    await ada.post("/api/notes", json={"title": "Ada's"})

    assert [note["title"] for note in (await ada.get("/api/notes")).json()] == ["Ada's"]
    assert (await bob.get("/api/notes")).json() == []


async def test_every_test_starts_empty(postkit_kit):
    async with postkit_kit.db.sessionmaker() as session:
        assert (await session.scalars(select(Note))).all() == []


async def test_logging_in_through_http(postkit_client, postkit_make_user, postkit_login):
    linus = await postkit_make_user(email="linus@example.com")
    headers = await postkit_login(linus)  # POST /api/login with the email and password

    me = await postkit_client.get("/api/users/me", headers=headers)

    assert me.json()["email"] == "linus@example.com"


async def test_logout_revokes_an_act_as_token(postkit_client, postkit_make_user, postkit_act_as):
    user, _ = await postkit_make_user()
    headers = await postkit_act_as(user)
    assert (await postkit_client.post("/api/logout", headers=headers)).status_code == 204

    assert (await postkit_client.get("/api/notes", headers=headers)).status_code == 401
