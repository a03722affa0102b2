"""sendas: per-user outgoing email for multi-user business applications."""

__version__ = "0.1.0"
