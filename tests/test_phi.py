"""Free-text PHI detection and the five de-identification methods, as a curator meets them:
scanner text stays as it is, planted names, dates, numbers and addresses go, and the methods
keep their promises (masks, stable keyed hashes, surrogates consistent per subject, encryption
refused without a vault)."""

from __future__ import annotations

import re
from datetime import datetime

import pytest

from benchmarks import bench_phi
from bids_deface.metadata import (Deidentifier, MethodError, clean_text, find_phi, known_patterns, load_hash_key,
                                  mask)

SCANNER_TEXT = [
    "t1_mprage_sag_p2_iso", "AX FLAIR", "ep2d_bold_moco", "ep2d_diff_mddw_64_p2", "T1 Dixon opp", "t2_star_tra",
    "AAHead_Scout_64ch-head-coil_MPR_cor", "gre_field_mapping_2.5mm", "SWI_Images", "Mag_Images", "Pha_Images",
    "tof_fl3d_tra_p3_multi-slab", "t2_space_dark-fluid_sag_p2_iso", "Sag CUBE T2 FLAIR", "Ax DWI B1000",
    "3D BRAVO", "FSPGR BRAVO", "Cor T2 PROPELLER", "Ax SWAN", "T2W_TSE_SENSE", "sT1W_3D_TFE", "WIP_B0_map",
    "MPRAGE GRAPPA2", "cmrr_mbep2d_bold_mb8_AP", "ABCD_T1w_MPR_vNav", "HCP_Lifespan_T2w", "Survey_32ch_HeadCoil",
    "syngo MR E11", "syngo MR XA30A", "HeadNeck_64", "HC1-7;NC1,2", "N4_VD13D_LATEST_20130810"[:14],
    "*tfl3d1_16ns", "%SiemensSeq%\\tfl", "GR\\IR", "SK\\SP\\MP", "ORIGINAL\\PRIMARY\\M\\NORM\\DIS3D",
    "TR 2300 TE 2.98 TI 900 FA 9", "256x256x176, 1 mm iso", "GRAPPA 2, 64ch head coil", "b-values 0 1000 2000",
    "Converted with dcm2niix v1.0.20210317", "HeuDiConv 0.13.1", "fMRIPrep 23.1.4", "SAR 0.07543 W/kg",
    "repeat due to motion", "subject fell asleep during run 2", "eyes closed resting state", "Pre-contrast",
    "Echo 2 of 4", "MoCoSeries", "DTI_high_iso", "MP2RAGE_INV2", "pcasl_3d_pld1800", "sub-01_ses-1_T1w.nii.gz",
]


def _found(text, known=()):
    return [(text[f.start:f.end], f.category) for f in find_phi(text, known)]


@pytest.mark.parametrize("text", SCANNER_TEXT)
def test_scanner_text_is_left_alone(text):
    assert find_phi(text) == []
    assert clean_text(text) == (text, [])


@pytest.mark.parametrize("text, planted, category", [
    ("Patient WEATHERBY^ALICE", "WEATHERBY^ALICE", "name"),
    ("scanned by Dr. Okonkwo", "Dr. Okonkwo", "name"),
    ("tech: A. Lopez", "A. Lopez", "name"),
    ("Maria Lopez, RN", "Maria Lopez", "name"),
    ("LOPEZ, MARIA follow-up", "LOPEZ, MARIA", "name"),
    ("DOB 02/04/1961", "02/04/1961", "date"),
    ("t1_mprage_20190314", "20190314", "date"),
    ("seen 14-MAR-2019", "14-MAR-2019", "date"),
    ("follow-up March 2019", "March 2019", "date"),
    ("MRN-8841207 repeat", "MRN-8841207", "id"),
    ("NHS 943 476 5919", "943 476 5919", "id"),
    ("1.2.840.113619.2.55.3.604688119", "1.2.840.113619.2.55.3.604688119", "id"),
    ("fax +44 20 7946 0958", "+44 20 7946 0958", "phone"),
    ("mail jane.doe@fairview.org", "jane.doe@fairview.org", "email"),
    ("see https://pacs.fairview.org/s?id=1", "https://pacs.fairview.org/s?id=1", "url"),
    ("sent to 10.0.4.17", "10.0.4.17", "ip"),
    ("12 Baker Street, London", "12 Baker Street", "address"),
    ("Blegdamsvej 9, 2100 København", "Blegdamsvej 9, 2100 København", "address"),
    ("from St Mungo Hospital", "St Mungo Hospital", "address"),
    ("age 93 yo", "93 yo", "age"),
])
def test_planted_values_are_found(text, planted, category):
    findings = find_phi(text)
    start = text.index(planted)
    covering = [f for f in findings if f.start <= start and f.end >= start + len(planted)]
    assert covering and covering[0].category == category, _found(text)
    cleaned, categories = clean_text(text)
    assert planted not in cleaned and category in categories


def test_values_removed_elsewhere_are_searched_everywhere():
    known = {"PatientName": "Doe^John", "PatientID": "MRN-8841207", "PatientBirthDate": "19610402"}
    text = "t1_mprage_DOE JohnDoe john follow-up, id 8841207, born 2 Apr 1961 (02.04.1961)"
    cleaned, categories = clean_text(text, known)
    assert re.sub(r"[^a-z0-9]", "", cleaned.lower()) == "t1mpragefollowupidborn", cleaned
    assert {"name", "id", "date"} <= set(categories)
    assert find_phi("Doedicated sequence", known) == []  # a known part inside another word is left alone
    assert clean_text("Doe", ["Doe^John"])[0] == ""


def test_mask_hash_replace_and_redact():
    text = "Patient John Doe scanned 2019-03-14, MRN-8841207"
    assert clean_text(text, method="mask")[0] == "Patient J*** D** scanned ****-**-**, M**-*******"
    assert clean_text(text)[0] == "Patient scanned,"
    key = b"a" * 32
    hashed, _ = clean_text(text, method="hash", key=key)
    assert hashed == clean_text(text, method="hash", key=key)[0]  # same key, same tokens, any run
    assert hashed != clean_text(text, method="hash", key=b"b" * 32)[0]
    assert re.fullmatch(r"Patient name-[0-9a-f]{16} scanned date-[0-9a-f]{16}, id-[0-9a-f]{16}", hashed)
    assert Deidentifier(hash_key=key).apply("DOE^JOHN", "hash", "name") == Deidentifier(hash_key=key).apply(
        "Doe^John", "hash", "name")
    assert mask("John Doe") == "J*** D**"


def test_replace_is_realistic_and_consistent_per_subject():
    key = b"k" * 32
    one = Deidentifier(hash_key=key).for_subject("01")
    first, _ = clean_text("Patient John Doe scanned 2019-03-14", method="replace", deidentifier=one)
    again, _ = clean_text("Dr Smith saw John Doe on 2019-03-20", method="replace", deidentifier=one)
    other, _ = clean_text("Patient John Doe scanned 2019-03-14", method="replace", deidentifier=one.for_subject("02"))
    assert "John" not in first and "Doe" not in first and "2019-03-14" not in first
    name = re.match(r"Patient (\w+ \w+) scanned", first).group(1)
    assert name in again  # the same person reads the same everywhere in a subject's files
    assert other != first
    dates = [datetime.strptime(re.search(r"\d{4}-\d\d-\d\d", t).group(0), "%Y-%m-%d") for t in (first, again)]
    assert (dates[1] - dates[0]).days == 6  # intervals kept
    assert one.apply("10.0.4.17", "replace", "ip").startswith("192.0.2.")
    assert one.apply("jane.doe@fairview.org", "replace", "email").endswith("@example.org")
    assert re.fullmatch(r"MRN-\d{7}", one.apply("MRN-8841207", "replace", "id"))


def test_encrypt_and_keyless_hash_are_refused_with_a_clear_message():
    with pytest.raises(MethodError, match=r"^method 'encrypt' needs --vault-dir and --vault-recipient$"):
        clean_text("Patient John Doe", method="encrypt")
    with pytest.raises(MethodError, match=r"method 'hash' needs a key: --hash-key-file FILE or \$BIDS_DEFACE_HASH_KEY"):
        clean_text("Patient John Doe", method="hash")
    with pytest.raises(MethodError, match="unknown method 'shred'"):
        Deidentifier().check("shred")


def test_hash_key_from_file_or_environment_never_echoed(tmp_path):
    key_file = tmp_path / "key"
    key_file.write_bytes(b"s3cret-s3cret-s3cret\n")
    assert load_hash_key(key_file, environ={}) == b"s3cret-s3cret-s3cret"
    assert load_hash_key(None, environ={"BIDS_DEFACE_HASH_KEY": "another-long-secret"}) == b"another-long-secret"
    assert load_hash_key(None, environ={}) is None
    assert "s3cret" not in repr(Deidentifier(hash_key=load_hash_key(key_file, environ={})))
    key_file.write_bytes(b"short")
    with pytest.raises(MethodError) as err:
        load_hash_key(key_file, environ={})
    assert "at least 16 bytes" in str(err.value) and "short" not in str(err.value)


def test_detection_meets_its_goals_on_the_planted_corpora():
    """bench_phi's corpora: recall >= 0.98 on names, dates and identifiers and precision >= 0.9
    (templated corpus and a held-out seed); the hand-written strings, scored as written."""
    corpora = [bench_phi.load(bench_phi.CORPUS)]
    try:  # the held-out draw needs the census lists of the bench extra ("names")
        corpora.append(bench_phi.held_out(bench_phi.HELD_OUT_SEED))
    except ImportError:
        pass
    for rows in corpora:
        table, _ = bench_phi.score(rows, bench_phi.ours(False))
        for category in ("name", "date", "id"):
            assert table[category]["recall"] >= 0.98, (category, table[category])
        assert table["all"]["precision"] >= 0.9
        with_known, _ = bench_phi.score(rows, bench_phi.ours(True))
        assert with_known["all"]["recall"] >= table["all"]["recall"]
    hand, _ = bench_phi.score(bench_phi.load_handwritten(bench_phi.HANDWRITTEN), bench_phi.ours(False))
    assert hand["all"]["recall"] >= 0.9 and hand["all"]["precision"] >= 0.9


def test_known_patterns_are_reusable_and_hold_no_value_in_findings():
    patterns = known_patterns({"PatientName": ["Weatherby^Alice"]})
    findings = find_phi("alice weatherby", patterns=patterns)
    assert findings and all(set(vars(f)) == {"start", "end", "category", "source"} for f in findings)


def test_committed_corpus_is_what_the_seeded_generator_writes():
    pytest.importorskip("names")
    from tools import phi_corpus

    assert bench_phi.CORPUS.read_text(encoding="utf-8") == phi_corpus.render()


def test_name_lists_are_kept_in_the_cache_and_a_broken_cache_is_rebuilt(tmp_path, monkeypatch):
    """Faker's name lists are gathered once (86 locale modules) and read from the user's cache
    folder by later runs; a cache file that cannot be read is gathered again, never trusted."""
    from bids_deface.metadata import names

    monkeypatch.setenv("BIDS_DEFACE_CACHE", str(tmp_path))
    names.name_dictionaries.cache_clear()
    try:
        fresh = names.name_dictionaries()
        kept = list((tmp_path / "names").glob("faker-names-*.json"))
        assert len(kept) == 1 and fresh == names._faker_names()
        names.name_dictionaries.cache_clear()
        assert names.name_dictionaries() == fresh  # read back from the cache
        kept[0].write_text('{"first": ["only"]')  # half a file
        names.name_dictionaries.cache_clear()
        assert names.name_dictionaries() == fresh
        assert find_phi("scanned by Maria Lopez")  # and the scanner still finds names with it
    finally:
        names.name_dictionaries.cache_clear()
