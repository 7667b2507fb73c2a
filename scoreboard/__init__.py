"""Scoreboard: a self-hosted live leaderboard server."""

__version__ = "0.1.0"
