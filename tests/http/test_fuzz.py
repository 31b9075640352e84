"""Schema-driven fuzzing of every route (schemathesis against the OpenAPI document):
no 5xx, no undocumented status, no answer outside its documented schema. Bounded here;
``make fuzz`` runs more examples (EHC_FUZZ_EXAMPLES)."""

from __future__ import annotations

import atexit
import os
import tempfile
import uuid
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance

from services.app import build_app
from services.common.secrets_store import deployment_secret
from services.common.settings import Settings
from tests.stack import PG_ENV, drop_schemas

# schemathesis makes its cases only outside pytest-xdist: alone (make test's second part)
pytestmark = pytest.mark.serial

_SETTINGS = Settings(var_dir=Path(tempfile.mkdtemp(prefix="ehc-fuzz-")), log_level="WARNING")
APP = build_app(_SETTINGS)
ADMIN = {"Authorization": f"Bearer {deployment_secret(_SETTINGS, 'admin_token')}"}
EXAMPLES = int(os.environ.get("EHC_FUZZ_EXAMPLES", "15"))
# a schema-valid body may still be refused for its meaning (a well-formed ID number with a
# wrong check digit, an unknown card): that check expects acceptance, so it is left out
EXCLUDED = [positive_data_acceptance]
# the same routes on PostgreSQL, which refuses what SQLite keeps (a NUL character in a
# query parameter answered 500 there): with EHC_TEST_DATABASE_URL
_PG = Settings(var_dir=Path(tempfile.mkdtemp(prefix="ehc-fuzz-pg-")), log_level="WARNING",
               database_url=os.environ[PG_ENV], db_schema_prefix=f"fz{uuid.uuid4().hex[:8]}_"
               ) if os.environ.get(PG_ENV) else None
APP_PG = build_app(_PG) if _PG is not None else None


def _schema(app):
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    # a body over a route's size limit (an over-long field makes one) is refused before
    # it is parsed, 413 PAYLOAD_TOO_LARGE as documented: a rejection of invalid data too
    schema.config.checks.negative_data_rejection.expected_statuses.append("413")
    return schema


schema = _schema(APP)


@schema.parametrize()
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck),
          database=None)
def test_anonymous_callers_get_documented_answers(case) -> None:
    case.call_and_validate(excluded_checks=EXCLUDED)


@schema.parametrize()
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck),
          database=None)
def test_admin_callers_get_documented_answers(case) -> None:
    case.call_and_validate(headers=ADMIN, excluded_checks=EXCLUDED)


if APP_PG is not None and _PG is not None:
    ADMIN_PG = {"Authorization": f"Bearer {deployment_secret(_PG, 'admin_token')}"}
    # made when the module is imported, deselected or not (each xdist worker collects it)
    atexit.register(drop_schemas, _PG)

    @_schema(APP_PG).parametrize()
    @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck),
              database=None)
    def test_admin_callers_get_documented_answers_on_postgresql(case) -> None:
        case.call_and_validate(headers=ADMIN_PG, excluded_checks=EXCLUDED)
else:
    def test_admin_callers_get_documented_answers_on_postgresql() -> None:
        pytest.skip(f"PostgreSQL tests need {PG_ENV}")
