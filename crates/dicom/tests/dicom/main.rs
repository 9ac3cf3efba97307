//! De-identification of real DICOM files: every Part 10 file pydicom's wheel ships (installed
//! from PyPI by the test command, not committed) is de-identified, then checked by pydicom, an
//! independent reader, against the profile's table (`check.py`); keyed replacements are
//! consistent under one key and unlinkable across keys; refusals change nothing.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use medledger_dicom::{DeidKey, DicomError, deidentify, is_dicom};

/// pydicom's directory of test files; the test command installs pydicom from PyPI.
fn fixtures() -> PathBuf {
    let out = Command::new("python3")
        .args(["-c", "import os, pydicom; print(os.path.dirname(pydicom.__file__))"])
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "pydicom is not installed; the test command (scripts/test.sh) installs it from PyPI: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    PathBuf::from(String::from_utf8(out.stdout).unwrap().trim()).join("data")
}

/// Every `.dcm` file under `dir`, sorted.
fn dicom_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(dicom_files(&path));
        } else if path.extension().is_some_and(|e| e == "dcm") {
            out.push(path);
        }
    }
    out.sort();
    out
}

fn key(byte: u8) -> DeidKey {
    DeidKey::new([byte; 32])
}

#[test]
fn every_fixture_file_is_de_identified_as_the_profile_says_by_an_independent_readers_account() {
    let files = dicom_files(&fixtures());
    let out = tempfile::tempdir().unwrap();
    let (mut pairs, mut refused, mut not_part10) = (Vec::new(), Vec::new(), 0);
    for (i, path) in files.iter().enumerate() {
        let bytes = std::fs::read(path).unwrap();
        if !is_dicom(&bytes) {
            not_part10 += 1;
            assert!(matches!(deidentify(&bytes, &key(1)), Err(DicomError::NotDicom)));
            continue;
        }
        match deidentify(&bytes, &key(1)) {
            Ok((deidentified, _)) => {
                let target = out.path().join(format!("{i}.dcm"));
                std::fs::write(&target, deidentified).unwrap();
                pairs.push((path.clone(), target));
            }
            Err(e) => refused.push(format!("{}: {e}", path.display())),
        }
    }
    eprintln!(
        "{} files: {} de-identified, {} not Part 10, {} refused:\n{}",
        files.len(),
        pairs.len(),
        not_part10,
        refused.len(),
        refused.join("\n")
    );
    // Files dicom-rs cannot read (deliberately damaged ones, deflated data sets) are refused,
    // and images that may have burned-in text (the wheel's ultrasound and secondary captures
    // carry no flag); the rest must go through.
    assert!(pairs.len() >= 40, "only {} of {} files de-identified", pairs.len(), files.len());
    assert!(refused.iter().any(|r| r.contains("Burned In Annotation is absent from a US image")));
    assert!(
        refused.iter().all(|r| r.contains("reading the DICOM file") || r.contains("Burned In")),
        "{refused:?}"
    );

    let list = out.path().join("pairs.json");
    std::fs::write(&list, serde_json::to_vec(&pairs).unwrap()).unwrap();
    let table = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/ps3.15-e.1-1.tsv");
    let checker = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/dicom/check.py");
    let checked = Command::new("python3").arg(checker).arg(table).arg(&list).output().unwrap();
    let summary = String::from_utf8_lossy(&checked.stdout);
    let problems = String::from_utf8_lossy(&checked.stderr);
    assert!(checked.status.success(), "{summary}\n{problems}");
    let summary: serde_json::Value = serde_json::from_str(summary.trim()).unwrap();
    let counts = &summary["counts"];
    assert_eq!(counts["files"], pairs.len());
    // The fixtures exercise every kind of action.
    for action in ["removed", "emptied", "dummied", "uids", "shifted", "pixel_data_checked"] {
        assert!(counts[action].as_u64().unwrap() > 0, "no {action} in {counts}");
    }
}

/// The file of pydicom's fixtures named `name`.
fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(fixtures().join("test_files").join(name)).unwrap()
}

fn element(bytes: &[u8], tag: dicom_core::Tag) -> Option<String> {
    let obj = dicom_object::OpenFileOptions::new()
        .read_preamble(dicom_object::file::ReadPreamble::Always)
        .from_reader(bytes)
        .unwrap();
    obj.element_opt(tag).unwrap().map(|e| e.to_str().unwrap().trim_end_matches('\0').to_owned())
}

const STUDY_UID: dicom_core::Tag = dicom_core::Tag(0x0020, 0x000D);
const SOP_UID: dicom_core::Tag = dicom_core::Tag(0x0008, 0x0018);
const STUDY_DATE: dicom_core::Tag = dicom_core::Tag(0x0008, 0x0020);
const CONTENT_DATE: dicom_core::Tag = dicom_core::Tag(0x0008, 0x0023);

#[test]
fn replacements_are_the_same_under_one_key_and_unlinkable_across_keys() {
    let ct = fixture("CT_small.dcm");
    let (a, _) = deidentify(&ct, &key(1)).unwrap();
    let (b, _) = deidentify(&ct, &key(1)).unwrap();
    let (c, _) = deidentify(&ct, &key(2)).unwrap();
    assert_eq!(a, b, "de-identification is deterministic under one key");
    for tag in [STUDY_UID, SOP_UID, STUDY_DATE] {
        let (orig, one, other) = (element(&ct, tag), element(&a, tag), element(&c, tag));
        assert!(orig.is_some(), "{tag} in the fixture");
        assert_ne!(one, orig, "{tag} replaced");
        assert_ne!(one, other, "{tag} differs under another key");
    }
    assert!(element(&a, STUDY_UID).unwrap().starts_with("2.25."));
}

#[test]
fn a_patients_dates_move_by_one_offset_so_intervals_are_kept() {
    let mr = fixture("MR_small.dcm");
    let (out, report) = deidentify(&mr, &key(7)).unwrap();
    assert!(report.dates_shifted >= 2, "{report:?}");
    let day = |s: String| chrono_days(&s);
    let (study, content) = (element(&mr, STUDY_DATE).unwrap(), element(&mr, CONTENT_DATE));
    let (study2, content2) = (element(&out, STUDY_DATE).unwrap(), element(&out, CONTENT_DATE));
    let shift = day(study.clone()) - day(study2.clone());
    assert!((365..365 + 3650).contains(&shift), "{study} -> {study2}");
    if let (Some(c), Some(c2)) = (content, content2) {
        assert_eq!(day(c) - day(c2), shift, "one offset for the patient");
    }
}

/// Days since 0000-03-01 of `yyyymmdd` (civil calendar), for differences.
fn chrono_days(date: &str) -> i64 {
    let (y, m, d): (i64, i64, i64) =
        (date[..4].parse().unwrap(), date[4..6].parse().unwrap(), date[6..8].parse().unwrap());
    let (y, m) = if m <= 2 { (y - 1, m + 9) } else { (y, m - 3) };
    365 * y + y / 4 - y / 100 + y / 400 + (153 * m + 2) / 5 + d - 1
}

#[test]
fn content_that_is_not_dicom_or_has_burned_in_text_is_refused() {
    assert!(matches!(deidentify(b"%PDF-1.7 not dicom", &key(1)), Err(DicomError::NotDicom)));
    let mut short = fixture("CT_small.dcm");
    short.truncate(100);
    assert!(matches!(deidentify(&short, &key(1)), Err(DicomError::NotDicom)));

    // The same instance, flagged as having text burned into its pixels.
    let mut obj = dicom_object::OpenFileOptions::new()
        .read_preamble(dicom_object::file::ReadPreamble::Always)
        .from_reader(&fixture("CT_small.dcm")[..])
        .unwrap();
    obj.put(dicom_core::DataElement::new(
        dicom_core::Tag(0x0028, 0x0301),
        dicom_core::VR::CS,
        "YES",
    ));
    let mut flagged = Vec::new();
    obj.write_all(&mut flagged).unwrap();
    assert!(matches!(deidentify(&flagged, &key(1)), Err(DicomError::BurnedIn)));
    // Flagged NO, it goes through.
    obj.put(dicom_core::DataElement::new(
        dicom_core::Tag(0x0028, 0x0301),
        dicom_core::VR::CS,
        "NO",
    ));
    let mut clear = Vec::new();
    obj.write_all(&mut clear).unwrap();
    assert!(deidentify(&clear, &key(1)).is_ok());
    // Flagged YES but written with VR UN (unknown), as a converter may: still refused, read
    // as the dictionary's CS as a reader would (an attack review found it went through).
    obj.put(dicom_core::DataElement::new(
        dicom_core::Tag(0x0028, 0x0301),
        dicom_core::VR::UN,
        dicom_core::PrimitiveValue::U8(b"YES ".as_slice().into()),
    ));
    let mut hidden = Vec::new();
    obj.write_all(&mut hidden).unwrap();
    assert!(matches!(deidentify(&hidden, &key(1)), Err(DicomError::BurnedIn)));
    // A value other than YES or NO is not NO.
    obj.put(dicom_core::DataElement::new(
        dicom_core::Tag(0x0028, 0x0301),
        dicom_core::VR::CS,
        "MAYBE",
    ));
    let mut unsure = Vec::new();
    obj.write_all(&mut unsure).unwrap();
    assert!(matches!(deidentify(&unsure, &key(1)), Err(DicomError::BurnedIn)));
    // No flag: this CT goes through; the same image as ultrasound, a secondary capture or
    // with no modality is refused, naming it; without pixel data it needs no flag.
    obj.remove_element(dicom_core::Tag(0x0028, 0x0301));
    let with_modality = |obj: &mut dicom_object::DefaultDicomObject, modality: Option<&str>| {
        let tag = dicom_core::Tag(0x0008, 0x0060);
        match modality {
            Some(m) => {
                obj.put(dicom_core::DataElement::new(tag, dicom_core::VR::CS, m));
            }
            None => {
                obj.remove_element(tag);
            }
        }
        let mut bytes = Vec::new();
        obj.write_all(&mut bytes).unwrap();
        deidentify(&bytes, &key(1))
    };
    assert!(with_modality(&mut obj, Some("CT")).is_ok());
    assert!(with_modality(&mut obj, Some("MR")).is_ok());
    for (modality, named) in [(Some("US"), "US"), (Some("OT"), "OT"), (None, "unknown")] {
        match with_modality(&mut obj, modality) {
            Err(DicomError::BurnedInUnknown { modality, .. }) => assert_eq!(modality, named),
            other => panic!("{named}: {other:?}"),
        }
    }
    // A screen capture that says CT: its SOP class (Secondary Capture) or its Conversion Type
    // gives it away.
    let sop_class = dicom_core::Tag(0x0008, 0x0016);
    let ct_class = obj.element(sop_class).unwrap().to_str().unwrap().into_owned();
    let put_class = |obj: &mut dicom_object::DefaultDicomObject, uid: &str| {
        obj.put(dicom_core::DataElement::new(sop_class, dicom_core::VR::UI, uid));
    };
    put_class(&mut obj, "1.2.840.10008.5.1.4.1.1.7");
    match with_modality(&mut obj, Some("CT")) {
        Err(DicomError::BurnedInUnknown { sop_class, .. }) => {
            assert_eq!(sop_class, "1.2.840.10008.5.1.4.1.1.7")
        }
        other => panic!("a secondary capture saying CT: {other:?}"),
    }
    put_class(&mut obj, &ct_class);
    assert!(with_modality(&mut obj, Some("CT")).is_ok());
    obj.put(dicom_core::DataElement::new(
        dicom_core::Tag(0x0008, 0x0064),
        dicom_core::VR::CS,
        "WSD",
    ));
    assert!(matches!(with_modality(&mut obj, Some("CT")), Err(DicomError::BurnedInUnknown { .. })));
    obj.remove_element(dicom_core::Tag(0x0008, 0x0064));
    // Without pixels nothing is burned in; pixels inside a sequence item count as pixels.
    let pixels = obj.take_element(dicom_core::Tag(0x7FE0, 0x0010)).unwrap();
    assert!(with_modality(&mut obj, Some("US")).is_ok(), "no pixels, nothing burned in");
    let mut item = dicom_object::InMemDicomObject::new_empty();
    item.put(pixels);
    obj.put(dicom_core::DataElement::new(
        dicom_core::Tag(0x0040, 0xA730),
        dicom_core::VR::SQ,
        dicom_core::value::DataSetSequence::from(vec![item]),
    ));
    assert!(matches!(with_modality(&mut obj, Some("US")), Err(DicomError::BurnedInUnknown { .. })));
}

/// Values the table does not list, held in the items of a sequence the profile gives a dummy
/// (a person's code and name in an identification sequence, report text in a content
/// sequence), do not survive: no original item is kept.
#[test]
fn nothing_of_the_items_of_a_dummied_sequence_survives() {
    use dicom_core::{DataElement, Tag, VR, value::DataSetSequence};
    use dicom_object::InMemDicomObject;
    let mut obj = dicom_object::OpenFileOptions::new()
        .read_preamble(dicom_object::file::ReadPreamble::Always)
        .from_reader(&fixture("CT_small.dcm")[..])
        .unwrap();
    let code = InMemDicomObject::from_element_iter([
        DataElement::new(Tag(0x0008, 0x0100), VR::SH, "EMP12345"),
        DataElement::new(Tag(0x0008, 0x0104), VR::LO, "Dr Jane Roe"),
    ]);
    let person = InMemDicomObject::from_element_iter([DataElement::new(
        Tag(0x0040, 0x1101),
        VR::SQ,
        DataSetSequence::from(vec![code]),
    )]);
    obj.put(DataElement::new(Tag(0x0008, 0x1072), VR::SQ, DataSetSequence::from(vec![person])));
    let text = InMemDicomObject::from_element_iter([DataElement::new(
        Tag(0x0040, 0xA160),
        VR::UT,
        "Seen with her husband Johnathan Quillfeather",
    )]);
    obj.put(DataElement::new(Tag(0x0040, 0xA730), VR::SQ, DataSetSequence::from(vec![text])));
    let mut bytes = Vec::new();
    obj.write_all(&mut bytes).unwrap();
    for planted in ["EMP12345", "Jane Roe", "Quillfeather"] {
        assert!(bytes.windows(planted.len()).any(|w| w == planted.as_bytes()), "planted");
    }
    let (out, _) = deidentify(&bytes, &key(3)).unwrap();
    for planted in ["EMP12345", "Jane Roe", "Quillfeather"] {
        assert!(!out.windows(planted.len()).any(|w| w == planted.as_bytes()), "{planted} survives");
    }
}
