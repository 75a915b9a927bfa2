"""What the server's routes take from a request: the project served, and the caller, by bearer token.

``create_app`` keeps the project and its guideline (read once) in the app's state; a route takes them
as ``ServedProject`` and ``ServedGuideline`` parameters. ``bearer`` reads the caller's token,
``authenticate`` checks it, ``writing`` checks it before a route writes.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from videolift.data.annotate.guideline import Guideline
from videolift.data.annotate.models import User
from videolift.data.annotate.project import Project, user_for_token
from videolift.data.annotate.tasks import TaskError

Credentials = HTTPAuthorizationCredentials | None
bearer = HTTPBearer(auto_error=False)


async def served_project(request: Request) -> Project:
    """The project ``create_app`` was given. (async: it does no I/O, so it runs on the event loop, not in
    a worker thread as a plain function would.)"""
    project: Project = request.app.state.project
    return project


async def served_guideline(request: Request) -> Guideline:
    """The project's guideline, as ``create_app`` read it."""
    guide: Guideline = request.app.state.guideline
    return guide


ServedProject = Annotated[Project, Depends(served_project)]
ServedGuideline = Annotated[Guideline, Depends(served_guideline)]


def authenticate(session: Session, credentials: Credentials, role: str | None) -> User:
    """The caller; 401 without a valid token, 403 with a token of another role (``None``: any role)."""
    if credentials is None or not credentials.credentials:
        raise TaskError(401, "missing bearer token (Authorization: Bearer <token>)")
    user = user_for_token(session, credentials.credentials)
    if user is None:
        raise TaskError(401, "invalid token")
    if role is not None and user.role != role:
        raise TaskError(403, f"this needs an {role} token")
    return user


@contextlib.contextmanager
def writing(project: Project, credentials: Credentials, role: str) -> Iterator[tuple[Session, User]]:
    """A write transaction and its caller, whose token is checked first without one: a request with
    no valid token never waits for the write lock, nor holds it."""
    with project.session(readonly=True) as session:
        authenticate(session, credentials, role)
    with project.session() as session:
        yield session, authenticate(session, credentials, role)  # a token revoked meanwhile: refused
