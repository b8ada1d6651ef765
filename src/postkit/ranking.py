"""Ranking scores of posts and comments: hot, best and controversial.

Each score is a pure function of what is stored on the item (its up- and down-vote counts, its
weighted score and its creation time), so it is computed in the vote's own transaction, stored
on the row, and served from an index. None of them needs rewriting as time passes:

- **hot** adds the item's age to the logarithm of its score, the way Reddit's ranking does: an
  item must gain ten times the score to outrank one posted :data:`HOT_HALF_LIFE_SECONDS` later.
  Newer items rank higher because their timestamp term is larger, not because older rows are
  decayed, so the stored value stays valid forever.
- **best** is the lower bound of the Wilson score interval (95% confidence) of the share of
  up-votes: few votes are not trusted as much as many.
- **controversial** is high for many votes split evenly between up and down.

A plugin's ``rank_score`` hook may replace any of them (``docs/hooks.md``).
"""

from __future__ import annotations

import math
from datetime import datetime, timezone

__all__ = [
    "HOT_EPOCH",
    "HOT_HALF_LIFE_SECONDS",
    "RANKS",
    "best",
    "controversial",
    "hot",
    "rank_scores",
]

RANKS = ("hot", "best", "controversial")
"""The stored ranking scores, by name (each a column ``<name>_rank`` on posts and comments)."""

HOT_EPOCH = datetime(2025, 1, 1, tzinfo=timezone.utc)
"""Where hot's time term is zero (any fixed instant works; this keeps the values small)."""

HOT_HALF_LIFE_SECONDS = 45_000
"""Seconds of age worth one factor of ten in score (12.5 hours, as Reddit uses)."""

_Z = 1.959963984540054  # the 97.5th percentile of the normal distribution: 95% two-sided


def hot(score: int, created_at: datetime) -> float:
    """The hot score of an item with weighted ``score`` created at ``created_at`` (aware or
    naive UTC)."""
    magnitude = math.log10(max(abs(score), 1))
    sign = (score > 0) - (score < 0)
    if created_at.tzinfo is None:
        created_at = created_at.replace(tzinfo=timezone.utc)
    seconds = (created_at - HOT_EPOCH).total_seconds()
    return round(sign * magnitude + seconds / HOT_HALF_LIFE_SECONDS, 7)


def best(upvotes: int, downvotes: int) -> float:
    """The lower bound of the Wilson score interval of ``upvotes`` among all votes (0 with no
    votes)."""
    total = upvotes + downvotes
    if total <= 0:
        return 0.0
    share = max(upvotes, 0) / total
    z2 = _Z * _Z
    centre = share + z2 / (2 * total)
    spread = _Z * math.sqrt((share * (1 - share) + z2 / (4 * total)) / total)
    return round((centre - spread) / (1 + z2 / total), 9)


def controversial(upvotes: int, downvotes: int) -> float:
    """Many votes, evenly split: ``(up + down) ** (minority / majority)`` (0 unless the item
    has both up- and down-votes)."""
    if upvotes <= 0 or downvotes <= 0:
        return 0.0
    balance = min(upvotes, downvotes) / max(upvotes, downvotes)
    return round(float((upvotes + downvotes) ** balance), 9)


def rank_scores(
    *, score: int, upvotes: int, downvotes: int, created_at: datetime
) -> dict[str, float]:
    """Every stored ranking score of an item, by column name (``hot_rank``, ...)."""
    return {
        "hot_rank": hot(score, created_at),
        "best_rank": best(upvotes, downvotes),
        "controversial_rank": controversial(upvotes, downvotes),
    }
