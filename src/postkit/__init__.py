"""postkit: posts, votes and accounts for FastAPI apps.

Create one :class:`PostKit` from :class:`PostKitSettings`, give its ``lifespan`` to the app
and mount its ``router``. Nothing is created at import time.
"""

from postkit import models
from postkit.__about__ import __version__
from postkit.errors import CommentRejected, ErrorCode, PostKitError, PostRejected, VoteRejected
from postkit.hookspecs import hookimpl
from postkit.kit import PostKit
from postkit.models import Comment, Post, User, Vote
from postkit.settings import PostKitSettings

__all__ = [
    "Comment",
    "CommentRejected",
    "ErrorCode",
    "Post",
    "PostKit",
    "PostKitError",
    "PostKitSettings",
    "PostRejected",
    "User",
    "Vote",
    "VoteRejected",
    "__version__",
    "hookimpl",
    "models",
]
