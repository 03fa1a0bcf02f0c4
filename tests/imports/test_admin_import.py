"""The CSV upload in admin, /admin/surveys/customer/import/: who may use it and what it does."""

import pytest
from django.contrib.auth.models import Group, Permission, User
from django.core import mail
from django.core.files.uploadedfile import SimpleUploadedFile

from surveys.models import Customer, Invitation

from ..page_parsing import elements

pytestmark = pytest.mark.django_db

URL = "/admin/surveys/customer/import/"
GOOD_AND_BAD = (
    "email,name,external_id,phone,locale\n"
    "ana@example.com,Ana,crm-1,,es\n"
    "not-an-email,Bob,,,\n"
    "carl@example.com,<b>Carl</b>,,,\n"
)


def _upload(content: str | bytes, name: str = "customers.csv") -> SimpleUploadedFile:
    return SimpleUploadedFile(name, content.encode() if isinstance(content, str) else content, "text/csv")


def _staff(*codenames: str) -> User:
    user = User.objects.create_user("clerk", "clerk@example.com", "pw-for-tests", is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(content_type__app_label="surveys", codename__in=codenames))
    return user


@pytest.fixture
def admin_client(client):
    client.force_login(User.objects.create_superuser("boss", "boss@example.com", "pw-for-tests"))
    return client


def _summary(response) -> str:
    [summary] = [element for element in elements(response.content) if element.attrs.get("id") == "import-summary"]
    return " ".join(summary.text.split())


# --- Permissions ---------------------------------------------------------------------------


def test_anonymous_visitors_are_sent_to_the_admin_login(client, touchpoint):
    response = client.post(URL, {"file": _upload("email,name\nana@example.com,Ana\n"), "touchpoint": touchpoint.pk})

    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/?next=")
    assert not Customer.objects.exists()


def test_a_customer_account_without_staff_status_gets_the_admin_login(client, touchpoint):
    client.force_login(User.objects.create_user("someone", "someone@example.com", "pw-for-tests"))

    response = client.post(URL, {"file": _upload("email,name\nana@example.com,Ana\n"), "touchpoint": touchpoint.pk})

    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/?next=")
    assert not Customer.objects.exists()


def test_a_manager_without_staff_status_gets_the_admin_login(client, touchpoint):
    manager = User.objects.create_user("manager", "manager@example.com", "pw-for-tests")
    manager.groups.add(Group.objects.get(name="Managers"))
    client.force_login(manager)

    response = client.get(URL)

    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/?next=")


@pytest.mark.parametrize(
    "codenames",
    [(), ("view_customer",), ("add_customer",), ("change_customer",), ("view_customer", "change_customer")],
)
def test_staff_need_both_add_and_change_customer_permissions(client, touchpoint, codenames):
    client.force_login(_staff(*codenames))

    opened = client.get(URL)
    posted = client.post(URL, {"file": _upload("email,name\nana@example.com,Ana\n"), "touchpoint": touchpoint.pk})

    assert (opened.status_code, posted.status_code) == (403, 403)
    assert not Customer.objects.exists()


def test_staff_with_add_and_change_customer_can_import(client, touchpoint):
    client.force_login(_staff("add_customer", "change_customer"))

    response = client.post(URL, {"file": _upload("email,name\nana@example.com,Ana\n"), "touchpoint": touchpoint.pk})

    assert response.status_code == 200
    assert "1 created" in _summary(response)
    assert Customer.objects.get().email == "ana@example.com"


# --- The page --------------------------------------------------------------------------------


def test_the_customer_list_links_to_the_upload(admin_client):
    page = admin_client.get("/admin/surveys/customer/")

    links = [a for a in elements(page.content, "a") if a.attrs.get("href") == URL]
    assert links and links[0].text.strip() == "Import CSV"


def test_the_page_offers_a_file_a_touchpoint_and_the_send_and_dry_run_choices(admin_client, touchpoint):
    page = admin_client.get(URL)

    assert page.status_code == 200
    inputs = {element.attrs.get("name"): element.attrs.get("type") for element in elements(page.content, "input")}
    assert inputs["file"] == "file"
    assert inputs["send"] == "checkbox"
    assert inputs["dry_run"] == "checkbox"
    options = [option.text for option in elements(page.content, "option")]
    assert "Home delivery" in options
    [form] = [form for form in elements(page.content, "form") if form.attrs.get("enctype")]
    assert form.attrs["enctype"] == "multipart/form-data"


def test_it_imports_the_good_rows_and_lists_the_bad_ones(admin_client, touchpoint):
    response = admin_client.post(URL, {"file": _upload(GOOD_AND_BAD), "touchpoint": touchpoint.pk})

    assert response.status_code == 200
    summary = _summary(response)
    assert "3 rows: 2 created" in summary and "1 errors" in summary
    listed = [item.text for item in elements(response.content, "li") if item.text.startswith("line ")]
    assert listed == ["line 3: invalid email 'not-an-email'"]
    assert sorted(Customer.objects.values_list("email", flat=True)) == ["ana@example.com", "carl@example.com"]
    assert Customer.objects.get(email="carl@example.com").name == "<b>Carl</b>"
    assert b"<b>Carl</b>" not in response.content
    assert mail.outbox == []


def test_with_send_the_imported_customers_get_the_survey(admin_client, touchpoint, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(URL, {"file": _upload(GOOD_AND_BAD), "touchpoint": touchpoint.pk, "send": "on"})

    assert "2 invited" in _summary(response)
    assert sorted(message.to[0] for message in mail.outbox) == ["ana@example.com", "carl@example.com"]
    assert set(Invitation.objects.values_list("status", "source")) == {("sent", "import")}


def test_a_dry_run_writes_nothing_and_says_so(admin_client, touchpoint, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(
            URL, {"file": _upload(GOOD_AND_BAD), "touchpoint": touchpoint.pk, "send": "on", "dry_run": "on"}
        )

    assert _summary(response).startswith("Dry run Dry run, nothing written: would have 3 rows: 2 created")
    assert not Customer.objects.exists()
    assert not Invitation.objects.exists()
    assert mail.outbox == []


def test_a_file_with_a_byte_order_mark_and_semicolons_is_read(admin_client, touchpoint):
    content = "\ufeffemail;name;locale\nana@example.com;López, Ana;de\n".encode()

    response = admin_client.post(URL, {"file": _upload(content), "touchpoint": touchpoint.pk})

    assert "1 created" in _summary(response)
    assert Customer.objects.get().name == "López, Ana"


def test_a_file_without_a_usable_header_is_shown_as_a_form_error(admin_client, touchpoint):
    response = admin_client.post(URL, {"file": _upload("mail,fullname\nana@example.com,Ana\n"), "touchpoint": touchpoint.pk})

    assert response.status_code == 200
    errors = [item.text for item in elements(response.content, "li") if item.text.startswith("line 1:")]
    assert errors and "missing column(s) email, name" in errors[0]
    assert not [e for e in elements(response.content) if e.attrs.get("id") == "import-summary"]
    assert not Customer.objects.exists()


def test_a_file_that_is_not_utf8_is_refused_with_a_form_error(admin_client, touchpoint):
    response = admin_client.post(URL, {"file": _upload("email,name\n".encode("utf-16")), "touchpoint": touchpoint.pk})

    assert "line 1: the file is not UTF-8 text" in response.content.decode()
    assert not Customer.objects.exists()


def test_importing_without_choosing_a_file_asks_for_one(admin_client, touchpoint):
    response = admin_client.post(URL, {"touchpoint": touchpoint.pk})

    assert response.status_code == 200
    assert response.content.decode().count("This field is required.") == 1
    assert not [e for e in elements(response.content) if e.attrs.get("id") == "import-summary"]


def test_importing_without_choosing_a_touchpoint_asks_for_one(admin_client, touchpoint):
    response = admin_client.post(URL, {"file": _upload("email,name\nana@example.com,Ana\n"), "touchpoint": ""})

    assert response.content.decode().count("This field is required.") == 1
    assert not Customer.objects.exists()


def test_many_bad_rows_are_listed_up_to_a_limit_and_counted_in_full(admin_client, touchpoint, monkeypatch):
    from surveys.imports import customers as imports

    monkeypatch.setattr(imports, "MAX_LINE_ERRORS_KEPT", 3)
    rows = "".join(f"bad{n},Bad\n" for n in range(5))

    response = admin_client.post(URL, {"file": _upload(f"email,name\n{rows}"), "touchpoint": touchpoint.pk})

    listed = [item.text for item in elements(response.content, "li") if item.text.startswith("line ")]
    assert listed == ["line 2: invalid email 'bad0'", "line 3: invalid email 'bad1'", "line 4: invalid email 'bad2'"]
    assert "5 errors" in _summary(response)
