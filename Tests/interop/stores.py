"""Which stores the end-to-end tests run against: SQLite always; PostgreSQL when
STARLING_TEST_POSTGRES_URL is set (scripts/with-postgres does it). With CI set, a missing
PostgreSQL is a failure, not a skip."""
import os
import uuid

import pytest

POSTGRES_URL = os.environ.get("STARLING_TEST_POSTGRES_URL")


def store_params():
    return ["sqlite", "postgres"]


def store_args(store, data_dir):
    """The flags that point a broker at `store`; the same flags reach the same data again."""
    if store == "sqlite":
        return ["--data-dir", str(data_dir)]
    if not POSTGRES_URL:
        if os.environ.get("CI"):
            pytest.fail("CI is set but STARLING_TEST_POSTGRES_URL is not: PostgreSQL tests would be skipped")
        pytest.skip("no PostgreSQL configured (run under scripts/with-postgres)")
    return ["--postgres", f"{POSTGRES_URL}?schema=t_{uuid.uuid4().hex[:16]}"]
