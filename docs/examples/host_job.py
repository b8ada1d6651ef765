"""A job outside any request (a digest, a clean-up): postkit's services on the kit's sessions."""

from postkit import PostKit, PostKitSettings


async def hottest_titles(settings: PostKitSettings | None = None, *, login: str) -> list[str]:
    """The titles of the five hottest posts ``login`` may see, as a nightly digest would list."""
    kit = PostKit(settings)
    # The kit's lifespan opens its engine (and mail sender) and closes them afterwards.
    async with kit.lifespan(), kit.db.sessionmaker() as session:
        user = await kit.accounts.find_by_login(session, login=login)
        page = await kit.posts.feed(session, user=user, limit=5, sort="hot")
    return [post["title"] for post in page.posts]
