"""Every secret a whole scenario uses is found nowhere afterwards: not in the database files
(SQLite with its -wal and -shm), not in the server's log (at DEBUG), not in any response or
page read along the way.

The scenario, over real HTTP against ``sendas serve`` (embedded worker) with a real SMTP
server (STARTTLS + AUTH) and a real Dovecot: an admin makes a user, who signs in on the web
and makes an API token; an IMAP account and an alias with passwords, tested; an alias with a
wrong password, tested (auth fails); sends through both (one sent and copied to Sent, one
failed); the database outgoing settings and an OAuth client secret set by the admin;
``sendas rotate-key``; a send after it; then every page and API read of the route matrix.

The narrower ``tests/outbox/test_no_secret_in_logs.py`` checks the worker's log records
in-process; this one looks at what an operator can see on disk and on the wire.
"""

from __future__ import annotations

import base64
import os
import re
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import trustme
from pydantic import SecretStr

from sendas.config import Settings
from sendas.context import AppContext
from sendas.outbox.lanes import aliases_needing_attention
from sendas.schemas import UserCreate
from sendas.services import users as user_service
from tests.api.test_route_matrix import RULES
from tests.servers.process import child_options, free_port, stop_group
from tests.web.conftest import SMTP_PASSWORD, SMTP_USER, MailSink
from tests.web.test_pages import csrf_of

pytestmark = [pytest.mark.dovecot, pytest.mark.timeout(300)]

FINAL = {"sent", "failed", "cancelled"}


@contextmanager
def serve(root: Path) -> Iterator[tuple[str, AppContext, Path]]:
    """``sendas serve`` at DEBUG with a key file (so rotate-key needs no restart)."""
    data_dir = root / "data"
    port = free_port()
    env = {
        **os.environ,
        "SENDAS_DATA_DIR": str(data_dir),
        "SENDAS_HOST": "127.0.0.1",
        "SENDAS_PORT": str(port),
        "SENDAS_BASE_URL": f"http://127.0.0.1:{port}",
        "SENDAS_EMBEDDED_WORKER": "true",
        "SENDAS_SMTP_TIMEOUT": "5",
        "SENDAS_LOG_LEVEL": "debug",
    }
    env.pop("SENDAS_SECRET_KEY", None)
    ctx = AppContext.build(Settings(data_dir=data_dir, embedded_worker=False))
    log = root / "serve.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [str(Path(sys.executable).with_name("sendas")), "serve"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            **child_options(),
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("sendas serve did not start:\n" + log.read_text()[-3000:])
            time.sleep(0.1)
        yield url, ctx, log
    finally:
        stop_group(proc, grace=10)
        ctx.close()


class Recorder:
    """An HTTP client that keeps every answer body it reads (the corpus to grep)."""

    def __init__(self, url: str, **kwargs: Any) -> None:
        self.http = httpx.Client(base_url=url, timeout=30, **kwargs)
        self.seen: list[str] = []

    def __call__(self, method: str, path: str, *, keep: bool = True, **kw: Any) -> httpx.Response:
        r = self.http.request(method, path, **kw)
        if keep:
            self.seen.append(f"{method} {path} -> {r.status_code}\n{r.headers}\n{r.text}")
        return r


def _ok(r: httpx.Response, *codes: int) -> dict[str, Any]:
    assert r.status_code in codes, f"{r.request.method} {r.request.url}: {r.status_code} {r.text}"
    body: dict[str, Any] = r.json()
    return body


def _wait_final(api: Recorder, headers: dict[str, str], message_id: int) -> dict[str, Any]:
    """The message once sent (with its copy to Sent) or failed."""
    deadline = time.monotonic() + 60
    while True:
        msg = _ok(api("GET", f"/api/messages/{message_id}", headers=headers), 200)
        if msg["status"] in FINAL and (msg["status"] != "sent" or msg["sent_copy"]):
            return msg
        assert time.monotonic() < deadline, f"message {message_id} stuck: {msg}"
        time.sleep(0.2)


def _forms(secret: str) -> list[bytes]:
    """The secret as text, and base64 as SMTP AUTH and IMAP would carry it."""
    raw = secret.encode()
    return [raw, base64.b64encode(raw), base64.b64encode(b"\0" + SMTP_USER.encode() + b"\0" + raw)]


def test_no_secret_left_anywhere(
    tmp_path: Path, mail_sink: MailSink, web_ca: trustme.CA, dovecot_server: Any
) -> None:
    with serve(tmp_path) as (url, ctx, log):
        used = _scenario(url, ctx, mail_sink, web_ca, dovecot_server, tmp_path)
        corpus = used.pop("_corpus")
    files = [p for p in (tmp_path / "data").rglob("*") if p.is_file() and p.suffix != ".key"]
    files = [p for p in files if "key" not in p.name]
    assert any(p.name.endswith("-wal") for p in files) or any(p.suffix == ".db" for p in files)
    places = {str(p.relative_to(tmp_path)): p.read_bytes() for p in files}
    places["serve.log"] = log.read_bytes()
    places["responses and pages"] = corpus.encode()
    # Canaries: the places hold what the scenario did, so a miss means something.
    assert re.search(rb" (DEBUG|INFO|WARNING) sendas\.", places["serve.log"]), "no sendas lines"
    assert b"/api/aliases" in places["serve.log"], "the access log is missing"
    assert any(b"After rotation" in data for name, data in places.items() if "data" in name)
    assert b"After rotation" in places["responses and pages"]
    found = [
        (name, place)
        for name, secret in used.items()
        for form in _forms(secret)
        for place, data in places.items()
        if form in data
    ]
    assert found == []


def _scenario(
    url: str,
    ctx: AppContext,
    sink: MailSink,
    web_ca: trustme.CA,
    dovecot: Any,
    root: Path,
) -> dict[str, Any]:
    admin_password = "admin-" + secrets.token_urlsafe(12)
    user_password = "user-" + secrets.token_urlsafe(12)
    wrong_smtp = "wrong-" + secrets.token_urlsafe(12)
    outgoing_password = "outgoing-" + secrets.token_urlsafe(12)
    client_secret = "oauth-" + secrets.token_urlsafe(12)
    with ctx.db.write() as s:
        admin = user_service.create_user(
            s,
            UserCreate(
                email="root@example.com",
                name="Root",
                role="admin",
                password=SecretStr(admin_password),
            ),
        )
        _, admin_token = user_service.create_token(s, admin, "scenario")
    api = Recorder(url)
    as_admin = {"Authorization": f"Bearer {admin_token}"}
    _ok(
        api(
            "POST",
            "/api/users",
            json={"email": "ann@example.com", "name": "Ann", "password": user_password},
            headers=as_admin,
        ),
        201,
    )
    # Ann signs in on the web and makes her API token there (its one showing is not kept).
    web = _sign_in(url, "ann@example.com", user_password)
    csrf = csrf_of(web("GET", "/compose").text)
    made = web(
        "POST", "/api/tokens", json={"name": "cli"}, headers={"X-CSRF-Token": csrf}, keep=False
    )
    ann_token = _ok(made, 201)["token"]
    as_ann = {"Authorization": f"Bearer {ann_token}"}

    account = dovecot.add_account("scenario", layout="special")
    imap = _ok(
        api(
            "POST",
            "/api/imap-accounts",
            json={
                "imap_server": f"{dovecot.host}:{dovecot.imaps_port}",
                "tls": "implicit",
                "username": account.username,
                "password": account.password,
                "ca_bundle": dovecot.ca_pem,
            },
            headers=as_ann,
        ),
        201,
    )
    assert (
        _ok(api("POST", f"/api/imap-accounts/{imap['id']}/test", headers=as_ann), 200)["status"]
        == "OK"
    )
    ca = web_ca.cert_pem.bytes().decode()
    alias = {
        "alias_name": "Ann",
        "from_address": SMTP_USER,
        "smtp_server": sink.server,
        "tls": "starttls",
        "smtp_username": SMTP_USER,
        "ca_bundle": ca,
    }
    good = _ok(
        api(
            "POST",
            "/api/aliases",
            json={
                **alias,
                "description": "Good",
                "smtp_password": SMTP_PASSWORD,
                "imap_account_id": imap["id"],
            },
            headers=as_ann,
        ),
        201,
    )
    bad = _ok(
        api(
            "POST",
            "/api/aliases",
            json={**alias, "description": "Bad", "smtp_password": wrong_smtp},
            headers=as_ann,
        ),
        201,
    )
    assert (
        _ok(api("POST", f"/api/aliases/{good['id']}/test", headers=as_ann), 200)["status"] == "OK"
    )
    failed_test = _ok(api("POST", f"/api/aliases/{bad['id']}/test", headers=as_ann), 200)
    assert failed_test["status"] != "OK"

    def send(alias_id: int, subject: str) -> dict[str, Any]:
        body = {"alias_id": alias_id, "to": ["bob@example.org"], "subject": subject, "text": "Hi"}
        msg = _ok(api("POST", "/api/messages", json=body, headers=as_ann), 202)
        return _wait_final(api, as_ann, msg["id"])

    sent = send(good["id"], "Good one")
    assert sent["status"] == "sent" and sent["sent_copy"] == "appended", sent
    # A refused log-in stops the alias's lane until the owner acts; the mail stays queued.
    body = {"alias_id": bad["id"], "to": ["bob@example.org"], "subject": "Bad", "text": "Hi"}
    held = _ok(api("POST", "/api/messages", json=body, headers=as_ann), 202)
    deadline = time.monotonic() + 60
    while True:
        with ctx.db.read() as s:
            if aliases_needing_attention(s, [bad["id"]]):
                break
        assert time.monotonic() < deadline, "the alias with the wrong password never failed"
        time.sleep(0.2)
    assert _ok(api("GET", f"/api/messages/{held['id']}", headers=as_ann), 200)["status"] == "queued"

    _ok(
        api(
            "PUT",
            "/api/system/outgoing",
            json={
                "smtp_server": sink.server,
                "tls": "starttls",
                "smtp_username": SMTP_USER,
                "smtp_password": outgoing_password,
                "from_address": "system@example.com",
            },
            headers=as_admin,
        ),
        200,
    )
    _ok(
        api(
            "PUT",
            "/api/system/oauth/google",
            json={"client_id": "scenario.apps.example.com", "client_secret": client_secret},
            headers=as_admin,
        ),
        200,
    )

    rotated = subprocess.run(
        [str(Path(sys.executable).with_name("sendas")), "rotate-key"],
        env={**os.environ, "SENDAS_DATA_DIR": str(root / "data")},
        capture_output=True,
        text=True,
        check=False,
    )
    assert rotated.returncode == 0, rotated.stderr
    assert re.search(r"re-encrypted [1-9]\d* secret", rotated.stdout), rotated.stdout
    after = send(good["id"], "After rotation")
    assert after["status"] == "sent", after

    admin_web = _sign_in(url, "root@example.com", admin_password)
    values = {
        "alias_id": good["id"],
        "account_id": imap["id"],
        "message_id": sent["id"],
        "provider": "google",
        "topic": "test-steps",
        "index": 0,
    }
    _read_everything(api, [web, admin_web], [as_ann, as_admin], values)
    corpus = "\n".join(api.seen + web.seen + admin_web.seen) + rotated.stdout + rotated.stderr
    return {
        "SMTP password": SMTP_PASSWORD,
        "wrong SMTP password": wrong_smtp,
        "IMAP password": account.password,
        "outgoing SMTP password": outgoing_password,
        "OAuth client secret": client_secret,
        "user password": user_password,
        "admin password": admin_password,
        "user API token": ann_token,
        "admin API token": admin_token,
        "_corpus": corpus,
    }


def _sign_in(url: str, email: str, password: str) -> Recorder:
    web = Recorder(url, follow_redirects=False)
    token = csrf_of(web("GET", "/login").text)
    login = {"csrf": token, "email": email, "password": password}
    assert web("POST", "/login", data=login).status_code == 303
    return web


def _read_everything(
    api: Recorder,
    webs: list[Recorder],
    tokens: list[dict[str, str]],
    values: dict[str, object],
) -> None:
    """Every GET route of the route matrix: the API with each token, pages in each session."""
    for route in sorted(RULES):
        method, path = route.split(" ", 1)
        if method != "GET" or "{campaign_id}" in path or path.startswith("/static"):
            continue
        target = re.sub(r"\{(\w+)\}", lambda m: str(values[m.group(1)]), path)
        for i in range(len(tokens)):
            if target.startswith("/api/"):
                api("GET", target + "?include_raw=true", headers=tokens[i])
            else:
                webs[i]("GET", target)
