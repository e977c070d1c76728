"""parse_bounce: RFC 3464 reports as Postfix, Gmail, Exchange Online and Sendmail write them,
plain-text bounces from Exim, qmail, legacy Gmail and legacy Exchange, real bounces from the
fetched corpora, and messages that must not count as bounces (mail, out-of-office replies,
read receipts, abuse reports, forwarded bounces). Never raises, on anything."""

from __future__ import annotations

import base64
import random

import pytest

from inbox_mcp.mail.dsn import Bounce, parse_bounce
from tests.corpora import all_corpus_files, corpus_dir, corpus_files

OUR_ID = "<20240312101502.4f9a1c2e@mail.agents.example.com>"


def crlf(text: str) -> bytes:
    return text.lstrip("\n").replace("\r\n", "\n").replace("\n", "\r\n").encode()


ORIGINAL_HEADERS = f"""\
Return-Path: <support-bot@agents.example.com>
Received: from mail.agents.example.com (mail.agents.example.com [203.0.113.10])
\tby mx1.example.org (Postfix) with ESMTPS id 4TvQ0k1Zr5z9sWc
\tfor <bob@example.org>; Tue, 12 Mar 2024 10:15:03 +0000 (UTC)
From: Support Bot <support-bot@agents.example.com>
To: Bob <bob@example.org>
Subject: Your ticket #4411 was updated
Date: Tue, 12 Mar 2024 10:15:02 +0000
Message-ID: {OUR_ID}
MIME-Version: 1.0
Content-Type: text/plain; charset="utf-8"
Content-Transfer-Encoding: 7bit
"""

ORIGINAL = ORIGINAL_HEADERS + """
Hi Bob,

your ticket #4411 was updated. Reply to this message to add a comment.

-- Support
"""

POSTFIX = crlf(f"""
Return-Path: <>
Received: by mail.agents.example.com (Postfix)
\tid 4TvQ0m2x7Kz1xyz; Tue, 12 Mar 2024 10:15:04 +0000 (UTC)
Date: Tue, 12 Mar 2024 10:15:04 +0000 (UTC)
From: MAILER-DAEMON@mail.agents.example.com (Mail Delivery System)
Subject: Undelivered Mail Returned to Sender
To: support-bot@agents.example.com
Auto-Submitted: auto-replied
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status;
\tboundary="4TvQ0m2x7Kz1xyz.1710238504/mail.agents.example.com"
Content-Transfer-Encoding: 8bit
Message-Id: <20240312101504.4TvQ0m2x7Kz1xyz@mail.agents.example.com>

This is a MIME-encapsulated message.

--4TvQ0m2x7Kz1xyz.1710238504/mail.agents.example.com
Content-Description: Notification
Content-Type: text/plain; charset=utf-8
Content-Transfer-Encoding: 8bit

This is the mail system at host mail.agents.example.com.

I'm sorry to have to inform you that your message could not
be delivered to one or more recipients. It's attached below.

For further assistance, please send mail to postmaster.

If you do so, please include this problem report. You can
delete your own text from the attached returned message.

                   The mail system

<bob@example.org>: host mx1.example.org[198.51.100.25] said: 550 5.1.1
    <bob@example.org>: Recipient address rejected: User unknown in virtual
    mailbox table (in reply to RCPT TO command)

--4TvQ0m2x7Kz1xyz.1710238504/mail.agents.example.com
Content-Description: Delivery report
Content-Type: message/delivery-status

Reporting-MTA: dns; mail.agents.example.com
X-Postfix-Queue-ID: 4TvQ0m2x7Kz1xyz
X-Postfix-Sender: rfc822; support-bot@agents.example.com
Arrival-Date: Tue, 12 Mar 2024 10:15:02 +0000 (UTC)

Final-Recipient: rfc822; Bob@Example.org
Original-Recipient: rfc822;bob@example.org
Action: failed
Status: 5.1.1
Remote-MTA: dns; mx1.example.org
Diagnostic-Code: smtp; 550 5.1.1 <bob@example.org>: Recipient address rejected:
    User unknown in virtual mailbox table

--4TvQ0m2x7Kz1xyz.1710238504/mail.agents.example.com
Content-Description: Undelivered Message
Content-Type: message/rfc822
Content-Transfer-Encoding: 8bit

{ORIGINAL}
--4TvQ0m2x7Kz1xyz.1710238504/mail.agents.example.com--
""")

GMAIL = crlf(f"""
Delivered-To: support-bot@agents.example.com
Return-Path: <>
Received: by 2002:a05:6402:5d3:b0:568:9ba2:3c1 with SMTP id n19csp1136851edx;
        Tue, 12 Mar 2024 03:15:06 -0700 (PDT)
From: Mail Delivery Subsystem <mailer-daemon@googlemail.com>
To: support-bot@agents.example.com
Auto-Submitted: auto-replied
Subject: Delivery Status Notification (Failure)
References: {OUR_ID}
In-Reply-To: {OUR_ID}
X-Failed-Recipients: nobody.here@example.net
Message-ID: <65f02b4a.050a0220.9c1e3.0001.GMR@mx.google.com>
Date: Tue, 12 Mar 2024 03:15:06 -0700 (PDT)
MIME-Version: 1.0
Content-Type: multipart/report; boundary="0000000000003f4a6d06137a5b1e"; report-type=delivery-status

--0000000000003f4a6d06137a5b1e
Content-Type: multipart/related; boundary="0000000000003f4a7706137a5b2f"

--0000000000003f4a7706137a5b2f
Content-Type: text/html; charset="UTF-8"

<html><head><style>* {{ font-family:Roboto, "Helvetica Neue", Helvetica, Arial, sans-serif; }}</style></head>
<body><table cellpadding="0" cellspacing="0" class="email-wrapper" style="padding-top:32px;background-color:#ffffff;">
<tbody><tr><td><table cellpadding=0 cellspacing=0><tbody><tr><td style="max-width:560px;padding:24px 24px 32px;">
<img height="72" src="cid:icon.png" width="72"><h1>Address not found</h1>
<p>Your message wasn't delivered to <a style='color:#212121;text-decoration:none'><b>nobody.here@example.net</b></a>
because the address couldn't be found, or is unable to receive mail.</p>
<p>The response from the remote server was:</p>
<p style="font-family:monospace">550 5.1.1 The email account that you tried to reach does not exist.</p>
</td></tr></tbody></table></td></tr></tbody></table></body></html>

--0000000000003f4a7706137a5b2f
Content-Type: image/png; name="icon.png"
Content-Disposition: attachment; filename="icon.png"
Content-Transfer-Encoding: base64
Content-ID: <icon.png>

iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==
--0000000000003f4a7706137a5b2f--

--0000000000003f4a6d06137a5b1e
Content-Type: message/delivery-status

Reporting-MTA: dns; googlemail.com
Received-From-MTA: dns; support-bot@agents.example.com
Arrival-Date: Tue, 12 Mar 2024 03:15:05 -0700 (PDT)
X-Original-Message-ID: {OUR_ID}

Final-Recipient: rfc822; nobody.here@example.net
Action: failed
Status: 5.1.1
Remote-MTA: dns; mx.example.net. (198.51.100.7, the server for the domain example.net.)
Diagnostic-Code: smtp; 550-5.1.1 The email account that you tried to reach does not exist.
Last-Attempt-Date: Tue, 12 Mar 2024 03:15:06 -0700 (PDT)

--0000000000003f4a6d06137a5b1e
Content-Type: message/rfc822

{ORIGINAL.replace("bob@example.org", "nobody.here@example.net")}
--0000000000003f4a6d06137a5b1e--
""")

EXCHANGE_ONLINE = crlf(f"""
From: Microsoft Outlook <postmaster@contoso.onmicrosoft.com>
To: <support-bot@agents.example.com>
Date: Tue, 12 Mar 2024 10:15:09 +0000
Content-Type: multipart/report; report-type=delivery-status;
\tboundary="e8f2b1c6-5d3a-4b7e-9f0c-2a1d4e6b8c90"
X-MS-Exchange-Message-Is-Ndr:
Content-Language: en-US
Message-ID: <6c1b2a3d-8e9f-4a5b-b6c7-d8e9f0a1b2c3@BN8PR12MB3456.namprd12.prod.outlook.com>
In-Reply-To: {OUR_ID}
References: {OUR_ID}
Thread-Topic: Your ticket #4411 was updated
Subject: Undeliverable: Your ticket #4411 was updated
Auto-Submitted: auto-replied
MIME-Version: 1.0

--e8f2b1c6-5d3a-4b7e-9f0c-2a1d4e6b8c90
Content-Type: multipart/alternative; differences=Content-Type;
\tboundary="1f2e3d4c-5b6a-4978-8695-a4b3c2d1e0f9"

--1f2e3d4c-5b6a-4978-8695-a4b3c2d1e0f9
Content-Type: text/plain; charset="us-ascii"
Content-Transfer-Encoding: quoted-printable

Your message to carol@contoso.com couldn't be delivered.
carol wasn't found at contoso.com.
support-bot  Office 365  carol
Action Required                                             Recipient
Unknown To address

How to Fix It
The address may be misspelled or may not exist. Try one or more of the foll=
owing:

Diagnostic information for administrators:

Generating server: BN8PR12MB3456.namprd12.prod.outlook.com
carol@contoso.com
Remote server returned '550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipien=
t not found by SMTP address lookup'

Original message headers:

Received: from mail.agents.example.com (203.0.113.10) by BN8PR12MB3456.mail.protection.outlook.com
Message-ID: {OUR_ID}

--1f2e3d4c-5b6a-4978-8695-a4b3c2d1e0f9
Content-Type: text/html; charset="us-ascii"

<html><body><p>Your message to <a href="mailto:carol@contoso.com">carol@contoso.com</a> couldn't be delivered.</p></body></html>

--1f2e3d4c-5b6a-4978-8695-a4b3c2d1e0f9--

--e8f2b1c6-5d3a-4b7e-9f0c-2a1d4e6b8c90
Content-Type: message/delivery-status

Reporting-MTA: dns;BN8PR12MB3456.namprd12.prod.outlook.com
Received-From-MTA: dns;mail.agents.example.com
Arrival-Date: Tue, 12 Mar 2024 10:15:08 +0000

Original-Recipient: rfc822;carol@contoso.com
Final-Recipient: rfc822;carol@contoso.com
Action: failed
Status: 5.1.10
Diagnostic-Code: smtp;550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not found by SMTP address lookup

--e8f2b1c6-5d3a-4b7e-9f0c-2a1d4e6b8c90
Content-Type: text/rfc822-headers

{ORIGINAL_HEADERS.replace("bob@example.org", "carol@contoso.com")}
--e8f2b1c6-5d3a-4b7e-9f0c-2a1d4e6b8c90--
""")

EXIM = crlf(f"""
Return-path: <>
Envelope-to: support-bot@agents.example.com
Received: from Debian-exim by mx.hosting.example.net with local (Exim 4.96)
\tid 1rk0aB-00012X-2v
\tfor support-bot@agents.example.com; Tue, 12 Mar 2024 10:15:07 +0000
X-Failed-Recipients: dave@old-domain.example
Auto-Submitted: auto-replied
From: Mail Delivery System <Mailer-Daemon@mx.hosting.example.net>
To: support-bot@agents.example.com
References: {OUR_ID}
Subject: Mail delivery failed: returning message to sender
Message-Id: <E1rk0aB-00012X-2v@mx.hosting.example.net>
Date: Tue, 12 Mar 2024 10:15:07 +0000

This message was created automatically by mail delivery software.

A message that you sent could not be delivered to one or more of its
recipients. This is a permanent error. The following address(es) failed:

  dave@old-domain.example
    host mx.old-domain.example [192.0.2.44]
    SMTP error from remote mail server after RCPT TO:<dave@old-domain.example>:
    550 5.1.1 <dave@old-domain.example>: Recipient address rejected: User unknown

------ This is a copy of the message, including all the headers. ------

{ORIGINAL.replace("bob@example.org", "dave@old-domain.example")}
""")

QMAIL = crlf(f"""
Return-Path: <>
From: MAILER-DAEMON@mx.example.net
To: support-bot@agents.example.com
Subject: failure notice
Date: 12 Mar 2024 10:15:10 -0000
Message-ID: <20240312101510.27341.qmail@mx.example.net>

Hi. This is the qmail-send program at mx.example.net.
I'm afraid I wasn't able to deliver your message to the following addresses.
This is a permanent error; I've given up. Sorry it didn't work out.

<erin@example.net>:
192.0.2.7 does not like recipient.
Remote host said: 550 5.1.1 <erin@example.net>... User unknown
Giving up on 192.0.2.7.

--- Below this line is a copy of the message.

{ORIGINAL.replace("bob@example.org", "erin@example.net")}
""")

GMAIL_LEGACY = crlf("""
From: Mail Delivery Subsystem <mailer-daemon@googlemail.com>
To: support-bot@agents.example.com
Subject: Delivery Status Notification (Failure)
Date: Mon, 3 Feb 2014 09:12:44 +0000
Message-ID: <047d7b5d9a4c6f0f5e04f17d6a21@google.com>
Content-Type: text/plain; charset=ISO-8859-1

Delivery to the following recipient failed permanently:

     frank@example.com

Technical details of permanent failure:
Google tried to deliver your message, but it was rejected by the server for the recipient domain example.com by mx.example.com. [192.0.2.80].

The error that the other server returned was:
550 5.1.1 <frank@example.com>: Recipient address rejected: User unknown in local recipient table

----- Original message -----

DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d=agents.example.com; s=20130820
MIME-Version: 1.0
X-Received: by 10.66.149.4 with SMTP id tw4mr29170097pab.125.1391418764146;
Date: Mon, 3 Feb 2014 09:12:43 +0000
Message-ID: <CAGx=old-gmail-id-4411@mail.gmail.com>
Subject: Your ticket #4411 was updated
From: Support Bot <support-bot@agents.example.com>
To: frank@example.com
Content-Type: text/plain; charset=ISO-8859-1

Hi Frank, your ticket #4411 was updated.
""")

EXCHANGE_LEGACY = crlf(f"""
From: System Administrator <postmaster@contoso.com>
To: Support Bot <support-bot@agents.example.com>
Subject: Undeliverable: Your ticket #4411 was updated
Date: Tue, 12 Mar 2024 10:15:11 +0000
Message-ID: <A1B2C3D4E5F6@EXCH01.contoso.local>
In-Reply-To: {OUR_ID}
References: <earlier-thread-message@agents.example.com> {OUR_ID}
MIME-Version: 1.0
Content-Type: text/plain; charset="us-ascii"

Delivery has failed to these recipients or groups:

Grace Hopper (grace@contoso.com)
The e-mail address you entered couldn't be found. Please check the recipient's e-mail address and try to resend the message. If the problem continues, please contact your helpdesk.

Diagnostic information for administrators:

Generating server: EXCH01.contoso.local

grace@contoso.com
#550 5.1.1 RESOLVER.ADR.RecipNotFound; not found ##
""")

DELAYED = crlf(f"""
Return-Path: <>
From: MAILER-DAEMON@mail.agents.example.com (Mail Delivery System)
Subject: Delayed Mail (still being retried)
To: support-bot@agents.example.com
Auto-Submitted: auto-replied
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status;
\tboundary="7A1C2B3D4E.1710252904/mail.agents.example.com"
Message-Id: <20240312141504.7A1C2B3D4E@mail.agents.example.com>

--7A1C2B3D4E.1710252904/mail.agents.example.com
Content-Description: Notification
Content-Type: text/plain; charset=us-ascii

This is the mail system at host mail.agents.example.com.

####################################################################
# THIS IS A WARNING ONLY.  YOU DO NOT NEED TO RESEND YOUR MESSAGE. #
####################################################################

Your message could not be delivered for more than 4 hour(s).
It will be retried until it is 5 day(s) old.

<heidi@slow.example.com>: connect to mx.slow.example.com[192.0.2.90]:25:
    Connection timed out

--7A1C2B3D4E.1710252904/mail.agents.example.com
Content-Description: Delivery report
Content-Type: message/delivery-status

Reporting-MTA: dns; mail.agents.example.com
X-Postfix-Queue-ID: 7A1C2B3D4E
Arrival-Date: Tue, 12 Mar 2024 10:15:02 +0000 (UTC)

Final-Recipient: rfc822; heidi@slow.example.com
Original-Recipient: rfc822;heidi@slow.example.com
Action: delayed
Status: 4.4.1
Diagnostic-Code: X-Postfix; connect to mx.slow.example.com[192.0.2.90]:25:
    Connection timed out
Will-Retry-Until: Sun, 17 Mar 2024 10:15:02 +0000 (UTC)

--7A1C2B3D4E.1710252904/mail.agents.example.com
Content-Description: Undelivered Message Headers
Content-Type: text/rfc822-headers

{ORIGINAL_HEADERS.replace("bob@example.org", "heidi@slow.example.com")}
--7A1C2B3D4E.1710252904/mail.agents.example.com--
""")


def report(blocks: str, *, report_type: str = "delivery-status", dsn_headers: str = "", returned: str = "") -> bytes:
    returned_part = f"--B\nContent-Type: text/rfc822-headers\n\n{returned}\n" if returned else ""
    return crlf(f"""
From: MAILER-DAEMON@mx.example.com
To: support-bot@agents.example.com
Subject: Delivery report
MIME-Version: 1.0
Content-Type: multipart/report; report-type={report_type}; boundary="B"

--B
Content-Type: text/plain

See the report.

--B
Content-Type: message/delivery-status
{dsn_headers}
{blocks}
{returned_part}--B--
""")


# --- bounces -----------------------------------------------------------------------------------


def test_postfix_dsn() -> None:
    assert parse_bounce(POSTFIX) == Bounce(
        original_message_ids=[OUR_ID], recipients=["bob@example.org"], action="failed", status="5.1.1", permanent=True
    )


def test_gmail_dsn() -> None:
    assert parse_bounce(GMAIL) == Bounce(
        original_message_ids=[OUR_ID], recipients=["nobody.here@example.net"], action="failed", status="5.1.1", permanent=True
    )


def test_exchange_online_ndr() -> None:
    assert parse_bounce(EXCHANGE_ONLINE) == Bounce(
        original_message_ids=[OUR_ID], recipients=["carol@contoso.com"], action="failed", status="5.1.10", permanent=True
    )


def test_exim_plain_bounce() -> None:
    assert parse_bounce(EXIM) == Bounce(
        original_message_ids=[OUR_ID], recipients=["dave@old-domain.example"], action="failed", status="5.1.1", permanent=True
    )


def test_exim_plain_bounce_without_x_failed_recipients_reads_the_prose() -> None:
    raw = EXIM.replace(b"X-Failed-Recipients: dave@old-domain.example\r\n", b"")
    bounce = parse_bounce(raw)
    assert bounce is not None
    assert bounce.recipients == ["dave@old-domain.example"]
    assert bounce.original_message_ids == [OUR_ID]


def test_qmail_failure_notice() -> None:
    assert parse_bounce(QMAIL) == Bounce(
        original_message_ids=[OUR_ID], recipients=["erin@example.net"], action="failed", status="5.1.1", permanent=True
    )


def test_legacy_gmail_plain_text_bounce() -> None:
    assert parse_bounce(GMAIL_LEGACY) == Bounce(
        original_message_ids=["<CAGx=old-gmail-id-4411@mail.gmail.com>"],
        recipients=["frank@example.com"],
        action="failed",
        status="5.1.1",
        permanent=True,
    )


def test_legacy_exchange_ndr_uses_in_reply_to() -> None:
    bounce = parse_bounce(EXCHANGE_LEGACY)
    assert bounce == Bounce(
        original_message_ids=[OUR_ID], recipients=["grace@contoso.com"], action="failed", status="5.1.1", permanent=True
    )


def test_legacy_exchange_ndr_falls_back_to_last_reference() -> None:
    raw = EXCHANGE_LEGACY.replace(f"In-Reply-To: {OUR_ID}\r\n".encode(), b"")
    bounce = parse_bounce(raw)
    assert bounce is not None and bounce.original_message_ids == [OUR_ID]


def test_delayed_dsn_is_not_permanent() -> None:
    assert parse_bounce(DELAYED) == Bounce(
        original_message_ids=[OUR_ID], recipients=["heidi@slow.example.com"], action="delayed", status="4.4.1", permanent=False
    )


def test_exim_delay_warning_is_not_permanent() -> None:
    raw = crlf(f"""
From: Mail Delivery System <Mailer-Daemon@mx.hosting.example.net>
To: support-bot@agents.example.com
Subject: Warning: message 1rk0aB-00012X-2v delayed 24 hours
X-Failed-Recipients: ivan@slow.example.com
Auto-Submitted: auto-replied

This message was created automatically by mail delivery software.
A message that you sent has not yet been delivered to one or more of its
recipients after more than 24 hours on the queue on mx.hosting.example.net.

  ivan@slow.example.com
    Delay reason: SMTP error from remote mail server after RCPT TO:<ivan@slow.example.com>:
    451 4.7.1 Greylisted, try again later

------ This is a copy of the message's headers. ------

{ORIGINAL_HEADERS}
""")
    assert parse_bounce(raw) == Bounce(
        original_message_ids=[OUR_ID], recipients=["ivan@slow.example.com"], action="delayed", status="4.7.1", permanent=False
    )


def test_failed_wins_over_delayed_and_delivered() -> None:
    raw = report(
        "Reporting-MTA: dns; mx.example.com\n\n"
        "Final-Recipient: rfc822; ok@example.org\nAction: delivered\nStatus: 2.0.0\n\n"
        "Final-Recipient: rfc822; slow@example.org\nAction: delayed\nStatus: 4.4.7\n\n"
        "Final-Recipient: rfc822; gone@example.org\nAction: failed\nStatus: 5.2.1\n\n"
        "Final-Recipient: rfc822; full@example.org\nAction: failed\nStatus: 5.2.2\n",
        returned=f"From: a@b.example\nMessage-ID: {OUR_ID}\n",
    )
    assert parse_bounce(raw) == Bounce(
        original_message_ids=[OUR_ID],
        recipients=["gone@example.org", "full@example.org"],
        action="failed",
        status="5.2.1",
        permanent=True,
    )


def test_failed_after_retries_with_4xx_status_is_permanent() -> None:
    raw = report("Final-Recipient: rfc822; slow@example.org\nAction: failed\nStatus: 4.4.7\n")
    bounce = parse_bounce(raw)
    assert bounce is not None and (bounce.action, bounce.status, bounce.permanent) == ("failed", "4.4.7", True)


def test_success_dsn_is_not_a_bounce() -> None:
    raw = report("Final-Recipient: rfc822; ok@example.org\nAction: delivered\nStatus: 2.0.0\n")
    assert parse_bounce(raw) is None
    relayed = report("Final-Recipient: rfc822; ok@example.org\nAction: relayed\nStatus: 2.0.0\n")
    assert parse_bounce(relayed) is None


def test_missing_action_is_inferred_from_status() -> None:
    bounce = parse_bounce(report("Final-Recipient: rfc822; x@example.org\nStatus: 5.7.1\n"))
    assert bounce is not None and (bounce.action, bounce.permanent) == ("failed", True)


def test_status_only_in_diagnostic_code() -> None:
    raw = report("Final-Recipient: rfc822; x@example.org\nAction: failed\nDiagnostic-Code: smtp; 552 5.2.2 Mailbox full\n")
    bounce = parse_bounce(raw)
    assert bounce is not None and bounce.status == "5.2.2"


def test_base64_encoded_delivery_status_part() -> None:
    fields = b"Reporting-MTA: dns; mx.example.com\r\n\r\nFinal-Recipient: rfc822; judy@example.org\r\nAction: failed\r\nStatus: 5.1.1\r\n"
    encoded = base64.encodebytes(fields).decode()
    raw = report(encoded, dsn_headers="Content-Transfer-Encoding: base64\n", returned=f"Message-ID: {OUR_ID}\n")
    assert parse_bounce(raw) == Bounce(
        original_message_ids=[OUR_ID], recipients=["judy@example.org"], action="failed", status="5.1.1", permanent=True
    )


def test_utf8_recipient_type_and_bracketed_addresses() -> None:
    raw = report(
        "Original-Recipient: utf-8; <Kim@Example.org>\nFinal-Recipient: rfc822; kim@example.org\nAction: failed\nStatus: 5.1.1\n",
        report_type="delivery-status",
    )
    bounce = parse_bounce(raw)
    assert bounce is not None and bounce.recipients == ["kim@example.org"]


def test_report_without_recipient_addresses_uses_x_failed_recipients() -> None:
    raw = report("Action: failed\nStatus: 5.0.0\n").replace(
        b"Subject: Delivery report\r\n", b"Subject: Delivery report\r\nX-Failed-Recipients: Lee@Example.org, mo@example.org\r\n"
    )
    bounce = parse_bounce(raw)
    assert bounce is not None and bounce.recipients == ["lee@example.org", "mo@example.org"]


def test_message_id_without_brackets_in_quoted_headers() -> None:
    raw = QMAIL.replace(f"Message-ID: {OUR_ID}".encode(), f"Message-Id:\r\n {OUR_ID.strip('<>')}".encode())
    bounce = parse_bounce(raw)
    assert bounce is not None and bounce.original_message_ids == [OUR_ID]


def test_prose_never_lists_the_bounce_addressee_as_failed() -> None:
    raw = QMAIL.replace(b"<erin@example.net>:\r\n", b"<erin@example.net>:\r\n  support-bot@agents.example.com\r\n")
    bounce = parse_bounce(raw)
    assert bounce is not None and bounce.recipients == ["erin@example.net"]


def test_localised_exchange_subject() -> None:
    raw = EXCHANGE_LEGACY.replace(b"Subject: Undeliverable:", b"Subject: Unzustellbar:")
    assert parse_bounce(raw) is not None


# --- real bounces from the fetched corpora -----------------------------------------------------


def test_sendmail_dsn_with_broken_boundary_from_cpython_corpus() -> None:
    # msg_25: a real Sendmail DSN whose boundary parameter is cut off, so MIME parsing sees
    # one text body; the delivery-status fields and the returned headers are still read.
    raw = (corpus_dir("cpython") / "msg_25.txt").read_bytes()
    assert parse_bounce(raw) == Bounce(
        original_message_ids=["<01040616033903.00962@server>"],
        recipients=["scoffman@wellpartner.com"],
        action="failed",
        status="5.4.6",
        permanent=True,
    )


def test_sun_internet_mail_server_dsn_from_cpython_corpus() -> None:
    raw = (corpus_dir("cpython") / "msg_16.txt").read_bytes()
    bounce = parse_bounce(raw)
    assert bounce is not None
    assert bounce.recipients == ["jangel1@cougar.noc.ucla.edu"]
    assert bounce.original_message_ids == ["<002001c144a6$8752e060$56104586@oxy.edu>"]
    assert bounce.permanent


def test_amavis_multi_recipient_dsn_from_cpython_corpus() -> None:
    raw = (corpus_dir("cpython") / "msg_43.txt").read_bytes()
    bounce = parse_bounce(raw)
    assert bounce is not None
    assert (bounce.action, bounce.status, bounce.permanent) == ("failed", "5.7.1", True)
    assert len(bounce.recipients) > 10 and all(r.endswith("@dot.ca.gov") for r in bounce.recipients)
    # The worm that sent the original forged the same Message-ID as the report's own.
    assert bounce.original_message_ids == ["<edab.7804f5cb8070@python.org>"]


def test_mailsite_dsn_from_mail_parser_corpus() -> None:
    raw = (corpus_dir("mail-parser") / "mail_malformed_2").read_bytes()
    bounce = parse_bounce(raw)
    assert bounce is not None
    assert bounce.recipients == ["abh@netpar.com.br"]
    assert bounce.original_message_ids == ["<004801d1fc84$01c934ac$b247f0b7$@infospacemail.com>"]


# --- not bounces -------------------------------------------------------------------------------

ORDINARY = crlf(f"""
From: Bob <bob@example.org>
To: support-bot@agents.example.com
Subject: Re: Your ticket #4411 was updated
In-Reply-To: {OUR_ID}
References: {OUR_ID}
Message-ID: <CAB0b-reply-1@mail.example.org>
Content-Type: text/plain; charset=utf-8

Thanks! The delivery failed last time, but this one arrived.
Mail delivery failed messages are annoying.

> Message-ID: {OUR_ID}
""")

OUT_OF_OFFICE = crlf(f"""
From: Bob <bob@example.org>
To: support-bot@agents.example.com
Subject: Automatic reply: Your ticket #4411 was updated
Auto-Submitted: auto-replied
X-Auto-Response-Suppress: All
In-Reply-To: {OUR_ID}
Content-Type: text/plain; charset=utf-8

I am out of the office until March 20 with limited access to email.
For urgent matters contact postmaster@example.org.
""")

READ_RECEIPT = crlf(f"""
From: Bob <bob@example.org>
To: support-bot@agents.example.com
Subject: Read: Your ticket #4411 was updated
MIME-Version: 1.0
Content-Type: multipart/report; report-type=disposition-notification; boundary="RR"

--RR
Content-Type: text/plain

The message sent on Tue, 12 Mar 2024 to bob@example.org was displayed.

--RR
Content-Type: message/disposition-notification

Reporting-UA: mail.example.org; Thunderbird 115
Final-Recipient: rfc822;bob@example.org
Original-Message-ID: {OUR_ID}
Disposition: manual-action/MDN-sent-manually; displayed

--RR--
""")

ABUSE_REPORT = crlf(f"""
From: Abuse Desk <abuse@isp.example>
To: postmaster@agents.example.com
Subject: Abuse report
MIME-Version: 1.0
Content-Type: multipart/report; report-type=feedback-report; boundary="AR"

--AR
Content-Type: text/plain

This is an email abuse report.

--AR
Content-Type: message/feedback-report

Feedback-Type: abuse
User-Agent: SomeGenerator/1.0
Version: 1

--AR
Content-Type: text/rfc822-headers

Message-ID: {OUR_ID}

--AR--
""")


def forwarded_bounce() -> bytes:
    return crlf(
        """
From: Alice <alice@example.org>
To: support-bot@agents.example.com
Subject: Fwd: Undelivered Mail Returned to Sender
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="FW"

--FW
Content-Type: text/plain

FYI, your mail to Bob bounced.

--FW
Content-Type: message/rfc822
Content-Disposition: attachment

"""
    ) + POSTFIX + crlf("\n--FW--\n")


@pytest.mark.parametrize(
    "raw",
    [
        ORDINARY,
        OUT_OF_OFFICE,
        READ_RECEIPT,
        ABUSE_REPORT,
        forwarded_bounce(),
        # A person's subject that looks like a bounce: no daemon sender, no bounce headers.
        ORDINARY.replace(b"Subject: Re: Your ticket", b"Subject: Undeliverable: my ticket"),
        # A courier's automated notice: auto-generated, but about a parcel.
        ORDINARY.replace(b"Subject: Re: Your ticket #4411 was updated", b"Subject: Delivery notification: parcel arrives Tuesday\r\nAuto-Submitted: auto-generated"),
        # A daemon sender without a bounce subject (a postmaster writing by hand).
        ORDINARY.replace(b"From: Bob <bob@example.org>", b"From: postmaster@example.org"),
        b"",
        b"\x00\xff\xfe garbage",
        b"Subject: hi\r\n\r\nbody",
    ],
    ids=[
        "ordinary", "out-of-office", "read-receipt", "abuse-report", "forwarded-bounce", "human-subject",
        "courier-notice", "postmaster-human", "empty", "garbage", "minimal",
    ],
)
def test_not_bounces(raw: bytes) -> None:
    assert parse_bounce(raw) is None


# --- never raises ------------------------------------------------------------------------------


def test_never_raises_on_enmime_corpus() -> None:
    files = corpus_files("enmime")
    assert files
    for path in files:
        parse_bounce(path.read_bytes())


def test_never_raises_on_all_fetched_corpora_and_finds_only_real_bounces() -> None:
    bounces = {path.name for path in all_corpus_files() if parse_bounce(path.read_bytes()) is not None}
    # Every hit is a delivery report (msg_05 is CPython's skeleton multipart/report).
    assert bounces == {"msg_05.txt", "msg_16.txt", "msg_25.txt", "msg_43.txt", "mail_malformed_2"}


INSERTS = [b"\r\n\r\n", b"--", b"Content-Type: message/delivery-status\r\n", b"=?utf-8?b?", b"\x00"]


def test_never_raises_on_mangled_bounces() -> None:
    rng = random.Random(7)
    samples = [POSTFIX, GMAIL, EXCHANGE_ONLINE, EXIM, QMAIL, DELAYED]
    for _ in range(400):
        data = bytearray(rng.choice(samples))
        for _ in range(rng.randint(1, 40)):
            op = rng.random()
            pos = rng.randrange(len(data))
            if op < 0.4:
                data[pos] = rng.randrange(256)
            elif op < 0.7:
                del data[pos : pos + rng.randint(1, 200)]
            else:
                data[pos:pos] = rng.choice(INSERTS)
        result = parse_bounce(bytes(data))
        assert result is None or isinstance(result, Bounce)
