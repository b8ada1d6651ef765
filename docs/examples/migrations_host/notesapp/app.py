"""The notes app's HTTP side: postkit under /api, and the app's own notes next to it."""

from typing import Annotated

from fastapi import Depends, FastAPI
from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from notesapp.models import Note
from postkit import PostKit, PostKitSettings, User


class NoteIn(BaseModel):
    title: str = Field(min_length=1, max_length=200)


class NoteOut(BaseModel):
    id: int
    title: str
    author_id: int | None


def create_app(settings: PostKitSettings | None = None) -> FastAPI:
    kit = PostKit(settings)
    app = FastAPI(title="notes", lifespan=kit.lifespan)
    app.state.kit = kit  # the app's kit, where postkit.testing (and the app's code) finds it
    app.include_router(kit.router, prefix="/api")
    kit.install_error_handlers(app)

    # The request's session: postkit's engine, any mapped class (the app's Note too).
    Session = Annotated[AsyncSession, Depends(kit.session, scope="function")]
    CurrentUser = Annotated[User, Depends(kit.current_user)]

    @app.post("/api/notes", status_code=201)
    async def create_note(body: NoteIn, session: Session, user: CurrentUser) -> NoteOut:
        note = Note(title=body.title, author_id=user.id)
        session.add(note)
        await session.commit()  # kit.session commits nothing: the route commits its writes
        return NoteOut(id=note.id, title=note.title, author_id=note.author_id)

    @app.get("/api/notes")
    async def my_notes(session: Session, user: CurrentUser) -> list[NoteOut]:
        notes = await session.scalars(
            select(Note).where(Note.author_id == user.id).order_by(Note.id)
        )
        return [NoteOut(id=n.id, title=n.title, author_id=n.author_id) for n in notes]

    return app
