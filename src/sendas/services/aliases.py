"""Email aliases: the rules of the Edit Alias screen.

Every write locks the owner's row first (``FOR UPDATE`` on PostgreSQL; SQLite write
transactions are ``BEGIN IMMEDIATE``), so "exactly one default alias per user" holds under
concurrent requests; a partial unique index backs it up in the database.
"""

from __future__ import annotations

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from sendas.db.models import Alias, ImapAccount, User
from sendas.db.wake import wake_workers
from sendas.endpoints import token_servers
from sendas.errors import FieldProblem, NotFound, ValidationFailed
from sendas.outbox import settle
from sendas.schemas import AliasCreate, AliasOut, AliasPatch
from sendas.secrets import SecretBox
from sendas.services.common import Actor, audit, format_server, parse_server_field
from sendas.services.connections import DEFAULT_CAP, connection_problems
from sendas.services.secret_binding import Destination, rebinding_problem
from sendas.smtp import server_warnings

# Where "Sign in with Google/Microsoft" aliases submit, when the user gave no server.
PROVIDER_SERVERS = {
    "google": ("smtp.gmail.com", 465, "implicit"),
    "microsoft": ("smtp.office365.com", 587, "starttls"),
}


def lock_owner(session: Session, user_id: int) -> None:
    """Serialise alias writes of one user (no-op lock on SQLite, which serialises writers)."""
    session.execute(select(User.id).where(User.id == user_id).with_for_update())


def alias_out(alias: Alias) -> AliasOut:
    return AliasOut(
        id=alias.id,
        user_id=alias.user_id,
        description=alias.description,
        alias_name=alias.alias_name,
        from_address=alias.from_address,
        reply_to=alias.reply_to,
        smtp_server=format_server(alias.smtp_host, alias.smtp_port),
        smtp_username=alias.smtp_username,
        tls=alias.tls,
        allow_plaintext_auth=alias.allow_plaintext_auth,
        ca_bundle_set=bool(alias.ca_bundle),
        imap_account_id=alias.imap_account_id,
        is_default=alias.is_default,
        delay_ms=alias.delay_ms,
        max_connections=alias.max_connections,
        auth=alias.auth,
        password_set=alias.smtp_password_enc is not None,
        needs_reauth=alias.needs_reauth,
        last_test=alias.last_test,
        warnings=server_warnings(alias.smtp_host) if alias.smtp_host else [],
        created_at=alias.created_at,
        updated_at=alias.updated_at,
    )


def list_aliases(session: Session, actor: Actor) -> list[Alias]:
    return list(
        session.scalars(
            select(Alias).where(Alias.user_id == actor.id).order_by(Alias.created_at, Alias.id)
        )
    )


def get_alias(session: Session, actor: Actor, alias_id: int) -> Alias:
    """The actor's alias; anything owned by someone else is NotFound (never Forbidden)."""
    alias = session.get(Alias, alias_id)
    if alias is None or alias.user_id != actor.id:
        raise NotFound("alias", alias_id)
    return alias


def default_alias(session: Session, user_id: int) -> Alias | None:
    return session.scalar(select(Alias).where(Alias.user_id == user_id, Alias.is_default))


def _check_description(
    session: Session, user_id: int, description: str, alias_id: int | None
) -> str:
    key = description.casefold()
    q = select(Alias.id).where(Alias.user_id == user_id, Alias.description_key == key)
    if alias_id is not None:
        q = q.where(Alias.id != alias_id)
    if session.scalar(q) is not None:
        raise ValidationFailed.one("description", "you already have an alias with this description")
    return key


def _check_imap(session: Session, user_id: int, imap_account_id: int | None) -> None:
    if imap_account_id is None:
        return
    acc = session.get(ImapAccount, imap_account_id)
    if acc is None or acc.user_id != user_id:
        raise ValidationFailed.one("imap_account_id", "no such IMAP account")


def apply_fields(
    session: Session,
    alias: Alias,
    data: AliasPatch,
    box: SecretBox | None,
    *,
    creating: bool,
    max_connections_cap: int = DEFAULT_CAP,
) -> list[str]:
    """Copy validated fields onto ``alias``; return warnings. Raises ValidationFailed.

    Every field is checked before anything is raised, so one reply lists all the problems.
    """
    fields = data.model_fields_set
    before = destination(alias)
    stuck = bool(alias.needs_reauth)
    problems = _apply_identity(session, alias, data, creating=creating)
    _apply_connection(alias, data)
    if fields & {"max_connections", "delay_ms"}:
        problems += connection_problems(alias.max_connections or 1, alias.delay_ms or 0,
                                        max_connections_cap)  # fmt: skip
    problems += _apply_imap_link(session, alias, data)
    warnings, server_problems = _apply_server(alias, data)
    problems += server_problems
    problems += _keep_password_bound(alias, data, before)
    problems += _keep_token_bound(alias, before)
    _apply_password(alias, data, box)
    if stuck and not alias.needs_reauth:  # its queued mail can go out again
        wake_workers(session)
    if not problems:
        problems = _missing_for_password(alias)
    if alias.tls == "none" and alias.allow_plaintext_auth is False and "tls" in fields:
        warnings.append(
            "SSL/TLS is disabled: the password would cross the network in clear text, so "
            "sending refuses to use it unless allow_plaintext_auth is set"
        )
    if problems:
        raise ValidationFailed(problems)
    return warnings


def _apply_identity(
    session: Session, alias: Alias, data: AliasPatch, *, creating: bool
) -> list[FieldProblem]:
    """Who the alias says it is: description (unique per user), names, addresses."""
    fields = data.model_fields_set
    problems: list[FieldProblem] = []
    if "description" in fields:
        if not data.description:
            problems.append(FieldProblem(("body", "description"), "is required"))
        else:
            try:
                alias.description_key = _check_description(
                    session, alias.user_id, data.description, None if creating else alias.id
                )
                alias.description = data.description
            except ValidationFailed as exc:
                problems.extend(exc.problems)
    for name in ("alias_name", "from_address", "smtp_username"):
        if name in fields:
            setattr(alias, name, getattr(data, name) or "")
    if "reply_to" in fields:
        alias.reply_to = data.reply_to or None
    return problems


def _apply_connection(alias: Alias, data: AliasPatch) -> None:
    """How the alias signs in and connects, and its pace; a new sign-in method drops the token."""
    fields = data.model_fields_set
    if "auth" in fields and data.auth:
        if data.auth != alias.auth:
            alias.oauth_token_enc = None
            alias.oauth_servers = None
            alias.needs_reauth = False
        alias.auth = data.auth
    if "tls" in fields and data.tls:
        alias.tls = data.tls
    if "allow_plaintext_auth" in fields and data.allow_plaintext_auth is not None:
        alias.allow_plaintext_auth = data.allow_plaintext_auth
    if "ca_bundle" in fields:
        alias.ca_bundle = data.ca_bundle
    if "delay_ms" in fields and data.delay_ms is not None:
        alias.delay_ms = data.delay_ms
    if "max_connections" in fields and data.max_connections is not None:
        alias.max_connections = data.max_connections


def _apply_imap_link(session: Session, alias: Alias, data: AliasPatch) -> list[FieldProblem]:
    if "imap_account_id" not in data.model_fields_set:
        return []
    try:
        _check_imap(session, alias.user_id, data.imap_account_id)
    except ValidationFailed as exc:
        return list(exc.problems)
    alias.imap_account_id = data.imap_account_id
    return []


def _apply_server(alias: Alias, data: AliasPatch) -> tuple[list[str], list[FieldProblem]]:
    """The SMTP server (read with the TLS mode set above); provider aliases get theirs."""
    if "smtp_server" in data.model_fields_set and data.smtp_server:
        try:
            alias.smtp_host, alias.smtp_port, warnings = parse_server_field(
                "smtp_server", data.smtp_server, alias.tls
            )
        except ValidationFailed as exc:
            return [], list(exc.problems)
        return warnings, []
    if alias.auth in PROVIDER_SERVERS and not alias.smtp_host:
        alias.smtp_host, alias.smtp_port, alias.tls = PROVIDER_SERVERS[alias.auth]
    return [], []


def destination(alias: Alias) -> Destination:
    """Where the alias's stored password is sent."""
    return Destination.of(
        alias.smtp_host, alias.smtp_port, alias.tls, alias.allow_plaintext_auth, alias.ca_bundle
    )


def _keep_password_bound(alias: Alias, data: AliasPatch, before: Destination) -> list[FieldProblem]:
    """A stored password follows no change of server or TLS: the owner types it again.

    An alias that signs in with Google or Microsoft does not use it: it is dropped instead.
    """
    if not alias.smtp_password_enc or "smtp_password" in data.model_fields_set:
        return []
    problem = rebinding_problem(before, destination(alias), "smtp_password")
    if problem is None:
        return []
    if alias.auth != "password":
        alias.smtp_password_enc = None
        return []
    return [problem]


def _keep_token_bound(alias: Alias, before: Destination) -> list[FieldProblem]:
    """A signed-in alias's token opens the whole mailbox: it goes only to the server the
    sign-in set (the provider's, or the admin's override). Moving the alias elsewhere, or
    trusting another CA for it, needs a new sign-in or a switch to a password."""
    if alias.auth == "password" or not alias.oauth_token_enc:
        return []
    servers = token_servers(alias)
    problems: list[FieldProblem] = []
    if not servers.smtp_allows(alias.smtp_host, alias.smtp_port, alias.tls):
        problems.append(FieldProblem(("body", "smtp_server"), servers.refusal()))
    if alias.ca_bundle and alias.ca_bundle != before.ca_bundle:
        problems.append(FieldProblem(("body", "ca_bundle"), servers.refusal()))
    return problems


def _apply_password(alias: Alias, data: AliasPatch, box: SecretBox | None) -> None:
    if "smtp_password" not in data.model_fields_set:
        return
    pw = data.smtp_password.get_secret_value() if data.smtp_password else ""
    assert box is not None, "a password is written only where a SecretBox is given"
    alias.smtp_password_enc = box.encrypt(pw) if pw else None
    if pw:
        alias.needs_reauth = False  # the owner supplied new credentials


def _missing_for_password(alias: Alias) -> list[FieldProblem]:
    """A password alias cannot send without a From address and a server."""
    if alias.auth != "password":
        return []
    problems: list[FieldProblem] = []
    if not alias.from_address:
        problems.append(FieldProblem(("body", "from_address"), "is required"))
    if not alias.smtp_host:
        problems.append(
            FieldProblem(
                ("body", "smtp_server"), "is required (host:port, e.g. mail.example.com:465)"
            )
        )
    return problems


def create_alias(
    session: Session,
    actor: Actor,
    data: AliasCreate,
    box: SecretBox,
    *,
    max_connections_cap: int = DEFAULT_CAP,
) -> tuple[Alias, list[str]]:
    lock_owner(session, actor.id)
    alias = Alias(
        user_id=actor.id, is_default=False, tls=data.tls or "auto", auth=data.auth or "password"
    )
    warnings = apply_fields(
        session, alias, data, box, creating=True, max_connections_cap=max_connections_cap
    )
    has_default = default_alias(session, actor.id) is not None
    want_default = bool(data.is_default) or not has_default
    if want_default and has_default:
        _clear_default(session, actor.id)
    alias.is_default = want_default
    session.add(alias)
    session.flush()
    audit(
        session,
        actor,
        "alias.create",
        "alias",
        alias.id,
        owner_id=actor.id,
        detail={"fields": sorted(data.model_fields_set)},
    )
    return alias, warnings


def _clear_default(session: Session, user_id: int) -> None:
    for other in session.scalars(select(Alias).where(Alias.user_id == user_id, Alias.is_default)):
        other.is_default = False
    session.flush()  # the partial unique index must see the old default cleared first


def update_alias(
    session: Session,
    actor: Actor,
    alias_id: int,
    data: AliasPatch,
    box: SecretBox | None,
    *,
    max_connections_cap: int = DEFAULT_CAP,
) -> tuple[Alias, list[str]]:
    lock_owner(session, actor.id)
    alias = get_alias(session, actor, alias_id)
    if "is_default" in data.model_fields_set and data.is_default is False and alias.is_default:
        raise ValidationFailed.one(
            "is_default", "an alias stays default until you make another alias the default"
        )
    sends_to = _sends_to(alias)
    warnings = apply_fields(
        session, alias, data, box, creating=False, max_connections_cap=max_connections_cap
    )
    if sends_to != _sends_to(alias):
        _forget_filing(session, alias.imap_account_id)
    if data.is_default and not alias.is_default:
        _clear_default(session, actor.id)
        alias.is_default = True
    session.flush()
    audit(
        session,
        actor,
        "alias.update",
        "alias",
        alias.id,
        owner_id=actor.id,
        detail={"fields": sorted(data.model_fields_set)},
    )
    return alias, warnings


def _sends_to(alias: Alias) -> tuple[str, int, str, int | None]:
    """What a learnt "the server files its own copy" is about: server, login and mailbox."""
    login = alias.smtp_username.strip().casefold()
    return alias.smtp_host, alias.smtp_port, login, alias.imap_account_id


def _forget_filing(session: Session, account_id: int | None) -> None:
    """Another SMTP server, login or mailbox for the alias: whether the server files its own copy
    in that mailbox's Sent is not known any more (the outbox learns it again at a send)."""
    if account_id is not None:
        session.execute(
            update(ImapAccount).where(ImapAccount.id == account_id).values(files_sent_copy=None)
        )


def make_default(session: Session, actor: Actor, alias_id: int) -> Alias:
    alias, _ = update_alias(session, actor, alias_id, AliasPatch(is_default=True), None)
    return alias


def delete_alias(session: Session, actor: Actor, alias_id: int) -> None:
    lock_owner(session, actor.id)
    alias = get_alias(session, actor, alias_id)
    was_default = alias.is_default
    # Mail still waiting in this alias's lane can no longer be sent: say so, not wait forever.
    settle.cancel_waiting(session, alias_id, "The alias was deleted before this message was sent.")
    session.delete(alias)
    session.flush()
    if was_default:
        oldest = session.scalar(
            select(Alias)
            .where(Alias.user_id == actor.id)
            .order_by(Alias.created_at, Alias.id)
            .limit(1)
        )
        if oldest is not None:
            oldest.is_default = True
    audit(session, actor, "alias.delete", "alias", alias_id, owner_id=actor.id)
