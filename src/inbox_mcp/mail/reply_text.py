"""The new text of a reply: quoted history, forwarded content and signatures removed.

Agents read threads; every reply repeating the whole thread wastes their context and invites
them to act on old text. This is a line classifier with rules drawn from how mail clients
write replies (Gmail, Outlook, Apple Mail, Thunderbird, mobile clients, in several languages).
talon (Mailgun) does the same job but pulls in scikit-learn, numpy, scipy and lxml for its
signature classifier and is no longer maintained, so the rules live here.

Rules, in order:
1. A hard separator ends the new text: "-----Original Message-----", a forwarded-message
   banner, an Outlook header block ("From: … Sent: … To: … Subject:"), or an attribution
   line ("On <date>, X wrote:") that is followed by unquoted text.
2. Quote blocks (">" lines) are removed when they lead, trail, or follow an attribution,
   together with that attribution. Quotes interleaved with answers (an inline reply) are kept:
   the answers mean nothing without them.
3. A signature ("-- " line) and mobile footers ("Sent from my iPhone") are removed.
4. If nothing is left, the whole text is returned: the message had no new text to isolate.
"""

from __future__ import annotations

import re

_QUOTE = re.compile(r"^\s*>")

# "On <date>, <person> wrote:" ends in one of these words, in many languages.
_ATTRIBUTION_END = re.compile(
    r"(wrote|writes|sent|a écrit|a ecrit|schrieb|schreef|geschreven|verzond|escribió|escribio|"
    r"ha scritto|scrisse|escreveu|napisał|napisal|skrev|kirjoitti|написал|написала|написал\(а\)|"
    r"írta|napsal|napísal|yazdı|έγραψε|寫道|写道|が書きました|작성|đã viết|kirjutas|rašė|rakstīja)"
    r"[\s:：-]*$",
    re.IGNORECASE,
)
_ATTRIBUTION_START = re.compile(
    r"^\s*-*\s*>?\s*(On|Le|Am|El|Il|Il giorno|Em|Op|W dniu|Dnia|Den|På|Dne|Vào|Pada|Στις|В|Kl\.)\s",
    re.IGNORECASE,
)
_DATEISH = re.compile(r"\d{1,2}:\d{2}|\b\d{4}\b|\d{1,4}[./-]\d{1,2}[./-]\d{1,4}")
_POLYMAIL = re.compile(r"^\s*On\s[^\n]*\d[^\n]*\n\s*\n<\s*\nmailto:[^\n]*\n>\s*wrote:", re.IGNORECASE)
_ENDS_WITH_ADDRESS_COLON = re.compile(r"([>\])]|@\S+)\s*[:：]\s*$")
# "---- John Smith wrote ----" (Android)
_DASHED_WROTE = re.compile(r"^\s*-{2,}.*\bwrote\b.*-{2,}\s*$", re.IGNORECASE)
# Text and an English attribution on one line: "Thanks! On Mon, Apr 2, 2012 at 3:59 PM, Bob wrote:"
_INLINE_ATTRIBUTION = re.compile(r"^(?P<pre>\S.*?)\s*(?P<attr>-*\s*\bOn\s+\S.*\b(?:wrote|sent)\s*:?)\s*$")

_ORIGINAL_MESSAGE = re.compile(
    r"^\s*-{2,}\s*(Original Message|Reply Message|Ursprüngliche Nachricht|Antwort Nachricht|"
    r"Oprindelig meddelelse|Message d'origine|Mensaje original|Messaggio originale|"
    r"Oorspronkelijk bericht|Originalmeddelande|Opprinnelig melding|Alkuperäinen viesti|"
    r"Wiadomość oryginalna|Исходное сообщение|Původní zpráva|Mensagem original|原始邮件|元のメッセージ)"
    r"\s*-*\s*$",
    re.IGNORECASE,
)
_FORWARDED = re.compile(
    r"^\s*(-{2,}\s*(Forwarded message|Forwarded Message|Weitergeleitete Nachricht|Message transféré|"
    r"Mensaje reenviado|Messaggio inoltrato|Doorgestuurd bericht|Vidarebefordrat meddelande|"
    r"Videresendt meddelelse|Mensagem encaminhada|Пересылаемое сообщение|转发的邮件)\s*-*|"
    r"Begin forwarded message:|Anfang der weitergeleiteten Nachricht:|Début du message réexpédié :?)\s*$",
    re.IGNORECASE,
)

# Outlook-style header blocks: "From: …" (or "*From:* …", "De : …") and friends.
_FROM_KEYS = (
    r"From|Von|De|Van|Fra|Från|Da|Od|От|Lähettäjä|Feladó|Từ|寄件者|发件人|差出人|Expéditeur|Remitente"
)
_OTHER_KEYS = (
    r"Sent|Date|To|Cc|Subject|Gesendet|Datum|An|Betreff|Envoyé|À|A|Objet|Enviado|Fecha|Para|Asunto|"
    r"Inviato|Data|Oggetto|Verzonden|Aan|Onderwerp|Skickat|Till|Ämne|Sendt|Til|Emne|Wysłano|Temat|Do|"
    r"Отправлено|Кому|Тема|Дата|Lähetetty|Vastaanottaja|Aihe|Enviada|Assunto|Cc|Kopie|送信日時|宛先|件名|"
    r"发送时间|收件人|主题"
)
_HEADER_LINE = re.compile(
    rf"^[\s*_]*(?P<key>{_FROM_KEYS}|{_OTHER_KEYS})[\s*_]*[:：][\s*_]*(?P<value>.*)$", re.IGNORECASE
)
_FROM_LINE = re.compile(rf"^[\s*_]*({_FROM_KEYS})[\s*_]*[:：]", re.IGNORECASE)
_DATE_KEY = re.compile(r"^[\s*_]*(Date|Sent|Datum|Gesendet|Envoyé|Enviado|Skickat|Sendt)\b", re.IGNORECASE)
# "________________________________" before Outlook headers; "* * *" is an <hr> after html_to_text.
_RULE_LINE = re.compile(r"^\s*([_=-]{3,}|(\*\s*){3,})\s*$")

_SIGNATURE = re.compile(r"^-- ?\s*$")  # RFC 3676 "-- ", and "--" once trailing spaces are trimmed
_MOBILE_FOOTER = re.compile(
    r"^\s*(Sent from my \w[\w -]{0,30}|Sent from (Outlook|Mail|Yahoo Mail|Samsung Mobile|Gmail|AOL|"
    r"ProtonMail|Proton Mail|my mobile device|my phone)\b.{0,60}|Sent with (Sparrow|Spark|Airmail)\b.{0,60}|"
    r"Get Outlook for (iOS|Android)\b.{0,20}|Sent via (BlackBerry|Superhuman|the Samsung)\b.{0,40}|Sent from Acompli|"
    r"Envoyé de mon (iPhone|iPad|appareil mobile|smartphone).{0,20}|"
    r"Von meinem (iPhone|iPad|Smartphone) gesendet.{0,20}|"
    r"Enviado desde mi (iPhone|iPad|smartphone|móvil|celular).{0,20}|Inviato da (iPhone|iPad|smartphone).{0,20}|"
    r"Verzonden met mijn (iPhone|iPad).{0,20}|Skickat från min (iPhone|iPad).{0,20}|"
    r"Отправлено с (iPhone|iPad|моего).{0,30})\s*$",
    re.IGNORECASE,
)
_MAX_LINES = 5000  # enough for any reply; stops pathological inputs from costing seconds
# Separators and attributions are short; capping the lines the backtracking patterns see keeps
# a hostile 100 kB line from costing seconds.
_MAX_SEPARATOR_LINE = 1000
_ENDS_WROTE = re.compile(r"\b(?:wrote|sent)[\s:]*$", re.IGNORECASE)


def _split_inline_attribution(lines: list[str]) -> list[str]:
    out: list[str] = []
    for line in lines:
        m = None
        if len(line) <= _MAX_SEPARATOR_LINE and _ENDS_WROTE.search(line) and not _QUOTE.match(line):
            m = _INLINE_ATTRIBUTION.match(line)
        if m and _DATEISH.search(m.group("attr")) and not _ATTRIBUTION_START.match(line):
            out.append(m.group("pre").rstrip("-").rstrip())
            out.append(m.group("attr").lstrip("-").strip())
        else:
            out.append(line)
    return out


def _is_attribution(text: str, strict: bool = False) -> bool:
    """Whether ``text`` reads like "On <date>, <person> wrote:".

    ``strict`` is for an attribution with unquoted text below it, where a mistake would cut
    new text: then it must start like one ("On", "Le", "Am"...) or name an address.
    """
    if len(text) > 400 or _QUOTE.match(text):
        return False
    starts = bool(_ATTRIBUTION_START.match(text))
    end = _ATTRIBUTION_END.search(text)
    if end:
        has_colon = ":" in end.group(0) or "：" in end.group(0)
        evidence = starts or "@" in text
        if strict or not has_colon:
            return evidence and (starts or bool(_DATEISH.search(text)))
        return evidence or bool(_DATEISH.search(text))
    # "2014-10-17 11:28 GMT+03:00 Bob <bob@example.com>:" and similar: a date, an address, a colon.
    return bool(_DATEISH.search(text)) and "@" in text and bool(_ENDS_WITH_ADDRESS_COLON.search(text))


def _attribution_at(lines: list[str], end: int, strict: bool = False) -> int | None:
    """Start index of an attribution ending at line ``end`` (at most 3 lines), else None."""
    # Longest first: "On <date>, X <\nx@example.com> wrote:" must not leave its first line behind.
    for start in range(max(0, end - 2), end + 1):
        window = lines[start : end + 1]
        if any(not x.strip() for x in window) or any(_QUOTE.match(x) for x in window[:-1]):
            continue
        # A multi-line attribution must begin like one, so ordinary text above it is not eaten.
        if start < end and not (_ATTRIBUTION_START.match(lines[start]) or _DATEISH.match(lines[start].strip())):
            continue
        if _is_attribution(" ".join(x.strip() for x in window), strict):
            return start
    return None


def _polymail_attribution_at(lines: list[str], i: int) -> bool:
    # Polymail: "On <date> John Smith\n\n<\nmailto:John Smith <john@example.com>\n> wrote:"
    return bool(_POLYMAIL.match("\n".join(lines[i : i + 5])))


def _header_block_at(lines: list[str], i: int) -> bool:
    """Whether an Outlook-style header block ("From: … Sent: … To: …") starts at line i."""
    first = _HEADER_LINE.match(lines[i])
    if not first:
        return False
    if _FROM_LINE.match(lines[i]) and ("@" in first.group("value") or "mailto:" in first.group("value")):
        return True
    headers, gap = 1, 0
    for line in lines[i + 1 : i + 10]:
        if not line.strip() or len(line) > _MAX_SEPARATOR_LINE:
            break
        if _HEADER_LINE.match(line):
            headers, gap = headers + 1, 0
        else:
            gap += 1  # a wrapped value, e.g. "[mailto:\n bob@example.com]"
            if gap > 1:
                break
    block = [x for x in lines[i : i + 10] if len(x) <= _MAX_SEPARATOR_LINE]
    return headers >= 2 and any(_FROM_LINE.match(x) or _DATE_KEY.match(x) for x in block)


def _looks_like_bare_attribution(line: str) -> bool:
    # "2011/4/7 Nathan Ivanova <support@example.com>" right above a quote: Gmail in some
    # locales writes a date and the sender with no "wrote:" at all.
    stripped = line.strip()
    return len(stripped) < 200 and "@" in stripped and bool(_DATEISH.match(stripped))


def _is_continuation(line: str) -> bool:
    # A long link wrapped out of a quote line ("> see (http://x/a\n_nonce=1)") is still quote.
    stripped = line.strip()
    if stripped.startswith(("http", "(http", "<http", "[http")):
        return True
    return len(stripped.split()) <= 1 and not stripped[:1].isalpha()


def _hard_cut(lines: list[str]) -> int:
    """Index of the first line of history that everything after belongs to; len(lines) if none."""
    for i, line in enumerate(lines):
        if _QUOTE.match(line) or len(line) > _MAX_SEPARATOR_LINE:
            continue
        if _ORIGINAL_MESSAGE.match(line) or _FORWARDED.match(line) or _DASHED_WROTE.match(line):
            return i
        if _header_block_at(lines, i) or _polymail_attribution_at(lines, i):
            return i
        start = _attribution_at(lines, i, strict=True)
        if start is not None:
            following = next((x for x in lines[i + 1 :] if x.strip()), None)
            if following is not None and not _QUOTE.match(following):
                return start  # an attribution over unquoted history (Outlook, mobile clients)
    return len(lines)


def _remove_quotes(lines: list[str]) -> list[str]:
    # Regions: maximal runs of quote lines, joined across blank and continuation lines.
    regions: list[tuple[int, int]] = []
    i = 0
    while i < len(lines):
        if not _QUOTE.match(lines[i]):
            i += 1
            continue
        start = end = i
        j = i + 1
        while j < len(lines):
            if _QUOTE.match(lines[j]):
                end = j
            elif lines[j].strip() and not _is_continuation(lines[j]):
                break
            j += 1
        regions.append((start, end))
        i = end + 1
    if not regions:
        return lines

    # Prefix counts of substantive (non-quote, non-blank, non-continuation) lines, so each
    # region asks "is there text before / after me" in O(1).
    counts = [0]
    for line in lines:
        counts.append(counts[-1] + (1 if line.strip() and not _QUOTE.match(line) and not _is_continuation(line) else 0))
    remove = [False] * len(lines)
    has_text_before = [counts[s] > 0 for s, _ in regions]
    has_text_after = [counts[-1] - counts[e + 1] > 0 for _, e in regions]
    inline_reply = len(regions) > 1 and any(b and a for b, a in zip(has_text_before, has_text_after))
    for k, (start, end) in enumerate(regions):
        attribution = None
        above = start - 1
        while above >= 0 and not lines[above].strip():
            above -= 1
        if above >= 0:
            attribution = _attribution_at(lines, above)
            if attribution is None and _looks_like_bare_attribution(lines[above]):
                attribution = above
        leading, trailing = not has_text_before[k], not has_text_after[k]
        if inline_reply and not trailing:
            continue  # answers between quotes: keep the quotes they answer
        if attribution is not None or leading or trailing or (end - start) >= 2:
            first = attribution if attribution is not None else start
            last = end
            while last + 1 < len(lines) and not lines[last + 1].strip():
                last += 1  # the blank lines after a removed quote go with it
            for x in range(first, last + 1):
                remove[x] = True
    return [line for line, gone in zip(lines, remove) if not gone]


def _strip_signature(lines: list[str]) -> list[str]:
    lines = [line for line in lines if not _MOBILE_FOOTER.match(line)]
    for i, line in enumerate(lines):
        if _SIGNATURE.match(line) and any(x.strip() for x in lines[:i]):
            return lines[:i]
    return lines


def _tidy(lines: list[str]) -> str:
    text = "\n".join(line.rstrip() for line in lines)
    text = re.sub(r"\n{3,}", "\n\n", text)
    return text.strip()


def extract_reply_text(text: str) -> str:
    """The new text of a reply; the whole (stripped) text when nothing can be isolated."""
    if not text or not text.strip():
        return ""
    normalized = text.replace("\r\n", "\n").replace("\r", "\n").replace("\u00a0", " ")
    lines = normalized.split("\n")
    if len(lines) > _MAX_LINES:
        lines = lines[:_MAX_LINES]
    lines = _split_inline_attribution(lines)
    lines = lines[: _hard_cut(lines)]
    while lines and (not lines[-1].strip() or _RULE_LINE.match(lines[-1])):
        lines.pop()  # the "______" rule or blank lines that introduced the history
    lines = _remove_quotes(lines)
    lines = _strip_signature(lines)
    while lines and (not lines[-1].strip() or _RULE_LINE.match(lines[-1])):
        lines.pop()
    reply = _tidy(lines)
    return reply if reply else _tidy(normalized.split("\n"))
