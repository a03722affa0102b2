"""Authlib's httpx OAuth client, imported in one place.

Authlib 1.9 warns on import that its ``httpx_client`` module is deprecated in favour of
``httpx2``; sendas (like FastAPI) uses httpx, so that one notice is silenced here, for this
import only, instead of printing on every start of ``sendas serve``.
"""

from __future__ import annotations

import warnings

from authlib.deprecate import AuthlibDeprecationWarning

with warnings.catch_warnings():
    warnings.simplefilter("ignore", AuthlibDeprecationWarning)
    from authlib.integrations.httpx_client import AsyncOAuth2Client

__all__ = ["AsyncOAuth2Client"]
