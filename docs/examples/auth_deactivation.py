"""Suspending and restoring accounts from the host's own (admin) routes."""

from typing import Annotated

from fastapi import Depends, FastAPI, HTTPException
from sqlalchemy.ext.asyncio import AsyncSession

from postkit import PostKit, PostKitSettings, User

ADMINS = {"admin"}  # however your app decides who may suspend accounts


def create_app(settings: PostKitSettings | None = None) -> FastAPI:
    kit = PostKit(settings)
    app = FastAPI(lifespan=kit.lifespan)
    app.include_router(kit.router, prefix="/api")
    kit.install_error_handlers(app)

    Session = Annotated[AsyncSession, Depends(kit.session, scope="function")]

    async def admin(user: Annotated[User, Depends(kit.current_user)]) -> User:
        if user.username not in ADMINS:
            raise HTTPException(status_code=403, detail="Admins only")
        return user

    Admin = Annotated[User, Depends(admin)]

    @app.post("/api/admin/users/{user_id}/suspend", status_code=204)
    async def suspend(user_id: int, _: Admin, session: Session) -> None:
        # Signs the account out everywhere, for good: unlike `user.is_active = False`, its
        # old tokens stay dead after it is restored. Unknown ids answer 404 USER_NOT_FOUND.
        await kit.accounts.deactivate(session, user_id=user_id)

    @app.post("/api/admin/users/{user_id}/restore", status_code=204)
    async def restore(user_id: int, _: Admin, session: Session) -> None:
        # The account may sign in again; only new logins work.
        await kit.accounts.reactivate(session, user_id=user_id)

    return app
