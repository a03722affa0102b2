"""`sendas rotate-key`: re-encrypt every stored secret under a new key."""

from __future__ import annotations

from sendas.cli.common import context, out


def rotate_key() -> None:
    """Re-encrypt every stored secret under a new key."""
    from sendas.services.keys import rotate_key as do_rotate

    with context() as ctx:
        count = do_rotate(ctx.db, ctx.secrets)
    out.print(f"re-encrypted {count} secret(s) under the new key")
