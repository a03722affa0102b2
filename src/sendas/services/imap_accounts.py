"""IMAP accounts that aliases may point to, so sent mail is copied to Sent."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from sendas.db.models import Alias, ImapAccount
from sendas.errors import Conflict, FieldProblem, NotFound, ValidationFailed
from sendas.schemas import ImapCreate, ImapOut, ImapPatch
from sendas.secrets import SecretBox
from sendas.services.common import Actor, audit, format_server, parse_server_field
from sendas.services.secret_binding import Destination, rebinding_problem

# Without a port, follow the TLS mode: 993 implicit TLS, 143 STARTTLS or plain.
IMAP_DEFAULT_PORTS = {"implicit": 993, "auto": 993, "starttls": 143, "none": 143}


def imap_out(acc: ImapAccount) -> ImapOut:
    return ImapOut(
        id=acc.id,
        user_id=acc.user_id,
        description=acc.description,
        imap_server=format_server(acc.imap_host, acc.imap_port),
        username=acc.username,
        tls=acc.tls,
        sent_folder=acc.sent_folder,
        allow_plaintext_auth=acc.allow_plaintext_auth,
        password_set=acc.password_enc is not None,
        last_test=acc.last_test,
        created_at=acc.created_at,
        files_sent_copy=acc.files_sent_copy,
    )


def list_imap_accounts(session: Session, actor: Actor) -> list[ImapAccount]:
    return list(
        session.scalars(
            select(ImapAccount).where(ImapAccount.user_id == actor.id).order_by(ImapAccount.id)
        )
    )


def get_imap_account(session: Session, actor: Actor, account_id: int) -> ImapAccount:
    acc = session.get(ImapAccount, account_id)
    if acc is None or acc.user_id != actor.id:
        raise NotFound("IMAP account", account_id)
    return acc


def _parse_imap_server(text: str, tls: str) -> tuple[str, int]:
    host, port, _ = parse_server_field(
        "imap_server", text, tls, fallback_port=IMAP_DEFAULT_PORTS.get(tls, 993)
    )
    return host, port


def destination(acc: ImapAccount) -> Destination:
    """Where the account's stored password is sent."""
    return Destination.of(
        acc.imap_host, acc.imap_port, acc.tls, acc.allow_plaintext_auth, acc.ca_bundle
    )


def apply_fields(acc: ImapAccount, data: ImapPatch, box: SecretBox) -> None:
    fields = data.model_fields_set
    before = destination(acc)
    if "tls" in fields and data.tls:
        acc.tls = data.tls
    if "imap_server" in fields:
        if not data.imap_server:
            raise ValidationFailed([FieldProblem(("body", "imap_server"), "is required")])
        acc.imap_host, acc.imap_port = _parse_imap_server(data.imap_server, acc.tls)
    if "username" in fields:
        if not data.username:
            raise ValidationFailed.one("username", "is required")
        acc.username = data.username
    if "description" in fields:
        acc.description = data.description or ""
    if "sent_folder" in fields:
        acc.sent_folder = data.sent_folder or None
    if "ca_bundle" in fields:
        acc.ca_bundle = data.ca_bundle or None
    if "allow_plaintext_auth" in fields and data.allow_plaintext_auth is not None:
        acc.allow_plaintext_auth = data.allow_plaintext_auth
    _apply_password(acc, data, box, before)


def _apply_password(acc: ImapAccount, data: ImapPatch, box: SecretBox, before: Destination) -> None:
    """A new password, or the stored one if the server it goes to stays the same."""
    if "password" in data.model_fields_set:
        pw = data.password.get_secret_value() if data.password else ""
        acc.password_enc = box.encrypt(pw) if pw else None
    elif acc.password_enc:
        problem = rebinding_problem(before, destination(acc), "password")
        if problem is not None:
            raise ValidationFailed([problem])


def create_imap_account(
    session: Session, actor: Actor, data: ImapCreate, box: SecretBox
) -> ImapAccount:
    acc = ImapAccount(user_id=actor.id, tls=data.tls or "auto")
    apply_fields(acc, data, box)
    session.add(acc)
    session.flush()
    audit(
        session,
        actor,
        "imap.create",
        "imap_account",
        acc.id,
        owner_id=actor.id,
        detail={"fields": sorted(data.model_fields_set)},
    )
    return acc


def update_imap_account(
    session: Session, actor: Actor, account_id: int, data: ImapPatch, box: SecretBox
) -> ImapAccount:
    acc = get_imap_account(session, actor, account_id)
    mailbox = (acc.imap_host, acc.imap_port, acc.username, acc.sent_folder)
    apply_fields(acc, data, box)
    if mailbox != (acc.imap_host, acc.imap_port, acc.username, acc.sent_folder):
        acc.files_sent_copy = None  # another mailbox: whether it files its own copy is unknown
    session.flush()
    audit(
        session,
        actor,
        "imap.update",
        "imap_account",
        acc.id,
        owner_id=actor.id,
        detail={"fields": sorted(data.model_fields_set)},
    )
    return acc


def delete_imap_account(session: Session, actor: Actor, account_id: int) -> None:
    """Refused with Conflict while aliases use the account; the error names them."""
    acc = get_imap_account(session, actor, account_id)
    users = list(session.scalars(select(Alias.description).where(Alias.imap_account_id == acc.id)))
    if users:
        raise Conflict(
            "this IMAP account is used by the alias(es) "
            + ", ".join(repr(u) for u in users)
            + "; choose another IMAP server for them first",
            blockers=users,
        )
    session.delete(acc)
    audit(session, actor, "imap.delete", "imap_account", account_id, owner_id=actor.id)
