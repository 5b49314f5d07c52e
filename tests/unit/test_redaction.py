"""The one redaction and the API key check (issue 14: a key with a trailing newline ended up, unmasked,
in ``requests``' ``InvalidHeader`` message, the task log and ``sync_runs.error``)."""

from __future__ import annotations

from urllib.parse import quote, quote_plus

import pytest

from amberflo_sync.client import AmberfloClient, AmberfloInvalidKeyError, ClientSettings
from amberflo_sync.hooks import settings_from_connection
from amberflo_sync.redaction import InvalidApiKeyError, clean_api_key, redact

KEY = "sk-redact-0123456789abcdef"


def test_redact_removes_the_key_its_stripped_form_and_its_repr_escaped_form():
    raw = KEY + "\n"
    text = f"Invalid leading whitespace, reserved character(s), or return character(s) in header value: {raw!r}"
    out = redact(text, [raw])
    assert KEY not in out and "***" in out


@pytest.mark.parametrize("encode", [quote, quote_plus], ids=["quote", "quote_plus"])
def test_redact_removes_a_url_encoded_key(encode):
    key = "sk/with+odd=chars&more"
    url = f"https://app.amberflo.io/customers?api_key={encode(key, safe='')}&x=1"
    out = redact(f"GET {url} failed", [key])
    assert encode(key, safe="") not in out and key not in out
    assert out == "GET https://app.amberflo.io/customers?api_key=***&x=1 failed"


def test_redact_leaves_text_alone_without_secrets():
    assert redact("nothing secret here", [None, ""]) == "nothing secret here"


def test_a_trailing_newline_is_stripped_from_the_key():
    assert clean_api_key(KEY + "\n") == KEY
    assert clean_api_key("  " + KEY + "\r\n") == KEY
    assert settings_from_connection("https://app.amberflo.io", KEY + "\n").api_key == KEY


@pytest.mark.parametrize("bad", ["sk-abc def", "sk-abc\tdef", "sk-abc\x00def", "sk-abc\x7fdef", "sk-é"])
def test_a_key_with_whitespace_or_control_characters_inside_is_refused_without_showing_it(bad):
    with pytest.raises(InvalidApiKeyError) as caught:
        clean_api_key(bad)
    message = str(caught.value)
    assert "API key" in message and bad not in message and "sk-abc" not in message
    with pytest.raises(AmberfloInvalidKeyError) as via_connection:
        settings_from_connection("https://app.amberflo.io", bad)
    assert bad not in str(via_connection.value) and "sk-abc" not in repr(via_connection.value)


def test_the_client_refuses_a_key_with_a_space_inside_before_any_request():
    with pytest.raises(AmberfloInvalidKeyError, match="whitespace at character 7 of 11") as caught:
        AmberfloClient(ClientSettings(base_url="http://127.0.0.1:9", api_key="sk-abc defg"))
    assert "abc" not in str(caught.value)
    assert caught.value.__suppress_context__ and "abc" not in str(caught.value.__context__)


def test_the_client_scrub_uses_the_redaction_for_every_form_of_the_key():
    with AmberfloClient(ClientSettings(base_url="http://127.0.0.1:9", api_key=KEY + "\n")) as client:
        assert client.settings.api_key == KEY
        assert client.session.headers["X-API-KEY"] == KEY
        assert client._scrub(f"echo {KEY} and {quote(KEY + chr(10), safe='')} and {KEY!r}") == "echo *** and *** and '***'"


def test_redact_knows_the_keys_this_process_has_read_without_being_handed_them():
    """What the ``sync_runs.error`` writer relies on: it only has the exception, not the key."""
    key = "sk-registered-7d1e0c3b9a"
    with AmberfloClient(ClientSettings(base_url="http://127.0.0.1:9", api_key=key + "\n")):
        pass
    error = ValueError(f"Invalid header value b'{key}\\n'")
    assert redact(f"{type(error).__name__}: {error}") == "ValueError: Invalid header value b'***'"
