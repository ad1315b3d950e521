"""The OpenAPI 3.1 document served at ``GET /api/v1/schema``.

OpenAPI 3.1 schemas are JSON Schema 2020-12, so tests validate real responses
against ``COMPONENTS`` with ``jsonschema`` directly. To add an endpoint, add one
entry to ``PATHS`` (and its schemas to ``COMPONENTS``); nothing else changes.
"""

from __future__ import annotations

import copy
from typing import Any


def ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def json_body(schema: dict[str, Any], description: str = "") -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


ERROR = json_body(ref("Error"), "error")

# Statuses every JSON endpoint may answer, besides its own.
COMMON_ERRORS = {
    "400": {**ERROR, "description": "invalid JSON or an invalid field"},
    "405": {**ERROR, "description": "method not allowed"},
    "413": {**ERROR, "description": "body too large"},
    "503": {**ERROR, "description": "database unavailable or serving not ready"},
}

# Optional request fields also accept null, meaning "absent" (the default applies), as the views do.
COMPONENTS: dict[str, dict[str, Any]] = {
    "Error": {
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {
                "type": "object",
                "required": ["code", "message", "field"],
                "properties": {
                    "code": {"type": "string"},
                    "message": {"type": "string"},
                    "field": {"type": ["string", "null"], "description": "the offending field, dotted path"},
                },
            },
            "errors": {
                "type": "array",
                "description": "bulk endpoints: every invalid row",
                "items": {
                    "type": "object",
                    "required": ["index", "code", "message", "field"],
                    "properties": {
                        "index": {"type": "integer"},
                        "code": {"type": "string"},
                        "message": {"type": "string"},
                        "field": {"type": ["string", "null"]},
                    },
                },
            },
            "invalid_rows": {"type": "integer"},
        },
    },
    "RecommendationRequest": {
        "type": "object",
        "required": ["user_id"],
        "properties": {
            "user_id": {"type": "string", "minLength": 1, "maxLength": 255},
            "k": {"type": "integer", "minimum": 1, "maximum": 100, "default": 10,
                  "description": "at most RECSITE['MAX_K']; fewer items come back if the catalogue is smaller"},
            "context": {"type": ["object", "null"], "default": {}},
            "experiment": {"type": ["string", "null"],
                           "description": "slug; defaults to the one running experiment (required when several run)"},
            "user": {"type": ["object", "null"],
                     "description": "the user's attributes: stored on first sight, replaced when they change"},
        },
    },
    "RecommendedItem": {
        "type": "object",
        "required": ["item_id", "position", "score", "propensity", "impression_id"],
        "properties": {
            "item_id": {"type": "string", "description": "the item's external id"},
            "position": {"type": "integer", "minimum": 1},
            "score": {"type": "number"},
            "propensity": {"type": "number", "exclusiveMinimum": 0, "maximum": 1,
                           "description": "probability that the arm shows this item in this position"},
            "impression_id": {"type": "integer", "minimum": 1},
        },
    },
    "Recommendation": {
        "type": "object",
        "required": ["request_id", "experiment", "arm", "model_version", "items"],
        "properties": {
            "request_id": {"type": "string", "format": "uuid"},
            "experiment": {"type": "string"},
            "arm": {"type": "string", "description": "the arm's name"},
            "model_version": {"type": "integer", "minimum": 0,
                              "description": "checkpoint version that ranked; 0 = the untrained arm"},
            "items": {"type": "array", "items": ref("RecommendedItem")},
        },
    },
    "ClickRequest": {
        "type": "object",
        "required": ["impression_id"],
        "properties": {"impression_id": {"type": ["integer", "string"], "description": "integer (or its digits)"}},
    },
    "Click": {
        "type": "object",
        "required": ["impression_id", "created", "counted", "late", "clicked_at"],
        "properties": {
            "impression_id": {"type": "integer"},
            "created": {"type": "boolean", "description": "false when the click was already recorded"},
            "counted": {"type": "boolean", "description": "inside the attribution window"},
            "late": {"type": "boolean", "description": "after the attribution window: stored, not counted"},
            "clicked_at": {"type": "string", "format": "date-time"},
        },
    },
    "ItemRow": {
        "type": "object",
        "required": ["item_id"],
        "properties": {
            "item_id": {"type": "string", "minLength": 1, "maxLength": 255},
            "title": {"type": ["string", "null"], "maxLength": 500},
            "category": {"type": ["string", "null"], "maxLength": 100},
            "price": {"type": ["number", "null"], "minimum": 0},
            "features": {"type": ["object", "null"]},
            "active": {"type": ["boolean", "null"], "default": True},
        },
    },
    "UserRow": {
        "type": "object",
        "required": ["user_id"],
        "properties": {
            "user_id": {"type": "string", "minLength": 1, "maxLength": 255},
            "attributes": {"type": ["object", "null"]},
        },
    },
    "ItemsRequest": {
        "type": "object",
        "required": ["items"],
        "properties": {"items": {"type": "array", "maxItems": 10000, "items": ref("ItemRow")}},
    },
    "UsersRequest": {
        "type": "object",
        "required": ["users"],
        "properties": {"users": {"type": "array", "maxItems": 10000, "items": ref("UserRow")}},
    },
    "UpsertResult": {
        "type": "object",
        "required": ["created", "updated", "errors"],
        "properties": {
            "created": {"type": "integer", "minimum": 0},
            "updated": {"type": "integer", "minimum": 0},
            "errors": {"type": "array", "maxItems": 0},
        },
    },
    "Ping": {"type": "object", "required": ["ok"], "properties": {"ok": {"const": True}}},
}

API_KEY_SECURITY = [{"apiKey": []}, {"bearer": []}]

PATHS: dict[str, dict[str, Any]] = {
    "/api/v1/recommendations": {
        "post": {
            "summary": "Assign the user (sticky), rank the active catalogue, log one impression per item",
            "operationId": "recommend",
            "security": [],
            "requestBody": {"required": True, **json_body(ref("RecommendationRequest"))},
            "responses": {
                "200": json_body(ref("Recommendation"), "the ranked items"),
                "404": {**ERROR, "description": "unknown experiment"},
                "409": {**ERROR, "description": "no running experiment, or no active arm"},
                **COMMON_ERRORS,
                "400": {**ERROR, "description": "invalid field, several running experiments, or empty catalogue"},
            },
        }
    },
    "/api/v1/clicks": {
        "post": {
            "summary": "Record the click of an impression (idempotent)",
            "operationId": "click",
            "security": [],
            "requestBody": {"required": True, **json_body(ref("ClickRequest"))},
            "responses": {
                "201": json_body(ref("Click"), "recorded now; counted unless late"),
                "200": json_body(ref("Click"), "already recorded: the stored click"),
                "404": {**ERROR, "description": "unknown impression"},
                **COMMON_ERRORS,
            },
        }
    },
    "/api/v1/items": {
        "post": {
            "summary": "Bulk upsert of the catalogue by item_id (all rows or none; ≤ 10,000)",
            "operationId": "upsertItems",
            "security": API_KEY_SECURITY,
            "requestBody": {"required": True, **json_body(ref("ItemsRequest"))},
            "responses": {
                "200": json_body(ref("UpsertResult"), "written"),
                "401": {**ERROR, "description": "API key configured and missing"},
                "403": {**ERROR, "description": "wrong API key"},
                **COMMON_ERRORS,
                "400": {**ERROR, "description": "invalid rows, listed in `errors`; nothing written"},
            },
        }
    },
    "/api/v1/users": {
        "post": {
            "summary": "Bulk upsert of shop users and their attributes (all rows or none; ≤ 10,000)",
            "operationId": "upsertUsers",
            "security": API_KEY_SECURITY,
            "requestBody": {"required": True, **json_body(ref("UsersRequest"))},
            "responses": {
                "200": json_body(ref("UpsertResult"), "written"),
                "401": {**ERROR, "description": "API key configured and missing"},
                "403": {**ERROR, "description": "wrong API key"},
                **COMMON_ERRORS,
                "400": {**ERROR, "description": "invalid rows, listed in `errors`; nothing written"},
            },
        }
    },
    "/api/v1/schema": {
        "get": {
            "summary": "This document",
            "operationId": "schema",
            "security": [],
            "responses": {"200": json_body({"type": "object"}, "OpenAPI 3.1")},
        }
    },
    "/api/v1/ping": {
        "get": {
            "summary": "Trivial JSON endpoint (benchmark baseline)",
            "operationId": "ping",
            "security": [],
            "responses": {"200": json_body(ref("Ping"), "ok")},
        }
    },
}


def openapi_document() -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "recsite API",
            "version": "1.0.0",
            "description": (
                "Live A/B arena for online-learning recommenders. Every error is "
                "`{\"error\": {\"code\", \"message\", \"field\"}}`. Recommendations and clicks are open "
                "(they are called by shoppers' browsers); items and users need the API key when one is "
                "configured. Staff actions use the login session with its CSRF token."
            ),
        },
        "servers": [{"url": "/"}],
        "paths": copy.deepcopy(PATHS),
        "components": {
            "schemas": copy.deepcopy(COMPONENTS),
            "securitySchemes": {
                "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
                "bearer": {"type": "http", "scheme": "bearer"},
                "session": {"type": "apiKey", "in": "cookie", "name": "sessionid"},
            },
        },
    }
