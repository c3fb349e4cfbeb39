"""Pattern recognisers for identifying content in free text: dates, ages over 89, phone and fax
numbers, e-mail addresses, URLs, IP addresses, street addresses, postcodes and facilities, record
numbers and other identifiers.

Numbers are checked where a check exists: phone numbers by Google's libphonenumber
(``phonenumbers``), NHS, social-security and card numbers by their checksums
(``python-stdnum``), dates by the calendar, IP addresses by :mod:`ipaddress`. Scanner text is
full of numbers (``TR 2300``, ``ep2d_diff_b1000``, ``syngo MR E11``, ``v1.0.20210317``), so
plain numbers count as identifiers only when long (7+ digits), prefixed (``MRN-8841207``) or
named by a context word (``acc 55512``).
"""

from __future__ import annotations

import ipaddress
import re
from datetime import date

import phonenumbers
from stdnum import luhn
from stdnum.gb import nhs
from stdnum.us import ssn

_MONTHS = {
    **dict.fromkeys(["jan", "january", "januar", "janvier", "januari", "enero", "gennaio", "janeiro"], 1),
    **dict.fromkeys(["feb", "february", "februar", "février", "fevrier", "februari", "febrero", "febbraio"], 2),
    **dict.fromkeys(["mar", "march", "märz", "maerz", "mars", "maart", "marzo", "mrt"], 3),
    **dict.fromkeys(["apr", "april", "avril", "abril", "aprile"], 4),
    **dict.fromkeys(["may", "mai", "mei", "mayo", "maggio", "maj"], 5),
    **dict.fromkeys(["jun", "june", "juni", "juin", "junio", "giugno"], 6),
    **dict.fromkeys(["jul", "july", "juli", "juillet", "julio", "luglio"], 7),
    **dict.fromkeys(["aug", "august", "août", "aout", "augustus", "agosto"], 8),
    **dict.fromkeys(["sep", "sept", "september", "septembre", "septiembre", "settembre"], 9),
    **dict.fromkeys(["oct", "october", "oktober", "okt", "octobre", "octubre", "ottobre"], 10),
    **dict.fromkeys(["nov", "november", "novembre", "noviembre"], 11),
    **dict.fromkeys(["dec", "december", "dezember", "dez", "décembre", "decembre", "diciembre", "dicembre"], 12),
}
_MONTH = "(?:" + "|".join(sorted(map(re.escape, _MONTHS), key=len, reverse=True)) + r")\.?"
_NB = r"(?<![^\W_])(?<!\.)"  # no letter, digit or dot before (keeps versions like v1.0.20210317 out)
_TIME = r"(?:[T ]\d{1,2}:\d{2}(?::\d{2}(?:\.\d+)?)?)?"

_WEEKDAY = r"(?:(?:(?:Mon|Tues|Wednes|Thurs|Fri|Satur|Sun)day|Mon|Tue|Tues|Wed|Thu|Thur|Thurs|Fri|Sat|Sun)\.?,?\s+)?"
_DATE_PATTERNS = [
    ("ymd", re.compile(rf"{_NB}((?:19|20)\d\d)([-/.])(\d{{1,2}})\2(\d{{1,2}}){_TIME}(?![\d])")),
    ("ymd_compact", re.compile(r"(?<![\dA-Za-z.])((?:19|20)\d\d)(\d\d)(\d\d)(?:[T.]?\d{6}(?:\.\d+)?)?(?![\d])")),
    ("dmy", re.compile(rf"{_NB}(\d{{1,2}})([-/.])(\d{{1,2}})\2((?:19|20)?\d\d){_TIME}(?![\d.])")),
    ("d_month_y", re.compile(rf"(?i)(?<![^\W_]){_WEEKDAY}(\d{{1,2}})(?:st|nd|rd|th)?[\s./-]*({_MONTH})(?:[\s.,/-]*('?\d{{2}}|\d{{4}}))?(?![^\W_])")),
    ("month_d_y", re.compile(rf"(?i)(?<![^\W_]){_WEEKDAY}({_MONTH})[\s.-]*(\d{{1,2}})(?:st|nd|rd|th)?(?:,?[\s./-]*(\d{{4}}))?(?![^\W_])")),
    ("month_y", re.compile(rf"(?i)(?<![^\W_])({_MONTH})[\s.,-]*((?:19|20)\d\d)(?![^\W_])")),
    ("m_y", re.compile(rf"{_NB}(0?[1-9]|1[0-2])([/-])((?:19|20)\d\d)(?![\d/-])")),
]


def _valid(y: int, m: int, d: int) -> bool:
    try:
        date(y, m, d)
    except ValueError:
        return False
    return 1890 <= y <= 2100


def find_dates(text: str) -> list[tuple[int, int]]:
    spans = []
    for kind, pattern in _DATE_PATTERNS:
        for m in pattern.finditer(text):
            g = m.groups()
            if kind == "ymd" and _valid(int(g[0]), int(g[2]), int(g[3])):
                spans.append(m.span())
            elif kind == "ymd_compact" and _valid(int(g[0]), int(g[1]), int(g[2])):
                spans.append(m.span())
            elif kind == "dmy":
                a, b, y = int(g[0]), int(g[2]), int(g[3])
                y = y if y >= 100 else (1900 + y if y > 30 else 2000 + y)
                # dots between small numbers are versions (1.5.10) unless the year has four digits
                if g[1] == "." and len(g[3]) != 4 and not (len(g[0]) == len(g[2]) == 2 and (a > 12 or b > 12)):
                    continue
                if _valid(y, b, a) or _valid(y, a, b):
                    spans.append(m.span())
            elif kind == "d_month_y":
                if 1 <= int(g[0]) <= 31 and (g[2] or g[1].rstrip(".").lower() not in ("may", "mar", "jun")):
                    spans.append(m.span())
            elif kind == "month_d_y":
                if 1 <= int(g[1]) <= 31 and (g[2] or g[0].rstrip(".").lower() not in ("may", "mar", "jun")):
                    spans.append(m.span())
            elif kind in ("month_y", "m_y"):
                spans.append(m.span())
    return spans


_AGE = re.compile(r"(?<![^\W_])(?<!\.)(?:age[d]?[\s:=]*)?(9\d|1[01]\d)\s*-?\s*(?:y/?o|yrs?|years?(?:[\s-]+old)?|y(?![^\W_]))"
                  r"|(?<![^\W_])(?<!\.)age[d]?[\s:=]+(9\d|1[01]\d)(?![\w.])"
                  r"|(?<![^\W_])0(9\d|1[01]\d)Y(?![^\W_])", re.IGNORECASE)


def find_ages_over_89(text: str) -> list[tuple[int, int]]:
    return [m.span() for m in _AGE.finditer(text)]


_EMAIL = re.compile(r"(?i)(?<![\w.+-])[a-z0-9][a-z0-9._%+-]*@[a-z0-9-]+(?:\.[a-z0-9-]+)*\.[a-z]{2,24}(?![^\W_])")
_TLDS = ("com|org|net|edu|gov|mil|int|info|biz|io|ai|health|hospital|clinic|med|nhs\\.uk|ac\\.uk|co\\.uk|org\\.uk|"
         "uk|us|ca|au|nz|ie|de|at|ch|nl|be|dk|se|no|fi|is|fr|it|es|pt|pl|cz|eu|jp|cn|in|br|mx|za")
_URL = re.compile(r"(?i)\b(?:(?:https?|ftp|sftp|smb|file)://[^\s<>\"']+|www\.[^\s<>\"']+"
                  rf"|(?<![@\w.-])[a-z0-9](?:[a-z0-9-]*[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)*\.(?:{_TLDS})"
                  r"(?:/[^\s<>\"']*)?)(?![\w@])")
_IPV4 = re.compile(r"(?<![^\W_])(?<!\.)(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})(?::\d{1,5})?(?![\w.]|\.\d)")
_IPV6 = re.compile(r"(?i)(?<![^\W_])(?<!:)(?:[0-9a-f]{0,4}:){2,7}[0-9a-f]{0,4}(?![^\W_])(?!:)")
_VERSION_BEFORE = re.compile(r"(?i)(?:\bv|version|ver\.?|release|build|software|syngo|sw)\s*[:=]?\s*$")


def find_emails(text: str) -> list[tuple[int, int]]:
    return [m.span() for m in _EMAIL.finditer(text)]


def find_urls(text: str) -> list[tuple[int, int]]:
    return [(m.start(), m.end() - len(m.group(0)) + len(m.group(0).rstrip(".,;:)"))) for m in _URL.finditer(text)]


def find_ips(text: str) -> list[tuple[int, int]]:
    spans = []
    for m in _IPV4.finditer(text):
        octets = [int(g) for g in m.groups()]
        if max(octets) > 255 or octets[0] == 0 or max(octets) < 10:
            continue  # 4.0.0.0 and the like are software versions
        if _VERSION_BEFORE.search(text[max(0, m.start() - 12):m.start()]):
            continue
        spans.append(m.span())
    for m in _IPV6.finditer(text):
        try:
            ipaddress.IPv6Address(m.group(0))
        except ValueError:
            continue
        spans.append(m.span())
    return spans


_PHONE_CONTEXT = re.compile(r"(?i)(?<![^\W_])(?:tel|telephone|phone|ph|mobile|mob|cell|fax|call|pager|bleep|ext|contact)\b\.?"
                            r"(?:\s+[a-z]+){0,3}[\s:#=.-]*(\+?\(?\d[\d\s().-]{5,18}\d)(?!\d)")
_NANP = re.compile(r"(?<![^\W_])\(\d{3}\)\s?\d{3}-\d{4}(?![^\W_])")
_REGIONS = ("US", "GB", "DE", "FR", "NL", "DK", "SE", "CA", "AU", "IT", "ES", "CH", "BE", "IE")


def find_phones(text: str) -> list[tuple[int, int]]:
    spans = [m.span(1) for m in _PHONE_CONTEXT.finditer(text) if len(re.sub(r"\D", "", m.group(1))) >= 7]
    spans += [m.span() for m in _NANP.finditer(text)]
    if sum(c.isdigit() for c in text) < 7:
        return spans
    for region in _REGIONS:
        # exact grouping: the digits grouped as that country writes its numbers (not "0 1000 2000")
        for match in phonenumbers.PhoneNumberMatcher(text, region, leniency=phonenumbers.Leniency.EXACT_GROUPING):
            raw, before = match.raw_string, text[max(0, match.start - 1):match.start]
            # a bare digit run is an identifier or a date, not a phone number; v1.0.2021… is a version
            if re.fullmatch(r"\d+", raw) or (before and (before.isalnum() or before == ".")):
                continue
            if _NHS.fullmatch(raw) and nhs.is_valid(raw):
                continue  # an NHS number (checksum), found by find_ids
            spans.append((match.start, match.end))
    return spans


_ID_CONTEXT = re.compile(
    r"(?i)(?<![^\W_])(?:mrn|mr\s?#|mr\s?no|med(?:ical)?\s?rec(?:ord)?|record|chart|acc(?:ession)?|hosp(?:ital)?\s?(?:no|num|number|#|id)|"
    r"patient\s?id|pt\s?id|pid|case|study\s?id|nhs|ssn|social\s?security|insurance|member|policy|encounter|"
    r"visit\s?(?:no|id|#)|csn|fin|empi|urn?|ur\s?number|id|no\.?|number|#)\b[\s:#=.-]*(?:no\.?|number|#)?[\s:#=.-]*"
    r"([A-Z0-9][A-Z0-9/-]{2,}[A-Z0-9])(?![^\W_])")
_PREFIXED_ID = re.compile(r"(?<![^\W_])(?<!-)[A-Z]{1,6}\d{0,4}[-_#:/]?\d{5,}(?:[-/]\d+)*(?![^\W_])")
_LONG_NUMBER = re.compile(r"(?<![^\W_])(?<![.,-])\d(?:\d|-(?=\d)){5,}\d(?![^\W_])(?![.,]\d)")
_UID = re.compile(r"(?<![^\W_])(?<!\.)[012](?:\.(?:0|[1-9]\d*)){4,}(?![^\W_])(?!\.)")
_SSN = re.compile(r"(?<![^\W_])(?<!-)\d{3}-\d{2}-\d{4}(?![^\W_])(?!-)")
_NHS = re.compile(r"(?<![^\W_])(?<!-)\d{3}[ -]?\d{3}[ -]?\d{4}(?![^\W_])(?!-)")
_CARD = re.compile(r"(?<![^\W_])(?<!-)\d(?:[ -]?\d){12,18}(?![^\W_])(?!-)")


def find_ids(text: str) -> list[tuple[int, int]]:
    spans = [m.span() for m in _UID.finditer(text)]
    spans += [m.span() for m in _SSN.finditer(text) if ssn.is_valid(m.group(0)) or "ssn" in text.lower()]
    spans += [m.span() for m in _NHS.finditer(text) if nhs.is_valid(m.group(0))]
    spans += [m.span() for m in _CARD.finditer(text) if luhn.is_valid(re.sub(r"\D", "", m.group(0)))]
    spans += [m.span(1) for m in _ID_CONTEXT.finditer(text) if sum(c.isdigit() for c in m.group(1)) >= 3]
    spans += [m.span() for m in _PREFIXED_ID.finditer(text)]
    for m in _LONG_NUMBER.finditer(text):
        digits = re.sub(r"\D", "", m.group(0))
        if len(digits) >= 7:
            spans.append(m.span())
    return spans


_STREET_TYPES = (r"(?:Street|St|Road|Rd|Avenue|Ave|Lane|Ln|Drive|Dr|Boulevard|Blvd|Way|Court|Ct|Place|Pl|"
                 r"Terrace|Close|Crescent|Parkway|Pkwy|Highway|Hwy|Square|Sq|Row|Gardens|Mews|Circle|Cir|"
                 r"Trail|Grove|Walk|Hill|Park)")
_EU_STREET = (r"(?:stra(?:ß|ss)e|str\.|weg|gade|vej|vägen|gatan|gata|laan|straat|gracht|plein|gasse|allee|allé|alle|"
              r"platz|ring|kade|dreef|veien|torv|plads)")
_POSTCODE_TAIL = r"(?:,?\s*(?:[A-Z]{1,2}-)?\d{4,5}(?:\s+[A-ZÀ-Þ][\w-]+)?)?"
_ADDRESS = [
    re.compile(rf"(?<![^\W_])(?<!\.)(?:(?:Flat|Apt|Apartment|Unit|Suite)\s*\w+,?\s+)?\d{{1,5}}[A-Za-z]?,?\s+(?:[A-Z][\w'.-]*\s+){{1,4}}{_STREET_TYPES}\b\.?"
               rf"(?:,?\s*(?:Suite|Ste|Apt|Unit|Flat|Floor)\.?\s*#?\w+)?{_POSTCODE_TAIL}"),
    re.compile(rf"(?<![^\W_])[A-ZÄÖÜÆØÅ][\wäöüßæøåéè-]*{_EU_STREET}\s+\d{{1,4}}[a-zA-Z]?\b{_POSTCODE_TAIL}"),
    re.compile(rf"(?<![^\W_])(?i:rue|avenue|boulevard|via|viale|calle|avenida|plaza|piazza|chemin|allée)\s+"
               rf"(?:(?:de|du|des|la|le|del|della|di)\s+)*[A-Z][\w'-]+(?:\s+[A-Z][\w'-]+)?(?:,?\s*\d{{1,4}})?\b{_POSTCODE_TAIL}"),
    re.compile(rf"(?<![^\W_])[A-ZÄÖÜÆØÅ][\wäöüßæøåéè-]+\s+(?:Allé|Alle|Plads|Torv|Vej|Gade|Straße|Strasse|Weg|Laan|"
               rf"Straat|Gracht|Plein|Platz)\s+\d{{1,4}}[a-zA-Z]?\b{_POSTCODE_TAIL}"),
    re.compile(r"(?<![^\W_])(?:P\.?\s?O\.?\s?Box|Postfach|Postbus)\s+\d+"),
]
_POSTCODES = [
    re.compile(r"(?<![^\W_])[A-Z]{1,2}\d[A-Z\d]?\s+\d[ABD-HJLNP-UW-Z]{2}(?![^\W_])"),                # UK
    re.compile(r"(?<![^\W_])[ABCEGHJ-NPRSTVXY]\d[A-Z]\s?\d[A-Z]\d(?![^\W_])"),                       # Canada
    re.compile(r"(?<![^\W_])(?:AL|AK|AZ|AR|CA|CO|CT|DE|FL|GA|HI|ID|IL|IN|IA|KS|KY|LA|ME|MD|MA|MI|MN|MS|MO|MT|NE|"
               r"NV|NH|NJ|NM|NY|NC|ND|OH|OK|OR|PA|RI|SC|SD|TN|TX|UT|VT|VA|WA|WV|WI|WY|DC),?\s+\d{5}(?:-\d{4})?(?![^\W_])"),
    re.compile(r"(?i)(?<![^\W_])(?:zip|post\s?code|postcode|postal\s?code|plz|cp)[\s:#=]*(?=[A-Z]*\d)([A-Z0-9]{3,5}(?:[ -][A-Z0-9]{3,4})?)(?![^\W_])"),
    re.compile(r"(?<![^\W_])(?:DK|D|NL|F|CH|A|S|N|B|FI|SE|NO|DE|FR|IT|I|E|ES|L|P)-\d{4,5}(?![^\W_])"),
    re.compile(r"(?<![^\W_])(?<!-)\d{5}-\d{4}(?![^\W_])(?!-)"),
]
_FACILITY = re.compile(
    r"(?<![^\W_])(?:(?:St\.?|Saint)\s+)?(?:[A-Z][\w'’.-]*\s+){1,4}"
    r"(?:Hospital|Hospitals|Clinic|Clinics|Infirmary|Medical\s+Cent(?:er|re)|Health\s+Cent(?:er|re)|"
    r"Imaging\s+Cent(?:er|re)|Radiology|Hospice|Health\s+System|NHS\s+(?:Foundation\s+)?Trust|Klinikum|"
    r"Sygehus|Ziekenhuis|Hospitalet|Universitetshospital|Surgery|Practice)\b"
    r"|(?<![^\W_])(?:Neuro)?(?:Radiology|Imaging|MRI)\s+(?:Dept\.?|Department|Unit|Cent(?:er|re))(?![^\W_])"
    r"|(?<![^\W_])(?:Hôpital|Hopital|Ospedale|Klinikum|Hospital|Clinique|Clínica|Clinica|Rigshospitalet)"
    r"(?:\s+(?:de|du|des|la|le|del|di|der|am|an)?\s*[A-Z][\w'’-]+){1,3}")


def find_addresses(text: str) -> list[tuple[int, int]]:
    spans = []
    for pattern in (*_ADDRESS, *_POSTCODES):
        for m in pattern.finditer(text):
            spans.append(m.span(1) if pattern.groups else m.span())
    spans += [m.span() for m in _FACILITY.finditer(text)]
    return spans
