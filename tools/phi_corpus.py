"""Write ``benchmarks/data/phi_corpus.tsv``: scanner free text with identifying values planted.

Reproducible (seeded). Each row is one string as it appears in a sidecar value
(SeriesDescription, ProtocolName, ImageComments, ScanNotes …), a README line or a TSV note, with
the exact spans of what was planted (category, start, end) and the identifying values of its
subject that a de-identifier would already have removed (PatientName, PatientID, birth date), so
the benchmark can score detection with and without them. About a third of the rows are plain
scanner text with nothing planted (precision).

Persons' names are drawn, weighted by frequency, from the 1990 US census lists shipped in the
``names`` package: a different source from the detector's dictionaries (Faker), so recall is not
measured on the detector's own word list. Usage: ``python tools/phi_corpus.py [OUT.tsv]``.
"""

from __future__ import annotations

import json
import os
import random
import sys
from datetime import date, timedelta
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "benchmarks" / "data" / "phi_corpus.tsv"
SEED = 20261211

SEQUENCES = ["t1_mprage_sag_p2_iso", "AX FLAIR", "ep2d_bold_moco", "T2 TSE TRA", "SAG T1 SPACE", "ep2d_diff_mddw_30",
             "gre_field_mapping", "T1 Dixon opp", "localizer_32ch", "AAHead_Scout_64ch-head-coil", "SWI_Images",
             "tof_fl3d_tra_p2_multi-slab", "pcasl_3d_pld1800", "MPRAGE GRAPPA2", "cmrr_mbep2d_bold_mb8",
             "Sag CUBE T2 FLAIR", "Ax DWI B1000", "3D BRAVO", "FSPGR BRAVO", "Cor T2 PROPELLER", "t2_star_tra",
             "t1_vibe_dixon_tra", "T2W_TSE_SENSE", "sT1W_3D_TFE", "DTI_high_iso", "rs_fMRI_mb3", "HASTE_cor",
             "MP2RAGE_INV1", "qMRI_MPM_PDw", "t2_space_dark-fluid_sag_p2_iso", "ABCD_T1w_MPR_vNav", "fmap_AP_SE",
             "Survey_32ch_HeadCoil", "WIP_B0_map", "T1W_MPRAGE_NAV", "field_mapping_2.5mm", "EPI_Echo2"]
NOTES = ["Pre-contrast", "post gad", "Motion corrected", "repeat due to motion", "Scan aborted at 4 min",
         "subject fell asleep during run 2", "good quality", "GRAPPA 2, 1 mm iso", "TR 2300 TE 2.98 TI 900",
         "slight wrap-around in phase direction", "64ch head coil, no padding", "run 3 discarded",
         "dental artefact frontal", "shim repeated", "coil element HC3 off", "eyes closed resting state",
         "B0 map acquired twice", "SAR limit reached, TR increased", "subject wore MR-safe glasses",
         "ok", "see ScanNotes", "normal", "baseline", "follow up 6 months", "Echo 2 of 4", "T1 Dixon opp phase",
         "Grace period before scanning: 5 min", "Mark on forehead for vitamin E capsule"]
README = ["This dataset contains T1-weighted images of 20 healthy volunteers.",
          "Data were acquired on a Siemens Prisma 3T scanner with a 64-channel head coil.",
          "Converted with dcm2niix v1.0.20210317 and HeuDiConv 0.13.1.",
          "Preprocessed with fMRIPrep 23.1.4 (FreeSurfer 7.4.1).", "See CHANGES for the version history.",
          "BIDS version 1.8.0; validator 1.14.7", "Licence: CC0", "Contact the study team through the data portal.",
          "Software: syngo MR XA30, VE11C", "Funding: grant R01-MH012345 from the NIMH",
          "Participants gave written informed consent.", "Images are 256x256x176 at 1 mm isotropic resolution.",
          "Field maps (magnitude and phase) are in fmap/.", "Task: n-back, 3 runs of 6 min"]
FIELDS = ["SeriesDescription", "ProtocolName", "ImageComments", "ScanNotes", "README", "participants.tsv:notes"]
HOSPITALS = ["Fairview", "St Mungo", "Riverside", "Kingsbridge", "Northgate", "Lakeshore", "Whitmore", "Elmhurst"]
STREETS = ["Baker Street", "Elm Road", "Harbour Lane", "Kings Avenue", "Mill Drive", "Station Road", "Church Street"]
EU_STREETS = ["Blegdamsvej", "Hauptstraße", "Nørre Allé", "Keizersgracht", "Bahnhofstrasse", "Vesterbrogade"]
CITIES = ["London", "Boston", "Copenhagen", "Berlin", "Amsterdam", "Zurich"]


def _census(name: str) -> tuple[list[str], list[float]]:
    import names

    rows = (Path(os.path.dirname(names.__file__)) / name).read_text().splitlines()
    words = [r.split()[0].title() for r in rows if r.strip()]
    weights = [float(r.split()[1]) + 0.001 for r in rows if r.strip()]
    return words, weights


class Planter:
    """Builds one string from pieces, keeping the spans of the planted ones."""

    def __init__(self):
        self.text, self.spans = "", []

    def add(self, piece: str, category: str | None = None) -> "Planter":
        if category:
            self.spans.append([category, len(self.text), len(self.text) + len(piece)])
        self.text += piece
        return self


def _date_text(rng: random.Random, d: date) -> str:
    fmt = rng.choice(["%Y-%m-%d", "%d/%m/%Y", "%m/%d/%Y", "%d.%m.%Y", "%Y%m%d", "%d %b %Y", "%B %d, %Y",
                      "%d-%b-%Y", "%m/%d/%y", "%b %Y", "%Y-%m-%dT%H:%M"])
    text = d.strftime(fmt)
    return text.upper() if fmt == "%d-%b-%Y" else text


def _nhs(rng: random.Random) -> str:
    while True:
        digits = [rng.randint(0, 9) for _ in range(9)]
        check = 11 - sum(d * w for d, w in zip(digits, range(10, 1, -1))) % 11
        check = 0 if check == 11 else check
        if check != 10:
            s = "".join(map(str, digits)) + str(check)
            return f"{s[:3]} {s[3:6]} {s[6:]}"


class Corpus:
    def __init__(self, seed: int = SEED):
        self.rng = random.Random(seed)
        self.first_m, self.wm = _census("dist.male.first")
        self.first_f, self.wf = _census("dist.female.first")
        self.last, self.wl = _census("dist.all.last")

    def first(self) -> str:
        if self.rng.random() < 0.5:
            return self.rng.choices(self.first_m, self.wm)[0]
        return self.rng.choices(self.first_f, self.wf)[0]

    def surname(self) -> str:
        return self.rng.choices(self.last, self.wl)[0]

    def subject(self) -> dict:
        birth = date(1935, 1, 1) + timedelta(days=self.rng.randint(0, 365 * 70))
        return {"first": self.first(), "last": self.surname(), "mrn": f"{self.rng.randint(1000000, 99999999)}",
                "birth": birth, "scan": date(2012, 1, 1) + timedelta(days=self.rng.randint(0, 365 * 12))}

    def person(self, p: Planter, subject: dict | None = None) -> None:
        """A name in one of the ways scanner text carries names (with its context words)."""
        r = self.rng
        first, last = (subject["first"], subject["last"]) if subject else (self.first(), self.surname())
        style = r.randrange(12)
        if style == 0:
            p.add(f"{last.upper()}^{first.upper()}", "name")
        elif style == 1:
            p.add("Patient ").add(f"{first} {last}", "name")
        elif style == 2:
            p.add(r.choice(["Dr ", "Dr. ", "Prof. ", "Mrs ", "Mr "])).add(last, "name")
        elif style == 3:
            p.add(r.choice(["tech: ", "Technologist ", "scanned by ", "operator "])).add(f"{first[0]}. {last}", "name")
        elif style == 4:
            p.add(f"{last}, {first}", "name")
        elif style == 5:
            p.add(f"{first} {last}", "name").add(r.choice([", RN", " MD", " (radiographer)", ""]))
        elif style == 6:
            p.add(r.choice(["called ", "informed ", "per "])).add(first, "name").add(r.choice([" (mother)", " (father)", ""]))
        elif style == 7:
            p.add("PI: ").add(f"{first} {last}", "name")
        elif style == 8:
            p.add(r.choice(["referred by Dr ", "ref Dr. "])).add(f"{first} {last}", "name")
        elif style == 9:
            p.add(f"{first}_{last}", "name")
        elif style == 10:
            p.add(f"{last.upper()} {first.upper()}", "name")
        else:
            p.add(f"{first} {last[0]}.", "name")

    def planted(self, kind: str, subject: dict) -> Planter:
        r, p = self.rng, Planter()
        if r.random() < 0.5:
            p.add(r.choice(SEQUENCES + NOTES) + r.choice([" ", " - ", "_", ", "]))
        if kind == "name":
            self.person(p, subject if r.random() < 0.5 else None)
        elif kind == "date":
            d = subject["birth"] if r.random() < 0.3 else subject["scan"]
            p.add(r.choice(["", "DOB ", "scanned ", "on ", "date: ", "visit "])).add(_date_text(r, d), "date")
        elif kind == "id":
            context, identifier = self._id()
            p.add(context).add(identifier, "id")
        elif kind == "phone":
            p.add(r.choice(["call ", "tel ", "phone: ", "fax ", "pager ", "contact "])).add(r.choice([
                f"({r.randint(201, 989)}) 555-{r.randint(100, 9999):04d}", f"{r.randint(201, 989)}-555-{r.randint(100, 9999):04d}",
                f"+44 20 7946 {r.randint(0, 9999):04d}", f"020 7946 {r.randint(0, 9999):04d}",
                f"+49 30 {r.randint(1000000, 99999999)}", f"+45 35 45 {r.randint(10, 99)} {r.randint(10, 99)}",
                f"{r.randint(201, 989)}.555.{r.randint(100, 9999):04d}"]), "phone")
        elif kind == "email":
            h = r.choice(HOSPITALS).lower().replace(" ", "")
            local = r.choice([f"{subject['first'].lower()}.{subject['last'].lower()}", f"{subject['first'][0].lower()}{subject['last'].lower()}",
                              f"radiology.{h}", f"mri-booking"])
            p.add(r.choice(["email ", "contact ", "", "send to "])).add(f"{local}@{h}{r.choice(['.org', '.nhs.uk', '-health.com', '.dk'])}", "email")
        elif kind == "url":
            h = r.choice(HOSPITALS).lower().replace(" ", "")
            p.add(r.choice(["see ", "PACS ", "viewer: ", ""])).add(r.choice([
                f"https://pacs.{h}.org/viewer?study={r.randint(1000, 99999)}", f"www.{h}-radiology.org",
                f"http://{h}.nhs.uk/mri", f"{h}-imaging.com/booking"]), "url")
        elif kind == "ip":
            p.add(r.choice(["PACS node ", "sent to ", "AE at ", "host "])).add(r.choice([
                f"10.{r.randint(0, 255)}.{r.randint(0, 255)}.{r.randint(1, 254)}", f"192.168.{r.randint(0, 255)}.{r.randint(1, 254)}",
                f"172.16.{r.randint(0, 255)}.{r.randint(1, 254)}:104"]), "ip")
        elif kind == "address":
            self._address(p)
        elif kind == "age":
            p.add(r.choice(["", "patient ", "age "])).add(r.choice([f"{r.randint(90, 104)} yo", f"{r.randint(90, 104)} years old",
                                                                      f"0{r.randint(90, 99)}Y", f"{r.randint(90, 104)}y"]), "age")
        if r.random() < 0.4:
            p.add(r.choice([" ", "; ", " - "]) + r.choice(NOTES))
        return p

    def _id(self) -> tuple[str, str]:
        """(context words, identifier): only the identifier is a planted span."""
        r = self.rng
        choice = r.randrange(9)
        if choice == 0:
            return "", f"MRN-{r.randint(1000000, 99999999)}"
        if choice == 1:
            return r.choice(["MRN ", "MRN: ", "MR# ", "hospital no. ", "pt id "]), f"{r.randint(100000, 99999999)}"
        if choice == 2:
            return r.choice(["Acc# ", "accession ", "ACC "]), f"{r.choice(['A', 'E', ''])}{r.randint(1000000, 99999999)}"
        if choice == 3:
            return "NHS ", _nhs(r)
        if choice == 4:
            return "SSN ", f"{r.randint(100, 665)}-{r.randint(10, 99)}-{r.randint(1000, 9999)}"
        if choice == 5:
            return "", f"1.2.840.{r.randint(10000, 999999)}.{r.randint(1, 9)}.{r.randint(10, 99)}.{r.randint(10**8, 10**10)}"
        if choice == 6:
            return "Study ID ", f"ST-{r.randint(10000, 99999)}"
        if choice == 7:
            return "", f"{r.choice(['H', 'RX', 'K'])}{r.randint(1000000, 9999999)}"
        return "", f"{r.randint(10000000, 999999999)}"

    def _address(self, p: Planter) -> None:
        r = self.rng
        choice = r.randrange(5)
        if choice == 0:
            p.add(f"{r.randint(1, 400)} {r.choice(STREETS)}", "address").add(", ").add(r.choice(CITIES))
        elif choice == 1:
            p.add(f"{r.choice(EU_STREETS)} {r.randint(1, 120)}, {r.randint(1000, 9999)} {r.choice(['København', 'Berlin', 'Amsterdam'])}", "address")
        elif choice == 2:
            p.add(r.choice(["London ", "home: "])).add(f"{r.choice(['NW1', 'SE1', 'E14', 'W2'])} {r.randint(1, 9)}{r.choice('ABDEFGHJ')}{r.choice('LNPQRSTU')}", "address")
        elif choice == 3:
            p.add(r.choice(["Boston, ", "Cambridge "])).add(f"MA {r.randint(1000, 2799):05d}", "address")
        else:
            p.add(r.choice(["transferred from ", "scanned at ", ""])).add(f"{r.choice(HOSPITALS)} {r.choice(['Hospital', 'Clinic', 'Medical Center', 'Infirmary'])}", "address")

    def negative(self) -> Planter:
        r = self.rng
        field = r.choice(["seq", "note", "readme"])
        text = {"seq": r.choice(SEQUENCES), "note": r.choice(NOTES), "readme": r.choice(README)}[field]
        if field == "seq" and r.random() < 0.4:
            text += r.choice(["_RR", "_ND", " (repeat)", f"_run-{r.randint(1, 4)}", f" {r.randint(1, 3)}"])
        return Planter().add(text)

    def rows(self, n_planted: int = 220, n_negative: int = 110):
        kinds = ["name"] * 6 + ["date"] * 4 + ["id"] * 4 + ["phone", "email", "url", "ip", "address", "address", "age"]
        rows = []
        for i in range(n_planted + n_negative):
            subject = self.subject()
            p = self.planted(self.rng.choice(kinds), subject) if i < n_planted else self.negative()
            known = {"PatientName": f"{subject['last']}^{subject['first']}".upper(), "PatientID": subject["mrn"],
                     "PatientBirthDate": subject["birth"].strftime("%Y%m%d")}
            rows.append({"text": p.text, "spans": p.spans, "field": self.rng.choice(FIELDS), "known": known})
        self.rng.shuffle(rows)
        return rows


def render(seed: int = SEED) -> str:
    lines = ["row\tfield\ttext\tspans\tknown"]
    for i, row in enumerate(Corpus(seed).rows()):
        assert "\t" not in row["text"] and "\n" not in row["text"]
        lines.append("\t".join([str(i), row["field"], row["text"], json.dumps(row["spans"]),
                                json.dumps(row["known"], ensure_ascii=False)]))
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    out = Path(argv[0]) if argv else OUT
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render(), encoding="utf-8")
    print(f"{out}: {len(out.read_text().splitlines()) - 1} strings")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
