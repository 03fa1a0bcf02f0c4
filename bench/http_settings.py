"""Settings for bench/http.py: the production settings plus the two baseline views' URLs.

Everything else comes from the environment exactly as in production (DEBUG=0,
PostgreSQL, Redis); only what keeps the bench apart from other users of the
same Redis and the checkout is changed here.
"""

import os

from nps_app.settings import *
from nps_app.settings import CACHES, VAR_DIR

ROOT_URLCONF = "bench.http_urls"

# collectstatic writes the hashed files and manifest here, not into the checkout's staticfiles/.
STATIC_ROOT = VAR_DIR / "static"

# A queue and cache keys of the bench's own, so it can purge them afterwards without touching anything else.
CELERY_TASK_DEFAULT_QUEUE = os.environ.get("BENCH_QUEUE", "lp-bench-http")
CACHES["default"]["KEY_PREFIX"] = os.environ.get("BENCH_CACHE_PREFIX", "lp-bench-http")
# The soak's worker answers no remote control, so it leaves no pidbox bindings behind in Redis.
CELERY_WORKER_ENABLE_REMOTE_CONTROL = False
