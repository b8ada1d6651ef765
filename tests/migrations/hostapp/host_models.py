"""The host's own tables, on its own MetaData, pointing at postkit's users."""

from __future__ import annotations

from sqlalchemy import ForeignKey, MetaData, String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from postkit.models import User


class HostBase(DeclarativeBase):
    metadata = MetaData(
        naming_convention={
            "pk": "pk_%(table_name)s",
            "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
            "ix": "ix_%(table_name)s_%(column_0_name)s",
            "uq": "uq_%(table_name)s_%(column_0_name)s",
        }
    )


class Bookmark(HostBase):
    __tablename__ = "host_bookmarks"

    id: Mapped[int] = mapped_column(primary_key=True)
    # A Column object (not the string "postkit_users.id") links the two MetaData objects.
    user_id: Mapped[int] = mapped_column(ForeignKey(User.id, ondelete="CASCADE"), index=True)
    url: Mapped[str] = mapped_column(String(2000))
