"""Settings for the test suite: the real settings with a fast password hasher and in-memory email."""

from .settings import *  # noqa: F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
SITE_URL = "https://surveys.example.com"
NPS_COMPANY_NAME = "Acme"
# Unit tests run tasks inline; tests/integration start real worker processes instead.
CELERY_TASK_ALWAYS_EAGER = True
CELERY_TASK_EAGER_PROPAGATES = True
STORAGES["staticfiles"]["BACKEND"] = "django.contrib.staticfiles.storage.StaticFilesStorage"  # noqa: F405
# Serve static files from the app folders without a collectstatic step.
WHITENOISE_AUTOREFRESH = True
WHITENOISE_USE_FINDERS = True
# Rate limits high enough for the suite's own traffic; tests/test_security.py lowers them.
NPS_RATE_SURVEY_PER_TOKEN = "1000/m"
NPS_RATE_SURVEY_PER_IP = "100000/m"
NPS_RATE_API_PER_KEY = "100000/m"
