"""Network policy shared by the SMTP and IMAP clients (the TLS context factory)."""
