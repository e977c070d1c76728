"""extract_verification: the shared verification-mail corpus, false-positive traps, and
realistic messages written here (not from the corpus) to check that the rules generalise."""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from inbox_mcp.mail.verification import Verification, extract_verification

REPO = Path(__file__).resolve().parents[2]
CORPUS = Path(
    os.environ.get("INBOX_MCP_VERIFICATION_CORPUS")
    or REPO.parent / "shared" / "corpora" / "verification-mail"
)


def extract_text(text: str, subject: str = "Your verification code") -> Verification:
    return extract_verification(subject=subject, text=text, html=None)


def extract_html(markup: str, subject: str = "Your verification code") -> Verification:
    return extract_verification(subject=subject, text=None, html=markup)


# --- the shared corpus -------------------------------------------------------------------------


def _scorer():  # type: ignore[no-untyped-def]
    """The corpus is scored by bench/verification_score.py: one scorer for the figure the bench
    prints and the bound this test asserts."""
    spec = importlib.util.spec_from_file_location("verification_score", REPO / "bench" / "verification_score.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve their module by name
    spec.loader.exec_module(module)
    return module


def test_extract_verification_corpus_precision_and_recall_at_least_95_percent() -> None:
    assert (CORPUS / "expected.json").is_file(), f"verification-mail corpus not found at {CORPUS}"
    score = _scorer().score_corpus(CORPUS)
    figures = {
        "code precision": score.codes.precision,
        "code recall": score.codes.recall,
        "link precision": score.links.precision,
        "link recall": score.links.recall,
    }
    assert score.files == 40 and score.codes.expected and score.links.expected
    assert all(value >= 0.95 for value in figures.values()), (figures, score.problems)


# --- false-positive traps ------------------------------------------------------------------------

CODE_MAIL = "Hi Jane,\n\nYour verification code is 482913.\n\n{distractor}\n\nThanks,\nThe Team\n"
# The same distractors with no code at all: a verification mail that only has a link, or none.
NO_CODE_MAIL = (
    "Hi Jane,\n\nPlease verify your account using the code we sent you.\n\n{distractor}\n"
)

DISTRACTORS = {
    "colour-hex": "Our brand colours are #FF0000, #ff0000, #212124 and #0082C9.",
    "colour-css": "body { color: #333333; background: #F4F4F7; border: 1px solid #EAEAEC }",
    "date-iso": "Your code was requested on 2026-11-26.",
    "date-dotted": "Your code was requested on 26.11.2026.",
    "date-slashed": "Your code was requested on 11/26/2026.",
    "date-words": "Requested on 26 November 2026, 14:35 UTC.",
    "time": "The code was sent at 14:35:09 and expires at 23:59.",
    "year": "(c) 2026 Example Inc. All rights reserved.",
    "year-alone": "2026",
    "price-dollar": "Your plan costs $19.99 per month, or $1234 a year.",
    "price-euro": "Total: 1,234.56 EUR (EUR 1234 excl. VAT, 1234 EUR incl.)",
    "phone-e164-spaced": "Questions about your code? Call +1 415 555 0100.",
    "phone-us": "Questions about your code? Call (415) 555-0100 or 415-555-0100.",
    "phone-digits": "Questions? Phone 4155550100 any time.",
    "phone-tollfree": "Lost your code? Call 1800 425 3800.",
    "zip-in-address": "Example Inc., 123 Market St, San Francisco, CA 94103",
    "street-number": "1234 Street Rd., Suite 1234",
    "card": "Card 4111 1111 1111 1111 ending 4821 was used.",
    "ip-and-version": "Requested from 198.51.100.23 using Firefox 132.0.1 on macOS 15.1.",
    "account-id": "Your account ID: 48213377",
    "promo-code": "Use code SAVE20 for 20% off your next order.",
    "currency-before": "This code works for payments up to EUR 5000.",
    "unit-after": "This code stays valid for 1440 minutes.",
    "phone-hotline": "Trouble with your code? Hotline 0800 425 3800 or +44 20 7946 0958.",
    "phone-tail": "Trouble with your code? Our line: +1 415 555 0100",
    "sms-sender-name": "Verification codes are sent from our SMS sender name ACME-AUTH.",
}


@pytest.mark.parametrize("distractor", DISTRACTORS.values(), ids=DISTRACTORS.keys())
def test_extract_verification_ignores_distractor_next_to_real_code(distractor: str) -> None:
    assert extract_text(CODE_MAIL.format(distractor=distractor)).codes == ["482913"]


@pytest.mark.parametrize("distractor", DISTRACTORS.values(), ids=DISTRACTORS.keys())
def test_extract_verification_ignores_distractor_alone(distractor: str) -> None:
    assert extract_text(NO_CODE_MAIL.format(distractor=distractor)).codes == []


def test_extract_verification_ignores_colours_in_html_styles_and_text() -> None:
    markup = """<html><head><style>.btn{background:#212124;color:#FFFFFF} h1{color:#346DF1}</style>
    </head><body bgcolor="#F6F6F6"><h1 style="color:#222324">Verify your email</h1>
    <p style="color:#333333">Use the code below. Our brand colour is #FF5733.</p>
    <p style="font-size:28px;letter-spacing:6px;color:#0082c9"><b>730261</b></p>
    <table><tr><td bgcolor="#E47911">&nbsp;</td></tr></table></body></html>"""
    assert extract_html(markup).codes == ["730261"]


def test_extract_verification_ignores_script_and_style_content() -> None:
    markup = """<html><head><title>Code 583920</title>
    <style>/* code 771199 */ .code{font-size:28px}</style>
    <script type="application/ld+json">{"description": "code 664422"}</script></head>
    <body><p>Your verification code is <b>482913</b>.</p></body></html>"""
    assert extract_html(markup).codes == ["482913"]


def test_extract_verification_card_receipt_authorisation_code_is_not_a_code() -> None:
    text = "Thanks for your visit!\n\nVisa ****4821\nAuth code: 448812\nTotal: $4.50\n"
    assert extract_text(text, subject="Your receipt from Example Coffee").codes == []


def test_extract_verification_ignores_footer_zip_two_lines_below_code_sentence() -> None:
    text = "If you didn't request this code, ignore this email.\nAcme Inc, 123 Main St\n94103\n"
    assert extract_text(text, subject="Sign in to Acme").codes == []


def test_extract_verification_ignores_username_under_code_sentence() -> None:
    markup = "<p>Your one-time code was sent to the account below.</p><p><b>JaneDoe42</b></p>"
    assert extract_html(markup, subject="Sign-in code sent").codes == []


def test_extract_verification_finds_nothing_in_receipt_with_order_numbers() -> None:
    markup = """<h1>$33.98 Paid</h1><h2>Thanks for using Acme Inc.</h2>
    <table><tr><td>Invoice #482913<br>November 22 2026</td></tr>
    <tr><td>Order number</td><td><b>583920</b></td></tr>
    <tr><td>Confirmation number: 774211</td></tr>
    <tr><td>Service 1</td><td>$ 19.99</td></tr><tr><td>Total</td><td>$ 33.98</td></tr></table>
    <p><a href="https://billing.example.com/invoices/482913">View in browser</a></p>
    <p>Acme Inc. 123 Van Ness, San Francisco 94102</p>"""
    result = extract_html(markup, subject="Your receipt from Acme Inc. #482913")
    assert result == Verification(codes=[], links=[])


def test_extract_verification_keeps_only_the_verification_link() -> None:
    markup = """<a href="https://example.com/"><img src="https://example.com/logo.png" alt="Example"></a>
    <a href="https://example.com/newsletter/view?id=a8f7d6e5c4b3a2f1e0d9c8b7">View in browser</a>
    <p>Please confirm your email address by clicking the button below.</p>
    <a href="https://example.com/confirm?token=Zq8Lw3Nx5Rv7Tb9Yc2Md">Confirm email</a>
    <p><a href="https://example.com/privacy">Privacy</a> |
    <a href="https://example.com/terms">Terms</a> |
    <a href="https://example.com/unsubscribe?token=9f8e7d6c5b4a39281706f5e4">Unsubscribe</a> |
    <a href="https://example.com/settings/preferences?t=9f8e7d6c5b4a39281706">Email preferences</a></p>
    <a href="https://twitter.com/example"><img alt="Twitter" src="https://example.com/tw.png"></a>
    <a href="https://www.facebook.com/example"><img alt="Facebook" src="https://example.com/fb.png"></a>
    <img src="https://open.example.com/o/r8e8ZGIds665Iznn16yJZO9nASr0m" width="1" height="1">"""
    result = extract_html(markup, subject="Confirm your email")
    assert result.links == ["https://example.com/confirm?token=Zq8Lw3Nx5Rv7Tb9Yc2Md"]


def test_extract_verification_ignores_article_slugs_and_utm_tags() -> None:
    markup = """<p>Your email address is confirmed. Thanks for verifying!</p>
    <p><a href="https://blog.example.com/posts/how-to-verify-your-account-in-2026">Read how
    verification keeps your account safe</a></p>
    <p><a href="https://acme.example/welcome?utm_source=confirmation&amp;utm_content=k7Q2mX9pL4vR8nT3">
    Get started</a></p>"""
    assert extract_html(markup, subject="Email confirmed").links == []


def test_extract_verification_drops_click_tracked_footer_link_far_below_the_button() -> None:
    markup = """<p>Please confirm your email address by clicking the button below.</p>
    <a href="https://u123.ct.example-esp.net/ls/click?upn=Ab12Cd34Ef56Gh78Ij90">Confirm email</a>
    <p>Thanks for confirming!</p>
    <a href="https://u123.ct.example-esp.net/ls/click?upn=Zz98Yy76Xx54Ww32Vv10">Visit our website</a>"""
    assert extract_html(markup, subject="Confirm your email").links == [
        "https://u123.ct.example-esp.net/ls/click?upn=Ab12Cd34Ef56Gh78Ij90"
    ]


def test_extract_verification_ignores_tokenless_login_and_home_links() -> None:
    text = (
        "Your account is ready. Sign in at https://app.example.com/login\n"
        "Forgot your password? https://app.example.com/forgot-password\n"
        "Home: https://example.com/\n"
    )
    assert extract_text(text, subject="Welcome! Sign in to get started").links == []


def test_extract_verification_ignores_not_me_and_report_links() -> None:
    markup = """<p>Click below to sign in. This link expires in 10 minutes.</p>
    <p><a href="https://acme.example/auth/magic?t=Zq8Lw3Nx5Rv7Tb9Yc2Md4Kf">Sign in to Acme</a></p>
    <p>Not you? <a href="https://acme.example/auth/report?t=Zq8Lw3Nx5Rv7Tb9Yc2Md4Kf">Let us know</a>.</p>
    <p><a href="https://acme.example/auth/revoke?t=Zq8Lw3Nx5Rv7Tb9Yc2Md4Kf">This wasn't me</a></p>
    <p><a href="https://acme.example/auth/disown?t=Zq8Lw3Nx5Rv7Tb9Yc2Md4Kf">I didn't request this</a></p>"""
    result = extract_html(markup, subject="Sign in to Acme")
    assert result.links == ["https://acme.example/auth/magic?t=Zq8Lw3Nx5Rv7Tb9Yc2Md4Kf"]


# --- a realistic sign-up mail, text-only and HTML-only ---------------------------------------

SIGNUP_LINK = (
    "https://app.acme-notes.example/confirm?token=3f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c"
    "&email=jane%40example.net"
)
SIGNUP_TEXT = f"""Hi Jane,

Thanks for signing up for Acme Notes! Please confirm your email address by clicking the link below:

{SIGNUP_LINK}

This link expires in 24 hours. If you didn't create an account, you can ignore this email.

Acme Notes - 548 Market St #12345 - San Francisco, CA 94104
Privacy: https://acme-notes.example/privacy
Unsubscribe: https://acme-notes.example/unsubscribe?u=5d4c3b2a1f0e9d8c7b6a
"""
SIGNUP_HTML = f"""<!DOCTYPE html><html><head><title>Confirm</title>
<style>body{{color:#333333}} .btn{{background:#4F46E5}}</style></head><body>
<table width="100%"><tr><td align="center">
<a href="https://acme-notes.example/?utm_source=email&amp;utm_medium=signup">
<img src="https://acme-notes.example/logo.png" alt="Acme Notes"></a>
<h1>Welcome, Jane!</h1>
<p>Thanks for signing up for Acme Notes! Please confirm your email address to get started.</p>
<a class="btn" href="{SIGNUP_LINK.replace("&", "&amp;")}">Confirm email</a>
<p>Button not working? Paste this link into your browser:<br>{SIGNUP_LINK.replace("&", "&amp;")}</p>
<p>This link expires in 24 hours. If you didn&#39;t create an account, you can ignore this email.</p>
<p style="font-size:12px;color:#999999">Acme Notes &middot; 548 Market St #12345 &middot;
San Francisco, CA 94104<br>
<a href="https://acme-notes.example/privacy">Privacy</a> &middot;
<a href="https://acme-notes.example/unsubscribe?u=5d4c3b2a1f0e9d8c7b6a">Unsubscribe</a> &middot;
<a href="https://twitter.com/acmenotes">Twitter</a></p>
</td></tr></table>
<img src="https://t.acme-notes.example/open/3f9a8b7c6d5e4f3a2b1c.gif" width="1" height="1" alt="">
</body></html>"""


def test_extract_verification_signup_text_only() -> None:
    result = extract_text(SIGNUP_TEXT, subject="Confirm your email for Acme Notes")
    assert result == Verification(codes=[], links=[SIGNUP_LINK])


def test_extract_verification_signup_html_only() -> None:
    result = extract_html(SIGNUP_HTML, subject="Confirm your email for Acme Notes")
    assert result == Verification(codes=[], links=[SIGNUP_LINK])


def test_extract_verification_signup_both_parts_counts_each_link_once() -> None:
    result = extract_verification(
        subject="Confirm your email for Acme Notes", text=SIGNUP_TEXT, html=SIGNUP_HTML
    )
    assert result == Verification(codes=[], links=[SIGNUP_LINK])


# --- realistic messages written for this test ---------------------------------------------------


@dataclass(frozen=True)
class Sample:
    subject: str
    text: str | None = None
    html: str | None = None
    codes: tuple[str, ...] = ()
    links: tuple[str, ...] = ()


SAMPLES = {
    "github-device-verification": Sample(
        subject="[GitHub] Please verify your device",
        text="""Hey octocat!

A sign in attempt requires further verification because we did not recognize your device. To
complete the sign in, enter the verification code on the unrecognized device.

Device: Firefox on macOS
Verification code: 482913

If you did not attempt to sign in to your account, your password may be compromised. Visit
https://github.com/settings/security to create a new, strong password for your GitHub account.

Thanks,
The GitHub Team
""",
        codes=("482913",),
    ),
    "device-activation-dashed": Sample(
        subject="Activate your TV",
        text="Almost there!\n\nYour device activation code is ABCD-1234. Enter it at "
        "https://tv.example.com/activate within 15 minutes.\n\n"
        "Questions? https://help.example.com\n",
        codes=("ABCD-1234",),
    ),
    "slack-letters-only": Sample(
        subject="Slack confirmation code: ABC-DEF",
        html="""<html><head><style>.code{background:#F5F4F5;color:#1D1C1D}</style></head><body>
<img src="https://a.slack-edge.com/logo.png" alt="Slack">
<h1>Confirm your email address</h1>
<p>Your confirmation code is below &mdash; enter it in your open browser window and we'll help
you get signed in.</p>
<div class="code" style="font-size:30px;letter-spacing:4px">ABC-DEF</div>
<p>If you didn&#39;t request this email, there&#39;s nothing to worry about.</p>
<p><a href="https://slack.com">Slack</a> | <a href="https://slack.com/privacy-policy">Privacy</a>
| <a href="https://slack.com/help">Help Center</a></p>
<p>Slack Technologies, LLC, 500 Howard Street, San Francisco, CA 94105</p></body></html>""",
        codes=("ABC-DEF",),
    ),
    "microsoft-security-code": Sample(
        subject="Microsoft account security code",
        text="""Microsoft account

Security code

Please use the following security code for the Microsoft account ja***@example.com.

Security code: 1234567

If you don't recognize the Microsoft account ja***@example.com, you can click
https://account.live.com/dp?ft=Ck2Pw8rNq5Xz1Ls7Vb4Mh9Gt3Yd6Fj0 to remove your email address
from that account.

Thanks,
The Microsoft account team
""",
        codes=("1234567",),
    ),
    "bank-otp": Sample(
        subject="One Time Password for your transaction",
        text="""Dear Customer,

Your OTP is 482913. Do not share it with anyone. It is valid for 5 minutes.

This OTP is for the transaction of INR 4,999.00 at AMAZON RETAIL on 26-11-2026 14:35:09 using
card ending 4821.

If you did not initiate this transaction, call us immediately at 1800 425 3800.

Regards,
Example Bank
""",
        codes=("482913",),
    ),
    "amazon-style-otp-html": Sample(
        subject="Amazon password assistance",
        html="""<table><tr><td><img src="https://m.media-amazon.com/images/logo.png" alt="amazon">
</td></tr><tr><td><h2>Password assistance</h2>
<p>To authenticate, please use the following One Time Password (OTP):</p>
<p style="font-size:24px;font-weight:bold;color:#E47911">718204</p>
<p>Don't share this OTP with anyone. Our customer service team will never ask you for your
password, OTP, credit card, or banking info.</p>
<p>We hope to see you again soon.</p></td></tr>
<tr><td style="color:#666666;font-size:12px">&copy; 1996-2026, Amazon.com, Inc. or its
affiliates. 410 Terry Ave. North, Seattle, WA 98109-5210</td></tr></table>
<img src="https://www.amazon.com/gp/r.html?C=2G8N2T9X1LQ7&amp;R=1Y8M3ZP0" width="1" height="1">""",
        codes=("718204",),
    ),
    "django-password-reset": Sample(
        subject="Password reset on example.com",
        text="""You're receiving this email because you requested a password reset for your user
account at example.com.

Please go to the following page and choose a new password:

https://example.com/accounts/reset/MQ/c3pt1x-6b2e9e0d4f3c1a8b7e5d2f9c0a1b3e4d/

Your username, in case you've forgotten: jdoe

Thanks for using our site!

The example.com team
""",
        links=("https://example.com/accounts/reset/MQ/c3pt1x-6b2e9e0d4f3c1a8b7e5d2f9c0a1b3e4d/",),
    ),
    "receipt-text": Sample(
        subject="Your Example Shop order #112-4567890-1234567 has shipped",
        text="""Hi Jane,

Your order 483920 is on its way!

Order number: 483920
Invoice INV-2026-0042
Placed on 2026-11-26 at 14:35
Items: 2 x Widget @ $19.99
Total: 1,234.56 EUR

Track your package: https://track.example-shop.com/pkg?id=1Z999AA10123456784&ref=em
Questions? Call (415) 555-0100 or +1 415 555 0100.

Example Shop, 123 Market St, San Francisco, CA 94103

Unsubscribe: https://example-shop.com/unsubscribe?u=8f7e6d5c4b3a29180716
""",
    ),
    "receipt-html-table": Sample(
        subject="Receipt for your payment",
        html="""<table>
<tr><td>Receipt number</td><td><b>2841-7730</b></td></tr>
<tr><td>Order ID</td><td><b>AB12CD34</b></td></tr>
<tr><td>Date paid</td><td>Nov 26, 2026</td></tr>
<tr><td>Amount</td><td>$1,234.56</td></tr></table>
<p><a href="https://pay.example.com/receipts/acct_1Nv0FGQ9RKHgCVdK/rcpt_9f8e7d6c5b4a3928">
View receipt</a></p>
<p><a href="https://example.com/unsubscribe?token=9f8e7d6c5b4a39281706f5e4">Unsubscribe</a></p>""",
    ),
    "newsletter-html": Sample(
        subject="This week at Example: 5 tips for 2026",
        html="""<html><head><style>.btn{background:#ff0000;color:#FFFFFF}</style></head><body>
<a href="https://example.com/newsletter/view?id=a8f7d6e5c4b3a2f1e0d9c8b7">View in browser</a>
<img src="https://example.com/logo.png" alt="Example"><h1>5 tips for 2026</h1>
<p style="color:#333333">Our brand colour is #FF5733 and our event is on 26.11.2026 at 18:30.
Tickets cost $19.99.</p>
<p>Use code SAVE20 for 20% off your next order. Call us at (415) 555-0100.</p>
<p><a href="https://click.example.com/ls/click?upn=Xk9Tq2Lm7RvB4nW1sZ8cQ3">Read more</a></p>
<a href="https://twitter.com/example"><img alt="Twitter" src="https://example.com/tw.png"></a>
<a href="https://example.com/privacy">Privacy</a>
<a href="https://example.com/unsubscribe?token=9f8e7d6c5b4a39281706f5e4">Unsubscribe</a>
<img src="https://open.example.com/o/r8e8ZGIds665Iznn16yJZO9nASr0m" width="1" height="1">
</body></html>""",
    ),
    "magic-link-and-code-html": Sample(
        subject="Sign in to Acme",
        html="""<p>Click the button below to sign in to Acme. This link expires in 10 minutes.</p>
<p><a href="https://acme.example/auth/magic?t=Zq8Lw3Nx5Rv7Tb9Yc2Md4Kf6Hg1Js0P">Sign in to Acme</a></p>
<p>Or use this temporary login code:</p>
<p><code>ZRK-48QP</code></p>""",
        codes=("ZRK-48QP",),
        links=("https://acme.example/auth/magic?t=Zq8Lw3Nx5Rv7Tb9Yc2Md4Kf6Hg1Js0P",),
    ),
    "security-alert": Sample(
        subject="New sign-in to your Example account",
        text="""We noticed a new sign-in to your Example account.

When: 26 November 2026, 14:35 UTC
Device: Chrome on Windows
Location: San Francisco, CA, USA (IP 198.51.100.23)

If this was you, you don't need to do anything. If not, secure your account:
https://example.com/security/checkup?session=a8f7d6e5c4b3a2f1e0d9c8b7
""",
    ),
    "code-only-in-subject": Sample(
        subject="Your sign-in code: 592830",
        text="Hi Jane,\n\nSomeone is trying to sign in to your Example account. If this was you,"
        " use the code in the subject line of this email.\n",
        codes=("592830",),
    ),
    "code-first-in-subject": Sample(
        subject="592830 is your Acme login code",
        text="Hi Jane,\n\nSomeone tried to sign in to your Acme account. If it was you, use the"
        " number in the subject line. If not, you can ignore this email.\n",
        codes=("592830",),
    ),
    "heading-explanation-big-code": Sample(
        subject="Confirm it's you",
        html="""<h2>Your verification code</h2>
<p>It expires in 10 minutes. Type it on the sign-in screen.</p>
<p><b>482913</b></p>
<p>Acme Inc., 500 Howard Street, San Francisco</p>""",
        codes=("482913",),
    ),
    "grouped-digits-html": Sample(
        subject="Verify your email",
        html="""<p>Your verification code is:</p>
<p><span style="font-size:32px;letter-spacing:6px">193 847</span></p>
<p>It expires in 10 minutes.</p>""",
        codes=("193 847",),
    ),
    "one-digit-per-cell": Sample(
        subject="Verify your email",
        html="""<p>Your verification code:</p><table><tr><td>4</td><td>8</td><td>2</td><td>9</td>
<td>1</td><td>3</td></tr></table><p>Expires in 10 minutes</p>""",
        codes=("482913",),
    ),
    "apple-id-code": Sample(
        subject="Verify your Apple ID email address",
        text="Your Apple ID code is: 482913\n\nEnter this verification code on your device to "
        "finish setting up your Apple ID.\n",
        codes=("482913",),
    ),
    "german-code": Sample(
        subject="Ihr Bestätigungscode",
        text="Hallo Jana,\n\nIhr Bestätigungscode lautet: 738291\n\n"
        "Der Code ist 10 Minuten gültig.\n",
        codes=("738291",),
    ),
    "spanish-code": Sample(
        subject="Código de verificación",
        text="Hola,\n\nTu código de verificación es 481920. Caduca en 10 minutos.\n",
        codes=("481920",),
    ),
    "french-code-nbsp": Sample(
        subject="Votre code de vérification",
        text="Bonjour,\n\nVotre code de vérification est\u00a0: 592017\n\n"
        "Il expire dans 10\u00a0minutes.\n",
        codes=("592017",),
    ),
    "pin-that-looks-like-a-year": Sample(
        subject="Your PIN", text="Your PIN: 2047\n\n(c) 2026 Example Inc.\n", codes=("2047",)
    ),
}


@pytest.mark.parametrize("sample", SAMPLES.values(), ids=SAMPLES.keys())
def test_extract_verification_realistic_samples(sample: Sample) -> None:
    result = extract_verification(subject=sample.subject, text=sample.text, html=sample.html)
    assert result == Verification(codes=list(sample.codes), links=list(sample.links))


# --- the contract ------------------------------------------------------------------------------


def test_extract_verification_returns_frozen_result_for_empty_message() -> None:
    result = extract_verification(subject="", text=None, html=None)
    assert result == Verification(codes=[], links=[])
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.codes = ["1"]  # type: ignore[misc]


def test_extract_verification_orders_codes_best_first_without_duplicates() -> None:
    text = "Your code is 482913.\n\nBackup code: 771199\n\nAgain, your code: 482 913\n"
    result = extract_text(text, subject="482913 is your code")
    assert result.codes == ["482913", "771199"]


def test_extract_verification_returns_codes_as_printed() -> None:
    assert extract_text("Your code is 482-913.").codes == ["482-913"]
    assert extract_text("Your code is 482 913.").codes == ["482 913"]
    assert extract_text("Please enter the following code:\nQXJM-TDWR\n").codes == ["QXJM-TDWR"]
    assert extract_text("Your login code: x7k2p9q").codes == ["x7k2p9q"]
    assert extract_text("Your verification code is below:\n\nx7k2p9q\n").codes == ["x7k2p9q"]


def test_extract_verification_unescapes_href_like_a_browser() -> None:
    # &amp; is decoded; "&param=" stays literal (HTML5 attribute rule), where the stdlib's
    # html.unescape would turn it into "¶m=".
    markup = (
        '<p>Confirm your account:</p><a href="https://x.example/confirm?a=1&amp;b=2'
        '&param=3&token=Ab12Cd34Ef56Gh78">Confirm</a>'
    )
    assert extract_html(markup, subject="Confirm").links == [
        "https://x.example/confirm?a=1&b=2&param=3&token=Ab12Cd34Ef56Gh78"
    ]


def test_extract_verification_reads_href_not_text_inside_other_attributes() -> None:
    markup = (
        "<p>Verify your account:</p>"
        "<a title='see href=https://evil.example/x?token=Ab12Cd34Ef56Gh78'"
        ' data-href="https://evil.example/y?token=Ab12Cd34Ef56Gh78"\n'
        '   HREF = "https://x.example/verify?token=Zz98Yy76Xx54Ww32">Verify</a>'
    )
    assert extract_html(markup, subject="Verify").links == [
        "https://x.example/verify?token=Zz98Yy76Xx54Ww32"
    ]


def test_extract_verification_stays_fast_on_huge_single_line_bodies() -> None:
    # Each body is one long line: quadratic regexes or per-candidate slicing of the line turn
    # these into minutes, where linear code needs well under a second.
    started = time.perf_counter()
    extract_text("a.b+c-" * 50_000)  # a long run with no "@" for the e-mail pattern
    extract_text("1 2 482913 " * 20_000)  # thousands of candidates on one line
    extract_html("<b><a href='https://x.io/?t=Ab12Cd34Ef56Gh78'>x " * 1_000 + "y " * 100_000)
    assert time.perf_counter() - started < 20


def test_extract_verification_orders_links_best_first_without_duplicates() -> None:
    markup = """<p>Reset your password with the button below.</p>
    <a href="https://x.example/reset?token=Ab12Cd34Ef56Gh78">Reset password</a>
    <p>Or sign in with this one-time link:
    <a href="https://x.example/login?token=Zz98Yy76Xx54Ww32">https://x.example/login?token=Zz98Yy76Xx54Ww32</a></p>"""
    result = extract_html(markup, subject="Reset your password")
    assert result.links[0] == "https://x.example/reset?token=Ab12Cd34Ef56Gh78"
    assert len(result.links) == len(set(result.links))


def test_extract_verification_text_url_in_parentheses_and_markdown_is_trimmed() -> None:
    text = (
        "Reset your password ( https://x.example/reset?token=Ab12Cd34Ef56Gh78 )\n"
        "Or follow [this link](https://x.example/reset?token=Ab12Cd34Ef56Gh78).\n"
    )
    assert extract_text(text, subject="Password reset").links == [
        "https://x.example/reset?token=Ab12Cd34Ef56Gh78"
    ]
