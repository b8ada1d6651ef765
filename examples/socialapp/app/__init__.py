"""socialapp: the postkit reference app (a feed with accounts, posts, votes and bookmarks)."""
