"""One validator at every entry point (SPEC §8.7): the same bad email, name or locale is refused everywhere.

The entry points: POST /api/v1/invitations (400), the Delighted-compatible
POST /v1/people (422), the customer CSV import and the history import
(`line N: <reason>`, the rest of the file still goes in) and the admin's
customer form (a form error). Whatever is refused stores nothing. An address
is the same customer in any spelling of its domain (SPEC §8.2).
"""

import base64
import csv
import json
from io import StringIO

import pytest
from django.core import mail
from django.core.management import call_command

from surveys.models import Customer, Invitation, Response

from ..factories import CustomerFactory
from ..page_parsing import form_values

pytestmark = pytest.mark.django_db

EMAIL_WITH_CONTROL = "a\x01b@example.com"
# A quoted local part may hold control characters by RFC 5322, and Django's EmailValidator lets it through.
QUOTED_EMAIL_WITH_CONTROL = '"a\x01b"@example.com'
EMAIL_WITH_BCC = "ann@example.com\r\nBcc: x@example.com"
ERASED_PLACEHOLDER = "erased-3@erased.invalid"
NAME_WITH_CRLF = "Ann\r\nBcc: x@example.com"
NAME_WITH_LINE_SEPARATOR = "Ann\u2028Lee"
LOCALE_WITH_MARKUP = "<b>x</b>zz"

# Each bad value with what the message about it says.
BAD_EMAILS = [
    pytest.param(EMAIL_WITH_CONTROL, "control character", id="email-with-control-character"),
    pytest.param(QUOTED_EMAIL_WITH_CONTROL, "control character", id="quoted-email-with-control-character"),
    pytest.param(EMAIL_WITH_BCC, "line break", id="email-with-crlf-bcc"),
    pytest.param(ERASED_PLACEHOLDER, "erased person", id="erased-placeholder-email"),
]
BAD_NAMES = [
    pytest.param(NAME_WITH_CRLF, "line break", id="name-with-crlf"),
    pytest.param(NAME_WITH_LINE_SEPARATOR, "line break", id="name-with-line-separator"),
]
BAD_LOCALES = [pytest.param(LOCALE_WITH_MARKUP, "unknown locale", id="locale-with-markup")]



def assert_no_raw_control_characters(message: str) -> None:
    """A report written to a terminal or a log carries no raw line break or control character."""
    assert not any(char in message for char in "\r\n\x01\u2028"), repr(message)


# --- POST /api/v1/invitations ----------------------------------------------------------------

INVITATIONS = "/api/v1/invitations"


def invite(api_client, **fields):
    return api_client.post(
        INVITATIONS, json.dumps({"touchpoint": "delivery", **fields}), content_type="application/json"
    )


def assert_invitations_refused(response, field: str, says: str) -> None:
    assert response.status_code == 400, response.content
    body = response.json()
    assert body["error"] == "invalid_request"
    assert field in body["fields"]
    assert body["detail"].startswith(f"{field}: ") and says in body["detail"], body["detail"]
    assert not Customer.objects.exists()
    assert not Invitation.objects.exists()


@pytest.mark.parametrize(("email", "says"), BAD_EMAILS)
def test_the_invitations_api_refuses_a_bad_email(api_client, touchpoint, email, says):
    assert_invitations_refused(invite(api_client, email=email), "email", says)


@pytest.mark.parametrize(("name", "says"), BAD_NAMES)
def test_the_invitations_api_refuses_a_bad_name(api_client, touchpoint, name, says):
    assert_invitations_refused(invite(api_client, email="ann@example.com", name=name), "name", says)


def test_the_invitations_api_sends_no_email_for_a_refused_address(
    api_client, touchpoint, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        invite(api_client, email=EMAIL_WITH_BCC)

    assert mail.outbox == []


# --- POST /v1/people (Delighted) -------------------------------------------------------------


@pytest.fixture
def basic_auth(api_key) -> dict:
    """The key as the HTTP Basic user name, as the official Delighted client sends it."""
    return {"HTTP_AUTHORIZATION": "Basic " + base64.b64encode(api_key.encode()).decode()}


def add_person(client, basic_auth, **fields):
    body = {"email": "ann@example.com", "name": "Ann", **fields}
    return client.post("/v1/people", json.dumps(body), content_type="application/json", **basic_auth)


def assert_people_refused(response, says: str) -> None:
    assert response.status_code == 422, response.content
    body = response.json()
    assert body["status"] == 422
    assert says in body["message"], body["message"]
    assert body["errors"]
    assert not Customer.objects.exists()
    assert not Invitation.objects.exists()


@pytest.mark.parametrize(("email", "says"), BAD_EMAILS)
def test_the_people_api_refuses_a_bad_email(client, basic_auth, touchpoint, email, says):
    assert_people_refused(add_person(client, basic_auth, email=email), says)


@pytest.mark.parametrize(("name", "says"), BAD_NAMES)
def test_the_people_api_refuses_a_bad_name(client, basic_auth, touchpoint, name, says):
    assert_people_refused(add_person(client, basic_auth, name=name), says)


@pytest.mark.parametrize(("locale", "says"), BAD_LOCALES)
def test_the_people_api_refuses_a_bad_locale(client, basic_auth, touchpoint, locale, says):
    response = add_person(client, basic_auth, properties={"locale": locale, "touchpoint": "delivery"})

    assert_people_refused(response, says)
    assert "properties[locale]" in response.json()["message"]


def test_the_people_api_refuses_a_bad_locale_sent_as_a_form(client, basic_auth, touchpoint):
    response = client.post(
        "/v1/people", {"email": "ann@example.com", "properties[locale]": LOCALE_WITH_MARKUP}, **basic_auth
    )

    assert_people_refused(response, "unknown locale")


def test_the_people_api_refuses_the_erased_placeholder_as_a_new_address(client, basic_auth, touchpoint):
    CustomerFactory(email="ann@example.com")

    response = add_person(client, basic_auth, email_update=ERASED_PLACEHOLDER, send=False)

    assert response.status_code == 422, response.content
    assert Customer.objects.get().email == "ann@example.com"


# --- The customer CSV import (manage.py import_customers, the admin upload) -----------------------


def csv_text(*rows, quoting=csv.QUOTE_MINIMAL) -> str:
    """The file as a spreadsheet or a CRM export writes it: quoted only where a field needs it."""
    out = StringIO()
    csv.writer(out, lineterminator="\n", quoting=quoting).writerows(rows)
    return out.getvalue()


@pytest.fixture
def csv_file(tmp_path):
    def write(content: str) -> str:
        path = tmp_path / "upload.csv"
        path.write_bytes(content.encode())
        return str(path)

    return write


def run(command: str, *args) -> tuple[int, str, str]:
    """Run a management command as the shell would; returns (exit status, stdout, stderr)."""
    stdout, stderr = StringIO(), StringIO()
    try:
        call_command(command, *args, stdout=stdout, stderr=stderr)
        status = 0
    except SystemExit as exit_:
        status = exit_.code
    return status, stdout.getvalue(), stderr.getvalue()


def import_customers(csv_file, content: str) -> tuple[int, list[str]]:
    status, _, stderr = run("import_customers", csv_file(content), "--touchpoint", "delivery")
    return status, stderr.splitlines()


def assert_customer_row_refused(status: int, errors: list[str], says: str) -> None:
    assert status == 1
    assert len(errors) == 1, errors
    assert errors[0].startswith("line 2: ") and says in errors[0], errors
    assert_no_raw_control_characters(errors[0])
    # The bad row adds no one; the good row after it still goes in.
    assert list(Customer.objects.values_list("email", flat=True)) == ["bob@example.com"]


@pytest.mark.parametrize(("email", "says"), BAD_EMAILS)
def test_the_customer_import_reports_a_bad_email_by_line(csv_file, touchpoint, email, says):
    content = csv_text(["email", "name"], [email, "Ann"], ["bob@example.com", "Bob"])

    status, errors = import_customers(csv_file, content)

    assert_customer_row_refused(status, errors, "invalid email")


@pytest.mark.parametrize(("name", "says"), BAD_NAMES)
def test_the_customer_import_reports_a_bad_name_by_line(csv_file, touchpoint, name, says):
    content = csv_text(["email", "name"], ["ann@example.com", name], ["bob@example.com", "Bob"])

    status, errors = import_customers(csv_file, content)

    assert_customer_row_refused(status, errors, says)


def test_the_customer_import_reports_a_quoted_name_with_a_line_separator_by_line(csv_file, touchpoint):
    content = csv_text(["email", "name"], ["ann@example.com", NAME_WITH_LINE_SEPARATOR], ["bob@example.com", "Bob"],
                       quoting=csv.QUOTE_ALL)

    status, errors = import_customers(csv_file, content)

    assert_customer_row_refused(status, errors, "line break")


@pytest.mark.parametrize(("locale", "says"), BAD_LOCALES)
def test_the_customer_import_reports_a_bad_locale_by_line(csv_file, touchpoint, locale, says):
    content = csv_text(["email", "name", "locale"], ["ann@example.com", "Ann", locale], ["bob@example.com", "Bob", ""])

    status, errors = import_customers(csv_file, content)

    assert_customer_row_refused(status, errors, says)


def test_the_customer_import_names_the_erased_placeholder_as_such(csv_file, touchpoint):
    status, errors = import_customers(csv_file, csv_text(["email", "name"], [ERASED_PLACEHOLDER, "Ann"]))

    assert status == 1
    assert errors == [f"line 2: invalid email {ERASED_PLACEHOLDER!r}: the placeholder of an erased person"]


def test_a_control_character_that_ends_a_line_in_unicode_does_not_make_another_address(csv_file, touchpoint):
    # "\x1c" (and \x1d, \x1e, \x85, \x0b, \x0c, U+2028, U+2029) is a line boundary to str.splitlines.
    content = csv_text(["email", "name"], ["mallory\x1cvictim@example.com", "Ann"], ["bob@example.com", "Bob"])

    status, errors = import_customers(csv_file, content)

    assert_customer_row_refused(status, errors, "invalid email")


# --- The history import (manage.py import_responses) -----------------------------------------------


def import_history(csv_file, content: str) -> tuple[int, list[str]]:
    status, _, stderr = run("import_responses", csv_file(content), "--touchpoint", "delivery")
    return status, stderr.splitlines()


def history(*rows) -> str:
    return csv_text(["email", "name", "score", "comment", "created_at"], *rows,
                    ["bob@example.com", "Bob", "9", "Quick", "2024-05-01T09:30:00Z"])


def assert_history_row_refused(status: int, errors: list[str], says: str) -> None:
    assert status == 1
    assert len(errors) == 1, errors
    assert errors[0].startswith("line 2: ") and says in errors[0], errors
    assert_no_raw_control_characters(errors[0])
    assert list(Response.objects.values_list("customer__email", "reason")) == [("bob@example.com", "Quick")]
    assert list(Customer.objects.values_list("email", flat=True)) == ["bob@example.com"]


@pytest.mark.parametrize(("email", "says"), BAD_EMAILS)
def test_the_history_import_reports_a_bad_email_by_line(csv_file, touchpoint, email, says):
    status, errors = import_history(csv_file, history([email, "Ann", "3", "Slow", "2024-05-01T09:00:00Z"]))

    assert_history_row_refused(status, errors, "invalid email")


@pytest.mark.parametrize(("name", "says"), BAD_NAMES)
def test_the_history_import_reports_a_bad_name_by_line(csv_file, touchpoint, name, says):
    status, errors = import_history(csv_file, history(["ann@example.com", name, "3", "Slow", "2024-05-01T09:00:00Z"]))

    assert_history_row_refused(status, errors, says)


# --- The admin's customer form ---------------------------------------------------------------------


def customer_form(admin_client, url: str) -> dict:
    page = admin_client.get(url)
    assert page.status_code == 200
    return {name: values[0] for name, values in form_values(page.content, "customer_form").items() if values}


def assert_admin_refused(response, field: str, says: str) -> None:
    assert response.status_code == 200  # the form again, not a redirect
    errors = response.context["adminform"].form.errors
    assert field in errors, errors
    assert says in errors[field][0], errors[field]
    assert says in response.content.decode()


BAD_CUSTOMER_FIELDS = [
    *(pytest.param("email", *param.values, id=param.id) for param in BAD_EMAILS),
    *(pytest.param("name", *param.values, id=param.id) for param in BAD_NAMES),
    *(pytest.param("locale", *param.values, id=param.id) for param in BAD_LOCALES),
]


@pytest.mark.parametrize(("field", "value", "says"), BAD_CUSTOMER_FIELDS)
def test_the_admin_customer_form_refuses_a_bad_value_and_keeps_the_customer(admin_client, customer, field, value, says):
    url = f"/admin/surveys/customer/{customer.pk}/change/"

    response = admin_client.post(url, {**customer_form(admin_client, url), field: value})

    assert_admin_refused(response, field, says)
    customer.refresh_from_db()
    assert (customer.email, customer.name, customer.locale) == ("jane@example.com", "Jane Doe", "en")


@pytest.mark.parametrize(("field", "value", "says"), BAD_CUSTOMER_FIELDS)
def test_the_admin_customer_form_adds_no_one_with_a_bad_value(admin_client, field, value, says):
    url = "/admin/surveys/customer/add/"
    form = {**customer_form(admin_client, url), "email": "ann@example.com", "name": "Ann", "locale": "en"}

    response = admin_client.post(url, {**form, field: value})

    assert_admin_refused(response, field, says)
    assert not Customer.objects.exists()


def test_the_admin_customer_form_stores_the_address_canonically(admin_client, customer):
    url = f"/admin/surveys/customer/{customer.pk}/change/"

    response = admin_client.post(url, {**customer_form(admin_client, url), "email": " Jane.Doe@Exämple.ORG "})

    assert response.status_code == 302
    customer.refresh_from_db()
    assert customer.email == "jane.doe@xn--exmple-cua.org"


# --- One customer in any spelling of the domain ------------------------------------------------------

UNICODE_SPELLING = "Zoe@Exämple.org"
IDNA_SPELLING = "zoe@xn--exmple-cua.org"


def test_a_unicode_domain_and_its_idna_spelling_are_one_customer_at_every_entry_point(
    api_client, basic_auth, csv_file, touchpoint
):
    created = invite(api_client, email=UNICODE_SPELLING, name="Zoe")
    assert created.status_code == 201, created.content

    status, errors = import_customers(csv_file, csv_text(["email", "name"], [IDNA_SPELLING, "Zoe Lee"]))
    assert (status, errors) == (0, [])

    person = add_person(api_client, basic_auth, email="ZOE@EXÄMPLE.ORG", name="", send=False)
    assert person.status_code == 200, person.content

    status, errors = import_history(
        csv_file, csv_text(["email", "score", "created_at"], ["zoe@EXÄMPLE.org", "9", "2024-05-01T09:30:00Z"])
    )
    assert (status, errors) == (0, [])

    zoe = Customer.objects.get()
    assert (zoe.email, zoe.name) == (IDNA_SPELLING, "Zoe Lee")
    assert person.json()["id"] == str(zoe.pk)
    assert Invitation.objects.filter(customer=zoe).count() == 2  # the survey sent, the imported answer
    assert Response.objects.get().customer == zoe


def test_the_admin_refuses_a_new_customer_in_another_spelling_of_a_stored_address(admin_client):
    CustomerFactory(email=IDNA_SPELLING, name="Zoe")
    url = "/admin/surveys/customer/add/"

    response = admin_client.post(url, {**customer_form(admin_client, url), "email": UNICODE_SPELLING, "locale": "en"})

    assert response.status_code == 200
    assert response.context["adminform"].form.errors
    assert Customer.objects.count() == 1


def test_a_person_can_be_erased_through_the_api_by_the_unicode_spelling_of_their_address(client, basic_auth):
    zoe = CustomerFactory(email=IDNA_SPELLING, name="Zoe")

    response = client.delete("/v1/people/email:zoe@exämple.org", **basic_auth)

    assert response.status_code == 202, response.content
    zoe.refresh_from_db()
    assert zoe.erased_at is not None
