"""A feed API in a dozen lines: postkit mounted into a FastAPI app."""

from typing import Annotated

from fastapi import Depends, FastAPI

from postkit import PostKit, PostKitSettings, User

kit = PostKit(PostKitSettings(database_url="sqlite:///./feed.db", auto_migrate=True))
app = FastAPI(title="My feed", lifespan=kit.lifespan)
app.include_router(kit.router)  # /users, /login, /posts, /vote, ...


@app.get("/hello")
async def hello(user: Annotated[User, Depends(kit.current_user)]) -> dict[str, str]:
    return {"message": f"Hello, {user.username}!"}
