"""Key rotation: re-encrypt every stored secret under a new key, without downtime."""

from __future__ import annotations

from sqlalchemy import select

from sendas.db.engine import Database
from sendas.db.models import Alias, ImapAccount, OAuthClient, PendingSignIn, SystemOutgoing
from sendas.secrets import SecretBox

# Every column that holds a Fernet token.
SECRET_COLUMNS = (
    (Alias, ("smtp_password_enc", "oauth_token_enc")),
    (ImapAccount, ("password_enc",)),
    (SystemOutgoing, ("smtp_password_enc",)),
    (OAuthClient, ("client_secret_enc",)),
    (PendingSignIn, ("code_verifier_enc", "nonce_enc")),
)


def rotate_key(db: Database, box: SecretBox) -> int:
    """Add a new key (key file) or use the first of SENDAS_SECRET_KEY, re-encrypt, and drop
    the old key from the key file. Returns how many secrets were re-encrypted.

    Running processes keep working: one that meets a token under the new key reloads the
    key file (see SecretBox.decrypt).
    """
    if box.uses_key_file:
        box.begin_rotation()
    count = 0
    for model, columns in SECRET_COLUMNS:
        with db.write() as session:
            for row in session.scalars(select(model)):
                for col in columns:
                    token = getattr(row, col)
                    if token:
                        setattr(row, col, box.rotate_token(token))
                        count += 1
    box.finish_rotation()
    return count
