"""The product's settings, with Redis databases of each pytest-xdist worker's own.

The suite runs in parallel (scripts/test). Its workers share one Redis server, so each takes
three databases of it: the authorization store, the end-to-end broker and the safety broker.
The server comes from REDIS_URL (scripts/test sets it); its database number is ignored.
"""

import os
from urllib.parse import urlsplit, urlunsplit

# Keys of the tests' own: with DEBUG off the product refuses the demo's. In os.environ, so the
# worker processes that tests start (on cratos.settings) decrypt what the tests stored.
os.environ.setdefault("SECRET_KEY", "tests-only-secret-key-" + "x" * 40)
os.environ.setdefault("FIELD_ENCRYPTION_KEY", "tests-only-field-encryption-key")

from cratos.settings import *  # noqa: F403
from cratos.settings import CACHES, REDIS_URL

# Redis has 16 databases (0..15): three per worker, 0 left to the demo and development.
DATABASES_PER_WORKER = 3
_worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
_index = int(_worker.removeprefix("gw") or 0)
if (_index + 1) * DATABASES_PER_WORKER >= 16:
    raise RuntimeError(f"{_worker}: Redis has databases for at most 5 test workers (-n 5).")


def redis_database(offset: int) -> str:
    parts = urlsplit(REDIS_URL)
    number = 1 + _index * DATABASES_PER_WORKER + offset
    return urlunsplit((parts.scheme, parts.netloc, f"/{number}", "", ""))


if REDIS_URL:
    REDIS_URL = redis_database(0)
    CACHES["default"]["LOCATION"] = REDIS_URL
    TEST_E2E_BROKER_URL = redis_database(1)
    TEST_SAFETY_BROKER_URL = redis_database(2)

# Each test client loads the middleware anew, and WhiteNoise would then index every collected
# static file (~400) for each one: a third of a page test's time. Looked up on request instead;
# a deployed process loads the middleware once and keeps the index.
WHITENOISE_AUTOREFRESH = True
