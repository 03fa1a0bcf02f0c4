"""Management commands: create_api_key, seed_demo, dev_admin."""

import re
from io import StringIO

import pytest
from django.contrib.auth import authenticate
from django.core import mail
from django.core.management import CommandError, call_command
from django.test import RequestFactory

from surveys.access.services import api_key_authenticate
from surveys.models import ApiKey, Category, Customer, Invitation, Response, Touchpoint


def _run(*args, **kwargs) -> tuple[str, str]:
    stdout, stderr = StringIO(), StringIO()
    call_command(*args, stdout=stdout, stderr=stderr, **kwargs)
    return stdout.getvalue(), stderr.getvalue()


# --- create_api_key ----------------------------------------------------------------


@pytest.mark.django_db
def test_create_api_key_prints_a_key_that_authenticates():
    stdout, _ = _run("create_api_key", "Helpdesk")

    last_line = stdout.rstrip("\n").splitlines()[-1]
    assert last_line == last_line.strip() and " " not in last_line
    api_key = api_key_authenticate(raw_key=last_line)
    assert api_key is not None and api_key.name == "Helpdesk"


@pytest.mark.django_db
def test_create_api_key_shows_the_key_once_and_never_stores_it():
    stdout, stderr = _run("create_api_key", "Helpdesk")

    raw_key = stdout.rstrip("\n").splitlines()[-1]
    assert stdout.count(raw_key) == 1
    assert raw_key not in stderr
    stored = ApiKey.objects.values().get()
    assert all(raw_key not in str(value) for value in stored.values())


# --- seed_demo -----------------------------------------------------------------------


@pytest.mark.django_db
def test_seed_demo_loads_touchpoints_and_answered_surveys():
    stdout, _ = _run("seed_demo", "--responses", "30")

    assert set(Touchpoint.objects.values_list("slug", flat=True)) == {"store-visit", "delivery", "support-call"}
    assert Response.objects.count() == 30
    for response in Response.objects.all():
        assert response.category == Category.for_score(response.score)
        assert response.invitation.answered_at is not None
    # Open surveys a developer can try are printed as absolute links.
    open_tokens = re.findall(r"https://surveys\.example\.com/s/([\w-]+)/", stdout)
    assert len(open_tokens) == 3
    assert Invitation.objects.filter(token__in=open_tokens, response__isnull=True).count() == 3
    assert mail.outbox == []


@pytest.mark.django_db
def test_seed_demo_if_empty_does_nothing_the_second_time():
    _run("seed_demo", "--responses", "20", "--if-empty")
    counts = (
        Touchpoint.objects.count(),
        Customer.objects.count(),
        Invitation.objects.count(),
        Response.objects.count(),
    )

    stdout, _ = _run("seed_demo", "--responses", "20", "--if-empty")

    assert "already loaded" in stdout
    assert (
        Touchpoint.objects.count(),
        Customer.objects.count(),
        Invitation.objects.count(),
        Response.objects.count(),
    ) == counts
    assert counts[3] == 20


@pytest.mark.django_db
def test_seed_demo_without_if_empty_adds_more_data_beside_the_old():
    _run("seed_demo", "--responses", "10")
    _run("seed_demo", "--responses", "10")

    assert Touchpoint.objects.count() == 3
    assert Response.objects.count() == 20


# --- dev_admin -------------------------------------------------------------------------


@pytest.fixture
def dev_settings(settings, tmp_path):
    settings.DEBUG = True
    settings.VAR_DIR = tmp_path
    return settings


def _login_from(stdout: str) -> tuple[str, str]:
    username = re.search(r"Login:\s*(\S+)", stdout).group(1)
    password = re.search(r"Password:\s*(\S+)", stdout).group(1)
    return username, password


@pytest.mark.django_db
def test_dev_admin_prints_a_login_that_works(dev_settings):
    stdout, _ = _run("dev_admin")

    username, password = _login_from(stdout)
    user = authenticate(RequestFactory().post("/accounts/login/"), username=username, password=password)
    assert user is not None and user.is_superuser and user.is_staff
    assert "https://surveys.example.com/admin/" in stdout


@pytest.mark.django_db
def test_dev_admin_prints_the_same_working_login_every_time(dev_settings):
    first = _login_from(_run("dev_admin")[0])
    second = _login_from(_run("dev_admin")[0])

    assert first == second
    request = RequestFactory().post("/accounts/login/")
    assert authenticate(request, username=second[0], password=second[1]) is not None


@pytest.mark.django_db
def test_dev_admin_refuses_to_run_with_debug_off(settings, tmp_path):
    settings.DEBUG = False
    settings.VAR_DIR = tmp_path

    with pytest.raises(CommandError):
        _run("dev_admin")

    assert not list(tmp_path.iterdir())
