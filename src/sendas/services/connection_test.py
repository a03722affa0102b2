"""Test Connection: probe SMTP up to RCPT TO (no message is sent), then, when the alias has
an IMAP account, log in there and name the Sent folder found. Results are stored as the
alias's ``last_test``."""

from __future__ import annotations

from typing import Any, TypeVar

from sqlalchemy.orm import Session

from sendas.compose import Sender
from sendas.context import AppContext
from sendas.db.models import Alias, ImapAccount, SystemOutgoing, utcnow
from sendas.endpoints import (
    check_imap_token_server,
    imap_endpoint,
    imap_uses_alias_token,
    smtp_endpoint,
    token_server_problem,
)
from sendas.errors import ReauthRequired, TransportError
from sendas.imap.endpoint import ImapEndpoint
from sendas.imap.sent import probe_imap
from sendas.oauth.tokens import AliasTokens
from sendas.schemas import (
    AliasCreate,
    AliasPatch,
    ConnectionTestResult,
    ImapPatch,
    SystemOutgoingIn,
)
from sendas.services import aliases as alias_service
from sendas.services import imap_accounts as imap_service
from sendas.services import system_outgoing as system_service
from sendas.services.common import Actor, audit, format_server
from sendas.services.test_message import send_test_message
from sendas.smtp import TokenProvider, probe
from sendas.steps import StepRecorder


def _failed(step: str, hint: str) -> ConnectionTestResult:
    return ConnectionTestResult(status="FAILED", step=step, hint=hint)


async def _probe_row(
    ctx: AppContext, row: Alias | SystemOutgoing, imap: ImapAccount | None
) -> ConnectionTestResult:
    if not row.smtp_host:
        return _failed("settings", "Enter the SMTP server (host:port) first.")
    if not row.from_address:
        return _failed("settings", "Enter the From address first.")
    # Tokens come from the OAuth sign-in; without a grant there is nothing to test with.
    if isinstance(row, Alias) and row.auth != "password" and not row.oauth_token_enc:
        name = "Google" if row.auth == "google" else "Microsoft"
        return _failed("auth", f"Click 'Sign in with {name}' to connect this alias first.")
    if isinstance(row, Alias) and row.auth != "password" and (bad := token_server_problem(row)):
        return _failed("settings", f"The token is not sent to this server: {bad}.")
    token_step: ConnectionTestResult | None = None
    provider: TokenProvider | None = None
    if isinstance(row, Alias) and row.auth != "password":
        token_step, provider = await _token_step(ctx, row)
        if not token_step.ok:
            return token_step
    try:
        # The database outgoing settings (admin-only) are exempt from the outbound policy.
        outbound = ctx.settings.outbound_policy if isinstance(row, Alias) else None
        endpoint = smtp_endpoint(
            row,
            ctx.secrets,
            timeout=ctx.settings.test_step_timeout,
            outbound=outbound,
            token_provider=provider,
            detect_wait=ctx.settings.tls_detect_wait,
        )
    except ValueError as exc:
        return _failed("settings", str(exc))
    result = await probe(endpoint, row.from_address)
    if token_step is not None:
        result = token_step.followed_by(result, prefix="")
    if not result.ok or imap is None:
        return result
    # The IMAP account logs in with the alias's token when the rule says so (XOAUTH2).
    use_token = isinstance(row, Alias) and imap_uses_alias_token(row, imap)
    try:
        if use_token:
            assert isinstance(row, Alias)
            check_imap_token_server(row, imap)
        endpoint_imap = _imap_endpoint(ctx, imap, provider if use_token else None)
    except ValueError as exc:
        return result.followed_by(_failed("settings", str(exc)), prefix="imap_")
    imap_result = await probe_imap(endpoint_imap)
    return result.followed_by(imap_result, prefix="imap_")


def _imap_endpoint(
    ctx: AppContext, account: ImapAccount, token_provider: TokenProvider | None = None
) -> ImapEndpoint:
    """The account's endpoint for a test: Test Connection's short per-step timeout, the
    outbound policy, and the alias's token when it signs in with XOAUTH2."""
    return imap_endpoint(
        account,
        ctx.secrets,
        timeout=ctx.settings.test_step_timeout,
        outbound=ctx.settings.outbound_policy,
        token_provider=token_provider,
        detect_wait=ctx.settings.tls_detect_wait,
    )


async def _token_step(
    ctx: AppContext, alias: Alias
) -> tuple[ConnectionTestResult, TokenProvider | None]:
    """Step ``token``: a fresh access token for the signed-in alias (refreshed when it
    expires soon), then handed to the SMTP steps. A revoked grant fails here."""
    tokens = AliasTokens(ctx.db, ctx.secrets)
    recorder = StepRecorder()
    try:
        with recorder.step("token") as draft:
            await tokens.access_token(alias.id)
            draft.detail = "a valid access token is at hand"
    except TransportError as exc:
        failed = recorder.failed(exc)
        step_name = "token"
        hint = exc.hint
        if isinstance(exc, ReauthRequired):
            label = "Google" if alias.auth == "google" else "Microsoft"
            hint = (
                f"The {label} sign-in was revoked or has expired. Click 'Reconnect' (Sign in "
                f"with {label} again); mail waiting for this alias goes out afterwards."
            )
        return failed.model_copy(update={"step": step_name, "hint": hint}), None
    return recorder.passed(), tokens.token_provider(alias.id)


def _stamp(result: ConnectionTestResult) -> ConnectionTestResult:
    return result.model_copy(update={"tested_at": utcnow()})


def _stored(result: ConnectionTestResult) -> dict[str, Any]:
    """The form kept in ``last_test`` (JSON; read back by the output models)."""
    return result.model_dump(mode="json")


Row = TypeVar("Row", Alias, ImapAccount, SystemOutgoing)


def _copy(row: Row) -> Row:
    """A detached copy of a row's columns, usable after its session is rolled back."""
    return type(row)(**{c.key: getattr(row, c.key) for c in type(row).__table__.columns})


def _transient_alias(
    session: Session, ctx: AppContext, actor: Actor, data: AliasPatch, alias_id: int | None
) -> tuple[Alias, ImapAccount | None]:
    """The alias as it would be saved, without saving it (the session is rolled back)."""
    if alias_id is not None:
        stored = alias_service.get_alias(session, actor, alias_id)
        alias = _copy(stored)
    else:
        # Every column a test reads gets its default, as an INSERT would give it.
        alias = Alias(
            user_id=actor.id,
            tls=data.tls or "auto",
            auth=data.auth or "password",
            allow_plaintext_auth=False,
            smtp_host="",
            smtp_port=587,
            smtp_username="",
            alias_name="",
            from_address="",
        )
    fields = data.model_fields_set - {"description", "is_default"}
    changes = AliasPatch.model_construct(fields, **{k: getattr(data, k) for k in fields})
    alias_service.apply_fields(
        session,
        alias,
        changes,
        ctx.secrets,
        creating=alias_id is None,
        max_connections_cap=ctx.settings.max_connections_cap,
    )
    if not alias.imap_account_id:
        return alias, None
    return alias, _copy(imap_service.get_imap_account(session, actor, alias.imap_account_id))


async def check_alias_settings(
    ctx: AppContext, actor: Actor, data: AliasCreate | AliasPatch, alias_id: int | None = None
) -> ConnectionTestResult:
    """Test settings typed in the Edit Alias screen, before saving (nothing is written).

    With ``alias_id``, fields left out fall back to the stored alias (the password too).
    Raises ValidationFailed for malformed fields, NotFound for another user's alias.
    """
    with ctx.db.scratch() as session:
        alias, imap = _transient_alias(session, ctx, actor, data, alias_id)
    result = _stamp(await _probe_row(ctx, alias, imap))
    with ctx.db.write() as session:
        _audit_alias_test(session, actor, alias, imap, result, alias_id, saved=False)
    return result


def _failed_login_step(result: ConnectionTestResult) -> str | None:
    """``smtp`` or ``imap`` when the test stopped because a server refused the sign-in."""
    if result.ok:
        return None
    return {"auth": "smtp", "imap_login": "imap", "login": "imap"}.get(result.step or "")


def _outcome(result: ConnectionTestResult, server: str, saved: bool) -> dict[str, Any]:
    """An audit event's detail: where, what, how it ended; never a secret or a reply."""
    return {
        "server": server,
        "settings": "saved" if saved else "unsaved",
        "outcome": result.status,
        "step": result.step,
    }


def _audit_alias_test(
    session: Session,
    actor: Actor,
    alias: Alias,
    imap: ImapAccount | None,
    result: ConnectionTestResult,
    alias_id: int | None,
    *,
    saved: bool,
) -> None:
    """Record a Test Connection of an alias, and a refused sign-in as its own event."""
    server = format_server(alias.smtp_host, alias.smtp_port)
    detail = _outcome(result, server, saved)
    if imap is not None:
        detail["imap_account_id"] = imap.id
    audit(session, actor, "alias.test", "alias", alias_id, owner_id=actor.id, detail=detail)
    refused = _failed_login_step(result)
    if refused == "smtp":
        detail = {"server": server, "during": "test", "step": "auth"}
        audit(
            session, actor, "alias.auth_failed", "alias", alias_id, owner_id=actor.id, detail=detail
        )
    elif refused == "imap" and imap is not None:
        _audit_imap_refused(session, actor, imap, imap.id)


def _audit_imap_refused(
    session: Session, actor: Actor, acc: ImapAccount, account_id: int | None
) -> None:
    """A refused IMAP login in a test (``account_id`` None: settings not saved yet)."""
    detail = {
        "server": format_server(acc.imap_host, acc.imap_port),
        "during": "test",
        "step": "login",
    }
    owner = acc.user_id or actor.id
    audit(
        session,
        actor,
        "imap.auth_failed",
        "imap_account",
        account_id,
        owner_id=owner,
        detail=detail,
    )


async def check_saved_alias(ctx: AppContext, actor: Actor, alias_id: int) -> ConnectionTestResult:
    """Test a saved alias and store the outcome as its ``last_test``."""
    with ctx.db.read() as session:
        alias = alias_service.get_alias(session, actor, alias_id)
        imap = alias.imap_account
    result = _stamp(await _probe_row(ctx, alias, imap))
    with ctx.db.write() as session:
        stored = alias_service.get_alias(session, actor, alias_id)
        stored.last_test = _stored(result)
        _audit_alias_test(session, actor, alias, imap, result, alias_id, saved=True)
    return result


async def check_imap_account(
    ctx: AppContext, actor: Actor, account_id: int
) -> ConnectionTestResult:
    """Log in to a saved IMAP account, find its Sent folder, store the outcome as its
    ``last_test``. An account that a signed-in alias of the owner logs into with its token
    (:func:`~sendas.endpoints.imap_uses_alias_token`) is tested with that token."""
    with ctx.db.read() as session:
        acc = imap_service.get_imap_account(session, actor, account_id)
        signed_in = [
            a
            for a in alias_service.list_aliases(session, actor)
            if a.imap_account_id == acc.id and imap_uses_alias_token(a, acc)
        ]
    provider = None
    try:
        if signed_in:
            check_imap_token_server(signed_in[0], acc)  # the token goes to its server only
            provider = AliasTokens(ctx.db, ctx.secrets).token_provider(signed_in[0].id)
        result = _stamp(await probe_imap(_imap_endpoint(ctx, acc, provider)))
    except ValueError as exc:
        result = _stamp(_failed("settings", str(exc)))
    with ctx.db.write() as session:
        imap_service.get_imap_account(session, actor, account_id).last_test = _stored(result)
        server = format_server(acc.imap_host, acc.imap_port)
        detail = _outcome(result, server, saved=True)
        audit(
            session, actor, "imap.test", "imap_account", acc.id, owner_id=acc.user_id, detail=detail
        )
        if _failed_login_step(result) == "imap":
            _audit_imap_refused(session, actor, acc, acc.id)
    return result


def _system_snapshot(
    ctx: AppContext, actor: Actor, data: SystemOutgoingIn | None
) -> SystemOutgoing:
    """The outgoing settings as stored, with ``data``'s unsaved changes applied (checked as a
    save would check them), detached: nothing is written. Admin only."""
    actor.require_admin()
    with ctx.db.scratch() as session:
        row = system_service.get_settings_row(session)
        if data is not None and data.model_fields_set:
            system_service.update_system_outgoing(
                session,
                actor,
                data,
                ctx.secrets,
                max_connections_cap=ctx.settings.max_connections_cap,
            )
        return _copy(row)


async def check_system_outgoing(
    ctx: AppContext, actor: Actor, data: SystemOutgoingIn | None = None
) -> ConnectionTestResult:
    """Test the database outgoing settings (with unsaved changes when ``data`` is given)."""
    snapshot = _system_snapshot(ctx, actor, data)
    result = _stamp(await _probe_row(ctx, snapshot, None))
    saved = data is None or not data.model_fields_set
    with ctx.db.write() as session:
        if saved:
            system_service.get_settings_row(session).last_test = _stored(result)
        server = format_server(snapshot.smtp_host, snapshot.smtp_port)
        target = ("system_outgoing", system_service.SYSTEM_ID)
        audit(
            session,
            actor,
            "system_outgoing.test",
            *target,
            owner_id=None,
            detail=_outcome(result, server, saved),
        )
        if _failed_login_step(result) == "smtp":
            detail = {"server": server, "during": "test", "step": "auth"}
            audit(
                session, actor, "system_outgoing.auth_failed", *target, owner_id=None, detail=detail
            )
    return result


async def check_imap_settings(
    ctx: AppContext, actor: Actor, data: ImapPatch, account_id: int | None = None
) -> ConnectionTestResult:
    """Test IMAP settings before saving them (nothing is written): log in, find Sent.

    With ``account_id``, fields left out fall back to the stored account (the password too).
    Raises ValidationFailed for malformed fields, NotFound for another user's account.
    """
    with ctx.db.scratch() as session:
        if account_id is not None:
            acc = _copy(imap_service.get_imap_account(session, actor, account_id))
        else:
            acc = ImapAccount(user_id=actor.id, tls=data.tls or "auto", allow_plaintext_auth=False)
        imap_service.apply_fields(acc, data, ctx.secrets)
    if not acc.imap_host:
        return _stamp(_failed("settings", "Enter the IMAP server (host:port) first."))
    if not acc.password_enc:
        return _stamp(_failed("settings", "Enter the password first."))
    try:
        endpoint = _imap_endpoint(ctx, acc)
    except ValueError as exc:
        return _stamp(_failed("settings", str(exc)))
    result = _stamp(await probe_imap(endpoint))
    with ctx.db.write() as session:
        server = format_server(acc.imap_host, acc.imap_port)
        owner = acc.user_id or actor.id
        detail = _outcome(result, server, saved=False)
        audit(
            session, actor, "imap.test", "imap_account", account_id, owner_id=owner, detail=detail
        )
        if _failed_login_step(result) == "imap":
            _audit_imap_refused(session, actor, acc, account_id)
    return result


async def send_system_test(
    ctx: AppContext, actor: Actor, to: str, data: SystemOutgoingIn | None = None
) -> ConnectionTestResult:
    """Send one test message to ``to`` with the database outgoing settings (unsaved changes
    in ``data`` are used, not saved). Admin only."""
    snapshot = _system_snapshot(ctx, actor, data)
    if not snapshot.smtp_host or not snapshot.from_address:
        return _stamp(_failed("settings", "Enter the SMTP server and the From address first."))
    try:
        endpoint = smtp_endpoint(
            snapshot,
            ctx.secrets,
            timeout=ctx.settings.test_step_timeout,
            outbound=None,  # the database outgoing settings are exempt (admin-only)
            detect_wait=ctx.settings.tls_detect_wait,
        )
    except ValueError as exc:
        return _stamp(_failed("settings", str(exc)))
    sender = Sender(snapshot.from_name, snapshot.from_address, snapshot.reply_to)
    result = _stamp(await send_test_message(endpoint, sender, to))
    with ctx.db.write() as session:
        server = format_server(snapshot.smtp_host, snapshot.smtp_port)
        detail = {**_outcome(result, server, saved=False), "test_message": True}
        audit(
            session,
            actor,
            "system_outgoing.test",
            "system_outgoing",
            system_service.SYSTEM_ID,
            owner_id=None,
            detail=detail,
        )
    return result
