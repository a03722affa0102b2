"""Bounces: the INBOX watch (watch, scan, inbox), the reading of a report (detect), and what
a bounce changes (apply, suppress)."""
