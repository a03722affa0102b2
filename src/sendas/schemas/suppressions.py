"""The suppression list: addresses a user's form letters skip."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, Field, StringConstraints

from sendas.schemas.fields import Strict, normalize_email

SuppressionSource = Literal["bounce", "manual"]
# As schemas.Email, but pasted addresses often carry spaces around them.
Address = Annotated[
    str, StringConstraints(max_length=320, strip_whitespace=True), AfterValidator(normalize_email)
]


class SuppressionIn(Strict):
    """An address added by hand; ``reason`` is the user's own note."""

    address: Address
    reason: Annotated[str, StringConstraints(max_length=500, strip_whitespace=True)] | None = None


class SuppressionOut(BaseModel):
    id: int
    address: str = Field(
        description="Lower case, an internationalised domain in Unicode: one entry per mailbox."
    )
    source: SuppressionSource = Field(
        description="``bounce``: a hard bounce came back; ``manual``: added by the user."
    )
    reason: str | None = Field(
        description="For a bounce, the status code and diagnostic; else the user's note."
    )
    message_id: int | None = Field(description="The message that bounced, while it exists.")
    created_at: datetime


class SuppressionPage(BaseModel):
    """A page of the list, newest first; pass ``next_before_id`` as ``before_id``."""

    items: list[SuppressionOut]
    next_before_id: int | None
