"""Cluster mode: several processes on one PostgreSQL database, kept in step through Redis.

PostgreSQL is the source of truth: every change is decided and committed there first, then
published on Redis as one of the records of `changes.py`, and every process applies the
records it receives to its in-memory replica of the boards, in each board's seq order.
"""
