"""GET /api/v1/schema is an OpenAPI 3.1 document whose component schemas are valid JSON Schema."""

import jsonschema
import pytest

from tests.support.serving import schema_check


@pytest.fixture
def document(client):
    response = client.get("/api/v1/schema")
    assert response.status_code == 200
    return response.json()


def test_the_schema_is_openapi_3_with_the_event_paths(document):
    assert document["openapi"].startswith("3.")
    assert {"/api/v1/recommendations", "/api/v1/clicks", "/api/v1/items", "/api/v1/users",
            "/api/v1/schema"} <= set(document["paths"])


def test_every_component_is_valid_json_schema(document):
    for schema in document["components"]["schemas"].values():
        jsonschema.Draft202012Validator.check_schema(schema)


def test_the_ping_response_matches(client, document):
    schema_check(document, "Ping", client.get("/api/v1/ping").json())


def test_posting_to_the_schema_is_a_json_405(client, document):
    response = client.post("/api/v1/schema")
    schema_check(document, "Error", response.json())
    assert response.status_code == 405
