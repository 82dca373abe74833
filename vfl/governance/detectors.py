"""Detectors of direct identifiers and personal data in a table's columns, by column name and by values.

A detector looks at a column's name (normalized to lower-case tokens) and at a sample of its non-missing values
(as text). By values it fires when at least `VALUE_SHARE` of the sample matches; values with check digits (IBAN,
card numbers, national identity numbers) are validated with python-stdnum, phone numbers with phonenumbers
(Google's libphonenumber metadata), both maintained libraries that work offline. The rest are rules written
here: e-mail syntax, plausible birth dates, two-to-four capitalized words (person names), long multi-word text.

tests/governance/test_detectors.py measures precision and recall on a labelled corpus (tests/governance/corpus.py)
and docs/governance.md reports the figures.
"""
from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import Callable, Iterable, Sequence

#: share of a column's sampled values that must match for a by-values finding
VALUE_SHARE = 0.8
#: at most this many non-missing values of a column are examined (evenly spaced over the column)
SAMPLE_VALUES = 1000


@dataclass(frozen=True)
class Finding:
    """One detector firing on one column."""
    column: str
    detector: str          # one of DETECTORS' names
    evidence: str          # "column name" or "values"
    share: float | None    # share of sampled values that matched (None for a column-name finding)

    def describe(self) -> str:
        how = "its name" if self.share is None else f"{self.share:.0%} of sampled values"
        return f"column {self.column!r} looks like {DESCRIPTIONS[self.detector]} ({self.detector}, by {how})"


# ------------------------------------------------------------------------------------ column names

def name_tokens(column: str) -> tuple[str, ...]:
    """'customerEmail' / 'Customer E-Mail' / 'customer_email' -> ('customer', 'email'); 'e-mail' -> 'email'."""
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1 \2", str(column))
    spaced = re.sub(r"(?i)\be[-_ ]mail", "email", spaced)
    return tuple(t for t in re.split(r"[^a-z0-9]+", spaced.lower()) if t)


def _joined(tokens: Sequence[str]) -> str:
    return "_".join(tokens)


_NAME_QUALIFIERS = {"first", "last", "full", "given", "family", "maiden", "middle", "sur", "fore", "patient",
                    "customer", "client", "person", "holder", "account", "contact", "applicant", "member"}
_NAME_RULES: dict[str, Callable[[tuple[str, ...]], bool]] = {
    "person_name": lambda t: (_joined(t) in {"name", "surname", "forename", "firstname", "lastname", "fullname",
                                             "givenname", "familyname", "maidenname"}
                              or (len(t) >= 2 and t[-1] in {"name", "names"} and t[-2] in _NAME_QUALIFIERS)),
    "email": lambda t: any(x in {"email", "emails", "mail", "emailaddress"} for x in t),
    "phone": lambda t: any(x in {"phone", "telephone", "tel", "mobile", "cellphone", "fax", "msisdn"} for x in t)
    or _joined(t) in {"cell", "cell_number", "contact_number"},
    "national_id": lambda t: (any(x in {"ssn", "nino", "bsn", "nir", "idnr", "pesel", "cpr", "hetu", "nhs",
                                        "personnummer", "passport", "aadhaar", "dni", "nie", "sin"} for x in t)
                              or "social_security" in _joined(t) or "national_id" in _joined(t)
                              or "tax_id" in _joined(t) or "codice_fiscale" in _joined(t)),
    "card_number": lambda t: "card_number" in _joined(t) or "credit_card" in _joined(t) or _joined(t) in
    {"pan", "cc_number", "ccnum", "cardnumber"},
    "iban": lambda t: "iban" in t or "account_number" in _joined(t) or "bank_account" in _joined(t),
    "date_of_birth": lambda t: _joined(t) in {"dob", "birthdate", "birthday", "date_of_birth", "birth_date",
                                              "birth_day", "d_o_b"} or "date_of_birth" in _joined(t),
    "street_address": lambda t: any(x in {"address", "street", "addr", "address1", "address2"} for x in t),
}


def by_name(column: str) -> list[str]:
    """The detectors whose column-name rule matches `column`."""
    tokens = name_tokens(column)
    return [name for name, rule in _NAME_RULES.items() if rule(tokens)]


# ------------------------------------------------------------------------------------ values

_EMAIL = re.compile(r"^[\w.%+'-]+@[\w-]+(\.[\w-]+)*\.[^\W\d_]{2,}$")   # \w: internationalized addresses
_PHONE_CHARS = re.compile(r"^[+(\d][\d\s().-]{6,21}$")
_NANP = re.compile(r"^(\(\d{3}\) ?|\d{3}[-. ])\d{3}[-. ]\d{4}$")
_ID_GROUPS = re.compile(r"^\d{6}[-+A]\d{3,4}$|^\d{3}-\d{2}-\d{4}$")   # identity numbers' grouping, not phones'
_PLAIN_NUMBER = re.compile(r"^-?\d*\.\d+$")   # 0.672187: a measurement, however many digits it has
_DIGIT_GROUPS = re.compile(r"^\d[\d -]{11,22}\d$")
# A capitalized name word: O'Neil, D'Angelo, McDonald, Anne-Marie, José, an initial "J."; particles stay lower-case.
_NAME_WORD = re.compile(r"^(?:[A-ZÀ-Ý][a-zà-ÿ]?['’])?[A-ZÀ-Ý][a-zà-ÿ]+(?:[A-Z][a-zà-ÿ]+)?(?:-[A-ZÀ-Ý][a-zà-ÿ]+)?$"
                        r"|^[A-Z]\.$")
_NAME_PARTICLES = frozenset({"van", "der", "den", "de", "von", "da", "di", "du", "la", "le", "del", "bin", "al", "dos"})
_DATE_FORMATS = ("%Y-%m-%d", "%d/%m/%Y", "%m/%d/%Y", "%d.%m.%Y", "%Y/%m/%d", "%d-%m-%Y", "%Y%m%d")


def is_email(value: str) -> bool:
    return len(value) <= 254 and bool(_EMAIL.match(value))


def is_iban(value: str) -> bool:
    from stdnum import iban
    compact = value.replace(" ", "")
    return 15 <= len(compact) <= 34 and compact[:2].isalpha() and iban.is_valid(compact)


# Issuer prefixes (IIN ranges) of the card networks in common use, so that a column of Luhn-valid numbers from
# some other scheme does not pass for cards: Visa 4, Mastercard 51-55 and 2221-2720, Amex 34/37, Discover 6011,
# 644-649 and 65, JCB 3528-3589, Diners 300-305, 36, 38, UnionPay 62, Maestro 50, 56-69.
def _card_prefix(digits: str) -> bool:
    if digits[0] == "4":
        return True
    two, four = int(digits[:2]), int(digits[:4])
    return (51 <= two <= 55 or 2221 <= four <= 2720 or two in (34, 36, 37, 38, 50, 62, 65) or 56 <= two <= 69
            or 3528 <= four <= 3589 or 300 <= int(digits[:3]) <= 305)


def is_card_number(value: str) -> bool:
    from stdnum import luhn
    if not (value.isdigit() or _DIGIT_GROUPS.match(value)):
        return False
    digits = re.sub(r"[ -]", "", value)
    return 13 <= len(digits) <= 19 and _card_prefix(digits) and luhn.is_valid(digits)


#: stdnum module -> the shape its numbers are written in. stdnum's validators first strip separators and pad
#: short numbers, so 0.051159 or an 8-digit customer number would pass for a Dutch BSN; a value must have its
#: country's written shape before its check digit counts. The US SSN has no check digit: only ddd-dd-dddd counts.
_NATIONAL_SHAPES = {
    "nl.bsn": r"\d{9}|\d{4}\.\d{2}\.\d{3}",
    "de.idnr": r"\d{11}|\d{2} \d{3} \d{3} \d{3}",
    "fr.nir": r"[12] ?\d{2} ?\d{2} ?(?:\d{2}|2[AB]) ?\d{3} ?\d{3} ?\d{2}",
    "es.dni": r"\d{8}-?[A-Z]",
    "es.nie": r"[XYZ]-?\d{7}-?[A-Z]",
    "it.codicefiscale": r"[A-Z]{6}\d{2}[A-Z]\d{2}[A-Z]\d{3}[A-Z]",
    "se.personnummer": r"\d{6}[-+]\d{4}|\d{8}-?\d{4}",
    "pl.pesel": r"\d{11}",
    "dk.cpr": r"\d{6}-\d{4}",
    "fi.hetu": r"\d{6}[-+A]\d{3}[0-9A-Y]",
    "no.fodselsnummer": r"\d{6} ?\d{5}",
    "be.nn": r"\d{2}\.\d{2}\.\d{2}-\d{3}\.\d{2}",
    "gb.nhs": r"\d{3} \d{3} \d{4}",            # bare 10 digits: 1 in 11 random numbers passes mod 11
    "ch.ssn": r"756\.?\d{4}\.?\d{4}\.?\d{2}",
    "ro.cnp": r"[1-8]\d{12}",
    "cz.rc": r"\d{6}/\d{3,4}",
    "us.ssn": r"\d{3}-\d{2}-\d{4}",
}


def _national_validators() -> list[Callable[[str], bool]]:
    """stdnum's validators of national identity numbers, each behind its written shape."""
    import importlib
    out = []
    for name, shape in _NATIONAL_SHAPES.items():
        try:
            check = importlib.import_module(f"stdnum.{name}").is_valid
        except ImportError:  # an older python-stdnum without this country: the others still apply
            continue
        pattern = re.compile(shape)
        out.append(lambda v, p=pattern, c=check: bool(p.fullmatch(v)) and c(v))
    return out


_NATIONAL: list[Callable[[str], bool]] | None = None


def is_national_id(value: str) -> bool:
    global _NATIONAL
    if _NATIONAL is None:
        _NATIONAL = _national_validators()
    if not 9 <= len(value) <= 20 or not any(ch.isdigit() for ch in value):
        return False
    return any(_safe(check, value) for check in _NATIONAL)


def _safe(check: Callable[[str], bool], value: str) -> bool:
    try:
        return bool(check(value))
    except Exception:  # noqa: BLE001 - a validator that trips on odd input has not matched
        return False


def is_phone(value: str) -> bool:
    """A number that libphonenumber finds valid, written the way phone numbers are written.

    International (+44 ..., 0044 ...) numbers are checked as they are. A national number must start with a
    trunk 0 (Europe, India, Australia) or be grouped the North American way, (212) 456-7890 or 212-456-7890:
    tried against every country's plan, a bare 10-digit amount or a 6-4 identity number would pass somewhere.
    """
    if not _PHONE_CHARS.match(value) or _PLAIN_NUMBER.match(value):
        return False
    digits = re.sub(r"\D", "", value)
    if not 7 <= len(digits) <= 15:
        return False
    import phonenumbers
    text = "+" + value[2:] if value.startswith("00") else value
    if text.startswith("+"):
        regions: tuple = (None,)
    elif _ID_GROUPS.match(text):
        return False
    elif text.startswith(("0", "(0")) and (len(digits) >= 10 or not text.isdigit()):
        regions = ("GB", "DE", "FR", "NL", "IN", "AU", "IT")
    elif _NANP.match(text):
        regions = ("US",)
    else:
        return False
    for region in regions:
        try:
            if phonenumbers.is_valid_number(phonenumbers.parse(text, region)):
                return True
        except phonenumbers.NumberParseException:
            continue
    return False


def parse_date(value: str) -> dt.date | None:
    for fmt in _DATE_FORMATS:
        try:
            return dt.datetime.strptime(value[:10] if fmt != "%Y%m%d" else value, fmt).date()
        except ValueError:
            continue
    return None


def is_person_name(value: str) -> bool:
    words = value.replace(",", " ").split()
    named = [w for w in words if w not in _NAME_PARTICLES]
    return (2 <= len(words) <= 5 and len(named) >= 2 and all(_NAME_WORD.match(w) for w in named)
            and not all(len(w) == 2 for w in named))


def is_free_text(value: str) -> bool:
    return len(value) >= 40 and len(value.split()) >= 6


_VALUE_RULES: dict[str, Callable[[str], bool]] = {
    "email": is_email,
    "iban": is_iban,
    "card_number": is_card_number,
    "national_id": is_national_id,
    "phone": is_phone,
    "person_name": is_person_name,
    "free_text": is_free_text,
}


#: values checked first: a rule that matches under half of them cannot reach VALUE_SHARE of a typical column,
#: so the rest are skipped (the validators cost up to a millisecond per value)
_PROBE = 50


def _share(values: Sequence[str], rule: Callable[[str], bool]) -> float:
    if not values:
        return 0.0
    probe = sum(1 for v in values[:_PROBE] if rule(v))
    if len(values) <= _PROBE or probe < 0.5 * _PROBE:
        return probe / min(len(values), _PROBE)
    return (probe + sum(1 for v in values[_PROBE:] if rule(v))) / len(values)


def _birth_dates_share(values: Sequence[str], today: dt.date) -> float:
    """Share of values that are dates of a living adult's birth, if the column as a whole looks like birth dates.

    Birth dates lie between 1900 and today, and a table of people spans decades: the middle half of the dates
    covers at least five years and their median age is 16-100. Event dates (admissions, transactions) cluster in
    recent years and fail the spread or the age.
    """
    if _share(values, lambda v: parse_date(v) is not None) < VALUE_SHARE:
        return 0.0
    dates = [d for d in (parse_date(v) for v in values) if d is not None and dt.date(1900, 1, 1) <= d <= today]
    if not dates or len(dates) < VALUE_SHARE * len(values):
        return 0.0
    ages = sorted((today - d).days / 365.25 for d in dates)
    q1, median, q3 = ages[len(ages) // 4], ages[len(ages) // 2], ages[(3 * len(ages)) // 4]
    return len(dates) / len(values) if 16 <= median <= 100 and q3 - q1 >= 5 else 0.0


def by_values(values: Sequence[str], today: dt.date | None = None) -> list[tuple[str, float]]:
    """(detector, share) for every value rule that at least VALUE_SHARE of `values` match."""
    values = [v.strip() for v in values if v.strip()]
    if not values:
        return []
    found = [(name, share) for name, rule in _VALUE_RULES.items() if (share := _share(values, rule)) >= VALUE_SHARE]
    if "person_name" in dict(found) and len(set(values)) < 0.5 * len(values):
        found = [f for f in found if f[0] != "person_name"]   # repeated capitalized words: categories, cities
    dob = _birth_dates_share(values, today or dt.date.today())
    if dob >= VALUE_SHARE:
        found.append(("date_of_birth", dob))
    return found


def sample(values: Iterable[str], limit: int = SAMPLE_VALUES) -> list[str]:
    """At most `limit` values, evenly spaced, so a sorted table's head does not stand for all of it."""
    values = list(values)
    if len(values) <= limit:
        return values
    step = len(values) / limit
    return [values[int(i * step)] for i in range(limit)]


def detect(column: str, values: Sequence[str], today: dt.date | None = None) -> list[Finding]:
    """Every finding on one column: by name, then by values (a detector is reported once, by values first)."""
    findings = [Finding(column, name, "values", round(share, 4)) for name, share in by_values(values, today)]
    seen = {f.detector for f in findings}
    findings += [Finding(column, name, "column name", None) for name in by_name(column) if name not in seen]
    return findings


DESCRIPTIONS = {
    "person_name": "people's names",
    "email": "e-mail addresses",
    "phone": "phone numbers",
    "national_id": "national identity numbers",
    "card_number": "payment card numbers",
    "iban": "bank account numbers (IBAN)",
    "date_of_birth": "dates of birth",
    "street_address": "street addresses",
    "free_text": "free text",
}
DETECTORS = tuple(DESCRIPTIONS)
