"""The rules of sendas, shared by the API, the web UI and the CLI."""
