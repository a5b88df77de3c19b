"""The SDK imports none of the server's packages, so it restates two things; these tests keep them equal:
its ``Modality`` literal is the adapter registry, and its result types read the server's response schemas."""

from __future__ import annotations

import typing

import pytest
import unirep_client
from pydantic import BaseModel
from unirep_client import types as sdk_types

from modality_adapters import list_adapters
from service.http import schemas
from service.http.app import create_app
from service.settings import ServiceSettings

HEADER_FIELDS = {"request_id", "cache"}
"""SDK result fields filled from response headers, not from the JSON body."""

PAIRS = [
    (sdk_types.ClassifyResult, schemas.ClassifyResponse),
    (sdk_types.EmbedResult, schemas.EmbedResponse),
    (sdk_types.ModelInfo, schemas.ModelInfo),
    (sdk_types.Prediction, schemas.Prediction),
    (sdk_types.Timings, schemas.Timings),
    (sdk_types.Health, schemas.Health),
]


def test_sdk_modalities_are_the_registry() -> None:
    from unirep_client._constants import KnownModality

    assert list(typing.get_args(KnownModality)) == list_adapters()
    assert list(unirep_client.MODALITIES) == list_adapters()


@pytest.mark.parametrize(("sdk", "server"), PAIRS, ids=[p[0].__name__ for p in PAIRS])
def test_sdk_types_read_the_server_schema(sdk: type[BaseModel], server: type[BaseModel]) -> None:
    sdk_fields = set(sdk.model_fields) - HEADER_FIELDS
    assert sdk_fields <= set(server.model_fields), f"the SDK reads fields the server never sends: {sdk.__name__}"
    sdk_required = {n for n, f in sdk.model_fields.items() if f.is_required()}
    server_required = {n for n, f in server.model_fields.items() if f.is_required()}
    assert sdk_required <= server_required


def test_openapi_uses_the_schemas() -> None:
    """``/openapi.json`` documents the same models the routes serialize through."""
    spec = create_app(ServiceSettings(warmup=False)).openapi()
    components = spec["components"]["schemas"]
    for model in (schemas.ClassifyResponse, schemas.EmbedResponse, schemas.ModelsResponse):
        assert set(components[model.__name__]["properties"]) == set(model.model_fields)
    ok = spec["paths"]["/classify/{modality}"]["post"]["responses"]["200"]["content"]["application/json"]
    assert ok["schema"]["$ref"].endswith("/ClassifyResponse")
