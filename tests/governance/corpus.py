"""A labelled corpus for the personal-data detectors (vfl/governance/detectors.py): values each detector must find
and values it must not, partly hand-written and partly generated here with our own check-digit arithmetic (so a
positive does not depend on the library under test). Negatives are the values a real feature table holds next to
them: amounts, measurements, codes, categories, event dates, zero-padded customer numbers, and the other
detectors' positives.
"""
from __future__ import annotations

import datetime as dt
import random

_RNG = random.Random(20261206)
FIRST = ["Jane", "John", "Maria", "José", "Anne-Marie", "Liam", "Noor", "Sven", "Chloé", "Mohammed", "Aiko", "Pieter",
         "Olga", "Ravi", "Fatima", "Lucas", "Emma", "Björn", "Zoë", "Kwame"]
LAST = ["Smith", "García", "O'Neil", "McDonald", "Jansen", "Kowalski", "Müller", "Rossi", "Nakamura", "Okafor",
        "Dubois", "Andersson", "Patel", "De Vries", "van Dijk", "Novák", "Silva", "Nguyen", "Cohen", "MacLeod"]
DOMAINS = ["example.com", "mail.example.org", "bank-a.co.uk", "hospital.example.de", "uni.example.edu"]


def _luhn_digit(body: str) -> str:
    total = 0
    for i, ch in enumerate(reversed(body)):
        d = int(ch) * (2 if i % 2 == 0 else 1)
        total += d - 9 if d > 9 else d
    return str((10 - total % 10) % 10)


def _iban(country: str, bban: str) -> str:
    digits = "".join(str(int(c, 36)) for c in bban + country + "00")
    check = 98 - int(digits) % 97
    raw = f"{country}{check:02d}{bban}"
    return " ".join(raw[i:i + 4] for i in range(0, len(raw), 4))


def _bsn() -> str:
    while True:
        body = [_RNG.randrange(10) for _ in range(8)]
        total = sum(w * d for w, d in zip(range(9, 1, -1), body))
        last = total % 11
        if last < 10 and body[0] != 0:
            return "".join(map(str, body)) + str(last)


def _pesel() -> str:
    born = dt.date(1950, 1, 1) + dt.timedelta(days=_RNG.randrange(18000))
    month = born.month + (20 if born.year >= 2000 else 0)
    body = f"{born.year % 100:02d}{month:02d}{born.day:02d}{_RNG.randrange(10000):04d}"
    total = sum(w * int(d) for w, d in zip([1, 3, 7, 9, 1, 3, 7, 9, 1, 3], body))
    return body + str((10 - total % 10) % 10)


def _personnummer() -> str:
    born = dt.date(1940, 1, 1) + dt.timedelta(days=_RNG.randrange(25000))
    body = f"{born.year % 100:02d}{born.month:02d}{born.day:02d}{_RNG.randrange(1000):03d}"
    return f"{body[:6]}-{body[6:]}{_luhn_digit(body)}"


def _dni() -> str:
    number = _RNG.randrange(10_000_000, 99_999_999)
    return f"{number}{'TRWAGMYFPDXBNJZSQVHLCKE'[number % 23]}"


def _card(prefix: str, length: int, sep: str = "") -> str:
    body = prefix + "".join(str(_RNG.randrange(10)) for _ in range(length - len(prefix) - 1))
    digits = body + _luhn_digit(body)
    return sep.join(digits[i:i + 4] for i in range(0, len(digits), 4)) if sep else digits


def _break_last(value: str) -> str:
    """The same value with its last digit changed: a failed check digit."""
    i = max(i for i, c in enumerate(value) if c.isdigit())
    return value[:i] + str((int(value[i]) + 1) % 10) + value[i + 1:]


def positives() -> dict[str, list[str]]:
    _RNG.seed(1)   # the same corpus whatever was drawn before
    names = [f"{_RNG.choice(FIRST)} {_RNG.choice(LAST)}" for _ in range(60)] + [
        "Ludwig van Beethoven", "Mary O'Neil", "J. Doe", "Smith, John", "Anne-Marie McDonald"]
    emails = [f"{f.lower().replace('é', 'e')}.{_RNG.randrange(99)}@{_RNG.choice(DOMAINS)}" for f in FIRST] + [
        "o'neil@example.ie", "a.b+tag@sub.example.org", "X_Y@EXAMPLE.COM", "first-last@example.museum"]
    ibans = ["GB82 WEST 1234 5698 7654 32", "DE89 3704 0044 0532 0130 00", "NL91 ABNA 0417 1643 00",
             "FR14 2004 1010 0505 0001 3M02 606", "BE68 5390 0754 7034", "CH93 0076 2011 6238 5295 7",
             "ES91 2100 0418 4502 0005 1332", "AT61 1904 3002 3457 3201", "PL61 1090 1014 0000 0712 1981 2874"]
    ibans += [_iban("DE", f"{_RNG.randrange(10**7, 10**8)}{_RNG.randrange(10**9, 10**10)}") for _ in range(30)]
    ibans += [_iban("DE", f"{_RNG.randrange(10**7, 10**8)}{_RNG.randrange(10**9, 10**10)}").replace(" ", "")
              for _ in range(10)]
    cards = ([_card("4", 16) for _ in range(15)] + [_card("5" + str(_RNG.randrange(1, 6)), 16, " ") for _ in range(15)]
             + [_card("3" + _RNG.choice("47"), 15) for _ in range(10)] + [_card("6011", 16, "-") for _ in range(10)])
    national = ([_bsn() for _ in range(15)] + [_pesel() for _ in range(15)] + [_personnummer() for _ in range(15)]
                + [_dni() for _ in range(15)] + ["536-90-4399", "123-45-6789", "078-05-1121"])
    phones = ["+44 20 7946 0958", "+1 212 456 7890", "(212) 456-7890", "+49 30 901820", "+33 1 42 68 53 00",
              "+31 20 123 4567", "0044 20 7946 0958", "020 7946 0958", "+91 98765 43210", "+61 2 9374 4000",
              "+34 912 345 678", "030 12345678", "+1-415-555-2671", "(020) 7946 0018", "+39 06 6982"]
    phones += [f"+1 ({_RNG.choice(['212', '415', '617', '312'])}) {_RNG.randrange(200, 999)}-"
               f"{_RNG.randrange(1000, 9999)}" for _ in range(20)]
    phones += [f"+44 7{_RNG.choice('4589')}{_RNG.randrange(10, 99)} {_RNG.randrange(100000, 999999)}" for _ in range(20)]
    texts = ["Patient reports mild chest pain after exercise, no history of cardiac events.",
             "Customer called to dispute the late fee on the March statement and asked for a callback.",
             "Applicant is self-employed since 2019 and provided two years of tax returns as proof.",
             "Follow-up visit: blood pressure stable, continue current medication and review in 3 months."]
    return {"person_name": names, "email": emails, "iban": ibans, "card_number": cards, "national_id": national,
            "phone": phones, "free_text": texts}


def negatives() -> list[str]:
    """Values no detector may claim (each detector's corpus negatives are these plus the other detectors' positives)."""
    _RNG.seed(2)
    out = [f"{_RNG.uniform(-3, 3):.6f}" for _ in range(60)]                    # standardized measurements
    out += [f"{_RNG.uniform(0, 250000):.2f}" for _ in range(40)]               # amounts
    out += [str(_RNG.randrange(0, 10**6)) for _ in range(40)]                  # counts, integer amounts
    out += [f"{_RNG.randrange(10**8):08d}" for _ in range(30)]                 # zero-padded customer numbers
    out += [str(_RNG.randrange(10**9, 10**10)) for _ in range(30)]             # 10-digit account references
    out += [str(_RNG.randrange(10**15, 10**16)) for _ in range(30)]            # 16-digit transaction ids
    out += [(dt.date(2021, 1, 1) + dt.timedelta(days=_RNG.randrange(1500))).isoformat() for _ in range(30)]
    out += ["Married", "Single", "Divorced", "HIGH SCHOOL", "university", "urban", "R", "U", "yes", "no", "M", "F",
            "ACME Corp.", "ACME Corp. Ltd", "credit card", "n/a", "unknown", "A+", "B-", "level 3", "type II",
            "10115", "SW1A 1AA", "75008", "EUR", "USD", "2021Q3", "v1.2.3", "ICD-10 I21.4", "LOINC 2345-7",
            "red", "Sales", "Engineering", "@handle", "user at example.com", "a@b", "100%", "3/4", "12-34",
            "1e-05", "-0.672187", "12:30", "192.168.1.1", "ABC-123-XYZ", "ORD-2024-000123"]
    return out
