"""Model fit: screening, combined model, points card and scoring.

This module is step 2 of the method (notebook 02). The points card itself,
its model.json form and the scoring rules live in :mod:`icp_lib._card`.
"""

from __future__ import annotations

from ._card import ScoreCard, score_records

__all__ = ["ScoreCard", "score_records"]
