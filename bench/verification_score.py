"""Score extract_verification against the verification-mail corpus.

Usage: python bench/verification_score.py [CORPUS_DIR]

The corpus defaults to $INBOX_MCP_VERIFICATION_CORPUS, else ../shared/corpora/verification-mail
next to the repository. Prints every file where the extractor missed or over-reported, then
micro-averaged precision and recall for codes and for links (codes compared with '-' and spaces
removed, as the corpus README prescribes). Always exits 0: this is a measurement, the test suite
holds the thresholds.
"""

from __future__ import annotations

import email
import email.policy
import json
import os
import sys
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from inbox_mcp.mail.verification import extract_verification

DEFAULT_CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpora" / "verification-mail"


def corpus_dir(argument: str | None = None) -> Path:
    return Path(argument or os.environ.get("INBOX_MCP_VERIFICATION_CORPUS") or DEFAULT_CORPUS)


def message_parts(raw: bytes) -> tuple[str, str | None, str | None]:
    """Subject, first text/plain and first text/html body of a message."""
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    text = html = None
    for part in message.walk():
        if part.is_multipart() or part.get_content_disposition() == "attachment":
            continue
        if part.get_content_type() == "text/plain" and text is None:
            text = part.get_content()
        elif part.get_content_type() == "text/html" and html is None:
            html = part.get_content()
    return str(message.get("subject", "")), text, html


def normalise_code(code: str) -> str:
    return code.replace("-", "").replace(" ", "")


@dataclass
class Tally:
    returned: int = 0
    correct: int = 0
    expected: int = 0
    found: int = 0

    def add(self, got: list[str], want: list[str]) -> tuple[list[str], list[str]]:
        """Count one file; return (missed, spurious)."""
        self.returned += len(got)
        self.expected += len(want)
        self.correct += sum(1 for value in got if value in want)
        self.found += sum(1 for value in want if value in got)
        missed = [value for value in want if value not in got]
        return missed, [value for value in got if value not in want]

    @property
    def precision(self) -> float:
        return self.correct / self.returned if self.returned else 1.0

    @property
    def recall(self) -> float:
        return self.found / self.expected if self.expected else 1.0


@dataclass
class Score:
    codes: Tally = field(default_factory=Tally)
    links: Tally = field(default_factory=Tally)
    exact: int = 0
    files: int = 0
    problems: list[str] = field(default_factory=list)


def score_corpus(directory: Path) -> Score:
    score = Score()
    for entry in json.loads((directory / "expected.json").read_text()):
        subject, text, html = message_parts((directory / entry["file"]).read_bytes())
        result = extract_verification(subject=subject, text=text, html=html)
        code_miss, code_extra = score.codes.add(
            [normalise_code(c) for c in result.codes], [normalise_code(c) for c in entry["codes"]]
        )
        link_miss, link_extra = score.links.add(result.links, entry["links"])
        score.files += 1
        problems = [
            f"  {label}: {value}"
            for label, values in (
                ("missed code", code_miss), ("spurious code", code_extra),
                ("missed link", link_miss), ("spurious link", link_extra),
            )
            for value in values
        ]
        if problems:
            score.problems.append("\n".join([entry["file"], *problems]))
        else:
            score.exact += 1
    return score


def main(argv: list[str]) -> int:
    directory = corpus_dir(argv[1] if len(argv) > 1 else None)
    if not (directory / "expected.json").is_file():
        print(f"corpus not found: {directory}")
        return 0
    score = score_corpus(directory)
    print("per-file misses:" if score.problems else "per-file misses: none")
    for problem in score.problems:
        print(problem)
    print(f"\ncorpus: {directory} ({score.files} files, {score.exact} exact)")
    print(f"{'':8}{'precision':>10}{'recall':>8}{'returned':>10}{'expected':>10}")
    for name, tally in (("codes", score.codes), ("links", score.links)):
        print(
            f"{name:8}{tally.precision:>10.3f}{tally.recall:>8.3f}"
            f"{tally.returned:>10}{tally.expected:>10}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
