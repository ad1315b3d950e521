"""Finding 10: docs/security.md says what is true.

It used to say an over-long declared body is "refused before the body is read". Daphne buffers the whole
request body before the application sees the request, so the 413 only comes after the upload; limits on
body size, upload time and request rate belong to the reverse proxy. The e2e test shows that on a real
Daphne; the document test keeps the claim out and the proxy's duties in.
"""

import socket
import time

import pytest

from tests.support.live import ROOT

DOC = (ROOT / "docs" / "security.md").read_text()


def test_the_document_no_longer_claims_early_refusal():
    assert "refused before the body is read" not in DOC
    assert "checked before the body is read" not in DOC


def test_the_document_says_daphne_buffers_and_names_the_proxy_limits():
    assert "Daphne buffers the whole request body" in DOC
    for duty in ("client_max_body_size", "client_body_timeout", "limit_req", "X-Forwarded-Proto", "--proxy-headers"):
        assert duty in DOC, duty


def test_every_setting_the_document_names_is_in_the_readme_table():
    readme = (ROOT / "README.md").read_text()
    for name in ("RECSITE_DEV", "RECSITE_TLS", "RECSITE_API_KEY", "RECSITE_PUBLIC_INGEST", "RECSITE_LOGIN_FAILURE_LIMIT",
                 "RECSITE_LOGIN_LOCKOUT_MINUTES", "RECSITE_USER_CACHE_MB", "RECSITE_WS_SESSION_RECHECK_S",
                 "SECRET_KEY_FALLBACKS"):
        assert name in DOC and f"`{name}`" in readme, name


def _response_within(sock: socket.socket, seconds: float) -> bytes:
    sock.settimeout(seconds)
    try:
        return sock.recv(65536)
    except TimeoutError:
        return b""


@pytest.mark.e2e
def test_daphne_answers_an_oversized_declared_body_only_after_receiving_it(daphne_server):
    host, port = daphne_server.removeprefix("http://").split(":")
    declared = 1024 * 1024  # over the 64 KiB limit of the event endpoints
    head = (f"POST /api/v1/recommendations HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {declared}\r\n\r\n").encode()
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(head + b" " * (64 * 1024))
        started = time.monotonic()
        early = _response_within(sock, 2.0)
        sock.sendall(b" " * (declared - 64 * 1024))
        late = _response_within(sock, 30.0)

    assert early == b""  # nothing while the upload is incomplete, although its length alone is refusable
    assert time.monotonic() - started >= 2.0
    assert late.startswith(b"HTTP/1.1 413")
