"""CustomerEmail: the bytes of Django's EmailMultiAlternatives, built with less work.

The oracle is Django itself: the same message through `EmailMultiAlternatives`,
given the same Date, Message-ID and boundary, must come out byte for byte the same.
"""

import email
import email.policy
from email.generator import BytesGenerator
from io import BytesIO

import pytest
from django.core.mail import EmailMultiAlternatives
from django.core.mail.message import BadHeaderError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from surveys.mail.mime import CustomerEmail, flatten

HEADERS = {
    "List-Unsubscribe": "<https://surveys.example.com/u/OfyqZNXMcNWm9REJNJ5h5Mp9eoXYdIuq/>",
    "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
}


def _pair(**fields):
    """The same email as CustomerEmail and as Django's EmailMultiAlternatives, as MIME messages with equal stamps."""
    html = fields.pop("html", "<p>Hello</p>\n")
    fields = {
        "subject": "How did we do?",
        "body": "Hello\n",
        "from_email": "Loyal Promoters <surveys@example.com>",
        "to": ["jane@example.com"],
        "headers": dict(HEADERS),
        **fields,
    }
    quick = CustomerEmail(**fields, alternatives=[(html, "text/html")]).message()
    django = EmailMultiAlternatives(**fields)
    django.attach_alternative(html, "text/html")
    reference = django.message()
    for name in ("Date", "Message-ID"):
        reference.replace_header(name, quick[name])
    quick.as_bytes()  # when Django built it, writing it out picks the boundary
    reference.set_boundary(quick.get_boundary())
    return quick, reference


def _django_bytes(message, linesep="\r\n") -> bytes:
    """What Django's own as_bytes() writes: the standard generator."""
    out = BytesIO()
    BytesGenerator(out, mangle_from_=False).flatten(message, linesep=linesep)
    return out.getvalue()


def test_a_plain_invitation_is_the_same_bytes_as_djangos():
    quick, reference = _pair(
        subject="Jane, how did we do?",
        body="Hello Jane,\n\nClick a number:\n0: https://surveys.example.com/s/abc/?score=0\n",
        html='<!doctype html>\n<p>Hello Jane,</p>\n<a href="https://surveys.example.com/s/abc/?score=0">0</a>\n',
    )

    assert quick.as_bytes(linesep="\r\n") == _django_bytes(reference)
    assert quick.as_bytes(linesep="\r\n") == reference.as_bytes(linesep="\r\n")


def test_accents_quotes_and_long_headers_come_out_as_djangos():
    quick, reference = _pair(
        subject="José «Núñez» & co, \"the\" long name that goes on and on past seventy-eight characters",
        body="Hola José,\r\n¿Qué probabilidad hay?\rÜber\n",
        html="<p>Hola Jos&eacute; — ¿Qué?</p>",
        to=["Jörg Müller <jorg@example.com>"],
    )

    assert quick.as_bytes(linesep="\r\n") == _django_bytes(reference)


names = st.text(st.characters(codec="utf-8", exclude_categories=["Cs", "Cc"]), max_size=120)
bodies = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=400)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(subject=names, body=bodies, html=bodies, display_name=names)
def test_any_text_comes_out_as_djangos(subject, body, html, display_name):
    from email.utils import formataddr

    to = formataddr((display_name, "jane@example.com")) if display_name.strip() else "jane@example.com"
    try:
        quick, reference = _pair(subject=subject, body=body or "x", html=html or "y", to=[to])
    except (BadHeaderError, ValueError):
        # What Django refuses (a line break in a header), CustomerEmail refuses too.
        with pytest.raises((BadHeaderError, ValueError)):
            CustomerEmail(subject=subject, body=body or "x", to=[to], alternatives=[(html or "y", "text/html")]).message()
        return

    assert quick.as_bytes(linesep="\r\n") == _django_bytes(reference)
    assert quick.as_bytes() == _django_bytes(reference, linesep="\n")


def test_the_message_reads_back_with_both_parts_and_the_unsubscribe_headers():
    quick, _ = _pair(body="Hello Zoë\n", html="<p>Hello Zoë</p>\n")

    received = email.message_from_bytes(quick.as_bytes(), policy=email.policy.default)

    assert received["List-Unsubscribe"].strip() == HEADERS["List-Unsubscribe"]  # folded as Django folds it
    assert received["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert received["Message-ID"] and received["Date"]
    parts = {part.get_content_type(): part.get_content() for part in received.walk() if not part.is_multipart()}
    assert parts == {"text/plain": "Hello Zoë\n", "text/html": "<p>Hello Zoë</p>\n"}
    assert {part.get_content_charset() for part in received.walk() if not part.is_multipart()} == {"utf-8"}


def test_a_line_break_in_the_subject_is_refused_as_django_refuses_it():
    with pytest.raises(BadHeaderError):
        CustomerEmail(subject="Hi\r\nBcc: victim@example.com", body="x", to=["a@example.com"],
                      alternatives=[("<p>x</p>", "text/html")]).message()


def test_a_line_too_long_for_smtp_is_left_to_django_which_makes_it_quoted_printable():
    long_line = "x" * 1200
    message = CustomerEmail(subject="s", body=f"{long_line}\n", to=["a@example.com"],
                            alternatives=[("<p>x</p>", "text/html")]).message()

    raw = message.as_bytes(linesep="\r\n")

    assert b"Content-Transfer-Encoding: quoted-printable" in raw
    assert max(len(line) for line in raw.split(b"\r\n")) <= 998
    received = email.message_from_bytes(raw, policy=email.policy.default)
    assert received.get_body(("plain",)).get_content() == f"{long_line}\r\n"  # as sent over SMTP


def test_other_shapes_are_built_by_django_and_keep_what_they_carry():
    with_cc = CustomerEmail(subject="s", body="x", to=["a@example.com"], cc=["b@example.com"],
                            alternatives=[("<p>x</p>", "text/html")])
    with_file = CustomerEmail(subject="s", body="x", to=["a@example.com"], alternatives=[("<p>x</p>", "text/html")])
    with_file.attach("note.txt", "hello", "text/plain")

    assert email.message_from_bytes(with_cc.message().as_bytes())["Cc"] == "b@example.com"
    received = email.message_from_bytes(with_file.message().as_bytes(), policy=email.policy.default)
    [attachment] = received.iter_attachments()
    assert attachment.get_filename() == "note.txt" and attachment.get_content() == "hello"


def test_a_multipart_it_does_not_know_is_left_to_the_standard_generator():
    nested = EmailMultiAlternatives(subject="s", body="x", to=["a@example.com"])
    nested.attach_alternative("<p>x</p>", "text/html")
    nested.attach("note.txt", "hello", "text/plain")
    message = nested.message()
    message.set_boundary("outer")

    assert flatten(message, "\r\n") is None


@pytest.mark.parametrize(
    "line",
    ["x" * 998, "x" * 999, "€" * 332, "€" * 333, "😀" * 249, "😀" * 250, "a" + "😀" * 249],
    ids=["998-ascii", "999-ascii", "996-bytes", "999-bytes", "996-bytes-emoji", "1000-bytes-emoji", "997-bytes"],
)
def test_lines_near_the_smtp_limit_are_encoded_as_django_encodes_them(line):
    quick, reference = _pair(body=f"{line}\n", html=f"<p>{line}</p>\n")

    assert quick.as_bytes(linesep="\r\n") == _django_bytes(reference)
