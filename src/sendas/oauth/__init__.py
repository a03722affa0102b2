"""Sign in with Google / Microsoft: providers, the authorization code flow, and access
tokens for signed-in aliases (XOAUTH2). Built on Authlib's httpx client and joserfc."""

from sendas.oauth.errors import (
    AccessDenied,
    IdTokenInvalid,
    InvalidState,
    NotConfigured,
    OAuthError,
    ProviderError,
    ProviderUnavailable,
    ReauthRequired,
)
from sendas.oauth.flow import (
    PendingAuthorization,
    SignInResult,
    finish_sign_in,
    start_sign_in,
    validate_id_token,
)
from sendas.oauth.providers import (
    GOOGLE,
    MICROSOFT,
    PROVIDER_NAMES,
    PROVIDERS,
    BoundServers,
    ClientConfig,
    Provider,
    ProviderName,
    get_provider,
    load_client,
    save_client,
)
from sendas.oauth.tokens import AliasTokens, apply_sign_in
from sendas.oauth.tokenset import TokenSet, load_tokens, store_tokens

__all__ = [
    "GOOGLE",
    "MICROSOFT",
    "PROVIDERS",
    "PROVIDER_NAMES",
    "AccessDenied",
    "AliasTokens",
    "BoundServers",
    "ClientConfig",
    "IdTokenInvalid",
    "InvalidState",
    "NotConfigured",
    "OAuthError",
    "PendingAuthorization",
    "Provider",
    "ProviderError",
    "ProviderName",
    "ProviderUnavailable",
    "ReauthRequired",
    "SignInResult",
    "TokenSet",
    "apply_sign_in",
    "finish_sign_in",
    "get_provider",
    "load_client",
    "load_tokens",
    "save_client",
    "start_sign_in",
    "store_tokens",
    "validate_id_token",
]
