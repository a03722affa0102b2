"""Form letters, one job a module.

``recipients`` (JSON, CSV, upload and pasted rows; address checks), ``form`` (a letter
posted as a multipart form), ``create`` (validate, then queue atomically), ``preview``,
``progress`` (totals, rate, ETA, outcomes) and ``lifecycle`` (pause, resume, cancel).
"""
