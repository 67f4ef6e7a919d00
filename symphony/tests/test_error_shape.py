"""One error shape for every API error, and the request limits that produce some of them."""

from __future__ import annotations

import json

import pytest

pytestmark = [pytest.mark.django_db, pytest.mark.urls("symphony.tests.urls")]

ECHO = "/api/test/echo/"


def _error(response, status, code):
    assert response.status_code == status, response.content[:300]
    assert response["Content-Type"].startswith("application/json")
    error = response.json()["error"]
    assert set(error) == {"code", "message", "details", "request_id"}
    assert error["code"] == code
    assert error["request_id"] == response["X-Request-ID"]
    return error


def test_it_answers_an_unknown_api_url_with_a_json_404(api):
    _error(api.get("/api/v1/nothing-here/"), 404, "not_found")


def test_it_answers_a_wrong_method_with_a_json_405(api, make_key):
    raw = make_key("viewer")
    _error(api.delete("/api/test/catalog/", headers={"Authorization": f"Bearer {raw}"}), 405, "method_not_allowed")


def test_it_answers_an_unauthenticated_call_with_a_json_401(api):
    error = _error(api.get("/api/test/whoami/"), 401, "not_authenticated")
    assert error["message"]


def test_it_refuses_a_body_larger_than_the_limit_with_413(api, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 2048
    body = json.dumps({"blob": "x" * 4096})
    error = _error(api.post(ECHO, body, content_type="application/json"), 413, "request_too_large")

    assert error["details"] == {"limit": 2048}


def test_it_refuses_a_large_body_without_content_length_too(api, settings):
    """A chunked body has no Content-Length to refuse early: the JSON parser stops reading at the limit."""
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 2048
    body = json.dumps({"blob": "x" * 4096}).encode()
    response = api.generic("POST", ECHO, body, content_type="application/json", HTTP_TRANSFER_ENCODING="chunked")
    # Django's test client always sets CONTENT_LENGTH; drop it the way a chunked request arrives.
    assert response.status_code == 413

    from django.test import RequestFactory
    from rest_framework.request import Request

    from symphony.parsers import BoundedJSONParser, RequestTooLarge

    request = RequestFactory().generic("POST", ECHO, body, content_type="application/json")
    with pytest.raises(RequestTooLarge):
        BoundedJSONParser().parse(Request(request).stream, "application/json", {})


def test_it_refuses_a_form_post_with_415(api):
    error = _error(api.post(ECHO, {"a": "1"}), 415, "unsupported_media_type")
    assert "multipart/form-data" in error["message"]


def test_it_accepts_an_empty_body_of_any_type_on_an_action_that_reads_none(api, make_key):
    raw = make_key("viewer")
    response = api.post("/api/test/whoami/", headers={"Authorization": f"Bearer {raw}"})

    assert response.status_code == 405  # the method, not the (empty multipart) body, is the problem


def test_it_refuses_deeply_nested_json_with_400_naming_the_problem(api, settings):
    settings.SYMPHONY_MAX_JSON_DEPTH = 32
    deep = "[" * 33 + "]" * 33
    error = _error(api.post(ECHO, deep, content_type="application/json"), 400, "parse_error")

    assert "nested too deeply" in error["message"]
    assert api.post(ECHO, "[" * 32 + "]" * 32, content_type="application/json").status_code == 200


def test_it_refuses_json_too_deep_for_the_python_parser_with_400_not_500(api, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1024 * 1024
    deep = "[" * 100_000 + "]" * 100_000
    _error(api.post(ECHO, deep, content_type="application/json"), 400, "parse_error")


def test_it_refuses_malformed_json_and_nan_with_400(api):
    _error(api.post(ECHO, "{nope", content_type="application/json"), 400, "parse_error")
    _error(api.post(ECHO, '{"a": NaN}', content_type="application/json"), 400, "parse_error")


@pytest.mark.parametrize("charset", ["rot13", "hex"])
def test_it_refuses_a_charset_that_is_not_a_text_encoding_with_415(api, charset):
    """Found while hardening input (issue 10): Python knows these codecs, but not as text encodings."""
    response = api.post(ECHO, b'{"a": 1}', content_type=f"application/json; charset={charset}")
    error = _error(response, 415, "unsupported_media_type")
    assert charset in error["message"]


def test_it_refuses_nul_characters_in_json_strings_and_keys(api):
    """Found by fuzzing on PostgreSQL: a NUL in a looked-up string was a DataError 500."""
    for body in ('{"name": "a\\u0000b"}', '{"a\\u0000": 1}', '["ok", ["x\\u0000"]]'):
        error = _error(api.post(ECHO, body, content_type="application/json"), 400, "parse_error")
        assert "NUL" in error["message"]


@pytest.mark.parametrize("url", ["/api/test/catalog/a%00b/", "/api/test/catalog/?code=a%00b"])
def test_it_refuses_nul_characters_in_the_url(api, url):
    error = _error(api.get(url), 400, "bad_request")

    assert "NUL" in error["message"]


def test_it_refuses_an_unknown_query_parameter_on_a_list_naming_it(api):
    error = _error(api.get("/api/test/catalog/?code=agent:read&stauts=x"), 400, "unknown_query_parameter")

    assert error["details"] == {"stauts": ["Unknown query parameter."]}
    assert "stauts" in error["message"]


def test_it_accepts_the_documented_query_parameters(api):
    response = api.get("/api/test/catalog/?code=agent:read&page=1&page_size=5&format=json")

    assert response.status_code == 200
    assert [row["code"] for row in response.json()["results"]] == ["agent:read"]


@pytest.mark.parametrize("query", ["owner=99999999999999999999999", "id=-4.9e186", "id__in=1,99999999999999999999"])
def test_it_refuses_numbers_the_database_cannot_store_with_400(api, query):
    """Found by fuzzing: SQLite raised OverflowError (500) binding such a number."""
    name = query.split("=")[0]
    error = _error(api.get(f"/api/test/keys/?{query}"), 400, "validation_error")

    assert name in error["details"]


def test_it_accepts_a_datetime_offset_postgresql_would_refuse(api, make_key):
    """Found by fuzzing: PostgreSQL refuses offsets past 15:59 ("time zone displacement out of range")."""
    make_key("viewer")
    response = api.get("/api/test/keys/", {"created_at__gte": "0718-04-01T10:31:31.1-22:52"})

    assert response.status_code == 200
    assert len(response.json()["results"]) == 1


def test_it_reports_a_filter_error_that_quotes_a_percent_sign(api, make_key):
    """Found by fuzzing: django-filter re-formatted messages quoting the input; "%j" raised TypeError."""
    raw = make_key("super_admin")
    response = api.get("/api/v1/audit-events/", {"type": "50%j"}, headers={"Authorization": f"Bearer {raw}"})
    error = _error(response, 400, "validation_error")

    assert "50%j" in error["details"]["type"][0]


def test_it_bounds_the_page_size(api):
    response = api.get("/api/test/catalog/?page_size=100000")

    assert response.status_code == 200
    assert len(response.json()["results"]) <= 200


def test_a_page_size_beyond_any_integer_the_schema_admits_is_a_400_naming_it(api):
    error = _error(api.get(f"/api/test/catalog/?page_size={2**63}"), 400, "validation_error")

    assert list(error["details"]) == ["page_size"]


def test_it_answers_an_out_of_range_page_with_a_400_naming_it(api):
    # The list exists; its page parameter is wrong (DRF's own answer is a 404).
    error = _error(api.get("/api/test/catalog/?page=99999999999999999999"), 400, "validation_error")

    assert list(error["details"]) == ["page"]


def test_it_answers_a_crash_with_a_bare_500_that_leaks_nothing(api, settings):
    settings.DEBUG = False
    response = api.get("/api/test/boom/")
    error = _error(response, 500, "server_error")

    text = response.content.decode()
    assert error["message"] == "A server error occurred."
    assert "secret-internal-detail" not in text
    assert "Traceback" not in text
    assert "SECRET_KEY" not in text
    assert "settings" not in text.lower()
