"""The REST API under /api; ``create_app(settings)`` builds the whole web application."""

from sendas.api.app import create_app

__all__ = ["create_app"]
