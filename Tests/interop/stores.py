"""Which stores the end-to-end tests run against: SQLite always; PostgreSQL when
STARLING_TEST_POSTGRES_URL is set (scripts/with-postgres does it). With CI set, a missing
PostgreSQL is a failure, not a skip."""
import os
import sqlite3
import subprocess
import uuid

import pytest

POSTGRES_URL = os.environ.get("STARLING_TEST_POSTGRES_URL")


def store_params():
    return ["sqlite", "postgres"]


class Store:
    """A store for brokers: the flags that reach it, and SQL queries against it."""

    def __init__(self, kind, data_dir):
        self.kind = kind
        self.data_dir = str(data_dir)
        if kind == "postgres":
            if not POSTGRES_URL:
                if os.environ.get("CI"):
                    pytest.fail("CI is set but STARLING_TEST_POSTGRES_URL is not: PostgreSQL tests would be skipped")
                pytest.skip("no PostgreSQL configured (run under scripts/with-postgres)")
            self.schema = f"t_{uuid.uuid4().hex[:16]}"
            self.args = ["--postgres", f"{POSTGRES_URL}?schema={self.schema}"]
        else:
            self.args = ["--data-dir", self.data_dir]

    def query(self, sql):
        """Rows of a query, as lists of strings (PostgreSQL) or values (SQLite)."""
        if self.kind == "sqlite":
            with sqlite3.connect(os.path.join(self.data_dir, "starling.db")) as db:
                return [list(row) for row in db.execute(sql)]
        out = subprocess.run(["psql", POSTGRES_URL, "-X", "-q", "-A", "-t", "-F", "\t", "-v", "ON_ERROR_STOP=1",
                              "-c", f"SET search_path TO {self.schema}", "-c", sql],
                             check=True, capture_output=True, text=True, timeout=60).stdout
        return [line.split("\t") for line in out.splitlines() if line and line != "SET"]

    def scalar(self, sql):
        return int(self.query(sql)[0][0])


def store_args(kind, data_dir):
    """The flags that point a broker at `kind`; the same flags reach the same data again."""
    return Store(kind, data_dir).args
