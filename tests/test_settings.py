"""Configuration by environment: loud failures in production, deploy checks, booleans, createsuperuser.

Settings are read once per process, so most tests start `manage.py` or
`python -c` in a subprocess with a clean environment, and a temporary
NPS_VAR_DIR so nothing touches the developer's var/ folder.
"""

import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command

BASE_DIR = Path(__file__).resolve().parent.parent
PRODUCTION = {
    "DEBUG": "0",
    "SECRET_KEY": secrets.token_urlsafe(50),
    "ALLOWED_HOSTS": "surveys.example.com",
    "SITE_URL": "https://surveys.example.com",
    "EMAIL_HOST": "smtp.example.com",
}
PRINT_SETTING = "import django; django.setup(); from django.conf import settings; print(repr(settings.{}))"


def run(tmp_path, *args: str, **env: str) -> subprocess.CompletedProcess:
    """Run Python in /work/main with only PATH, the settings module, a private var/ folder and `env`."""
    clean = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "DJANGO_SETTINGS_MODULE": "nps_app.settings",
        "NPS_VAR_DIR": str(tmp_path / "var"),
        **env,
    }
    return subprocess.run(
        [sys.executable, *args], cwd=BASE_DIR, env=clean, capture_output=True, text=True, timeout=120, check=False
    )


def setting(tmp_path, name: str, **env: str) -> subprocess.CompletedProcess:
    return run(tmp_path, "-c", PRINT_SETTING.format(name), **env)


# --- Production refuses to start without a secret ----------------------------------------


def test_it_refuses_to_run_in_production_without_a_secret_key(tmp_path):
    env = {key: value for key, value in PRODUCTION.items() if key != "SECRET_KEY"}

    result = run(tmp_path, "manage.py", "check", **env)

    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert "SECRET_KEY" in result.stderr


@pytest.mark.parametrize(
    "weak_key",
    ["", "changeme", "dev-only-insecure-key-do-not-use-in-production", "django-insecure-" + "x" * 50, "a" * 60],
    ids=["empty", "short", "development-key", "django-insecure", "one-character"],
)
def test_it_refuses_a_weak_secret_key_in_production(tmp_path, weak_key):
    result = run(tmp_path, "manage.py", "check", **{**PRODUCTION, "SECRET_KEY": weak_key})

    assert result.returncode != 0
    assert "SECRET_KEY" in result.stderr


def test_it_refuses_to_run_in_production_without_allowed_hosts(tmp_path):
    env = {key: value for key, value in PRODUCTION.items() if key != "ALLOWED_HOSTS"}

    result = run(tmp_path, "manage.py", "check", **env)

    assert result.returncode != 0
    assert "ALLOWED_HOSTS" in result.stderr


def test_it_refuses_to_run_in_production_without_a_mail_server(tmp_path):
    # Otherwise every email, with customers' names and reasons, would be written to files and marked sent.
    env = {key: value for key, value in PRODUCTION.items() if key != "EMAIL_HOST"}

    result = run(tmp_path, "manage.py", "check", **env)

    assert result.returncode != 0
    assert "EMAIL_HOST" in result.stderr
    assert not (tmp_path / "var" / "mail").exists()


def test_production_may_name_its_email_backend_instead_of_a_mail_server(tmp_path):
    env = {key: value for key, value in PRODUCTION.items() if key != "EMAIL_HOST"}

    result = setting(tmp_path, "EMAIL_BACKEND", **env, EMAIL_BACKEND="django.core.mail.backends.console.EmailBackend")

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == repr("django.core.mail.backends.console.EmailBackend")


@pytest.mark.parametrize("raw", ["-1", "two"])
def test_a_trusted_proxy_count_that_is_not_one_is_refused(tmp_path, raw):
    result = setting(tmp_path, "NPS_TRUSTED_PROXIES", NPS_TRUSTED_PROXIES=raw)

    assert result.returncode != 0
    assert "NPS_TRUSTED_PROXIES" in result.stderr


def test_development_needs_no_configuration_at_all(tmp_path):
    result = run(tmp_path, "manage.py", "check")

    assert result.returncode == 0, result.stderr
    assert "System check identified no issues" in result.stdout


def test_production_settings_pass_the_deploy_checks_without_warnings(tmp_path):
    result = run(tmp_path, "manage.py", "check", "--deploy", "--fail-level", "WARNING", **PRODUCTION)

    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout


def test_production_served_over_https_secures_cookies_and_redirects(tmp_path):
    code = (
        "import django; django.setup(); from django.conf import settings as s; "
        "print(s.DEBUG, s.SESSION_COOKIE_SECURE, s.CSRF_COOKIE_SECURE, s.SECURE_SSL_REDIRECT, s.SECURE_HSTS_SECONDS > 0,"
        " s.CSRF_TRUSTED_ORIGINS)"
    )

    result = run(tmp_path, "-c", code, **PRODUCTION)

    assert result.returncode == 0, result.stderr
    assert result.stdout.split(" ", 5)[:5] == ["False", "True", "True", "True", "True"]
    assert "https://surveys.example.com" in result.stdout


def test_nothing_is_written_outside_the_var_folder_it_is_given(tmp_path):
    result = run(tmp_path, "manage.py", "check")

    assert result.returncode == 0, result.stderr
    assert (tmp_path / "var").is_dir()


# --- Booleans ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("1", True),
        ("0", False),
        ("true", True),
        ("false", False),
        ("yes", True),
        ("no", False),
        ("on", True),
        ("off", False),
        ("TRUE", True),
        (" Off ", False),
    ],
)
def test_booleans_accept_the_usual_spellings(tmp_path, raw, expected):
    result = setting(tmp_path, "EMAIL_USE_TLS", EMAIL_USE_TLS=raw)

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == repr(expected)


@pytest.mark.parametrize("raw, expected", [("1", True), ("yes", True), ("on", True), ("false", False)])
def test_debug_accepts_the_usual_spellings(tmp_path, raw, expected):
    result = setting(tmp_path, "DEBUG", **{**PRODUCTION, "DEBUG": raw})

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == repr(expected)


@pytest.mark.parametrize("name", ["DEBUG", "EMAIL_USE_TLS"])
def test_a_boolean_that_is_not_one_is_refused(tmp_path, name):
    result = setting(tmp_path, name, **{name: "maybe"})

    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert name in result.stderr
    assert "maybe" in result.stderr


@pytest.mark.parametrize("name", ["EMAIL_PORT", "NPS_MIN_RESPONSES"])
def test_a_number_that_is_not_one_is_refused(tmp_path, name):
    result = setting(tmp_path, name, **{name: "lots"})

    assert result.returncode != 0
    assert name in result.stderr


def test_numbers_and_lists_are_read_from_the_environment(tmp_path):
    code = (
        "import django; django.setup(); from django.conf import settings as s; "
        "print(s.EMAIL_PORT, s.NPS_MIN_RESPONSES, s.ALLOWED_HOSTS, s.EMAIL_BACKEND)"
    )

    result = run(
        tmp_path,
        "-c",
        code,
        EMAIL_PORT="2525",
        NPS_MIN_RESPONSES="50",
        ALLOWED_HOSTS="a.example, b.example",
        EMAIL_HOST="smtp.example.com",
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == ("2525 50 ['a.example', 'b.example'] surveys.mail.smtp.EmailBackend")


def test_without_an_email_host_mail_is_written_to_files_in_var(tmp_path):
    code = (
        "import django; django.setup(); from django.core.mail import send_mail; "
        "send_mail('Hello', 'Body', 'a@example.com', ['b@example.com'])"
    )

    result = run(tmp_path, "-c", code)

    assert result.returncode == 0, result.stderr
    written = list((tmp_path / "var" / "mail").glob("*.eml"))
    assert len(written) == 1
    assert "Subject: Hello" in written[0].read_text()


# --- createsuperuser --------------------------------------------------------------------


@pytest.mark.django_db
def test_createsuperuser_reads_the_standard_environment_variables(monkeypatch, client):
    monkeypatch.setenv("DJANGO_SUPERUSER_USERNAME", "owner")
    monkeypatch.setenv("DJANGO_SUPERUSER_EMAIL", "owner@example.com")
    monkeypatch.setenv("DJANGO_SUPERUSER_PASSWORD", "a-long-pass-phrase-42")

    call_command("createsuperuser", interactive=False, verbosity=0)

    user = User.objects.get(username="owner")
    assert user.email == "owner@example.com"
    assert user.is_superuser and user.is_staff
    # Signing in through the real login page (django-axes watches it, so no shortcut).
    response = client.post("/accounts/login/", {"username": "owner", "password": "a-long-pass-phrase-42"})
    assert response.status_code == 302
    assert client.get("/admin/").status_code == 200
