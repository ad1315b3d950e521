"""Finding 2: clicks cannot be forged. ``impression_id`` is opaque and signed; a guessed, altered, forged or
unknown id gets one and the same 404, and writes nothing."""

import base64
import hashlib
import hmac

import pytest

from experiments.models import ArmUserStat, Click, Impression
from tests.support.serving import catalogue_make, experiment_make, post_json, serving_inline  # noqa: F401

pytestmark = pytest.mark.django_db

URL = "/api/v1/clicks"


# Imported where used, so that the tests that need no new code also run (and fail) against the old one.
def impression_id_encode(pk: int) -> str:
    from experiments.services.impression_ids import impression_id_encode as encode

    return encode(pk)


def impression_id_decode(token: str) -> int | None:
    from experiments.services.impression_ids import impression_id_decode as decode

    return decode(token)


@pytest.fixture
def served(client, serving_inline):  # noqa: F811
    """Two shoppers' recommendations: (alice's items, bob's items)."""
    experiment_make(slug="forge")
    catalogue_make(n=20)
    alice = post_json(client, "/api/v1/recommendations", {"user_id": "alice", "k": 5}).json()["items"]
    bob = post_json(client, "/api/v1/recommendations", {"user_id": "bob", "k": 5}).json()["items"]
    return alice, bob


def test_impression_ids_are_opaque_strings_not_counters(served):
    alice, bob = served
    ids = [item["impression_id"] for item in alice + bob]

    assert all(isinstance(i, str) and not i.isdigit() for i in ids)
    assert len(set(ids)) == 10
    assert len(max(ids, key=len)) <= 27


def test_a_shopper_cannot_click_anothers_impression_by_counting(client, served):
    alice, _bob = served
    rows = sorted(Impression.objects.filter(user__external_id="bob").values_list("id", flat=True))
    # What an attacker tries next to alice's own (readable) row ids: the neighbours, as numbers and as digits.
    guesses = [value for pk in rows for value in (pk, str(pk))]

    answers = [post_json(client, URL, {"impression_id": guess}).status_code for guess in guesses]

    assert set(answers) <= {400, 404}
    assert Click.objects.count() == 0
    assert set(ArmUserStat.objects.values_list("clicks", flat=True)) == {0}


def _flip(token: str, index: int) -> str:
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    return token[:index] + alphabet[(alphabet.index(token[index]) + 1) % 64] + token[index + 1:]


def _signed_with(secret: str, pk: int) -> str:
    key = hmac.new(secret.encode(), b"recsite.impression_id.v1", hashlib.sha256).digest()
    row = pk.to_bytes((pk.bit_length() + 7) // 8, "big")
    tag = hmac.new(key, row, hashlib.sha256).digest()[:12]
    return base64.urlsafe_b64encode(row + tag).rstrip(b"=").decode()


def test_forged_altered_and_unknown_ids_get_the_same_404(client, served):
    alice, bob = served
    own = alice[0]["impression_id"]
    bobs_pk = impression_id_decode(bob[0]["impression_id"])
    attempts = {
        "unknown row, genuinely signed": impression_id_encode(bobs_pk + 10_000),
        "bob's row signed with another key": _signed_with("not-the-server-key", bobs_pk),
        "own id, first character changed": _flip(own, 0),
        "own id, last character changed": _flip(own, len(own) - 1),
        "own id, truncated": own[:-1],
        "own id, padded": own + "=",
        "garbage": "hello-world",
        "digits": str(bobs_pk),
    }

    answers = {name: post_json(client, URL, {"impression_id": token}) for name, token in attempts.items()}

    assert {name: r.status_code for name, r in answers.items()} == dict.fromkeys(attempts, 404)
    assert len({r.content for r in answers.values()}) == 1
    assert answers["garbage"].json()["error"] == {
        "code": "impression_not_found", "message": "no such impression (send impression_id exactly as served)",
        "field": "impression_id"}
    assert Click.objects.count() == 0


def test_the_genuine_id_is_accepted_once(client, served):
    alice, _bob = served
    token = alice[1]["impression_id"]

    first = post_json(client, URL, {"impression_id": token})
    again = post_json(client, URL, {"impression_id": token})

    assert (first.status_code, again.status_code) == (201, 200)
    assert Click.objects.get().impression_id == impression_id_decode(token)


def test_ids_served_before_a_key_rotation_still_click(client, settings, served):
    alice, _bob = served
    token = alice[2]["impression_id"]
    settings.SECRET_KEY_FALLBACKS = [settings.SECRET_KEY]
    settings.SECRET_KEY = "a-rotated-secret-key-" + "x" * 40

    assert post_json(client, URL, {"impression_id": token}).status_code == 201
    assert impression_id_encode(impression_id_decode(token)) != token  # new ids are signed with the new key


def test_the_id_round_trips_for_every_row_size_and_has_one_form():
    pks = [1, 255, 256, 2**31, 2**40 + 7, 2**63 - 1]

    tokens = [impression_id_encode(pk) for pk in pks]

    assert [impression_id_decode(t) for t in tokens] == pks
    assert all(len(t) <= 64 for t in tokens)
    assert impression_id_decode(tokens[3].swapcase()) is None
