#!/usr/bin/env python3
"""Generates tests/detectors/corpus.tsv (checked in; rerun only to extend it).

Deterministic (fixed seed). Card numbers get a valid Luhn digit and IBANs
valid mod-97 check digits, computed here. Run from the repository root:

    python3 tests/detectors/gen_corpus.py > tests/detectors/corpus.tsv
"""
import random

R = random.Random(20261130)
NBSP = "\u00a0"
NNBSP = "\u202f"

rows = []  # (expected, tag, text with [[span]] marked, or plain text for none)


def pos(det, tag, value, templates):
    for t in templates:
        rows.append((det, tag, t.replace("{}", "\u27e6" + value + "\u27e7")))


def neg(tag, text):
    assert "\u27e6" not in text
    rows.append(("none", tag, text))


PHONE_T = [
    "{}",
    "Please call {} before delivery.",
    "Tel.: {} (mobile)",
    "Kontakt: {}, Mo-Fr 9-17 Uhr",
    "rappeler au {} svp",
    "call me on {} tomorrow at 10:30",
]


def phone(tag, value, n=2):
    pos("phone", tag, value, R.sample(PHONE_T, n))


# --- phones: country, national and international shapes -------------------
def seps(groups, sep):
    return sep.join(groups)


PHONES = {
    # country: list of (national groups, international groups without +cc, cc)
    "DE": [
        (["030", "12345678"], ["30", "12345678"]),
        (["0171", "1234567"], ["171", "1234567"]),
        (["089", "1234567"], ["89", "1234567"]),
        (["0151", "12345678"], ["151", "12345678"]),
        (["040", "3039020"], ["40", "3039020"]),
        (["06221", "543210"], ["6221", "543210"]),
    ],
    "FR": [
        (["01", "23", "45", "67", "89"], ["1", "23", "45", "67", "89"]),
        (["06", "12", "34", "56", "78"], ["6", "12", "34", "56", "78"]),
        (["07", "81", "23", "45", "67"], ["7", "81", "23", "45", "67"]),
        (["04", "72", "10", "30", "30"], ["4", "72", "10", "30", "30"]),
    ],
    "IT": [
        (["02", "1234", "5678"], ["02", "1234", "5678"]),
        (["06", "6988", "1234"], ["06", "6988", "1234"]),
        (["333", "123", "4567"], ["333", "123", "4567"]),
        (["347", "1234567"], ["347", "1234567"]),
        (["055", "123456"], ["055", "123456"]),
    ],
    "ES": [
        (["612", "34", "56", "78"], ["612", "34", "56", "78"]),
        (["612", "345", "678"], ["612", "345", "678"]),
        (["91", "123", "45", "67"], ["91", "123", "45", "67"]),
        (["932", "12", "34", "56"], ["932", "12", "34", "56"]),
        (["722", "345", "678"], ["722", "345", "678"]),
    ],
    "PL": [
        (["512", "345", "678"], ["512", "345", "678"]),
        (["22", "123", "45", "67"], ["22", "123", "45", "67"]),
        (["601", "234", "567"], ["601", "234", "567"]),
        (["12", "345", "67", "89"], ["12", "345", "67", "89"]),
    ],
    "UK": [
        (["020", "7946", "0958"], ["20", "7946", "0958"]),
        (["07700", "900123"], ["7700", "900123"]),
        (["0161", "496", "0000"], ["161", "496", "0000"]),
        (["01632", "960123"], ["1632", "960123"]),
        (["0113", "496", "0123"], ["113", "496", "0123"]),
    ],
    "US": [
        (["415", "555", "2671"], ["415", "555", "2671"]),
        (["212", "555", "0187"], ["212", "555", "0187"]),
        (["646", "555", "0134"], ["646", "555", "0134"]),
        (["312", "555", "0199"], ["312", "555", "0199"]),
    ],
    "IN": [
        (["98765", "43210"], ["98765", "43210"]),
        (["91234", "56789"], ["91234", "56789"]),
        (["011", "2345", "6789"], ["11", "2345", "6789"]),
        (["022", "2778", "1234"], ["22", "2778", "1234"]),
        (["070", "1234", "5678"], ["70", "1234", "5678"]),
    ],
    "JP": [
        (["03", "1234", "5678"], ["3", "1234", "5678"]),
        (["090", "1234", "5678"], ["90", "1234", "5678"]),
        (["06", "6123", "4567"], ["6", "6123", "4567"]),
        (["0120", "123", "456"], None),
        (["080", "9876", "5432"], ["80", "9876", "5432"]),
    ],
    "AU": [
        (["02", "9876", "5432"], ["2", "9876", "5432"]),
        (["0412", "345", "678"], ["412", "345", "678"]),
        (["03", "9123", "4567"], ["3", "9123", "4567"]),
        (["0498", "765", "432"], ["498", "765", "432"]),
    ],
    "BR": [
        (["11", "91234", "5678"], ["11", "91234", "5678"]),
        (["11", "3456", "7890"], ["11", "3456", "7890"]),
        (["21", "98765", "4321"], ["21", "98765", "4321"]),
        (["31", "3123", "4567"], ["31", "3123", "4567"]),
    ],
}
CC = {"DE": "49", "FR": "33", "IT": "39", "ES": "34", "PL": "48", "UK": "44",
      "US": "1", "IN": "91", "JP": "81", "AU": "61", "BR": "55"}

for country, numbers in PHONES.items():
    cc = CC[country]
    for nat, intl in numbers:
        tag = country
        # National forms.
        if country == "US":
            a, b, c = nat
            for v in [f"({a}) {b}-{c}", f"{a}-{b}-{c}", f"{a}.{b}.{c}", f"{a} {b} {c}",
                      f"1-{a}-{b}-{c}", f"({a}){b}-{c}", f"{a}{NBSP}{b}{NBSP}{c}"]:
                phone(f"{tag}-nat", v)
        elif country == "BR":
            a, b, c = nat
            for v in [f"({a}) {b}-{c}", f"({a}) {b} {c}", f"0{a} {b}-{c}", f"{a} {b}-{c}"]:
                phone(f"{tag}-nat", v)
        else:
            vs = [seps(nat, " "), seps(nat, "-"), seps(nat, NBSP)]
            if country in ("FR",):
                vs.append(seps(nat, "."))
            if nat[0].startswith("0") and len(nat) >= 2:
                vs.append(f"({nat[0]}) " + " ".join(nat[1:]))
                vs.append(nat[0] + "/" + "".join(nat[1:]))
                if 10 <= len("".join(nat)) <= 11:
                    vs.append("".join(nat))
            for v in vs:
                phone(f"{tag}-nat", v)
        if intl is None:
            continue
        # International forms.
        if country == "US":
            a, b, c = intl
            for v in [f"+1 {a} {b} {c}", f"+1 ({a}) {b}-{c}", f"+1-{a}-{b}-{c}", f"+1{a}{b}{c}",
                      f"001 {a} {b} {c}"]:
                phone(f"{tag}-intl", v)
            continue
        vs = [f"+{cc} " + " ".join(intl), f"+{cc}" + "".join(intl),
              f"00{cc} " + " ".join(intl), f"+{cc}-" + "-".join(intl),
              f"+{cc}{NNBSP}" + NNBSP.join(intl)]
        if country in ("DE", "UK", "FR") or (country == "AU"):
            vs.append(f"+{cc} (0)" + " ".join(intl))
        if country == "BR":
            vs.append(f"+{cc} ({intl[0]}) {intl[1]}-{intl[2]}")
        if country == "FR":
            vs.append(f"+{cc} " + intl[0] + "." + ".".join(intl[1:]))
        for v in vs:
            phone(f"{tag}-intl", v)

# Hand-written real-world shapes (other countries, URIs, mixed separators).
for tag, v, t in [
    ("uri", "+14155552671", "tel:{}"), ("UK-intl", "+44(0)2079460958", "Tel:{}"),
    ("UK-intl", "+44 (0) 20 7946 0958", "{}"), ("US-intl", "+1.415.555.2671", "{}"),
    ("NL-intl", "+31 6 12345678", "mobiel {}"), ("NL-nat", "0612345678", "bel {}"),
    ("CH-intl", "+41 44 668 18 00", "{}"), ("CH-nat", "044 668 18 00", "Tel. {}"),
    ("AT-intl", "+43 1 234 5678", "{}"), ("DE-intl", "+49 30 1234 5678", "{}"),
    ("DE-intl", "+49-30-12345678", "{}"), ("DE-nat", "030 / 1234 5678", "Tel. {}"),
    ("RU-intl", "+7 495 123-45-67", "{}"), ("IN-intl", "+91 9876543210", "{}"),
    ("AU-intl", "+61412345678", "sms {}"), ("JP-intl", "+81-3-1234-5678", "{}"),
    ("UK-nat", "0800 123 4567", "Call {} now"), ("FR-nat", "06 12 34 56 78", "{}."),
    ("DE-nat", "0171 1234567", "order 123456789, phone {}"),
    ("US-nat", "415-555-0100", "call {} 2 times"), ("UK-adjacent", "020 7946 0958", "Call {} 2 times"),
    ("UK-adjacent", "+44 20 7946 0958", "room 12 {}"), ("US-adjacent", "(415) 555-2671", "apt 5 {}"),
    ("IE-intl", "+353 1 234 5678", "{}"), ("SE-nat", "08-123 456 78", "ring {}"),
    ("MX-intl", "+52 55 1234 5678", "{}"), ("ZA-nat", "011 123 4567", "{}"),
    ("DE-intl", "(+49) 30 12345678", "Tel.: {}"), ("UK-intl", "(+44) 20 7946 0958", "Tel {}"),
    ("DE-intl", "0049 171 1234567", "Tel: {}"), ("FR-nat", "06.12.34.56.78", "{}"),
    ("US-intl", "+1 (415) 555-2671", "Call {} ext. 123"), ("DE-nat", "0151-12345678", "mob. {}"),
]:
    pos("phone", tag, v, [t])

# --- cards ----------------------------------------------------------------


def luhn_complete(prefix, length):
    body = prefix + "".join(R.choice("0123456789") for _ in range(length - len(prefix) - 1))
    total = 0
    for i, ch in enumerate(reversed(body)):
        d = int(ch)
        if i % 2 == 0:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return body + str((10 - total % 10) % 10)


def group(num, sizes, sep):
    out, i = [], 0
    for s in sizes:
        out.append(num[i:i + s])
        i += s
    if i < len(num):
        out.append(num[i:])
    return sep.join(out)


CARD_T = ["{}", "paid with card {} exp 12/28", "Karte: {}", "cc={};", "my card number is {} thanks",
          "carte bancaire {} (visa)"]
BRANDS = [
    ("visa13", "4", 13, [4, 4, 4]),
    ("visa16", "4", 16, [4, 4, 4]),
    ("visa19", "4", 19, [4, 4, 4, 4]),
    ("mc51", "51", 16, [4, 4, 4]),
    ("mc55", "55", 16, [4, 4, 4]),
    ("mc2221", "2221", 16, [4, 4, 4]),
    ("mc2720", "2720", 16, [4, 4, 4]),
    ("mc23", "23", 16, [4, 4, 4]),
    ("amex34", "34", 15, [4, 6]),
    ("amex37", "37", 15, [4, 6]),
    ("discover6011", "6011", 16, [4, 4, 4]),
    ("discover65", "65", 16, [4, 4, 4]),
    ("discover644", "644", 16, [4, 4, 4]),
    ("jcb", "3530", 16, [4, 4, 4]),
    ("jcb3589", "3589", 16, [4, 4, 4]),
    ("diners36", "36", 14, [4, 6]),
    ("diners300", "300", 14, [4, 6]),
    ("unionpay16", "62", 16, [4, 4, 4]),
    ("unionpay19", "62", 19, [4, 4, 4, 4]),
    ("maestro12", "6759", 12, [4, 4]),
    ("maestro16", "5018", 16, [4, 4, 4]),
    ("maestro19", "6304", 19, [4, 4, 4, 4]),
    ("mir", "2200", 16, [4, 4, 4]),
]
for name, prefix, length, sizes in BRANDS:
    for k in range(2):
        num = luhn_complete(prefix, length)
        variants = [num, group(num, sizes, " "), group(num, sizes, "-")]
        if k == 0:
            variants += [group(num, sizes, "."), group(num, sizes, NBSP)]
        else:
            variants += [group(num, sizes, NNBSP)]
        for v in variants:
            pos("card", name, v, R.sample(CARD_T, 1))
# The review's cases: a card next to other numbers.
pos("card", "visa16-adjacent", "4111 1111 1111 1111", ["card {} 12/28", "qty 2 {}"])
pos("card", "visa16-adjacent", "4111111111111111", ["card {} 123"])

# --- IBANs ----------------------------------------------------------------
# country: (length, BBAN pattern: n digit, a upper letter, c alnum)
IBAN_FMT = {
    "DE": "18n", "AT": "16n", "CH": "5n12c", "FR": "10n11c2n", "IT": "1a10n12c",
    "ES": "20n", "NL": "4a10n", "BE": "12n", "GB": "4a14n", "IE": "4c14n",
    "PL": "24n", "PT": "21n", "LU": "3n13c", "DK": "14n", "SE": "20n",
    "NO": "11n", "FI": "14n", "CZ": "20n", "SK": "20n", "HU": "24n",
    "RO": "4a16c", "GR": "7n16c", "HR": "17n", "SI": "15n", "LT": "16n",
    "LV": "4a13c", "EE": "16n", "MT": "4a5n18c", "CY": "8n16c", "BG": "4a6n8c",
    "SA": "2n18c", "AE": "3n16n", "TR": "5n1n16c", "BR": "23n1a1c", "IS": "22n",
}


def bban(fmt):
    out, num = [], ""
    for ch in fmt:
        if ch.isdigit():
            num += ch
            continue
        n = int(num)
        num = ""
        pool = {"n": "0123456789", "a": "ABCDEFGHIJKLMNOPQRSTUVWXYZ",
                "c": "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"}[ch]
        out.append("".join(R.choice(pool) for _ in range(n)))
    return "".join(out)


def iban_check(cc, b):
    s = b + cc + "00"
    v = int("".join(str(int(ch, 36)) for ch in s))
    return f"{98 - v % 97:02d}"


IBAN_T = ["{}", "Bitte überweisen an {} bis Freitag", "IBAN: {}", "pay to {} now", "IBAN {}."]
for cc, fmt in IBAN_FMT.items():
    for k in range(2):
        b = bban(fmt)
        iban = cc + iban_check(cc, b) + b
        g4 = " ".join(iban[i:i + 4] for i in range(0, len(iban), 4))
        d4 = "-".join(iban[i:i + 4] for i in range(0, len(iban), 4))
        for v in ([iban, g4, d4] if k == 0 else [iban, g4]):
            pos("iban", cc, v, R.sample(IBAN_T, 1))
pos("iban", "DE", "DE89 3704 0044 0532 0130 00", ["{}", "IBAN {} ABCD"])
pos("iban", "GB", "GB82 WEST 1234 5698 7654 32", ["{}"])

# --- e-mail ---------------------------------------------------------------
EMAILS = [
    ("plain", "ada.lovelace@example.com"), ("plain", "jane.doe@example.co.uk"),
    ("plain", "JOHN_SMITH99@EXAMPLE.ORG"), ("plain", "a@b.io"),
    ("subaddress", "jane.doe+newsletter@example.com"), ("subaddress", "bob+tag-1@mail.example.net"),
    ("hyphen", "mary-jane@my-company.example"), ("digits", "user123@sub1.example.de"),
    ("apostrophe", "o'brien@example.com"), ("apostrophe", "d'angelo.rossi@example.it"),
    ("idn", "jürgen@müller.de"), ("idn", "françois@exemple.fr"), ("idn", "josé.garcía@correo.es"),
    ("idn", "用户@例子.广告"), ("idn", "иван@пример.рф"), ("idn", "zoë@example.com"),
    ("urlencoded", "ada%40example.com"), ("urlencoded", "jane.doe%2Bx%40example.org"),
    ("long-tld", "info@example.museum"), ("percent", "x%y@example.com"),
]
EMAIL_T = ["{}", "mail me at {} please", "Contact: <{}>", "(write to {})", "mailto:{}", "From: \"Ada\" <{}>",
           "?email={}&ref=x", "'{}'"]
for tag, e in EMAILS:
    for t in R.sample(EMAIL_T, 3):
        if tag == "urlencoded" and "mailto" in t:
            continue
        pos("email", tag, e, [t])

# --- IP addresses -----------------------------------------------------------
IPV4 = ["192.168.1.20", "10.0.0.1", "172.16.254.3", "8.8.8.8", "203.0.113.7", "198.51.100.255",
        "255.255.255.0", "127.0.0.1", "100.64.12.9", "52.14.200.1"]
IPV4_T = ["{}", "from {} today", "client={} port 443", "login from IP {}.", "[{}]", "host {}:8080"]
for ip in IPV4:
    pos("ipv4", "v4", ip, R.sample(IPV4_T, 3))
IPV6 = ["2001:db8::1", "2001:db8::8a2e:370:7334", "fe80::1ff:fe23:4567:890a", "::1",
        "2001:0db8:85a3:0000:0000:8a2e:0370:7334", "2a00:1450:4001:82b::200e", "fd12:3456:789a:1::1",
        "::ffff:192.0.2.128", "2001:db8:0:0:1:0:0:1", "2606:4700:4700::1111"]
IPV6_T = ["{}", "v6 {} end", "ip:{}", "client [{}]:443", "addr={} ok", "source {} blocked"]
for ip in IPV6:
    pos("ipv6", "v6", ip, R.sample(IPV6_T, 3))

# --- US SSN ---------------------------------------------------------------
SSNS = ["123-45-6789", "078-05-1120", "219-09-9999", "536-22-1234", "457-55-5462", "001-01-0001",
        "772-11-9087", "321-54-9876"]
SSN_T = ["{}", "ssn {}.", "SSN: {}", "Social Security Number {} on file", "employee {}, hired 2019"]
for s in SSNS:
    pos("us_ssn", "dashed", s, R.sample(SSN_T, 2))
    pos("us_ssn", "spaced", s.replace("-", " "), R.sample(SSN_T, 1))
    pos("us_ssn", "bare+keyword", s.replace("-", ""),
        R.sample(["SSN {}", "ssn#{}", "SSN: {}", "social security number: {}", "SS# {}"], 1))

# --- negatives --------------------------------------------------------------
for _ in range(12):
    neg("order", f"Order #{R.randint(100000, 999999)} shipped")
    neg("order", f"order ORD-2026-{R.randint(0, 999999):06d} confirmed")
    neg("invoice", f"Invoice INV-{R.randint(2020, 2026)}-{R.randint(1, 99999):05d} is due")
    neg("invoice", f"Rechnung Nr. {R.randint(2020, 2026)}/{R.randint(1, 9999):04d}")
for _ in range(10):
    # Luhn-invalid 16-digit references.
    n = luhn_complete(R.choice(["4", "51", "6011"]), 16)
    bad = n[:-1] + str((int(n[-1]) + R.randint(1, 9)) % 10)
    neg("luhn-invalid", f"ref {bad}")
    neg("luhn-invalid", f"ref {group(bad, [4, 4, 4], ' ')}")
for d in ["2026-11-01", "01/11/2026", "1.11.2026", "11/01/26", "2026/11/01", "01.11.2026 10:30",
          "Mon, 30 Nov 2026 19:15:05 GMT", "2026-11-30T19:15:05Z", "30 Nov 2026", "20261130",
          "01-11-2026", "on 2026-11-01 at 10:00", "from 01.11.2026 to 15.11.2026", "12/28",
          "2026-11-30 19:15:05.123456", "Q4 2026", "week 48/2026", "1. 11. 2026"]:
    neg("date", f"due {d}")
for t in ["10:30:00", "at 10:30:00 sharp", "09:15", "23:59:59.999", "T+00:30", "duration 01:02:03:04"]:
    neg("time", t)
for p in ["1,234.50", "€ 1.299,00", "$ 12,345,678.90", "1 234 567,89 €", "CHF 1'299.00", "99.99",
          "total 1.234.567,00 EUR", "£2,500", "12 345 678", "USD 1,000,000.00", "Preis 4 999,00 €",
          "3.14159265358979", "-122.419416", "51.523431, -0.158712"]:
    neg("price", f"price {p}")
for v in ["v1.2.3", "10.0.19045.2965", "version 2.14.1", "v1.2.3.4", "1.2.3-beta.4", "6.1.7601.17514",
          "Chrome/120.0.6099.109", "node 20.11.1", "1.3.6.1.4.1.311", "2.0.0-rc.1+build.123",
          "rust 1.85.0", "iOS 17.1.2", "0.4.2.1-alpha"]:
    neg("version", v)
for _ in range(12):
    u = "%08x-%04x-%04x-%04x-%012x" % (R.getrandbits(32), R.getrandbits(16), R.getrandbits(16),
                                       R.getrandbits(16), R.getrandbits(48))
    neg("uuid", f"id {u}")
    neg("git", f"commit {R.getrandbits(160):040x}")
    neg("git", f"fixed in {R.getrandbits(28):07x}")
neg("uuid", "id 123e4567-e89b-12d3-a456-426614174000")
for t in ["1Z999AA10123456784", "1Z 999 AA1 01 2345 6784", "9400 1000 0000 0000 0000 00",
          "9205 5000 0000 0000 0000 00", "92055901755477000000000015", "420941239400111899223197428490",
          "9400111899223197428490", "JD014600006281234567", "RR123456785DE", "00340434161234567890",
          "1234 5678 9012", "7489 1234 5678 9012 3456"]:
    neg("tracking", f"tracking {t}")
for _ in range(6):
    neg("tracking", "USPS " + " ".join(f"{R.randint(0, 9999):04d}" for _ in range(5)) + f" {R.randint(10, 99)}")
for e in ["1700000000", "1700000000123", "1732994105", "1732994105123456", "ts=1700000000",
          "epoch 1600000000000", "1700000000.123"]:
    neg("epoch", e)
for i in ["ISBN 978-3-16-148410-0", "ISBN 0-306-40615-2", "ISBN-13: 9780306406157", "ISBN 3-16-148410-X",
          "ISSN 0317-8471", "ISBN 978 0 306 40615 7"]:
    neg("isbn", i)
for s in ["12 + 30 = 42", "1234 + 5678 = 6912", "2 x 4 = 8", "sum: 123 456 789 / 3", "3 * 17 = 51",
          "100 - 12 - 3 = 85", "1+1=2"]:
    neg("sum", s)
for q in ["qty 12", "2 x 500 g", "3 pcs", "12 boxes of 24", "1 000 units", "15 kg", "12/24 done",
          "items 1, 2, 3", "page 12 of 340", "rows 1-100", "50 - 100 people", "1 2 3 4 5 6 7 8 9 10"]:
    neg("qty", q)
for z in ["10115 Berlin", "75008 Paris", "SW1A 1AA", "90210", "00185 Roma", "28013 Madrid", "00-950 Warszawa",
          "100-0001 Tokyo", "2000 NSW", "01310-200 São Paulo", "110001 New Delhi", "NW1 6XE London",
          "D02 X285 Dublin", "1010 Wien", "8001 Zürich", "12345-6789"]:
    neg("postal", z)
for r in ["room 1204", "Room 12, floor 3", "apt 5B", "suite 400", "gate B12", "seat 23A", "building 7 room 101",
          "Zimmer 3.14", "office 2.105"]:
    neg("room", r)
for _ in range(8):
    mac = ":".join(f"{R.getrandbits(8):02x}" for _ in range(6))
    neg("mac", f"mac {mac}")
    neg("mac", f"MAC {mac.upper().replace(':', '-')}")
for m in ["aa:bb:cc:dd:ee:ff", "00:1A:2B:3C:4D:5E", "0011.2233.4455", "01-23-45-67-89-01"]:
    neg("mac", f"mac {m}")
for x in ["DE89 3704 0044 0532 0130 01", "GB83 WEST 1234 5698 7654 32", "ABCD EFGH IJKL MNOP",
          "FR00 1234 5678", "AB12 3456 7890 1234 5678"]:
    neg("iban-invalid", x)
for x in ["000-45-6789", "666-12-3456", "912-12-3456", "123-00-6789", "123-45-0000", "order 123456789",
          "customer 987654321", "SKU 123-45-678", "part 123-456-7890-1"]:
    neg("ssn-invalid", x)
for x in ["not an email: a@b", "user@localhost", "@mention", "price 5@2", "a @ b . com", "x@y.z",
          "foo@bar", "email at example dot com", "10%4O off", "100%40 hours"]:
    neg("email-like", x)
for x in ["order 1234567890", "ref 0123", "call 112", "dial 911", "ext. 1234", "PIN 1234", "code 123456",
          "OTP 482913", "customer 00012345", "batch 20261130-001", "line 1234567", "ticket 12345678",
          "id 44 20", "12 34 56", "+1 day", "+44 points", "1.000.000", "1 000 000", "10.000.000,00"]:
    neg("short-number", x)
for x in ["at 12:30", "ratio 16:9", "score 3:1", "Bible John 3:16", "::", "std::vector", "a::b::c",
          "time 10:30:00:00", "host:port", "http://example.com:8080/path"]:
    neg("colon", x)
for x in ["The quick brown fox jumps over the lazy dog.", "Leave the parcel with the neighbour at number 14.",
          "Allergic to penicillin since 2019.", "Meeting in room 4 at 3pm, bring 2 copies.",
          "Temperature was 21.5°C, humidity 45%.", "Flight LH 2034 departs 07:45 from gate A12.",
          "Chapter 3, section 2.1, figure 4.", "Über 1.000 Kunden vertrauen uns seit 1998.",
          "Prix : 12,50 € TTC", "Lot 2026/11/17 — 500 g", "5 stars, 1203 reviews",
          "Serial SN-2026-0042-AB", "Coordinates 48.8584, 2.2945", "Windows 10.0.19045.2965"]:
    neg("prose", x)

# More generated negatives: random dates, times, prices, ids, timestamps.
for _ in range(25):
    y, m, d = R.randint(1950, 2030), R.randint(1, 12), R.randint(1, 28)
    hh, mm, ss = R.randint(0, 23), R.randint(0, 59), R.randint(0, 59)
    fmt = R.choice([f"{y}-{m:02d}-{d:02d}", f"{d:02d}/{m:02d}/{y}", f"{d}.{m}.{y}", f"{m}/{d}/{y}",
                    f"{d:02d}.{m:02d}.{y} {hh:02d}:{mm:02d}", f"{y}-{m:02d}-{d:02d}T{hh:02d}:{mm:02d}:{ss:02d}+01:00",
                    f"{d:02d}-{m:02d}-{y} {hh:02d}:{mm:02d}:{ss:02d}", f"{y}{m:02d}{d:02d}{hh:02d}{mm:02d}{ss:02d}"])
    neg("date", f"born {fmt}" if y < 2010 else f"delivered {fmt}")
for _ in range(20):
    a = R.randint(1, 9999999)
    neg("price", R.choice([f"total {a:,}.{R.randint(0, 99):02d} USD", f"Summe {a:,}".replace(",", ".") + f",{R.randint(0, 99):02d} €",
                           f"{a / 100:.2f} EUR", f"amount={a}", f"{a:,} pts".replace(",", " ")]))
for _ in range(20):
    neg("order", R.choice([f"order no. {R.randint(2020, 2026)}{R.randint(1, 12):02d}{R.randint(1, 28):02d}-{R.randint(1, 9999):04d}",
                           f"PO {R.randint(10000000, 99999999)}", f"case #{R.randint(100000, 9999999)}",
                           f"ticket JIRA-{R.randint(1, 99999)}", f"SKU {R.randint(100, 999)}-{R.randint(1000, 9999)}",
                           f"Kundennummer {R.randint(100000, 999999)}", f"ref {R.randint(1000, 9999)}/{R.randint(10, 99)}"]))
for _ in range(15):
    neg("epoch", R.choice([f"ts {R.randint(1_000_000_000, 1_900_000_000)}",
                           f"created_ms={R.randint(1_000_000_000_000, 1_900_000_000_000)}",
                           f"nanos {R.randint(10**18, 2 * 10**18)}"]))
for _ in range(10):
    neg("version", f"build {R.randint(1, 30)}.{R.randint(0, 20)}.{R.randint(0, 300)}")
    neg("qty", f"{R.randint(2, 99)} x {R.randint(1, 999)} g, {R.randint(1, 9)} boxes")

for x in ["invoice 1234-5678-9012-3456", "2026-11-30 10:30:00,123", "tracking 1Z9999W99999999999",
          "50 % off", "Call 555 now", "page 2 of 12", "+1 (vote)", "scored 4111 points in 1111 games",
          "from 1999 to 2026", "between 10.5 and 12.75", "RFC 3339", "HTTP/1.1 200 OK", "port 8080",
          "CVE-2024-12345", "ISO 8601", "EAN 4006381333931", "GTIN 00012345600012", "UPC 036000291452",
          "IMEI 35-209900-176148-1", "VIN 1HGCM82633A004352", "lat 52.520008 lon 13.404954",
          "1.5 GB of 16 GB used", "05 11 2026 14 30", "am 05 11 2026 14:30 Uhr", "Kundennummer 0012 3456 78",
          "31 12 1999 23 59 59", "pid 12345 exited", "errno 110", "blocks 4096 8192 16384 32768"]:
    neg("misc", x)


# --- red-team round 2: obfuscated and adjacent forms (folded before detection) ---
ZWSP = "\u200b"
AR = str.maketrans("0123456789", "\u0660\u0661\u0662\u0663\u0664\u0665\u0666\u0667\u0668\u0669")
FW = str.maketrans("0123456789+@.", "\uff10\uff11\uff12\uff13\uff14\uff15\uff16\uff17\uff18\uff19\uff0b\uff20\uff0e")
DEV = str.maketrans("0123456789", "\u0966\u0967\u0968\u0969\u096a\u096b\u096c\u096d\u096e\u096f")
for k in range(4):
    num = luhn_complete(R.choice(["4", "51", "55", "6011", "2221"]), 16)
    g = [num[i:i + 4] for i in range(0, 16, 4)]
    for sep in ["_", ",", "/", "  ", " - ", "\u2013", "*", ZWSP, " / ", "\u2014"]:
        pos("card", "sep-obfuscated", sep.join(g), R.sample(CARD_T, 1))
    pos("card", "grouping", " ".join(num[i:i + 2] for i in range(0, 16, 2)), ["card {} ok"])
    pos("card", "grouping", " ".join([num[:3], num[3:6], num[6:9], num[9:12], num[12:]]), ["{}"])
    pos("card", "zwsp", num[:8] + ZWSP + num[8:], ["Karte: {}"])
    pos("card", "arabic-indic", num.translate(AR), ["\u0628\u0637\u0627\u0642\u0629 {}"])
    pos("card", "fullwidth", num.translate(FW), ["card {}"])
    pos("card", "devanagari", num.translate(DEV), ["{}"])
    pos("card", "glued", num, ["card{}", "x{}", "{}x", "{}.5", "cc:{}/exp"])
    pos("card", "expiry-after", " ".join(g), ["card {} 1227", "card {} 0" + str(R.randint(1, 9)) + "29"])
    pos("card", "expiry-after", "-".join(g), ["card {}-2345"])
    other = luhn_complete("4", 16)
    og = " ".join(other[i:i + 4] for i in range(0, 16, 4))
    rows.append(("card", "two-cards", "pay \u27e6" + " ".join(g) + "\u27e7 " + og))
    rows.append(("card", "two-cards", "pay " + " ".join(g) + " \u27e6" + og + "\u27e7"))

for e, t in [("ada\u200b@example.com", "{}"), ("ada@example\u200b.com", "mail {}"),
             ("ada\uff20example.com", "{}"), ("ada&#64;example.com", "<p>{}</p>"),
             ("ada&#x40;example.com", "{}"), ("ada&commat;example.com", "{}"),
             ("ada%40example%2Ecom", "?to={}"), ("\"ada lovelace\"@example.com", "To: {}"),
             ("ada@localhost", "From: <{}>"), ("root@mailhost", "<{}>"),
             ("ada [at] example [dot] com", "mail {}"), ("ada (at) example (dot) com", "{}"),
             ("jane.doe {at} example {dot} org", "write {}"), ("ada[at]example.com", "{}"),
             ("ada at example dot com", "mail {} please"), ("j.smith at mail dot example dot de", "{}"),
             ("ada.lovelace@example.com", "ref:" + "_" * 257 + "{}"),
             ("ada@example.com", "x" * 300 + "-{}")]:
    pos("email", "obfuscated", e, [t])
# The padded forms: the marked span is the address, the padding may be included.

for p, t in [("+44" + ZWSP + "20" + ZWSP + "7946" + ZWSP + "0958", "{}"), ("+44_20_7946_0958", "tel {}"),
             ("+442079460958".translate(AR), "{}"), ("\uff0b44 20 7946 0958", "{}"),
             ("&#43;44 20 7946 0958", "<td>{}</td>"), ("%2B44%2020%207946%200958", "?tel={}"),
             ("+442079460958", "tel{}"), ("+1 415 555 2671", "{}x"), ("+1 415 555 2671", "{} x123"),
             ("+44 20 7946 0958", "{} 1234"), ("+44 20 7946 0958", "{} 0958"),
             ("442079460958", "https://wa.me/{}"), ("+49\u201330\u201312345678", "{}"),
             ("\uff10\uff13\uff10 \uff11\uff12\uff13\uff14\uff15\uff16\uff17\uff18", "Tel. {}")]:
    pos("phone", "obfuscated", p, [t])

for i, t in [("DE89.3704.0044.0532.0130.00", "{}"), ("DE89  3704  0044  0532  0130  00", "IBAN {}"),
             ("DE 89 3704 0044 0532 0130 00", "{}"), ("DE89 370 400 440 532 013 000", "{}"),
             ("DE89370400440532013000", "iban{}"), ("DE89" + ZWSP + "3704" + ZWSP + "0044" + ZWSP + "0532" + ZWSP + "0130" + ZWSP + "00", "{}"),
             ("DE89370400440532013000", "{}12"), ("DE89 3704 0044 0532 0130 00", "{}12 34"),
             ("DE89370400440532013000", "{}DE89370400440532013000"),
             ("DE89370400440532013000", "DE89370400440532013000{}")]:
    pos("iban", "obfuscated", i, [t])
for cc, fmt in list(IBAN_FMT.items())[:10]:
    b = bban(fmt)
    iban = cc + iban_check(cc, b) + b
    pos("iban", "obfuscated", ".".join(iban[i:i + 4] for i in range(0, len(iban), 4)), ["IBAN {}"])
    pos("iban", "obfuscated", iban[:2] + " " + " ".join(iban[i:i + 4] for i in range(2, len(iban), 4)), ["{}"])

for t, d in [("ssn {}", "123.45.6789"), ("SSN: {}", "123/45/6789"), ("ssn {}", "123\u201345\u20136789"),
             ("s.s.n. {}", "123456789"), ("SSN {}", "078\u200b05\u200b1120")]:
    pos("us_ssn", "obfuscated", d, [t])

for t, d in [("from {} ok", "081.2.69.160"), ("{}", "81.002.069.160"), ("ip {}", "1361069472"),
             ("addr={}", "3232235777"), ("{}", "0x51.0x2.0x45.0xa0"), ("from {}", "81.2.69.160".translate(AR)),
             ("client {}", "\uff18\uff11\uff0e\uff12\uff0e\uff16\uff19\uff0e\uff11\uff16\uff10")]:
    pos("ipv4", "obfuscated", d, [t])

# Look-alikes that must stay negatives.
for x in ["user@localhost", "the dot com bubble", "meet at noon, dot the i's",
          "Tom &amp; Jerry &#169; 2026", "q=100%25%20off", "due \uff11\uff12.\uff11\uff11.\uff12\uff10\uff12\uff16",
          "order \u0664\u0661\u0661\u0661\u0661\u0661\u0661\u0661\u0661\u0661\u0661\u0661\u0661\u0661\u0661\u0662",
          "v\u0661.\u0662.\u0663", "ts=\u0661\u0667\u0660\u0660\u0660\u0660\u0660\u0660\u0660\u0660",
          "ISBN 978\u20133\u201316\u2013148410\u20130", "ts 1361069472", "ip 12345", "addr 12 Main St",
          "id 1234_5678_9012_3456", "ref 4111_1111_1111_1112", "1,234,567,890.12", "total 12 345 678,90",
          "2 x 4111 g", "sku 1234/5678/9012/3456", "a%40b", "price 12&#8364;", "x&#x200b;y",
          "I work at acme dot com", "look at me", "Zimmer 3\u200b.14", "due 12.11.2026", "v1.2.3 and 1.2.3.4.5",
          "order no. 0012-3456-7890-1234", "due 01.02.03.04", "I met him at the dot com party",
          "look at example dot com", "shop at amazon dot com"]:
    neg("lookalike", x)
# A full-length card behind a reference or a decimal point is still a card
# (red-team round 3: hiding a card as `1.4111…` or after `ref 1234`).
pos("card", "embedded", "4111 1111 1111 1111", ["ref 1234 {}"])
pos("card", "embedded", "4111111111111111", ["price 0.{}", "price 0,{}", "1.{}", "+{}", "00{}", "US{}"])
pos("card", "embedded", "5555555555554444", ["Betrag 1,{} EUR"])
for sep in ["|", ":", ";", "~", "\u00b7", "\u2022", "--", " | "]:
    c = sep.join(["4111", "1111", "1111", "1111"])
    pos("card", "separator", c, ["card {}", "{}"])
for c in ["41111111 11111111", "411111 1111111111", "4111 11111111 1111", "4111 1111-1111 1111"]:
    pos("card", "grouping", c, ["card {} ok"])
# E-mail forms of red-team round 3.
for e in ["ada @ example . com", "ada(comment)@example.com", "ada@(comment)example.com",
          "ada at example.com", "ada&#64example.com", "ada%2540example.com", "ada@[192.168.1.1]",
          "ada@[IPv6:2001:db8::1]"]:
    pos("email", "obfuscated", e, ["mail {} now", "{}"])
for x in ["a @ b . com", "I work at acme.com", "see you at 10.30", "rated 5 @ 3.50 each"]:
    neg("lookalike", x)
# Red-team round 3, second pass.
# (Line breaks and tabs cannot stand in this file: unit tests cover them.)
for t in ["De89370400440532013000", "DE89/3704/0044/0532/0130/00", "DE89 | 3704 | 0044 | 0532 | 0130 | 00"]:
    pos("iban", "wrapped", t, ["IBAN {} ok"])
for t in ["8 (912) 345-67-89", "8 912 345 67 89", "8-912-345-67-89", "89123456789", "8 (495) 123-45-67",
          "8-800-555-35-35", "+7 912 345-67-89"]:
    pos("phone", "RU-nat", t, ["тел. {}", "call {} please"])
for t in ["090\u30fc1234\u30fc5678", "\uff10\uff19\uff10\u30fc\uff11\uff12\uff13\uff14\u30fc\uff15\uff16\uff17\uff18"]:
    pos("phone", "JP-dash", t, ["電話 {}", "{}"])
pos("card", "jp-dash", "4111\u30fc1111\u30fc1111\u30fc1111", ["card {}"])
pos("card", "circled", "\u2463\u2460\u2460\u2460 \u2460\u2460\u2460\u2460 \u2460\u2460\u2460\u2460 \u2460\u2460\u2460\u2460", ["card {}"])
for t in ["ada{x}@example.com", '"ada@home"@example.com', "ada\\@example.com", "ada.lovelace@10.0.0.5"]:
    pos("email", "rfc5322", t, ["mail {} ok"])
for t in ["0xCB.0x00.0x71.0x2D", "0xCB.0.113.45"]:
    pos("ipv4", "hex", t, ["from {} ok"])
for x in ["8 items at 912 each", "call 8 (800) pts", "page 8 of 912", "build 8.912.345"]:
    neg("lookalike", x)
# Red-team round 4 (final).
for t in ["020 7946 0958", "06 12 34 56 78"]:
    pos("phone", "bullet", t, ["Contacts: + {}", "+ {}"])
for t, tail in [("3056 9309 0259 04", " 12/28"), ("30569309025904", " 123"), ("36000000000008", ", 12/28"),
                ("5018 0000 0009", " 12/28"), ("4222222222222", " 123")]:
    pos("card", "short+expiry", t, ["card {}" + tail])
for t in ["ada.lovelace@gmail[dot]com", "ada.lovelace@gmail dot com", "ada.lovelace@gmail[.]com",
          "ada.lovelace[at]gmail[.]com"]:
    pos("email", "defanged", t, ["mail {} ok"])
for t in ["ec2-203-0-113-45", "pool-71-170-3-12", "ip_203_0_113_45"]:
    pos("ipv4", "hostname", t.split("-", 1)[-1].split("_", 1)[-1], [t.split("-", 1)[0] + "-{}.example.net" if "-" in t else "ip_{}"])
for x in ["19,50,83,6,9,68,12,46,74,7,64,27,4", "1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16",
          "version 2026-11-30-12-00", "meet at 10.30 at the office"]:
    neg("lookalike", x)
# Red-team round 5.
for t in ["55 5555 5555 5544 44", "4111 1111 1111 11 11", "41 111 111 111 111 11", "4 111 111 111 111 111"]:
    pos("card", "short-edge-groups", t, ["card: {} ok"])
for pre in ["1) ", "ref 1234 ", "qty 2 ", "020 7946 0958 "]:
    pos("card", "short-after-number", "3056 9309 0259 04", [pre + "{}"])
for t in ["ada.lovelace(at)gmail(dot)com", "ada.lovelace@gmail[.]com", "ada.lovelace at gmail dot com"]:
    pos("email", "after-prose-at", t, ["reach me at {}"])
for x in ["meet @ 10 dot 30", "buy 3 @ 4 dot 99", "meet me at the park dot com"]:
    neg("lookalike", x)
for _ in range(10):
    n = luhn_complete(R.choice(["4", "51", "6011"]), 16)
    bad = n[:-1] + str((int(n[-1]) + R.randint(1, 9)) % 10)
    neg("luhn-invalid", "ref " + R.choice(["_", ",", "/", "*", "  ", ZWSP]).join(bad[i:i + 4] for i in range(0, 16, 4)))
    neg("luhn-invalid", "id " + bad.translate(AR))

print("# Labelled corpus for the built-in detectors (src/classify.rs).")
print("# Generated by tests/detectors/gen_corpus.py (fixed seed); checked in as is.")
print("# Columns, tab-separated: expected detector (email, phone, card, iban, ipv4,")
print("# ipv6, us_ssn, or none), format tag (country / brand / kind), text.")
print("# In a positive, \u27e6 and \u27e7 mark the expected span (the markers are removed")
print("# before detection); the detector must report a span covering it, with the")
print("# expected detector among the span's detectors. A negative (none) must")
print("# produce no span at all. \\u00a0 and \\u202f appear as the raw characters.")
print("# So do the obfuscations of the second red-team round: zero-width spaces,")
print("# other scripts' digits, full-width forms, Unicode dashes, HTML entities and")
print("# percent escapes (the detectors fold them before detection).")
for det, tag, text in rows:
    assert "\t" not in text and "\n" not in text
    print(f"{det}\t{tag}\t{text}")
