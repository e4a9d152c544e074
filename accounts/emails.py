"""One address, one account: the normal form every email is stored, compared and looked up in.

API.md (Authentication): Unicode NFKC, lower case, the domain in its ASCII (IDNA) form, so
`x@exämple.com` and `x@xn--exmple-cua.com` are one account; the local part must be ASCII
after NFKC (`ｊose@` is `jose@`, `jösé@` is refused); an address with invisible or
control characters is refused rather than cleaned (IDNA's mapping alone would silently drop a
zero-width space, making `x@example.com` + U+200B a second spelling of one address).
"""

import contextlib
import unicodedata
from collections import defaultdict
from dataclasses import dataclass, field

import idna

EMAIL_MAX_LENGTH = 254

# Control, format (zero-width space and joiners, bidi overrides, soft hyphen...), surrogate,
# private-use and unassigned characters, and every kind of space or separator.
_REFUSED_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zs", "Zl", "Zp"})
# Invisible (Unicode Default_Ignorable_Code_Point) characters outside those categories:
# combining grapheme joiner, Hangul fillers, Khmer vowel inherents, variation selectors.
_REFUSED_CODEPOINTS = frozenset(
    [0x034F, 0x115F, 0x1160, 0x17B4, 0x17B5, 0x3164, 0xFFA0, *range(0x180B, 0x1810)]
    + [*range(0xFE00, 0xFE10), *range(0xE0100, 0xE01F0)]
)


class InvalidEmail(ValueError):
    """The address has no normal form; the message is fit for the user."""


def _invisible(char: str) -> bool:
    return unicodedata.category(char) in _REFUSED_CATEGORIES or ord(char) in _REFUSED_CODEPOINTS


def normalize_email(raw: str) -> str:
    """The normal form of an address, or `InvalidEmail`. Idempotent."""
    email = (raw or "").strip(" \t\r\n")
    if any(_invisible(char) for char in email):
        raise InvalidEmail("Enter a valid email address: it contains invisible or control characters.")
    local, at, domain = unicodedata.normalize("NFKC", email).rpartition("@")
    if not (local and at and domain):
        raise InvalidEmail("Enter a valid email address.")
    if not local.isascii():
        # Internationalised mailboxes (RFC 6531) are not supported: most mail servers refuse
        # them, and the domain is the only part with an agreed ASCII form (IDNA).
        raise InvalidEmail(
            "Enter a valid email address: the part before the @ must be ASCII "
            "(letters a-z, digits and . _ + -, as in jose@example.com)."
        )
    try:
        ascii_domain = idna.encode(domain, uts46=True).decode("ascii")
    except (idna.IDNAError, UnicodeError) as exc:
        raise InvalidEmail("Enter a valid email address: its domain is not a valid domain name.") from exc
    return f"{local.lower()}@{ascii_domain.lower()}"


@dataclass
class NormalizationPlan:
    """What normalising stored addresses would do (migration accounts/0002)."""

    updates: dict = field(default_factory=dict)  # {pk: normal form}, for addresses nobody else shares
    clashes: dict = field(default_factory=dict)  # {normal form: [(pk, stored)]}: one address, several accounts
    invalid: list = field(default_factory=list)  # [(pk, stored)]: no normal form (invisible characters...)

    def report(self) -> str:
        lines = [f"accounts: {len(self.updates)} stored email address(es) normalised."]
        for normal, accounts in sorted(self.clashes.items()):
            listed = ", ".join(f"{pk} ({stored!r})" for pk, stored in accounts)
            lines.append(f"CLASH: {normal} is the address of {len(accounts)} accounts, left unchanged: {listed}")
        for pk, stored in self.invalid:
            lines.append(f"INVALID: account {pk} has {stored!r}, which has no normal form; left unchanged")
        if self.clashes or self.invalid:
            lines.append("Resolve these by hand (deactivate or re-address the extra accounts); nothing was merged.")
        return "\n".join(lines)


def plan_normalization(stored: list[tuple]) -> NormalizationPlan:
    """Given (pk, stored email) pairs, which addresses can take their normal form and which
    clash. An address that cannot be normalised is grouped under its form with the invisible
    characters removed, so that a lookalike of another account shows as a clash too."""
    plan = NormalizationPlan()
    groups = defaultdict(list)
    for pk, email in stored:
        try:
            groups[normalize_email(email)].append((pk, email))
        except InvalidEmail:
            plan.invalid.append((pk, email))
            visible = "".join(char for char in email if not _invisible(char))
            with contextlib.suppress(InvalidEmail):  # not even a lookalike of a valid address
                groups[normalize_email(visible)].append((pk, email))
    invalid = {pk for pk, _ in plan.invalid}
    for normal, accounts in groups.items():
        if len(accounts) > 1:
            plan.clashes[normal] = accounts
        elif accounts[0][1] != normal and accounts[0][0] not in invalid:
            plan.updates[accounts[0][0]] = normal
    return plan
