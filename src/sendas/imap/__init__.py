"""IMAP: log in, find the Sent folder, APPEND the copy of a sent message; Test Connection."""

from sendas.imap.endpoint import ImapEndpoint, TlsMode, tls_context
from sendas.imap.folders import COMMON_SENT_NAMES, Folder
from sendas.imap.mutf7 import decode_mutf7, encode_mutf7
from sendas.imap.providers import files_own_sent_copy
from sendas.imap.sent import AppendOutcome, append_to_sent, find_sent_folder, probe_imap

__all__ = [
    "COMMON_SENT_NAMES",
    "AppendOutcome",
    "Folder",
    "ImapEndpoint",
    "TlsMode",
    "append_to_sent",
    "decode_mutf7",
    "encode_mutf7",
    "files_own_sent_copy",
    "find_sent_folder",
    "probe_imap",
    "tls_context",
]
