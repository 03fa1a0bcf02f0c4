"""Settings for Loyal Promoters, read from environment variables only.

Every variable has a safe development default, or fails loudly when it is
missing or malformed in production (DEBUG off). The README's configuration
table lists each one.
"""

import os
import re
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("NPS_VAR_DIR", BASE_DIR / "var"))

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def env_str(name: str, default: str = "") -> str:
    return os.environ.get(name, default)


def env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ImproperlyConfigured(f"{name}={raw!r} is not a boolean (use 1/0, true/false, yes/no, on/off)")


def env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name}={raw!r} is not an integer") from None


def env_list(name: str, default: str = "") -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


DEBUG = env_bool("DEBUG", True)

_DEV_SECRET_KEY = "dev-only-insecure-key-do-not-use-in-production"
SECRET_KEY = env_str("SECRET_KEY", _DEV_SECRET_KEY if DEBUG else "")
if not DEBUG and (
    len(SECRET_KEY) < 50
    or len(set(SECRET_KEY)) < 5
    or SECRET_KEY == _DEV_SECRET_KEY
    or SECRET_KEY.startswith("django-insecure")
):
    raise ImproperlyConfigured(
        "SECRET_KEY must be set to a long random value when DEBUG is off "
        "(at least 50 characters, e.g. python -c 'import secrets; print(secrets.token_urlsafe(50))')."
    )

# Earlier secret keys, comma-separated: sessions, signatures and the suppression list's hashes
# made with them still check out after SECRET_KEY is rotated.
SECRET_KEY_FALLBACKS = env_list("SECRET_KEY_FALLBACKS")
# The key of the keyed hashes that keep an erased address on the suppression list (and referral
# visitors apart) without keeping the address itself. Default: SECRET_KEY (and its fallbacks).
NPS_HASH_KEY = env_str("NPS_HASH_KEY")

SITE_URL = env_str("SITE_URL", "http://127.0.0.1:8000").rstrip("/")
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "127.0.0.1,localhost,testserver" if DEBUG else "")
if not DEBUG and not ALLOWED_HOSTS:
    raise ImproperlyConfigured("ALLOWED_HOSTS must list the site's host names when DEBUG is off.")
CSRF_TRUSTED_ORIGINS = [SITE_URL] if SITE_URL.startswith("https://") else []

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "crispy_forms",
    "crispy_bootstrap5",
    "csp",
    "axes",
    "surveys",
]

MIDDLEWARE = [
    "surveys.web.middleware.ClientAddressMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "csp.middleware.CSPMiddleware",
    "surveys.web.middleware.PrivateCacheMiddleware",
    "surveys.web.middleware.DatabaseUnavailableMiddleware",
    # Last, as django-axes asks: it turns a locked-out login into a 429 page.
    "axes.middleware.AxesMiddleware",
]

AUTHENTICATION_BACKENDS = [
    # Counts failed logins per user name and address and locks them out for a while.
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]

ROOT_URLCONF = "nps_app.urls"
WSGI_APPLICATION = "nps_app.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "surveys.web.context_processors.branding",
            ],
        },
    },
]

DATABASES = {
    "default": dj_database_url.parse(
        env_str("DATABASE_URL", f"sqlite:///{VAR_DIR / 'db.sqlite3'}"),
        conn_max_age=env_int("DB_CONN_MAX_AGE", 60),
        conn_health_checks=True,
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # A web process, a worker and beat share one file: wait for locks instead
    # of failing at once, and take the write lock at BEGIN to avoid deadlocks.
    DATABASES["default"]["OPTIONS"] = {"timeout": 20, "transaction_mode": "IMMEDIATE"}
    DATABASES["default"]["CONN_MAX_AGE"] = 0
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
# The dashboard's covering indexes carry INCLUDE columns on PostgreSQL; SQLite
# (development) builds them as plain indexes, which is fine there.
SILENCED_SYSTEM_CHECKS = ["models.W040"]

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "/dashboard/"

LANGUAGE_CODE = "en"
# Languages customers can be surveyed in (Customer.locale).
LANGUAGES = [("en", "English"), ("es", "Español"), ("de", "Deutsch")]
LOCALE_PATHS = [BASE_DIR / "locale"]
TIME_ZONE = env_str("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "/static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = BASE_DIR / "staticfiles"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": (
            "django.contrib.staticfiles.storage.StaticFilesStorage"
            if DEBUG
            else "whitenoise.storage.CompressedManifestStaticFilesStorage"
        )
    },
}

CRISPY_ALLOWED_TEMPLATE_PACKS = "bootstrap5"
CRISPY_TEMPLATE_PACK = "bootstrap5"

# --- Email -----------------------------------------------------------------
EMAIL_HOST = env_str("EMAIL_HOST")
EMAIL_PORT = env_int("EMAIL_PORT", 25)
EMAIL_HOST_USER = env_str("EMAIL_HOST_USER")
EMAIL_HOST_PASSWORD = env_str("EMAIL_HOST_PASSWORD")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", False)
EMAIL_TIMEOUT = env_int("EMAIL_TIMEOUT", 30)
EMAIL_FILE_PATH = VAR_DIR / "mail"
if env_str("EMAIL_BACKEND"):
    # An explicit backend (a provider's API backend, say) wins over both defaults below.
    EMAIL_BACKEND = env_str("EMAIL_BACKEND")
elif EMAIL_HOST:
    # Django's SMTP backend, with each message's envelope addresses worked out with less work.
    EMAIL_BACKEND = "surveys.mail.smtp.EmailBackend"
elif not DEBUG:
    # Without a mail server every email (names, reasons) would land in files on the web server,
    # marked sent: a production deployment says where mail goes, or does not start.
    raise ImproperlyConfigured(
        "EMAIL_HOST must name the SMTP server when DEBUG is off (or set EMAIL_BACKEND explicitly)."
    )
else:
    # Development: one .eml file per message under var/mail/, readable in any
    # mail client or text editor, with clickable links.
    EMAIL_BACKEND = "surveys.mail.files.EmlFileBackend"
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "Loyal Promoters <surveys@localhost>")
SERVER_EMAIL = DEFAULT_FROM_EMAIL

# --- Product ----------------------------------------------------------------
NPS_COMPANY_NAME = env_str("NPS_COMPANY_NAME", "us")
NPS_MIN_RESPONSES = env_int("NPS_MIN_RESPONSES", 30)
NPS_SEND_MAX_RETRIES = env_int("NPS_SEND_MAX_RETRIES", 5)
# With Redis (CACHE_URL), what answers set in motion (coupons, case alerts, webhooks) within this
# many seconds shares one Celery message from the web (surveys/core/dispatch.py); 0: one message each.
NPS_FOLLOW_UP_BATCH_SECONDS = env_int("NPS_FOLLOW_UP_BATCH_SECONDS", 1)
# Invitations per Celery message and per SMTP connection.
NPS_SEND_BATCH_SIZE = env_int("NPS_SEND_BATCH_SIZE", 50)
# Emails per minute across all workers (0 = no cap), to respect an email provider's limits.
NPS_SEND_RATE_PER_MINUTE = env_int("NPS_SEND_RATE_PER_MINUTE", 0)
# Where a promoter's share link /r/<code>/ leads; the code is added as ?ref=.
NPS_REFERRAL_LANDING_URL = env_str("NPS_REFERRAL_LANDING_URL", SITE_URL + "/")

# --- Celery -----------------------------------------------------------------
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", "filesystem://")
if CELERY_BROKER_URL.startswith("filesystem://"):
    _queue_dir = VAR_DIR / "celery" / "queue"
    _processed_dir = VAR_DIR / "celery" / "processed"
    for _folder in (_queue_dir, _processed_dir):
        _folder.mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_queue_dir),
        "data_folder_out": str(_queue_dir),
        "processed_folder": str(_processed_dir),
        "store_processed": False,
    }
else:
    # Redis redelivers an unacknowledged message after the visibility timeout:
    # it must exceed the longest task (time limits below) and any retry delay.
    # The longest task runs 180 s and the longest retry waits 30 min: an hour covers both.
    # A web request that publishes while Redis is down gives up within seconds
    # (the beat sweeps enqueue the work again later).
    CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 3600, "socket_connect_timeout": 2}
# The queue web processes publish to and workers consume (several deployments can share one Redis).
CELERY_TASK_DEFAULT_QUEUE = env_str("CELERY_TASK_DEFAULT_QUEUE", "celery")
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_IGNORE_RESULT = True
# A task is acknowledged only once it has run, so a worker killed mid-task
# leaves its message to be redelivered; rows are claimed atomically, so a
# redelivery never repeats finished work.
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# A worker keeps its database connection from task to task (up to DB_CONN_MAX_AGE seconds);
# surveys.tasks checks it around every task as Django does around every request.
# (Celery closes the connection every CELERY_DB_REUSE_MAX tasks; without it, after every task.)
CELERY_DB_REUSE_MAX = 1_000_000
CELERY_TASK_SOFT_TIME_LIMIT = 120
CELERY_TASK_TIME_LIMIT = 180
CELERY_TIMEZONE = TIME_ZONE
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# Publishing happens inside web requests: give up quickly when the broker is
# down; the beat sweep re-enqueues whatever was left behind.
CELERY_TASK_PUBLISH_RETRY_POLICY = {"max_retries": 2, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.5}
CELERY_BEAT_SCHEDULE = {
    "invitations-sweep": {
        "task": "surveys.tasks.invitations_sweep",
        "schedule": env_int("NPS_SWEEP_SECONDS", 60),
    },
    "reminders-sweep": {
        "task": "surveys.tasks.reminders_sweep",
        "schedule": env_int("NPS_SWEEP_SECONDS", 60),
    },
    "invitations-expire": {
        "task": "surveys.tasks.invitations_expire",
        "schedule": 600,
    },
    "webhooks-sweep": {
        "task": "surveys.tasks.webhooks_sweep",
        "schedule": env_int("NPS_SWEEP_SECONDS", 60),
    },
    "promoters-sweep": {
        "task": "surveys.tasks.promoters_sweep",
        "schedule": env_int("NPS_PROMOTER_SWEEP_SECONDS", 60),
    },
    "case-alerts-sweep": {
        "task": "surveys.tasks.case_alerts_sweep",
        "schedule": env_int("NPS_SWEEP_SECONDS", 60),
    },
    "daily-stats-rollup": {
        "task": "surveys.tasks.daily_stats_rollup",
        "schedule": env_int("NPS_ROLLUP_SECONDS", 600),
    },
    "idempotency-keys-purge": {
        "task": "surveys.tasks.idempotency_keys_purge",
        "schedule": 3600,
    },
}

# --- Cache and rate limits ---------------------------------------------------------
# Rate limits count in this cache. Use Redis in production (shared by every web
# process); without CACHE_URL each process counts on its own, fine for development.
CACHE_URL = env_str("CACHE_URL")
if CACHE_URL.startswith(("redis://", "rediss://")):
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": CACHE_URL,
            "OPTIONS": {"socket_connect_timeout": 0.5, "socket_timeout": 0.5},
            # Keeps apart several deployments (or test runs) that share one Redis.
            "KEY_PREFIX": env_str("CACHE_KEY_PREFIX"),
        }
    }
elif CACHE_URL:
    raise ImproperlyConfigured(f"CACHE_URL={CACHE_URL!r}: only redis:// URLs are supported.")
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
# A customer's answer matters more than a counter: if the cache is down, let requests through.
RATELIMIT_FAIL_OPEN = True
NPS_RATE_SURVEY_PER_TOKEN = env_str("NPS_RATE_SURVEY_PER_TOKEN", "10/m")
NPS_RATE_SURVEY_PER_IP = env_str("NPS_RATE_SURVEY_PER_IP", "120/m")
NPS_RATE_API_PER_KEY = env_str("NPS_RATE_API_PER_KEY", "1200/m")
# Visits to promoters' share links (/r/<code>/) per client address.
NPS_RATE_REFERRAL_PER_IP = env_str("NPS_RATE_REFERRAL_PER_IP", "30/m")
for _name in ("NPS_RATE_SURVEY_PER_TOKEN", "NPS_RATE_SURVEY_PER_IP", "NPS_RATE_API_PER_KEY", "NPS_RATE_REFERRAL_PER_IP"):
    if not re.fullmatch(r"\d+/\d*[smhd]", globals()[_name]):
        raise ImproperlyConfigured(f"{_name}={globals()[_name]!r}: expected a count per period, such as 10/m or 100/5m.")

# How many reverse proxies (a TLS terminator, a load balancer) stand in front of the app and
# append to X-Forwarded-For. 0: the connection's address is the client's. The client address
# is resolved once per request (surveys.web.middleware.ClientAddressMiddleware) and used by the rate
# limits, the login lockout and referral visits.
NPS_TRUSTED_PROXIES = env_int("NPS_TRUSTED_PROXIES", 0)
if NPS_TRUSTED_PROXIES < 0:
    raise ImproperlyConfigured(f"NPS_TRUSTED_PROXIES={NPS_TRUSTED_PROXIES}: expected 0 or more proxies.")

# Webhook endpoints on loopback, private, link-local or metadata addresses are refused unless this is on.
NPS_WEBHOOK_ALLOW_PRIVATE = env_bool("NPS_WEBHOOK_ALLOW_PRIVATE", False)

AXES_FAILURE_LIMIT = env_int("AXES_FAILURE_LIMIT", 5)
# The lockout counts per user name and client address together, so nobody can lock a manager out
# from elsewhere; the address is the one the middleware resolved, not a header anyone can send.
AXES_CLIENT_IP_CALLABLE = "surveys.core.client_address.client_address"
AXES_COOLOFF_TIME = 1  # hour
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_TEMPLATE = "429_login.html"
AXES_VERBOSE = False

# Requests bigger than this are refused with 400 before any view runs (uploads aside).
DATA_UPLOAD_MAX_MEMORY_SIZE = 1024 * 1024

# --- Security ----------------------------------------------------------------
# Content-Security-Policy: scripts only from our own static files, never inline.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'", "'unsafe-inline'"],
        "img-src": ["'self'", "data:"],
        "font-src": ["'self'"],
        "connect-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'self'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
    }
}
SESSION_COOKIE_HTTPONLY = True
X_FRAME_OPTIONS = "DENY"
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CONTENT_TYPE_NOSNIFF = True
if not DEBUG:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", SITE_URL.startswith("https://"))
    SESSION_COOKIE_SECURE = SITE_URL.startswith("https://")
    CSRF_COOKIE_SECURE = SITE_URL.startswith("https://")
    SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", True)
    SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", True)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}
