"""Property-based run over the OpenAPI schema: no server error, no schema violation."""

from __future__ import annotations

import pytest
import schemathesis
from django.conf import settings
from django.core.signals import request_finished, request_started
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

pytestmark = pytest.mark.django_db

application = get_wsgi_application()
# The deployment key is checked without the database, so the schema loads at import.
schema = schemathesis.openapi.from_wsgi(
    "/api/schema/?format=json", application, headers={"X-API-Key": settings.BACKEND_API_KEY}
)

@pytest.fixture(autouse=True)
def _keep_the_test_connection():
    """Calls go straight into the WSGI app, whose request signals would close the
    test's transaction-bound connection (fatal on PostgreSQL); Django's own test
    client disconnects them the same way."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


CHECKS = [
    response_schema_conformance,
    content_type_conformance,
    response_headers_conformance,
    status_code_conformance,
]


@schema.parametrize()
@hypothesis_settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.filter_too_much],
)
def test_the_api_honours_its_schema(case):
    response = case.call_and_validate(headers={"X-API-Key": settings.BACKEND_API_KEY}, checks=CHECKS)
    # No server errors, except a 503 the operation documents (select-instance with no candidate).
    documented = case.operation.definition.raw.get("responses", {})
    assert response.status_code < 500 or str(response.status_code) in documented, (
        f"{case.method} {case.formatted_path} answered {response.status_code}: {response.text[:500]}"
    )
