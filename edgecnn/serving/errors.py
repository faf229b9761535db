"""What a request can get wrong, as the HTTP status and the metric kind each answer carries."""

from __future__ import annotations

from edgecnn.core.errors import EdgecnnError


class RequestError(EdgecnnError):
    """A request the server refuses; the message goes back as ``{"error": ...}`` with ``status``."""

    status = 400
    kind = "bad_request"


class NotFound(RequestError):
    status = 404
    kind = "not_found"


class Unauthorized(RequestError):
    status = 401
    kind = "unauthorized"


class BodyTooLarge(RequestError):
    status = 413
    kind = "too_large"


class BodyTimeout(RequestError):
    """The body did not arrive in time (a stalled or very slow upload)."""

    status = 408
    kind = "timeout"


class Overloaded(RequestError):
    """The model's queue is full (or the server is stopping): try again after ``retry_after`` seconds."""

    status = 503
    kind = "overloaded"
    retry_after = 1


class NotReady(Overloaded):
    """A model that is still loading."""

    kind = "not_ready"
