"""Reporting: the cross-experiment leaderboard (markdown and self-contained HTML) from every experiment's reports."""
