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

NUMBER_OR_NULL = {"type": ["number", "null"]}

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
                           "description": "slug; defaults to the one running experiment (required when several run, "
                           "unless they all share one layer). An experiment in a layer serves only the users whose "
                           "layer bucket it owns: a request naming it is routed by the layer, and the response's "
                           "experiment says which one served"},
            "layer": {"type": ["string", "null"],
                      "description": "layer slug (instead of experiment): the layer's experiment that owns the user's "
                      "bucket serves them; 409 layer_unallocated where none does"},
            "user": {"type": ["object", "null"],
                     "description": "attributes for this request only; never stored (store them with POST /api/v1/users)"},
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
                           "description": "probability that the arm shows this item in this position; in an "
                           "interleaved experiment, the exact probability of this item in this position under "
                           "team-draft interleaving of the arms' rankings"},
            "impression_id": {"type": "string", "minLength": 1, "maxLength": 64,
                              "description": "opaque and unguessable: send it back to /api/v1/clicks unchanged"},
            "arm": {"type": "string", "description": "interleaved experiments only: the arm that contributed "
                    "the item (a click on it credits that arm)"},
        },
    },
    "Recommendation": {
        "type": "object",
        "required": ["request_id", "experiment", "arm", "model_version", "items"],
        "properties": {
            "request_id": {"type": "string", "format": "uuid"},
            "experiment": {"type": "string"},
            "arm": {"type": "string", "description": "the arm's name; in a running interleaved experiment the "
                    "interleaved arms' names joined by '+' (each item names its own arm)"},
            "model_version": {"type": "integer", "minimum": 0,
                              "description": "checkpoint version that ranked; 0 = the untrained arm (interleaved: "
                              "the newest of the interleaved arms' versions)"},
            "items": {"type": "array", "items": ref("RecommendedItem")},
        },
    },
    "ClickRequest": {
        "type": "object",
        "required": ["impression_id"],
        "properties": {"impression_id": {"type": "string", "minLength": 1, "maxLength": 64,
                                         "description": "exactly as the recommendation returned it"}},
    },
    "Click": {
        "type": "object",
        "required": ["impression_id", "created", "counted", "late", "clicked_at"],
        "properties": {
            "impression_id": {"type": "string", "description": "the opaque id that was sent"},
            "created": {"type": "boolean", "description": "false when the click was already recorded"},
            "counted": {"type": "boolean", "description": "inside the attribution window"},
            "late": {"type": "boolean", "description": "after the attribution window: stored, not counted"},
            "clicked_at": {"type": "string", "format": "date-time"},
        },
    },
    "EventRequest": {
        "type": "object",
        "required": ["user_id", "type"],
        "properties": {
            "user_id": {"type": "string", "minLength": 1, "maxLength": 255,
                        "description": "the shopper (created on first sight, like a recommendation's)"},
            "type": {"type": "string", "enum": ["view", "add_to_cart", "purchase"],
                     "description": "a closed set; anything else is 400 unknown_type"},
            "item_id": {"type": ["string", "null"], "minLength": 1, "maxLength": 255,
                        "description": "the item's external id; an unknown one is 404 item_not_found"},
            "value": {"type": ["number", "null"], "minimum": 0, "maximum": 9999999999.99,
                      "description": "money, at most two decimal places (stored exactly as numeric(12,2)); a "
                      "purchase's value is its revenue; absent: the purchase still converts, with revenue 0"},
            "impression_id": {"type": ["string", "null"], "minLength": 1, "maxLength": 64,
                              "description": "the impression that led to the event, exactly as served: the event "
                              "counts for that impression's arm (late outside the attribution window); absent: for "
                              "the arm of the user's latest impression within the window in each running A/B "
                              "experiment"},
            "event_id": {"type": ["string", "null"], "minLength": 1, "maxLength": 255,
                         "description": "the client's idempotency key: a repeat is 200 with the stored event, the "
                         "same id with a different event is 409 event_id_conflict"},
            "ts": {"type": ["string", "null"], "format": "date-time",
                   "description": "when it happened, ISO 8601 with a time zone (default: now); at most "
                   "RECSITE_EVENT_CLOCK_SKEW_S (300 s) ahead, at most RECSITE_EVENT_MAX_AGE_S (7 days) old"},
        },
    },
    "EventAttribution": {
        "type": "object",
        "required": ["experiment", "arm", "epoch", "late", "counted"],
        "properties": {
            "experiment": {"type": "string"},
            "arm": {"type": "string"},
            "epoch": {"type": "integer", "minimum": 0, "description": "allocation period of the attributing serve"},
            "late": {"type": "boolean", "description": "outside the attribution window: stored, not counted"},
            "counted": {"type": "boolean", "description": "added to the arm's per-user outcome rollup"},
        },
    },
    "BusinessEvent": {
        "type": "object",
        "required": ["event_id", "created", "user_id", "type", "item_id", "value", "impression_id", "ts", "counted",
                     "late", "attributions"],
        "properties": {
            "event_id": {"type": ["string", "null"]},
            "created": {"type": "boolean", "description": "false when the event_id was already recorded"},
            "user_id": {"type": "string"},
            "type": {"type": "string", "enum": ["view", "add_to_cart", "purchase"]},
            "item_id": {"type": ["string", "null"]},
            "value": NUMBER_OR_NULL,
            "impression_id": {"type": ["string", "null"]},
            "ts": {"type": "string", "format": "date-time"},
            "counted": {"type": "boolean", "description": "counted for at least one arm"},
            "late": {"type": "boolean", "description": "some attribution is late"},
            "attributions": {"type": "array", "items": ref("EventAttribution"),
                             "description": "one per experiment the event is attributed to; empty when no serve "
                             "covers it"},
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
    "ArmResult": {
        "type": "object",
        "description": "One arm's live results; docs/statistics.md defines every number (null = undefined yet)",
        "required": ["arm", "is_control", "impressions", "clicks", "ctr", "ctr_ci_low", "ctr_ci_high", "lift",
                     "always_valid_p", "p_best"],
        "properties": {
            "arm": {"type": "string"},
            "is_control": {"type": "boolean"},
            "is_holdout": {"type": "boolean", "description": "the baseline arm of the experiment's holdout: its "
                           "numbers are the held-out users'"},
            "status": {"type": ["string", "null"]},
            "health": {"type": ["string", "null"]},
            "weight": NUMBER_OR_NULL,
            "users": {"type": "integer", "minimum": 0},
            "impressions": {"type": "integer", "minimum": 0},
            "clicks": {"type": "integer", "minimum": 0},
            **{
                key: NUMBER_OR_NULL
                for key in (
                    "ctr", "ctr_ci_low", "ctr_ci_high", "lift", "lift_ci_low", "lift_ci_high", "p_value",
                    "p_value_holm", "always_valid_p", "always_valid_p_holm", "p_best", "expected_loss",
                    "seconds_since_update", "logloss", "auc", "offline_ctr", "offline_ci_low", "offline_ci_high",
                )
            },
            "model_version": {"type": ["integer", "null"]},
            "offline_estimator": {
                "type": ["string", "null"],
                "description": "estimator of the newest off-policy estimate (manage.py evaluate_offline), if any",
            },
        },
    },
    "PairResult": {
        "type": "object",
        "required": ["pair", "arm", "arm_b", "wins", "losses", "ties", "win_rate", "sign_p", "pair_always_valid_p"],
        "properties": {
            "pair": {"type": "string", "description": "\"<arm> vs <arm_b>\""},
            "arm": {"type": "string", "description": "the pair's first arm: wins are its wins"},
            "arm_b": {"type": "string"},
            "wins": {"type": "integer", "minimum": 0, "description": "clicked requests whose clicks went more to arm"},
            "losses": {"type": "integer", "minimum": 0},
            "ties": {"type": "integer", "minimum": 0, "description": "requests with clicks credited equally to both"},
            "win_rate": {**NUMBER_OR_NULL, "description": "wins / (wins + losses)"},
            "win_rate_ci_low": NUMBER_OR_NULL, "win_rate_ci_high": NUMBER_OR_NULL,
            "delta": {**NUMBER_OR_NULL, "description": "(wins + ties/2) / (wins + losses + ties) − 1/2"},
            "sign_p": {"type": "number", "description": "exact two-sided sign test, fixed horizon"},
            "pair_always_valid_p": {"type": "number", "description": "Beta-mixture sequential sign test: safe to peek"},
            "cs_low": {"type": "number"}, "cs_high": {"type": "number"},
        },
    },
    "MetricArm": {
        "type": "object",
        "required": ["arm", "value", "ci_low", "ci_high", "lift", "always_valid_p"],
        "properties": {
            "arm": {"type": "string"},
            "is_control": {"type": "boolean"},
            "value": {**NUMBER_OR_NULL, "description": "the arm's estimate (pooled over allocation periods)"},
            "se": NUMBER_OR_NULL,
            "ci_low": {**NUMBER_OR_NULL, "description": "95% interval (1 − alpha): delta method over user clusters; "
                       "for the per-user means the CLT on users"},
            "ci_high": NUMBER_OR_NULL,
            "users": {"type": "integer", "minimum": 0},
            "numerator": {**NUMBER_OR_NULL, "description": "clicks, purchasing users or revenue"},
            "denominator": {**NUMBER_OR_NULL, "description": "impressions (ctr) or users"},
            "lift": {**NUMBER_OR_NULL, "description": "relative lift vs the control (stratified by allocation "
                     "period when weights changed); null on the control"},
            "lift_ci_low": NUMBER_OR_NULL, "lift_ci_high": NUMBER_OR_NULL,
            "abs_diff": NUMBER_OR_NULL,
            "p_value": {**NUMBER_OR_NULL, "description": "fixed-horizon z-test of the difference"},
            "p_value_holm": NUMBER_OR_NULL,
            "always_valid_p": {**NUMBER_OR_NULL, "description": "mSPRT on the relative lift: safe to peek; null on "
                               "the control"},
            "always_valid_p_holm": NUMBER_OR_NULL,
            "lift_cs": {"type": ["array", "null"], "items": NUMBER_OR_NULL,
                        "description": "confidence sequence of the lift [low, high]"},
            "periods_used": {"type": ["integer", "null"]},
            "p_best": {**NUMBER_OR_NULL, "description": "posterior P(best) on this metric (normal approximation)"},
            "expected_loss": NUMBER_OR_NULL,
            "cuped": {
                "type": ["object", "null"],
                "description": "ctr only: the CUPED-adjusted CTR, the covariate being the user's impressions and "
                "clicks before their first exposure (docs/statistics.md §20); null when some user's covariate is "
                "missing (rows folded before the covariates were kept) or with fewer than two users",
                "required": ["value", "ci_low", "ci_high", "variance_reduction"],
                "properties": {
                    "value": NUMBER_OR_NULL, "ci_low": NUMBER_OR_NULL, "ci_high": NUMBER_OR_NULL,
                    "variance_reduction": {**NUMBER_OR_NULL, "description": "1 − Var(adjusted) / Var(unadjusted)"},
                    "theta": NUMBER_OR_NULL, "unadjusted": NUMBER_OR_NULL,
                    "lift": NUMBER_OR_NULL, "lift_ci_low": NUMBER_OR_NULL, "lift_ci_high": NUMBER_OR_NULL,
                },
            },
        },
    },
    "Metric": {
        "type": "object",
        "required": ["name", "primary", "arms"],
        "properties": {
            "name": {"enum": ["ctr", "conversion_rate", "revenue_per_user"],
                     "description": "clicks / impressions; purchasing users / users; revenue / users"},
            "primary": {"type": "boolean", "description": "the experiment's primary metric: it drives the promotion "
                        "evidence, the allocation policy and the guardrail"},
            "control": {"type": "string"},
            "method": {"enum": ["pooled", "stratified"], "description": "how P(best) compared the arms"},
            "arms": {"type": "array", "items": ref("MetricArm")},
        },
    },
    "ExperimentStats": {
        "type": "object",
        "required": ["experiment", "computed_at", "seq", "control", "alpha", "arms", "srm", "warnings"],
        "properties": {
            "experiment": {
                "type": "object",
                "required": ["slug", "status", "winner", "allocation_epoch"],
                "properties": {
                    "slug": {"type": "string"},
                    "name": {"type": "string"},
                    "status": {"enum": ["draft", "running", "stopped", "concluded"]},
                    "winner": {"type": ["string", "null"]},
                    "allocation_epoch": {"type": "integer", "minimum": 0},
                    "conclusion": {"type": "string", "description": "the operator's written conclusion (empty "
                                   "until concluded)"},
                },
            },
            "computed_at": {"type": "string", "format": "date-time"},
            "seq": {"type": "integer", "minimum": 1},
            "control": {"type": "string"},
            "alpha": {"type": "number"},
            "arms": {"type": "array", "items": ref("ArmResult")},
            "primary_metric": {"enum": ["ctr", "conversion_rate", "revenue_per_user"]},
            "metrics": {"type": "array", "items": ref("Metric"),
                        "description": "every metric of every arm, the primary first (docs/statistics.md §19)"},
            "guardrail_metrics": {"oneOf": [{"type": "null"}, ref("GuardrailMetrics")]},
            "pairs": {"type": "array", "items": ref("PairResult"),
                      "description": "interleaved experiments only: the preference of each pair of arms"},
            "srm": {
                "type": "object",
                "required": ["p_value", "alert"],
                "properties": {"p_value": NUMBER_OR_NULL, "alert": {"type": "boolean"}},
            },
            "warnings": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["code", "message"],
                    "properties": {
                        "code": {"type": "string"},
                        "arm": {"type": ["string", "null"]},
                        "message": {"type": "string"},
                    },
                },
            },
        },
    },
    "PromoteRequest": {
        "type": "object",
        "required": ["arm", "reason"],
        "properties": {
            "arm": {"type": "string", "description": "arm name"},
            "reason": {"type": "string", "minLength": 1, "maxLength": 2000},
        },
    },
    "Decision": {
        "type": "object",
        "required": ["id", "action", "arm", "user", "reason", "created_at"],
        "properties": {
            "id": {"type": "integer"},
            "action": {"type": "string", "description": "promote, pause, resume, reweight, start, stop, create, arm_add, …"},
            "arm": {"type": ["string", "null"]},
            "user": {"type": ["string", "null"]},
            "reason": {"type": "string"},
            "created_at": {"type": "string", "format": "date-time"},
        },
    },
    "ArmSpec": {
        "type": "object",
        "required": ["name", "kind"],
        "properties": {
            "name": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$"},
            "kind": {"type": "string", "description": "a model kind: popularity, ftrl_logreg, deep_ctr, neural_bandit, "
                     "q_learning"},
            "params": {"type": ["object", "null"], "description": "hyper-parameters, validated by the model registry "
                       "(unknown or out-of-range ones are a 400 naming them); omitted ones take their defaults"},
            "weight": {"type": ["number", "null"], "minimum": 0, "maximum": 1e6, "default": 1.0,
                       "description": "share of new users relative to the other arms; 0 = a candidate"},
        },
    },
    "ArmAddRequest": {
        "allOf": [ref("ArmSpec")],
        "properties": {"reason": {"type": ["string", "null"], "maxLength": 2000},
                       "shadow": {"type": "boolean", "default": False,
                                  "description": "add it as a shadow arm (weight 0): it ranks every served request "
                                  "without being shown and learns from the served arms' clicks"}},
    },
    "GuardrailBounds": {
        "type": "object",
        "required": ["latency_p95_ms", "error_rate", "min_coverage", "min_requests"],
        "description": "serving bounds per arm; null switches a rule off (docs/statistics.md §13)",
        "properties": {
            "latency_p95_ms": {"type": ["number", "null"], "exclusiveMinimum": 0},
            "error_rate": {"type": ["number", "null"], "exclusiveMinimum": 0, "exclusiveMaximum": 1},
            "min_coverage": {"type": ["number", "null"], "exclusiveMinimum": 0, "maximum": 1},
            "min_requests": {"type": "integer", "minimum": 1},
        },
    },
    "GuardrailMetrics": {
        "type": "object",
        "required": ["window_minutes", "bounds", "available", "arms"],
        "description": "each arm's serving over the last window_minutes, from every web process (available: false "
                       "while Redis is unreachable)",
        "properties": {
            "window_minutes": {"type": "integer", "minimum": 1},
            "bounds": ref("GuardrailBounds"),
            "available": {"type": "boolean"},
            "arms": {"type": "array", "items": {
                "type": "object",
                "required": ["arm", "requests", "errors", "error_rate", "latency_p50_ms", "latency_p95_ms", "shown",
                             "distinct_items", "active_items", "coverage", "breaches"],
                "properties": {
                    "arm": {"type": "string"},
                    "requests": {"type": "integer", "minimum": 0},
                    "errors": {"type": "integer", "minimum": 0},
                    "error_rate": NUMBER_OR_NULL,
                    "error_rate_lower": NUMBER_OR_NULL,
                    "latency_p50_ms": NUMBER_OR_NULL,
                    "latency_p95_ms": NUMBER_OR_NULL,
                    "latency_p95_ms_lower": NUMBER_OR_NULL,
                    "shown": {"type": "integer", "minimum": 0},
                    "distinct_items": {"type": "integer", "minimum": 0},
                    "active_items": {"type": "integer", "minimum": 0},
                    "coverage": NUMBER_OR_NULL,
                    "breaches": {"type": "array", "items": {
                        "enum": ["latency_p95_above_bound", "error_rate_above_bound", "coverage_below_bound"]}},
                },
            }},
        },
    },
    "ExperimentCreate": {
        "type": "object",
        "required": ["slug"],
        "properties": {
            "slug": {"type": "string", "pattern": "^[-a-zA-Z0-9_]{1,100}$"},
            "name": {"type": ["string", "null"], "maxLength": 200},
            "mode": {"enum": ["ab", "interleaved", None], "default": "ab",
                     "description": "\"ab\": each user sees one arm; \"interleaved\": every slate team-drafts "
                     "the arms taking traffic and clicks credit the contributing arm; fixed at creation"},
            "arms": {"type": ["array", "null"], "maxItems": 20, "items": ref("ArmSpec")},
            "control": {"type": ["string", "null"], "description": "arm name; default the first arm"},
            "primary_metric": {"enum": ["ctr", "conversion_rate", "revenue_per_user", None], "default": "ctr",
                               "description": "drives the promotion evidence, the allocation policy and the "
                               "guardrail; changeable later on the dashboard's policy page (audited)"},
            "salt": {"type": ["string", "null"], "pattern": "^[-a-zA-Z0-9_.:]{1,64}$",
                     "description": "hashed with each user id into a bucket; random when omitted; fixed for good"},
            "guardrail_bounds": {"type": ["object", "null"], "additionalProperties": False,
                                 "description": "serving bounds per arm (latency_p95_ms, error_rate, min_coverage, "
                                 "min_requests; a missing key keeps its default, null switches a rule off); "
                                 "changeable later on the dashboard's policy page (audited)",
                                 "properties": {"latency_p95_ms": NUMBER_OR_NULL, "error_rate": NUMBER_OR_NULL,
                                                "min_coverage": NUMBER_OR_NULL, "min_requests": {"type": "integer"}}},
            "reason": {"type": ["string", "null"], "maxLength": 2000},
            "holdout": {
                "type": ["object", "null"], "required": ["arm", "share"], "additionalProperties": False,
                "description": "A/B only: keep this share of the users on this arm (weight 0) for the experiment's "
                "whole life, through promotions, until POST …/holdout/end",
                "properties": {"arm": {"type": "string"}, "share": {"type": "number", "exclusiveMinimum": 0,
                                                                      "maximum": 0.5}},
            },
            "layer": {"type": ["string", "null"], "description": "layer slug: the experiment owns a range of the "
                      "layer's buckets, so no user is in two experiments of the layer"},
            "layer_share": {"type": ["number", "null"], "exclusiveMinimum": 0, "maximum": 1,
                            "description": "its share of the layer's users (first free range that fits); default "
                            "the largest free range"},
        },
    },
    "HoldoutRequest": {
        "type": "object",
        "required": ["arm", "share"],
        "properties": {"arm": {"type": "string"}, "share": {"type": "number", "exclusiveMinimum": 0, "maximum": 0.5},
                       "reason": {"type": ["string", "null"], "maxLength": 2000}},
    },
    "LayerCreate": {
        "type": "object",
        "required": ["slug"],
        "properties": {
            "slug": {"type": "string", "pattern": "^[-a-zA-Z0-9_]{1,100}$"},
            "name": {"type": ["string", "null"], "maxLength": 200},
            "salt": {"type": ["string", "null"], "pattern": "^[-a-zA-Z0-9_.:]{1,64}$",
                     "description": "hashes each user into the layer's 10,000 buckets; random when omitted"},
        },
    },
    "Layer": {
        "type": "object",
        "required": ["slug", "name", "created_at", "experiments", "free", "free_share"],
        "properties": {
            "slug": {"type": "string"},
            "name": {"type": "string"},
            "created_at": {"type": "string", "format": "date-time"},
            "experiments": {"type": "array", "items": {
                "type": "object", "required": ["slug", "status", "start", "end", "share"],
                "properties": {"slug": {"type": "string"}, "status": {"type": "string"},
                               "start": {"type": "integer"}, "end": {"type": "integer"}, "share": {"type": "number"}},
            }},
            "free": {"type": "array", "items": {"type": "object", "required": ["start", "end"], "properties": {
                "start": {"type": "integer"}, "end": {"type": "integer"}}}},
            "free_share": {"type": "number", "minimum": 0, "maximum": 1},
        },
    },
    "LayerList": {
        "type": "object",
        "required": ["layers"],
        "properties": {"layers": {"type": "array", "items": ref("Layer")}},
    },
    "EvaluateRequest": {
        "type": "object",
        "properties": {
            "n_bootstrap": {"type": ["integer", "null"], "minimum": 2, "maximum": 5000, "default": 300},
            "logging_arms": {"type": ["array", "null"], "items": {"type": "string"}, "minItems": 1,
                             "description": "evaluate on these arms' logs only (default: every other arm's)"},
        },
    },
    "EvaluationQueued": {
        "type": "object",
        "required": ["job", "arm", "experiment", "state"],
        "properties": {"job": {"type": "string"}, "arm": {"type": "string"}, "experiment": {"type": "string"},
                       "state": {"const": "queued"}},
    },
    "WebhookRequest": {
        "type": "object",
        "required": ["url"],
        "properties": {
            "url": {"type": "string", "maxLength": 500, "description": "http(s) URL (a Slack incoming webhook works); "
                    "empty removes the webhook"},
            "secret": {"type": ["string", "null"], "minLength": 16, "maxLength": 128,
                       "description": "HMAC-SHA256 signing secret; kept when omitted (random for a new webhook)"},
            "reason": {"type": ["string", "null"], "maxLength": 2000},
        },
    },
    "ConcludeRequest": {
        "type": "object",
        "required": ["conclusion"],
        "properties": {"conclusion": {"type": "string", "minLength": 1, "maxLength": 10000,
                                      "description": "what was learnt and what ships; kept with the results"}},
    },
    "ArmSummary": {
        "type": "object",
        "required": ["name", "kind", "params", "weight", "share", "status", "health"],
        "properties": {
            "name": {"type": "string"},
            "kind": {"type": "string"},
            "params": {"type": "object", "description": "complete (defaults filled in)"},
            "weight": {"type": "number", "minimum": 0},
            "share": {"type": "number", "minimum": 0, "maximum": 1,
                      "description": "share of new users now (returning users keep their arm)"},
            "status": {"enum": ["active", "paused", "retired", "shadow"],
                       "description": "shadow: ranks every served request without being shown, learns off-policy"},
            "health": {"enum": ["healthy", "unhealthy"]},
            "health_reason": {"type": "string"},
        },
    },
    "ExperimentSummary": {
        "type": "object",
        "required": ["slug", "name", "mode", "status", "control", "winner", "leader", "allocation_epoch", "arms",
                     "policy", "guardrails"],
        "properties": {
            "slug": {"type": "string"},
            "name": {"type": "string"},
            "mode": {"enum": ["ab", "interleaved"]},
            "primary_metric": {"enum": ["ctr", "conversion_rate", "revenue_per_user"]},
            "status": {"enum": ["draft", "running", "stopped", "concluded"]},
            "control": {"type": ["string", "null"]},
            "winner": {"type": ["string", "null"]},
            "leader": {"type": ["string", "null"],
                       "description": "the winner once concluded, else the arm with the highest P(best) at the latest "
                       "stats tick (null before there is data)"},
            "leader_p_best": NUMBER_OR_NULL,
            "allocation_epoch": {"type": "integer", "minimum": 0},
            "created_at": {"type": "string", "format": "date-time"},
            "started_at": {"type": ["string", "null"], "format": "date-time"},
            "concluded_at": {"type": ["string", "null"], "format": "date-time"},
            "conclusion": {"type": "string"},
            "policy": {
                "type": "object",
                "required": ["kind", "floor", "interval_minutes", "next_at"],
                "properties": {
                    "kind": {"enum": ["fixed", "thompson", "top_two_thompson"]},
                    "floor": {"type": "number"},
                    "interval_minutes": {"type": "integer"},
                    "next_at": {"type": ["string", "null"], "format": "date-time"},
                },
            },
            "guardrails": {
                "type": "object",
                "required": ["enabled", "alpha"],
                "properties": {"enabled": {"type": "boolean"}, "alpha": {"type": "number"},
                               "bounds": ref("GuardrailBounds")},
            },
            "layer": {"type": ["object", "null"], "required": ["slug", "start", "end", "share"],
                      "description": "the layer buckets [start, end) it owns",
                      "properties": {"slug": {"type": "string"}, "start": {"type": "integer"},
                                     "end": {"type": "integer"}, "share": {"type": "number"}}},
            "holdout": {"type": ["object", "null"], "required": ["arm", "share", "running", "ended_at"],
                        "properties": {"arm": {"type": ["string", "null"]}, "share": {"type": "number"},
                                       "running": {"type": "boolean"},
                                       "ended_at": {"type": ["string", "null"], "format": "date-time"}}},
            "arms": {"type": "array", "items": ref("ArmSummary")},
        },
    },
    "ExperimentList": {
        "type": "object",
        "required": ["experiments"],
        "properties": {"experiments": {"type": "array", "items": ref("ExperimentSummary")}},
    },
    "ArmAdded": {
        "type": "object",
        "required": ["arm", "experiment"],
        "properties": {"arm": ref("ArmSummary"), "experiment": ref("ExperimentSummary")},
    },
    "ReasonRequest": {
        "type": "object",
        "properties": {"reason": {"type": ["string", "null"], "maxLength": 2000,
                                  "description": "recorded with the decision; a default names the action"}},
    },
    "WeightsRequest": {
        "type": "object",
        "required": ["weights"],
        "properties": {
            "weights": {"type": "object", "minProperties": 1,
                        "additionalProperties": {"type": "number", "minimum": 0, "maximum": 1e6},
                        "description": "arm name → weight; arms not named keep theirs"},
            "reason": {"type": ["string", "null"], "maxLength": 2000},
        },
    },
    "DecisionResult": {
        "type": "object",
        "required": ["decision", "experiment"],
        "properties": {"decision": ref("Decision"), "experiment": ref("ExperimentSummary")},
    },
    "Promotion": {
        "type": "object",
        "required": ["decision", "experiment"],
        "properties": {
            "decision": {
                "type": "object",
                "required": ["id", "action", "arm", "user", "reason", "created_at"],
                "properties": {
                    "id": {"type": "integer"},
                    "action": {"const": "promote"},
                    "arm": {"type": "string"},
                    "user": {"type": "string"},
                    "reason": {"type": "string"},
                    "created_at": {"type": "string", "format": "date-time"},
                },
            },
            "experiment": {
                "type": "object",
                "required": ["slug", "status", "winner"],
                "properties": {
                    "slug": {"type": "string"},
                    "status": {"const": "concluded"},
                    "winner": {"type": "string"},
                },
            },
        },
    },
}

API_KEY_SECURITY = [{"apiKey": []}, {"bearer": []}]
# Staff endpoints: the login session (with X-CSRFToken on writes) or a staff token made in the Django admin.
OPERATOR_SECURITY = [{"session": []}, {"staffToken": []}]
OPERATOR_ERRORS = {
    "400": {**ERROR, "description": "invalid JSON or an invalid field"},
    "401": {**ERROR, "description": "no session and no bearer token (unauthenticated), or an unknown, revoked or "
            "expired token (invalid_token)"},
    "403": {**ERROR, "description": "not staff or no promote_arm permission (forbidden), or a session write without "
            "its CSRF token (csrf_failed)"},
    "404": {**ERROR, "description": "unknown experiment or arm"},
    "405": {**ERROR, "description": "method not allowed"},
    "413": {**ERROR, "description": "body too large"},
    "503": {**ERROR, "description": "database unavailable"},
}
EXPORT_ERRORS = {
    "401": {**ERROR, "description": "no session and no bearer token (unauthenticated), or an unknown, revoked or "
            "expired token (invalid_token)"},
    "403": {**ERROR, "description": "the token's user is deactivated (forbidden)"},
    "404": {**ERROR, "description": "unknown experiment (experiment_not_found)"},
    "405": {**ERROR, "description": "method not allowed"},
    "503": {**ERROR, "description": "database unavailable"},
}
SLUG = {"name": "slug", "in": "path", "required": True, "schema": {"type": "string"}}
ARM = {"name": "arm", "in": "path", "required": True, "schema": {"type": "string"}, "description": "arm name"}
# Recommendations and clicks: open unless the deployment sets RECSITE_API_KEY_EVENTS=1 (with RECSITE_API_KEY).
OPTIONAL_KEY_SECURITY = [{}, *API_KEY_SECURITY]
KEY_ERRORS = {
    "401": {**ERROR, "description": "API key configured (for this endpoint) and missing"},
    "403": {**ERROR, "description": "wrong API key"},
}

# Ingestion (items, users, business events): keyed when RECSITE_API_KEY is set, closed without one unless RECSITE_PUBLIC_INGEST=1.
INGEST_ERRORS = {
    "401": {**ERROR, "description": "API key configured and missing"},
    "403": {**ERROR, "description": "wrong API key (forbidden), or ingestion closed: no key configured and "
                                    "RECSITE_PUBLIC_INGEST off (ingestion_closed)"},
}

PATHS: dict[str, dict[str, Any]] = {
    "/api/v1/recommendations": {
        "post": {
            "summary": "Assign the user (sticky), rank the active catalogue, log one impression per item",
            "operationId": "recommend",
            "security": OPTIONAL_KEY_SECURITY,
            "requestBody": {"required": True, **json_body(ref("RecommendationRequest"))},
            "responses": {
                "200": json_body(ref("Recommendation"), "the ranked items"),
                "404": {**ERROR, "description": "unknown experiment, or no layer with a serving experiment"},
                "409": {**ERROR, "description": "no running experiment, no active arm, or no serving experiment of "
                        "the layer owns the user's bucket (layer_unallocated)"},
                **KEY_ERRORS,
                **COMMON_ERRORS,
                "400": {**ERROR, "description": "invalid field, several running experiments, or empty catalogue"},
            },
        }
    },
    "/api/v1/clicks": {
        "post": {
            "summary": "Record the click of an impression (idempotent)",
            "operationId": "click",
            "security": OPTIONAL_KEY_SECURITY,
            "requestBody": {"required": True, **json_body(ref("ClickRequest"))},
            "responses": {
                "201": json_body(ref("Click"), "recorded now; counted unless late"),
                "200": json_body(ref("Click"), "already recorded: the stored click"),
                "404": {**ERROR, "description": "unknown impression: one answer for unknown, altered and forged ids"},
                **KEY_ERRORS,
                **COMMON_ERRORS,
            },
        }
    },
    "/api/v1/events": {
        "post": {
            "summary": "Record a business event (view, add_to_cart, purchase), attributed to the arm that served the "
                       "user (idempotent on event_id)",
            "operationId": "recordEvent",
            "security": API_KEY_SECURITY,
            "requestBody": {"required": True, **json_body(ref("EventRequest"))},
            "responses": {
                "201": json_body(ref("BusinessEvent"), "recorded now; counted unless late or not covered by a serve"),
                "200": json_body(ref("BusinessEvent"), "this event_id was already recorded: the stored event"),
                "404": {**ERROR, "description": "unknown impression (impression_not_found: one answer for unknown, "
                        "altered, forged and other users' ids), or unknown item (item_not_found)"},
                "409": {**ERROR, "description": "the event_id was already used for a different event "
                        "(event_id_conflict)"},
                **INGEST_ERRORS,
                **COMMON_ERRORS,
                "400": {**ERROR, "description": "invalid JSON or field: missing user_id or type, unknown_type, a value "
                        "that is not a finite non-negative amount with at most two decimals (out_of_range, "
                        "too_precise), a ts that is not ISO 8601 with a zone (invalid), ts_in_future, ts_too_old"},
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
                **INGEST_ERRORS,
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
                **INGEST_ERRORS,
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
    "/api/v1/experiments/{slug}/stats": {
        "get": {
            "summary": "The live dashboard's per-arm results (the latest stats tick, at most 5 s old)",
            "operationId": "experimentStats",
            "security": OPERATOR_SECURITY,
            "parameters": [SLUG],
            "responses": {
                "200": json_body(ref("ExperimentStats"), "results per arm"),
                "401": {**ERROR, "description": "not logged in"},
                "404": {**ERROR, "description": "unknown experiment"},
                "405": {**ERROR, "description": "method not allowed"},
                "409": {**ERROR, "description": "the experiment has no arms yet"},
                "503": {**ERROR, "description": "database unavailable"},
            },
        }
    },
    "/api/v1/experiments/{slug}/export/users.csv": {
        "get": {
            "summary": "Per-user rows for notebooks, as CSV (streamed): one row per arm × user × allocation period "
            "with the clustered counts (now and at the last stats tick) and the pre-exposure covariate; readable "
            "like the stats (docs/statistics.md §17 says how to recompute the dashboard's intervals from it)",
            "operationId": "experimentExportUsersCsv",
            "security": OPERATOR_SECURITY,
            "parameters": [SLUG],
            "responses": {
                "200": {"description": "attachment `<slug>-users.csv`; header row, then the rows by arm and user",
                        "content": {"text/csv": {"schema": {"type": "string"}}}},
                **EXPORT_ERRORS,
            },
        }
    },
    "/api/v1/experiments/{slug}/export/users.parquet": {
        "get": {
            "summary": "The same rows as users.csv, as Parquet (one row group per chunk, streamed; schema in "
            "docs/statistics.md §17)",
            "operationId": "experimentExportUsersParquet",
            "security": OPERATOR_SECURITY,
            "parameters": [SLUG],
            "responses": {
                "200": {"description": "attachment `<slug>-users.parquet`",
                        "content": {"application/vnd.apache.parquet": {"schema": {"type": "string",
                                                                                  "contentMediaType":
                                                                                  "application/vnd.apache.parquet"}}}},
                **EXPORT_ERRORS,
            },
        }
    },
    "/api/v1/experiments/{slug}/promote": {
        "post": {
            "summary": "Send every bucket to one arm at once and conclude (staff with promote_arm; session + "
            "X-CSRFToken); recorded as a Decision with the reason and the statistics of that moment",
            "operationId": "experimentPromote",
            "security": OPERATOR_SECURITY,
            "parameters": [SLUG],
            "requestBody": {"required": True, **json_body(ref("PromoteRequest"))},
            "responses": {
                "201": json_body(ref("Promotion"), "promoted"),
                "400": {**ERROR, "description": "invalid JSON, missing arm or reason"},
                "401": {**ERROR, "description": "not logged in"},
                "403": {**ERROR, "description": "no promote_arm permission (forbidden) or CSRF token missing (csrf_failed)"},
                "404": {**ERROR, "description": "unknown experiment or arm"},
                "405": {**ERROR, "description": "method not allowed"},
                "409": {**ERROR, "description": "experiment not running, or the arm is not active"},
                "413": {**ERROR, "description": "body too large"},
                "503": {**ERROR, "description": "database unavailable"},
            },
        }
    },
    "/api/v1/experiments": {
        "get": {
            "summary": "Every experiment with its status, arms (weights, shares of new users) and leader (staff)",
            "operationId": "experimentList",
            "security": OPERATOR_SECURITY,
            "responses": {"200": json_body(ref("ExperimentList"), "newest first"), **OPERATOR_ERRORS},
        },
        "post": {
            "summary": "Create a draft experiment with its arms (staff with promote_arm); audited; start it with "
            "POST …/start",
            "operationId": "experimentCreate",
            "security": OPERATOR_SECURITY,
            "requestBody": {"required": True, **json_body(ref("ExperimentCreate"))},
            "responses": {
                "201": json_body(ref("ExperimentSummary"), "created (status draft)"),
                **OPERATOR_ERRORS,
                "400": {**ERROR, "description": "invalid field (the registry's message for bad params)"},
                "404": {**ERROR, "description": "unknown layer (layer_not_found)"},
                "409": {**ERROR, "description": "the slug is taken (experiment_exists), or the layer has no free "
                        "range of that size (layer_full)"},
            },
        },
    },
    "/api/v1/layers": {
        "get": {
            "summary": "Every layer with its experiments' bucket ranges and its free ranges (staff)",
            "operationId": "layerList",
            "security": OPERATOR_SECURITY,
            "responses": {"200": json_body(ref("LayerList"), "by slug"), **OPERATOR_ERRORS},
        },
        "post": {
            "summary": "Make a layer: experiments created in it split its buckets, so none shares a user (staff "
            "with promote_arm)",
            "operationId": "layerCreate",
            "security": OPERATOR_SECURITY,
            "requestBody": {"required": True, **json_body(ref("LayerCreate"))},
            "responses": {
                "201": json_body(ref("Layer"), "made"),
                **OPERATOR_ERRORS,
                "409": {**ERROR, "description": "the slug is taken (layer_exists)"},
            },
        },
    },
    "/api/v1/experiments/{slug}/holdout": {
        "post": {
            "summary": "Set a draft experiment's holdout: share of its users on arm (its weight becomes 0) for the "
            "experiment's whole life, through promotions; audited",
            "operationId": "holdoutSet",
            "security": OPERATOR_SECURITY,
            "parameters": [SLUG],
            "requestBody": {"required": True, **json_body(ref("HoldoutRequest"))},
            "responses": {
                "200": json_body(ref("DecisionResult"), "set"),
                **OPERATOR_ERRORS,
                "409": {**ERROR, "description": "not a draft (not_draft), or no other arm would take traffic"},
            },
        }
    },
    "/api/v1/experiments/{slug}/holdout/end": {
        "post": {
            "summary": "End the holdout: its users move to the live arms (or the winner); audited, a new period",
            "operationId": "holdoutEnd",
            "security": OPERATOR_SECURITY,
            "parameters": [SLUG],
            "requestBody": {"required": False, **json_body(ref("ReasonRequest"))},
            "responses": {
                "200": json_body(ref("DecisionResult"), "ended"),
                **OPERATOR_ERRORS,
                "409": {**ERROR, "description": "no running holdout (no_holdout)"},
            },
        }
    },
    "/api/v1/experiments/{slug}/arms": {
        "post": {
            "summary": "Add an arm (weight 0 = a candidate that serves nobody); in a running experiment an arm with "
            "a positive weight takes new users at once, in a new allocation period",
            "operationId": "armAdd",
            "security": OPERATOR_SECURITY,
            "parameters": [SLUG],
            "requestBody": {"required": True, **json_body(ref("ArmAddRequest"))},
            "responses": {
                "201": json_body(ref("ArmAdded"), "added"),
                **OPERATOR_ERRORS,
                "409": {**ERROR, "description": "name taken (arm_exists), experiment concluded, too many arms"},
            },
        }
    },
    "/api/v1/experiments/{slug}/start": {
        "post": {
            "summary": "Start a draft or stopped experiment: it serves its arms (returning users get their own arm "
            "back)",
            "operationId": "experimentStart",
            "security": OPERATOR_SECURITY,
            "parameters": [SLUG],
            "requestBody": {"required": False, **json_body(ref("ReasonRequest"))},
            "responses": {
                "200": json_body(ref("DecisionResult"), "started"),
                **OPERATOR_ERRORS,
                "409": {**ERROR, "description": "already running, concluded, no arm, no arm with a positive weight"},
            },
        }
    },
    "/api/v1/experiments/{slug}/stop": {
        "post": {
            "summary": "Stop without a winner: every request is served by the control arm (in an allocation period "
            "of its own) until a start; assignments are kept",
            "operationId": "experimentStop",
            "security": OPERATOR_SECURITY,
            "parameters": [SLUG],
            "requestBody": {"required": False, **json_body(ref("ReasonRequest"))},
            "responses": {
                "200": json_body(ref("DecisionResult"), "stopped"),
                **OPERATOR_ERRORS,
                "409": {**ERROR, "description": "not running, or no active control arm"},
            },
        }
    },
    "/api/v1/experiments/{slug}/arms/{arm}/evaluate": {
        "post": {
            "summary": "Queue an offline (off-policy) evaluation of an arm, usually a weight-0 candidate, on the other "
            "arms' logged traffic (a Celery job on the default queue); progress goes to the dashboard's WebSocket as "
            "offline_progress events, and the estimate (DR, SNIPS, IPS with CIs, clipped to [0, 1]; effective sample "
            "size; max importance weight) is stored for the candidates table",
            "operationId": "armEvaluate",
            "security": OPERATOR_SECURITY,
            "parameters": [SLUG, ARM],
            "requestBody": {"required": False, **json_body(ref("EvaluateRequest"))},
            "responses": {
                "202": json_body(ref("EvaluationQueued"), "queued"),
                **OPERATOR_ERRORS,
                "409": {**ERROR, "description": "no other arm has logged traffic (no_logs), or the arm only holds "
                        "imported logs (not_a_policy)"},
            },
        }
    },
    "/api/v1/experiments/{slug}/webhook": {
        "post": {
            "summary": "Set or remove the experiment's webhook (audited). Events: srm, guardrail, significant (first "
            "always-valid significant result per arm), promotion, conclusion; Slack-compatible JSON signed with "
            "X-Recsite-Signature: sha256=HMAC(secret, \"<X-Recsite-Timestamp>.<body>\"); retried with backoff",
            "operationId": "experimentWebhook",
            "security": OPERATOR_SECURITY,
            "parameters": [SLUG],
            "requestBody": {"required": True, **json_body(ref("WebhookRequest"))},
            "responses": {"200": json_body(ref("DecisionResult"), "set (the body adds webhook: {url, secret})"),
                          **OPERATOR_ERRORS},
        }
    },
    "/api/v1/experiments/{slug}/conclude": {
        "post": {
            "summary": "Write the conclusion, kept with the results: after a promotion, or ending a stopped "
            "experiment on its control (which already serves everyone); audited as a conclude decision",
            "operationId": "experimentConclude",
            "security": OPERATOR_SECURITY,
            "parameters": [SLUG],
            "requestBody": {"required": True, **json_body(ref("ConcludeRequest"))},
            "responses": {
                "200": json_body(ref("DecisionResult"), "concluded"),
                **OPERATOR_ERRORS,
                "409": {**ERROR, "description": "draft or running (promote an arm or stop it first: not_concludable)"},
            },
        }
    },
    "/api/v1/experiments/{slug}/weights": {
        "post": {
            "summary": "New weights for some arms, as one decision and one new allocation period; weights steer new "
            "users only (returning users keep their arm)",
            "operationId": "experimentWeights",
            "security": OPERATOR_SECURITY,
            "parameters": [SLUG],
            "requestBody": {"required": True, **json_body(ref("WeightsRequest"))},
            "responses": {
                "200": json_body(ref("DecisionResult"), "re-weighted"),
                **OPERATOR_ERRORS,
                "409": {**ERROR, "description": "an allocation policy steers the weights (policy_managed), no arm "
                        "would keep a positive weight, a retired arm, concluded, nothing changes"},
            },
        }
    },
    "/api/v1/experiments/{slug}/arms/{arm}/pause": {
        "post": {
            "summary": "Pause an arm: it takes no traffic and its users move to the other arms (by a second hash, "
            "in proportion to the weights)",
            "operationId": "armPause",
            "security": OPERATOR_SECURITY,
            "parameters": [SLUG, ARM],
            "requestBody": {"required": False, **json_body(ref("ReasonRequest"))},
            "responses": {
                "200": json_body(ref("DecisionResult"), "paused"),
                **OPERATOR_ERRORS,
                "409": {**ERROR, "description": "already paused, the winner, retired, or the last arm with traffic"},
            },
        }
    },
    "/api/v1/experiments/{slug}/arms/{arm}/resume": {
        "post": {
            "summary": "Resume an arm: it takes new users again; nobody moves back",
            "operationId": "armResume",
            "security": OPERATOR_SECURITY,
            "parameters": [SLUG, ARM],
            "requestBody": {"required": False, **json_body(ref("ReasonRequest"))},
            "responses": {
                "200": json_body(ref("DecisionResult"), "resumed"),
                **OPERATOR_ERRORS,
                "409": {**ERROR, "description": "already active, or retired"},
            },
        }
    },
    "/api/v1/experiments/{slug}/arms/{arm}/shadow": {
        "post": {
            "summary": "Put an arm in the shadow: it is shown to nobody (its users move, as in a pause), ranks every "
            "request the experiment serves, logs its own propensity of the shown slate and learns from the served "
            "arms' clicks, importance-weighted; its doubly robust estimate shows on the dashboard. Resume to make "
            "it a live candidate",
            "operationId": "armShadow",
            "security": OPERATOR_SECURITY,
            "parameters": [SLUG, ARM],
            "requestBody": {"required": False, **json_body(ref("ReasonRequest"))},
            "responses": {
                "200": json_body(ref("DecisionResult"), "in the shadow"),
                **OPERATOR_ERRORS,
                "409": {**ERROR, "description": "already in the shadow, retired, the control, the winner, the "
                        "holdout's baseline, or an interleaved experiment"},
            },
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
                "(they are called by shoppers' browsers) unless the deployment also requires the key for them "
                "(RECSITE_API_KEY_EVENTS=1); items, users and business events (ingestion) need the API key, and are "
                "closed when "
                "none is configured unless the operator opens them (RECSITE_PUBLIC_INGEST=1). `impression_id` is "
                "an opaque string: echo it back unchanged. Staff actions use the login session with its CSRF token, "
                "or a staff token made in the Django admin (`Authorization: Bearer <token>`)."
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
                "staffToken": {"type": "http", "scheme": "bearer",
                               "description": "a staff member's token, made (and revoked) in the Django admin"},
            },
        },
    }
