"""The published OpenAPI schema: one name per model, every model from the sendas.schemas
package."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, get_args

from fastapi import FastAPI
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from pydantic import BaseModel
from starlette.routing import BaseRoute

# FastAPI's own models for 422 answers.
FASTAPI_MODELS = {"HTTPValidationError", "ValidationError"}
# The status vocabulary (sendas.statuses), published as enums.
STATUS_ENUMS = {"MessageStatus", "CampaignStatus"}


def _models_in(tp: Any, seen: set[type[BaseModel]]) -> Iterator[type[BaseModel]]:
    """Every pydantic model a type annotation reaches, nested fields included."""
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        if tp in seen:
            return
        seen.add(tp)
        yield tp
        for field in tp.model_fields.values():
            yield from _models_in(field.annotation, seen)
        return
    for arg in get_args(tp):
        yield from _models_in(arg, seen)


def _api_routes(routes: Sequence[BaseRoute]) -> Iterator[APIRoute]:
    for route in routes:
        if isinstance(route, APIRoute):
            yield route
        # FastAPI >= 0.160 keeps an included router as one route wrapping the original.
        included = getattr(route, "original_router", None)
        if included is not None:
            yield from _api_routes(included.routes)


def published_models(app: FastAPI) -> list[type[BaseModel]]:
    """The models that request bodies and answers of the app's routes use."""
    seen: set[type[BaseModel]] = set()
    found: list[type[BaseModel]] = []
    for route in _api_routes(app.routes):
        if not route.include_in_schema:
            continue
        annotations = [p.field_info.annotation for p in route.dependant.body_params]
        annotations.append(route.response_model)
        for annotation in annotations:
            found.extend(_models_in(annotation, seen))
    return found


def test_component_names_are_unique_and_plain(client: TestClient):
    names = list(client.get("/openapi.json").json()["components"]["schemas"])
    # On a clash FastAPI names models by module path (``sendas__services__x__Name``).
    assert [n for n in names if "__" in n] == []
    models = published_models(client.app)
    by_name: dict[str, list[str]] = {}
    for model in models:
        by_name.setdefault(model.__name__, []).append(model.__module__)
    assert {n: m for n, m in by_name.items() if len(m) > 1} == {}
    assert set(names) - FASTAPI_MODELS - STATUS_ENUMS == set(by_name)


def test_every_published_model_is_in_schemas(client: TestClient):
    models = published_models(client.app)
    assert "MessageList" in {m.__name__ for m in models}
    stray = [
        f"{m.__module__}.{m.__name__}"
        for m in models
        if m.__module__.split(".")[:2] != ["sendas", "schemas"]
    ]
    assert stray == []
