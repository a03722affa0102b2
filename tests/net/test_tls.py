"""The one TLS context factory: TLS 1.2 minimum for SMTP and IMAP, verification always on,
a private CA trusted against a real TLS server, bad PEM refused with a reason."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
import trustme

from sendas.imap.endpoint import tls_context as imap_tls_context
from sendas.net.tls import client_context


@pytest_asyncio.fixture
async def tls_port(server_ssl_context: ssl.SSLContext) -> AsyncIterator[int]:
    """A TLS server on 127.0.0.1 (certificate from ``tls_ca``) that says hello and hangs up."""

    async def hello(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"hello\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(hello, "127.0.0.1", 0, ssl=server_ssl_context)
    async with server:
        yield server.sockets[0].getsockname()[1]


async def handshake(port: int, context: ssl.SSLContext) -> tuple[str | None, bytes]:
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", port, ssl=context, server_hostname="127.0.0.1"
    )
    try:
        return writer.get_extra_info("ssl_object").version(), await reader.readline()
    finally:
        writer.close()


@pytest.mark.parametrize("factory", [client_context, imap_tls_context], ids=["smtp", "imap"])
def test_tls_12_minimum_and_verification_on(factory: object) -> None:
    assert callable(factory)
    for pem in (None, trustme.CA().cert_pem.bytes().decode()):
        context = factory(pem)
        assert context.minimum_version is ssl.TLSVersion.TLSv1_2
        assert context.verify_mode is ssl.CERT_REQUIRED
        assert context.check_hostname


@pytest.mark.parametrize(
    "pem",
    [
        "not a certificate",
        "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----\n",
    ],
)
def test_bad_pem_is_refused_naming_the_problem(pem: str) -> None:
    with pytest.raises(ValueError, match="not valid PEM"):
        client_context(pem)
    with pytest.raises(ValueError, match="not valid PEM"):
        imap_tls_context(pem)


async def test_private_ca_is_trusted(tls_port: int, tls_ca: trustme.CA) -> None:
    version, greeting = await handshake(tls_port, client_context(tls_ca.cert_pem.bytes().decode()))
    assert greeting == b"hello\r\n"
    assert version in ("TLSv1.2", "TLSv1.3")


async def test_unknown_ca_is_refused(tls_port: int, unknown_ca: trustme.CA) -> None:
    with pytest.raises(ssl.SSLCertVerificationError):
        await handshake(tls_port, client_context(unknown_ca.cert_pem.bytes().decode()))
    with pytest.raises(ssl.SSLCertVerificationError):
        await handshake(tls_port, client_context())


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion:DeprecationWarning")
async def test_server_capped_below_tls_12_is_refused(tls_ca: trustme.CA) -> None:
    old = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    old.maximum_version = ssl.TLSVersion.TLSv1_1
    old.minimum_version = ssl.TLSVersion.TLSv1
    old.set_ciphers("DEFAULT:@SECLEVEL=0")
    tls_ca.issue_cert("127.0.0.1").configure_cert(old)
    lenient = client_context(tls_ca.cert_pem.bytes().decode())
    lenient.minimum_version = ssl.TLSVersion.TLSv1
    lenient.set_ciphers("DEFAULT:@SECLEVEL=0")

    async def hello(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"hello\r\n")
        writer.close()

    server = await asyncio.start_server(hello, "127.0.0.1", 0, ssl=old)
    async with server:
        port = server.sockets[0].getsockname()[1]
        try:
            await asyncio.wait_for(handshake(port, lenient), 5)
        except OSError:
            pytest.skip("this OpenSSL cannot speak TLS 1.1 at all, so there is nothing to refuse")
        with pytest.raises(OSError):  # SSLError, or a reset when the server gives up first
            await asyncio.wait_for(
                handshake(port, client_context(tls_ca.cert_pem.bytes().decode())), 5
            )
