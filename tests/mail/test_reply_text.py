"""extract_reply_text on talon's reply corpus (real client output plus the plain-text cases
of talon's own test suite) and on hand-written replies in the styles of common clients."""

from __future__ import annotations

import re

import pytest

from inbox_mcp.mail.html_text import html_to_text
from inbox_mcp.mail.parse import parse_message
from inbox_mcp.mail.reply_text import extract_reply_text
from tests.corpora import all_corpus_files, corpus_dir, talon_plain_cases

STANDARD_REPLIES = [
    "android", "aol", "apple_mail", "apple_mail_2", "comcast", "gmail", "hotmail",
    "iphone", "outlook", "sparrow", "thunderbird", "yahoo",
]


def _squash_blank_lines(text: str) -> str:
    return re.sub(r"\n\s*\n+", "\n", text.strip())


@pytest.mark.parametrize("client", STANDARD_REPLIES)
def test_talon_standard_replies(client):
    # Every fixture is a reply whose new text is "Hello" (talon keeps the iPhone/Sparrow
    # signature in its expected output; we drop signatures).
    parsed = parse_message((corpus_dir("talon") / "standard_replies" / f"{client}.eml").read_bytes())
    assert extract_reply_text(parsed.text) == "Hello"


def test_talon_standard_replies_cover_the_fixture_directory():
    present = {p.stem for p in (corpus_dir("talon") / "standard_replies").glob("*.eml")}
    assert present == set(STANDARD_REPLIES)


def test_talon_reply_sharing_a_block_with_the_quote():
    parsed = parse_message((corpus_dir("talon") / "reply-quotations-share-block.eml").read_bytes())
    for text in [parsed.text, html_to_text(parsed.html)]:
        reply = extract_reply_text(text)
        assert reply.startswith("Hi Katharine.  Sounds great.")
        assert "From" not in reply and "New Booking Inquiry" not in reply and "wrote" not in reply


@pytest.mark.parametrize("name", ["gmail", "hotmail", "mail_ru", "ms_outlook_2003", "ms_outlook_2007",
                                  "ms_outlook_2010", "thunderbird", "windows_mail", "yandex_ru"])
def test_talon_html_replies(name):
    html = (corpus_dir("talon") / "html_replies" / f"{name}.html").read_text(encoding="utf-8", errors="replace")
    assert _squash_blank_lines(extract_reply_text(html_to_text(html))) == "Hi. I am fine.\nThanks,\nAlex"


def test_talon_outlook_body_section_and_hr_separated_html():
    html = (corpus_dir("talon") / "OLK_SRC_BODY_SECTION.html").read_text(encoding="utf-8")
    assert extract_reply_text(html_to_text(html)) == "Reply"
    html = (corpus_dir("talon") / "reply-separated-by-hr.html").read_text(encoding="utf-8")
    reply = extract_reply_text(html_to_text(html))
    assert reply.startswith("Hi") and "From:" not in reply and "Subject" not in reply


# talon forwards a message that only forwards ("FYI" + forwarded content) untouched; for an
# agent the forwarded content is history, like a quote.
DELIBERATE_DIFFERENCES = {"test_dont_parse_quotations_for_forwarded_messages#1": "FYI"}


def test_talon_text_quotation_cases():
    cases = talon_plain_cases()
    assert len(cases) >= 40  # the extraction from talon's test module still finds its cases
    failures = []
    for name, body, talon_expected in cases:
        expected = DELIBERATE_DIFFERENCES.get(name, talon_expected)
        got = extract_reply_text(body)
        if _squash_blank_lines(got) != _squash_blank_lines(expected):
            failures.append(f"{name}: expected {expected!r}, got {got!r}")
    assert not failures, "\n".join(failures)


def test_deliberate_differences_are_still_talon_cases():
    names = {name for name, _, _ in talon_plain_cases()}
    assert set(DELIBERATE_DIFFERENCES) <= names


@pytest.mark.parametrize(
    "indicator",
    ["Original Message", "Reply Message", "Ursprüngliche Nachricht", "Antwort Nachricht", "Oprindelig meddelelse",
     "Message d'origine", "Mensaje original"],
)
def test_original_message_separators(indicator):
    # The first five are talon's _check_pattern_original_message cases.
    assert extract_reply_text(f"Test reply\n\n-----{indicator}-----\n\nTest") == "Test reply"


def test_dashed_banner_that_is_not_a_separator():
    # talon's test_feedback_below_left_unparsed
    body = ("Please enter your feedback below. Thank you.\n\n"
            "------------------------------------- Enter Feedback Below -------------------------------------\n\n"
            "The user experience was unparallelled. Please continue production.")
    assert extract_reply_text(body) == body


GMAIL = """Sounds good, see you then.

On Mon, Mar 3, 2025 at 10:02 AM Alice Example <alice@example.com> wrote:

> Can we meet on Tuesday?
>
> Alice
"""

GMAIL_WRAPPED_ATTRIBUTION = """Yes, confirmed.

On Mon, Mar 3, 2025 at 10:02 AM Alice Example with a Long Display Name <
alice.example@example-corporation.com> wrote:

> Is the order confirmed?
"""

OUTLOOK = """Approved.

Best regards,
Bob

________________________________
From: Alice Example <alice@example.com>
Sent: Monday, March 3, 2025 10:02 AM
To: Bob <bob@example.org>
Subject: Budget request

Please approve the attached budget.
"""

OUTLOOK_ORIGINAL_MESSAGE = """Done, uploaded it.

-----Original Message-----
From: Alice [mailto:alice@example.com]
Sent: Monday, March 3, 2025 10:02 AM
Subject: File

Please upload the file.
"""

APPLE_MAIL = """Sure thing!

Sent from my iPhone

> On 3 Mar 2025, at 10:02, Alice Example <alice@example.com> wrote:
>
> Can you send the slides?
"""

THUNDERBIRD_BOTTOM_POST = """On 03/03/2025 10:02, Alice Example wrote:
> Can you send the slides?

Attached, let me know.
"""

GERMAN_OUTLOOK = """Passt für mich.

Von: Alice Beispiel <alice@example.de>
Gesendet: Montag, 3. März 2025 10:02
An: Bob <bob@example.de>
Betreff: Termin

Geht Dienstag?
"""

FRENCH_GMAIL = """D'accord, merci.

Le lun. 3 mars 2025 à 10:02, Alice Exemple <alice@example.fr> a écrit :

> Tu es disponible mardi ?
"""

SPANISH_GMAIL = """Perfecto.

El lun, 3 mar 2025 a las 10:02, Alice Ejemplo (<alice@example.es>) escribió:

> ¿Puedes el martes?
"""

FORWARD_WITH_NOTE = """FYI, see the thread below.

---------- Forwarded message ---------
From: Alice Example <alice@example.com>
Date: Mon, Mar 3, 2025 at 10:02 AM
Subject: Outage
To: <ops@example.com>

The service is down.
"""

SIGNATURE = """Thanks, I will take a look.

-- 
Bob Example
Example Corp | +1 555 0100
"""

MOBILE_FOOTER = """Got it, thanks.

Get Outlook for iOS
"""

INLINE_REPLY = """> Can you make Tuesday?
Yes, 10:00 works.

> Will you bring the slides?
I will.
"""


@pytest.mark.parametrize(
    "body,expected",
    [
        (GMAIL, "Sounds good, see you then."),
        (GMAIL_WRAPPED_ATTRIBUTION, "Yes, confirmed."),
        (OUTLOOK, "Approved.\n\nBest regards,\nBob"),
        (OUTLOOK_ORIGINAL_MESSAGE, "Done, uploaded it."),
        (APPLE_MAIL, "Sure thing!"),
        (THUNDERBIRD_BOTTOM_POST, "Attached, let me know."),
        (GERMAN_OUTLOOK, "Passt für mich."),
        (FRENCH_GMAIL, "D'accord, merci."),
        (SPANISH_GMAIL, "Perfecto."),
        (FORWARD_WITH_NOTE, "FYI, see the thread below."),
        (SIGNATURE, "Thanks, I will take a look."),
        (MOBILE_FOOTER, "Got it, thanks."),
        (INLINE_REPLY, INLINE_REPLY.strip()),  # answers need the questions they answer
    ],
    ids=["gmail", "gmail-wrapped", "outlook", "outlook-original", "apple-mail", "thunderbird-bottom",
         "german-outlook", "french-gmail", "spanish-gmail", "forward-with-note", "signature", "mobile-footer",
         "inline-reply"],
)
def test_client_styles(body, expected):
    assert extract_reply_text(body) == expected
    assert extract_reply_text(body.replace("\n", "\r\n")) == expected


@pytest.mark.parametrize(
    "body",
    [
        "Just a normal message.\nWith two lines.",
        "On Monday we ship the release.\nThanks",
        "Here is what the customer wrote:\nPlease refund me.",
        "Price > cost in most cases.\nThat is fine.",
        "Results:\n> 5 items passed\nAll good.",
        "The invoice for 2024 was sent\nPlease pay soon.",
        "At 12:00 John wrote:\nThe deploy is done.",
        "Sent via FedEx on Tuesday\nTracking follows.",
    ],
)
def test_messages_without_quotes_are_kept_whole(body):
    assert extract_reply_text(body) == body


def test_never_empty_when_there_is_text():
    only_quote = "> just a quote\n> of an earlier message"
    assert extract_reply_text(only_quote) == only_quote
    only_forward = "---------- Forwarded message ---------\nFrom: a@example.com\nSubject: x\n\nbody"
    assert extract_reply_text(only_forward) == only_forward
    assert extract_reply_text("") == ""
    assert extract_reply_text("  \n ") == ""


def test_reply_text_of_html_only_gmail_reply():
    html = ('<div dir="ltr">Works for me.</div><br><div class="gmail_quote"><div dir="ltr" class="gmail_attr">'
            'On Mon, Mar 3, 2025 at 10:02 AM Alice &lt;<a href="mailto:alice@example.com">alice@example.com</a>&gt;'
            ' wrote:<br>'
            '</div><blockquote class="gmail_quote">Does Tuesday work?</blockquote></div>')
    assert extract_reply_text(html_to_text(html)) == "Works for me."


def test_every_corpus_text_gives_a_reply_drawn_from_it():
    for path in all_corpus_files():
        text = parse_message(path.read_bytes()).text
        reply = extract_reply_text(text)
        assert bool(reply) == bool(text.strip()), path
        normalized = text.replace("\r\n", "\n").replace("\u00a0", " ")
        for line in reply.splitlines():
            assert line.strip() in normalized, (path, line)  # never invents text
