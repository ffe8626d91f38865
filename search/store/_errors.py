"""Errors the store raises for conditions a caller is expected to handle."""

from __future__ import annotations

__all__ = ["JobNotFoundError", "JobStateError", "LeaseLostError", "SchemaError", "StoreError"]


class StoreError(Exception):
    """Base of the store's expected errors; the message is one line for the user."""


class SchemaError(StoreError):
    """The database's poolstride schema is missing or not the one this code expects."""


class JobNotFoundError(StoreError, LookupError):
    """No job has the given id."""


class JobStateError(StoreError):
    """The job is in a state that does not allow the operation (e.g. cancelling a finished job)."""


class LeaseLostError(StoreError):
    """The worker no longer holds the job: its lease expired and the job moved on."""
