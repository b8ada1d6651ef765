"""A slower "hot": a post needs ten times the score to outrank one posted a day later (postkit's
own hot uses 12.5 hours), for a community that posts less often. Best and controversial are
left to postkit (the hook answers None for them)."""

from __future__ import annotations

import math
from datetime import datetime

from postkit import hookimpl
from postkit.ranking import HOT_EPOCH

SECONDS_PER_TENFOLD = 86_400


class SlowHot:
    """``rank_score`` for the ``hot`` rank only: a pure function of the score and the creation
    time, so the stored value never needs rewriting as time passes."""

    def __init__(self, seconds_per_tenfold: int = SECONDS_PER_TENFOLD) -> None:
        self.seconds_per_tenfold = seconds_per_tenfold

    @hookimpl
    def rank_score(self, rank: str, score: int, created_at: datetime) -> float | None:
        if rank != "hot":
            return None
        order = math.log10(max(abs(score), 1))
        sign = (score > 0) - (score < 0)
        age = (created_at - HOT_EPOCH).total_seconds()
        return round(sign * order + age / self.seconds_per_tenfold, 7)
