"""Field types and checks every schema shares: header-safe text, email addresses, passwords,
the delay between emails, and the strict base model."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from email_validator import EmailNotValidError, ValidatedEmail, validate_email
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    StringConstraints,
)

from sendas.header_text import header_text_problem
from sendas.validation import at_most

TlsMode = Literal["auto", "implicit", "starttls", "none"]
AuthMethod = Literal["password", "google", "microsoft"]
Role = Literal["admin", "user"]

# RFC 5322 caps a header line at 998 characters; no header-bound value may be longer.
HEADER_MAX = 998
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


def header_safe(value: str) -> str:
    """Refuse CR, LF and other control characters: they could inject a header."""
    if _CONTROL.search(value):
        raise ValueError("must not contain line breaks or control characters")
    return value


def header_bound(value: str) -> str:
    """Refuse what the message builder would refuse in a header (sendas.header_text): the
    same check at save time, so a saved alias can always send."""
    problem = header_text_problem(value)
    if problem is not None:
        raise ValueError(problem)
    return value


def check_email(value: str) -> ValidatedEmail:
    """The one address check of sendas: syntax only (no DNS). Raises EmailNotValidError.

    ``test_environment`` admits the reserved .test domain (RFC 2606), which private and
    test mail servers use; other special-use names stay refused.
    """
    return validate_email(
        value, check_deliverability=False, allow_smtputf8=True, test_environment=True
    )


def normalize_email(value: str) -> str:
    """Validate syntax only (no DNS) and return the address with a Unicode domain."""
    header_bound(value)
    try:
        result = check_email(value)
    except EmailNotValidError as exc:
        raise ValueError(f"not a valid email address: {exc}") from None
    return result.normalized


def strip_password(value: SecretStr | None) -> SecretStr | None:
    """Google shows app passwords in groups with spaces; the spaces are not part of it."""
    if value is None:
        return None
    raw = value.get_secret_value()
    if _CONTROL.search(raw):
        raise ValueError("must not contain line breaks or control characters")
    if re.fullmatch(r"[A-Za-z]{4}( [A-Za-z]{4}){3}", raw.strip()):
        return SecretStr(raw.replace(" ", ""))
    return value


def parse_delay_ms(text: str) -> int:
    """The "delay between emails" box of a form, in milliseconds; empty means no pause.

    Digits may be grouped with ``,``, ``_`` or spaces (``2,500``). Raises ValueError in plain
    words, the API's words for a value over the limit.
    """
    digits = re.sub(r"[,_ ]", "", text.strip())
    if not digits:
        return 0
    if not (digits.isascii() and digits.isdigit()):
        raise ValueError("must be a whole number of milliseconds (0 for no pause)")
    value = int(digits)
    if value > DELAY_MS_MAX:
        raise ValueError(at_most(DELAY_MS_MAX))
    return value


def parse_max_connections(text: str) -> int:
    """The "connections at once" box of a form; empty means 1. Raises ValueError."""
    digits = text.strip()
    if not digits:
        return 1
    if not (digits.isascii() and digits.isdigit()) or int(digits) < 1:
        raise ValueError("must be a whole number, at least 1")
    return int(digits)


HeaderText = Annotated[str, StringConstraints(max_length=HEADER_MAX), AfterValidator(header_safe)]
ShortText = Annotated[
    str, StringConstraints(max_length=200, strip_whitespace=True), AfterValidator(header_safe)
]
HeaderName = Annotated[
    str, StringConstraints(max_length=200, strip_whitespace=True), AfterValidator(header_bound)
]
"""A display name bound for a header (Alias Name, From name)."""
Email = Annotated[str, StringConstraints(max_length=320), AfterValidator(normalize_email)]
Password = Annotated[SecretStr, Field(max_length=1000), AfterValidator(strip_password)]
DELAY_MS_MAX = 3_600_000
DelayMs = Annotated[int, Field(ge=0, le=DELAY_MS_MAX, strict=True)]
# The upper bound is a setting (SENDAS_MAX_CONNECTIONS_CAP), checked by the services.
MaxConnections = Annotated[int, Field(ge=1, strict=True)]
ServerText = Annotated[str, StringConstraints(max_length=300, strip_whitespace=True)]
PemText = Annotated[str, StringConstraints(max_length=200_000)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_max_length=200_000)


# Ids and offsets: the largest value a BIGINT column (and SQLite's INTEGER) holds. Past it the
# database driver overflows, which would answer 500. Most tables have INTEGER keys (4 bytes on
# PostgreSQL): their ids stop at ROW_ID_MAX; messages have BIGINT keys.
ID_MAX = 2**63 - 1
ROW_ID_MAX = 2**31 - 1


def unknown_if_out_of_range(value: int, top: int = ROW_ID_MAX) -> int:
    """An id no row has (0) for a value outside 1..top, so the lookup answers 404 (or
    "no such alias") like for any other unknown id, instead of overflowing the driver."""
    return value if 0 < value <= top else 0


def form_id(text: str) -> int | None:
    """An id typed into a form field (ASCII digits only); None when it is not one."""
    if not (text.isascii() and text.isdigit()):
        return None
    return unknown_if_out_of_range(int(text))


ObjectId = Annotated[int, AfterValidator(unknown_if_out_of_range)]
"""A path, query or body id of a row with an INTEGER key: out-of-range values find nothing
(404) rather than fail."""
MessageId = Annotated[int, AfterValidator(lambda v: unknown_if_out_of_range(v, ID_MAX))]
"""A message id (BIGINT key): out-of-range values find nothing (404)."""
Offset = Annotated[int, Field(ge=0, le=ID_MAX)]
"""A row offset or a keyset cursor: out-of-range values are a 422 naming the parameter."""
PAGE_NO_MAX = 10**9
PageNo = Annotated[int, Field(ge=1, le=PAGE_NO_MAX)]
