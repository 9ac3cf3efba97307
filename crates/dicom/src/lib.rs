//! DICOM content in records: recognising it ([`is_dicom`]) and de-identifying it
//! ([`deidentify`]) by the DICOM PS3.15 Annex E Basic Application Level Confidentiality Profile
//! with the Retain Longitudinal Temporal Information with Modified Dates Option.
//!
//! The profile is data (`data/ps3.15-e.1-1.tsv`, Table E.1-1, with its source), read by
//! [`profile`]; this module applies it to every attribute of the data set and of every
//! sequence item it keeps, then records what was done as the profile asks: Patient Identity
//! Removed (0012,0062) `YES`, De-identification Method (0012,0063) and its code sequence
//! (0012,0064: DCM 113100 and 113107), and Longitudinal Temporal Information Modified
//! (0028,0303) `MODIFIED`. Private attributes are removed. Pixel data is carried through
//! byte for byte; an instance whose Burned In Annotation (0028,0301) is anything but `NO` is
//! refused, since cleaning pixel data is another option (Clean Pixel Data) this profile does
//! not include; without the flag, an image (pixel data anywhere, sequence items included) is
//! refused unless its modality and its SOP class are those of a reconstructed image that
//! carries no burned-in text (CT, MR, PT, NM, RT dose, segmentation) and it is no secondary
//! capture (no Conversion Type).
//!
//! Replacements are keyed ([`DeidKey`], for example one per research project): UIDs map to
//! `2.25.` UIDs derived from them, and dates shift back by a per-patient number of days, both
//! the same for every instance under one key (studies still group, intervals are kept) and
//! unlinkable across keys.

#![warn(missing_docs)]

pub mod profile;

use std::io::Cursor;

use dicom_core::{
    DataDictionary, DataElement, PrimitiveValue, Tag, VR,
    dictionary::VirtualVr,
    header::Header,
    value::{DataSetSequence, Value},
};
use dicom_dictionary_std::StandardDataDictionary;
use dicom_object::{
    DefaultDicomObject, InMemDicomObject, OpenFileOptions, file::ReadPreamble, mem::InMemElement,
};
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

pub use profile::Action;

/// Burned In Annotation.
const BURNED_IN_ANNOTATION: Tag = Tag(0x0028, 0x0301);
/// Patient ID (the date offset is the patient's).
const PATIENT_ID: Tag = Tag(0x0010, 0x0020);
/// Modality.
const MODALITY: Tag = Tag(0x0008, 0x0060);
/// Pixel Data, Float Pixel Data and Double Float Pixel Data.
const PIXEL_DATA_TAGS: [Tag; 3] = [Tag(0x7FE0, 0x0010), Tag(0x7FE0, 0x0008), Tag(0x7FE0, 0x0009)];
/// SOP Class UID.
const SOP_CLASS_UID: Tag = Tag(0x0008, 0x0016);
/// Conversion Type: present in a secondary capture (a screen or a scan of something else).
const CONVERSION_TYPE: Tag = Tag(0x0008, 0x0064);
/// Modalities whose images are reconstructed (cross-sectional, dose and segmentation
/// images), where the device writes no text into the pixels as it commonly does in
/// ultrasound, secondary captures, angiography, endoscopy or photographs: an image of one of
/// these without a Burned In Annotation flag is taken to have none, if its SOP class is one of
/// theirs too ([`RECONSTRUCTED_SOP_CLASSES`]) and it is no secondary capture. Any other image
/// must say NO (PS3.15 E.1.1: the de-identifier is responsible for identifying text in the
/// pixels, which this profile does not clean).
const NO_BURN_IN_EXPECTED: [&str; 6] = ["CT", "MR", "PT", "NM", "RTDOSE", "SEG"];
/// The storage SOP classes of those images (PS3.4 Annex B.5): CT, Enhanced and Legacy
/// Converted Enhanced CT; MR, Enhanced MR, MR Spectroscopy, Enhanced MR Color and Legacy
/// Converted Enhanced MR; PET, Enhanced and Legacy Converted Enhanced PET; NM; RT Dose;
/// Segmentation. A screen capture stating one of those modalities is of another class.
const RECONSTRUCTED_SOP_CLASSES: [&str; 14] = [
    "1.2.840.10008.5.1.4.1.1.2",
    "1.2.840.10008.5.1.4.1.1.2.1",
    "1.2.840.10008.5.1.4.1.1.2.2",
    "1.2.840.10008.5.1.4.1.1.4",
    "1.2.840.10008.5.1.4.1.1.4.1",
    "1.2.840.10008.5.1.4.1.1.4.2",
    "1.2.840.10008.5.1.4.1.1.4.3",
    "1.2.840.10008.5.1.4.1.1.4.4",
    "1.2.840.10008.5.1.4.1.1.128",
    "1.2.840.10008.5.1.4.1.1.130",
    "1.2.840.10008.5.1.4.1.1.128.1",
    "1.2.840.10008.5.1.4.1.1.20",
    "1.2.840.10008.5.1.4.1.1.481.2",
    "1.2.840.10008.5.1.4.1.1.66.4",
];
/// Patient Identity Removed.
const PATIENT_IDENTITY_REMOVED: Tag = Tag(0x0012, 0x0062);
/// De-identification Method.
const DEIDENTIFICATION_METHOD: Tag = Tag(0x0012, 0x0063);
/// De-identification Method Code Sequence.
const DEIDENTIFICATION_METHOD_CODES: Tag = Tag(0x0012, 0x0064);
/// Longitudinal Temporal Information Modified.
const TEMPORAL_INFORMATION_MODIFIED: Tag = Tag(0x0028, 0x0303);

/// What is written in De-identification Method (an LO: at most 64 characters).
pub const METHOD: &str = "DICOM PS3.15 E.1 Basic Profile; Modified Dates Option";

/// Dates shift back by at least this many days...
const MIN_SHIFT_DAYS: u64 = 365;
/// ...and fewer than this many more.
const SHIFT_SPAN_DAYS: u64 = 3650;

/// Whether `bytes` is a DICOM Part 10 file (128-byte preamble, then `DICM`).
pub fn is_dicom(bytes: &[u8]) -> bool {
    bytes.get(128..132) == Some(b"DICM")
}

/// The secret that keys replacements: instances de-identified under one key keep their UIDs'
/// relations and their dates' intervals; under two keys, nothing links them.
pub struct DeidKey([u8; 32]);

impl std::fmt::Debug for DeidKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DeidKey([REDACTED])")
    }
}

impl DeidKey {
    /// A key from 32 secret bytes.
    pub fn new(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    fn mac(&self, domain: &str, input: &[u8]) -> [u8; 32] {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0).expect("any key length");
        mac.update(b"medledger-dicom/");
        mac.update(domain.as_bytes());
        mac.update(&[0]);
        mac.update(input);
        mac.finalize().into_bytes().into()
    }

    /// The UID replacing `uid`: `2.25.` and 128 bits of the keyed hash, in decimal.
    pub fn replace_uid(&self, uid: &str) -> String {
        let digest = self.mac("uid", uid.trim_end_matches(['\0', ' ']).as_bytes());
        let value = u128::from_be_bytes(digest[..16].try_into().expect("16 bytes"));
        format!("2.25.{value}")
    }

    /// How many days the dates of patient `patient_id` move back.
    pub fn shift_days(&self, patient_id: &str) -> u64 {
        let digest = self.mac("date-shift", patient_id.trim().as_bytes());
        MIN_SHIFT_DAYS
            + u64::from_be_bytes(digest[..8].try_into().expect("8 bytes")) % SHIFT_SPAN_DAYS
    }
}

/// Why content could not be de-identified.
#[derive(Debug, thiserror::Error)]
pub enum DicomError {
    /// Not a DICOM Part 10 file.
    #[error("not a DICOM file (no DICM after the 128-byte preamble)")]
    NotDicom,
    /// dicom-rs could not read it.
    #[error("reading the DICOM file: {0}")]
    Read(String),
    /// dicom-rs could not write it.
    #[error("writing the de-identified DICOM file: {0}")]
    Write(String),
    /// Identifying text may be burned into the pixels.
    #[error(
        "Burned In Annotation is not NO: identifying text may be in the pixel data, which this profile does not clean"
    )]
    BurnedIn,
    /// An image says nothing of burned-in text, and its modality or class often has some.
    #[error(
        "Burned In Annotation is absent from a {modality} image of SOP class {sop_class}: identifying text may be in the pixel data (without the flag set to NO, only CT, MR, PT, NM, RT dose and segmentation images of their own storage classes, not secondary captures, are taken to have none)"
    )]
    BurnedInUnknown {
        /// The image's modality as the file states it ("unknown" if it does not).
        modality: String,
        /// Its SOP class UID ("unknown" if it states none).
        sop_class: String,
    },
}

/// What de-identification did, attribute by attribute (counted over every sequence item).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// Attributes removed (X, and every private attribute).
    pub removed: usize,
    /// Private attributes among them.
    pub private_removed: usize,
    /// Attributes emptied (Z).
    pub emptied: usize,
    /// Attributes given dummy values (D).
    pub dummied: usize,
    /// UIDs replaced (U).
    pub uids_replaced: usize,
    /// Dates shifted (the Modified Dates Option).
    pub dates_shifted: usize,
}

/// De-identifies the DICOM Part 10 file `bytes` under `key`; the result is a Part 10 file in
/// the same transfer syntax, its pixel data unchanged.
pub fn deidentify(bytes: &[u8], key: &DeidKey) -> Result<(Vec<u8>, Report), DicomError> {
    if !is_dicom(bytes) {
        return Err(DicomError::NotDicom);
    }
    let mut file: DefaultDicomObject = OpenFileOptions::new()
        .read_preamble(ReadPreamble::Always)
        .from_reader(Cursor::new(bytes))
        .map_err(|e| DicomError::Read(e.to_string()))?;
    // Read as a reader would even when written with VR UN (a flag hidden that way would let
    // burned-in text through; the modality, SOP class and conversion type decide when there
    // is no flag; the patient's id sets the date shift).
    for tag in [BURNED_IN_ANNOTATION, MODALITY, SOP_CLASS_UID, CONVERSION_TYPE, PATIENT_ID] {
        if file.element_opt(tag).ok().flatten().is_some_and(|e| e.vr() == VR::UN) {
            known_vr(&mut file, tag);
        }
    }
    match text_of(&file, BURNED_IN_ANNOTATION) {
        Some(flag) if flag.trim().eq_ignore_ascii_case("NO") => {}
        Some(flag) if !flag.trim().is_empty() => return Err(DicomError::BurnedIn),
        // No flag (or an empty one): an image is refused unless its modality has no burned-in
        // text; an object without pixels (a report, a plan) has none to hide.
        _ => {
            let modality = text_of(&file, MODALITY).map(|m| m.trim().to_ascii_uppercase());
            let sop_class = text_of(&file, SOP_CLASS_UID)
                .or_else(|| Some(file.meta().media_storage_sop_class_uid.clone()))
                .map(|u| u.trim_end_matches(['\0', ' ']).to_owned())
                .filter(|u| !u.is_empty());
            let reconstructed =
                modality.as_deref().is_some_and(|m| NO_BURN_IN_EXPECTED.contains(&m))
                    && sop_class.as_deref().is_some_and(|c| RECONSTRUCTED_SOP_CLASSES.contains(&c))
                    && file.element_opt(CONVERSION_TYPE).ok().flatten().is_none();
            if has_pixels(&file) && !reconstructed {
                let unknown = || "unknown".to_owned();
                return Err(DicomError::BurnedInUnknown {
                    modality: modality.filter(|m| !m.is_empty()).unwrap_or_else(unknown),
                    sop_class: sop_class.unwrap_or_else(unknown),
                });
            }
        }
    }
    let patient = text_of(&file, PATIENT_ID).unwrap_or_default();
    let shift = key.shift_days(&patient);
    let mut report = Report::default();
    apply(&mut file, key, shift, &mut report);
    mark(&mut file);
    // The file meta group names the instance too: the same replacement as in the data set;
    // the application entities that handled the file and any private information go.
    let meta = file.meta_mut();
    meta.source_application_entity_title = None;
    meta.sending_application_entity_title = None;
    meta.receiving_application_entity_title = None;
    meta.private_information_creator_uid = None;
    meta.private_information = None;
    if !meta.media_storage_sop_instance_uid.trim_end_matches(['\0', ' ']).is_empty() {
        meta.media_storage_sop_instance_uid = key.replace_uid(&meta.media_storage_sop_instance_uid);
    }
    meta.update_information_group_length();
    let mut out = Vec::with_capacity(bytes.len());
    file.write_all(&mut out).map_err(|e| DicomError::Write(e.to_string()))?;
    Ok((out, report))
}

/// The text of `tag` in `obj`, if present and textual.
/// Whether `obj` holds pixel data anywhere: at its top level or in an item of any sequence
/// (the profile keeps sequences it does not list, and their pixels would leave untouched).
fn has_pixels(obj: &InMemDicomObject) -> bool {
    obj.iter().any(|e| {
        PIXEL_DATA_TAGS.contains(&e.tag())
            || e.items().is_some_and(|items| items.iter().any(has_pixels))
    })
}

fn text_of(obj: &InMemDicomObject, tag: Tag) -> Option<String> {
    let element = obj.element_opt(tag).ok().flatten()?;
    element.to_str().ok().map(|s| s.trim_end_matches(['\0', ' ']).to_owned())
}

/// The standard dictionary's VR for `tag`, when it has exactly one.
fn dictionary_vr(tag: Tag) -> Option<VR> {
    match StandardDataDictionary.by_tag(tag)?.vr {
        VirtualVr::Exact(vr) => Some(vr),
        _ => None,
    }
}

/// Whether values of `vr` are text.
fn is_text(vr: VR) -> bool {
    use VR::*;
    matches!(vr, AE | AS | CS | DA | DS | DT | IS | LO | LT | PN | SH | ST | TM | UC | UI | UR | UT)
}

/// An attribute written with VR UN (unknown) that the standard dictionary knows as text is
/// read as that text, as a reader would (pydicom does so by default), so that the profile's
/// actions apply to its value; returns the VR the attribute now has.
fn known_vr(obj: &mut InMemDicomObject, tag: Tag) -> VR {
    let Some(vr) = dictionary_vr(tag) else { return VR::UN };
    if !is_text(vr) {
        return if vr == VR::SQ { VR::SQ } else { VR::UN };
    }
    let Ok(Some(element)) = obj.element_opt(tag) else { return VR::UN };
    let Some(bytes) = element.value().primitive().map(|p| p.to_bytes().into_owned()) else {
        return VR::UN;
    };
    let text = String::from_utf8_lossy(&bytes);
    let values: Vec<String> = text
        .trim_end_matches(['\0', ' '])
        .split('\\')
        .map(|v| v.trim_end_matches(['\0', ' ']).to_owned())
        .collect();
    obj.put(DataElement::new(tag, vr, PrimitiveValue::Strs(values.into_iter().collect())));
    vr
}

/// Applies the profile to every attribute of `obj` (recursing into the sequences it keeps).
fn apply(obj: &mut InMemDicomObject, key: &DeidKey, shift: u64, report: &mut Report) {
    let tags: Vec<(Tag, VR)> = obj.iter().map(|e| (e.tag(), e.vr())).collect();
    for (tag, vr) in tags {
        // Group lengths are stale once values change, and would tell the length of what was
        // removed (the meta group's is recomputed on writing).
        if tag.1 == 0x0000 {
            obj.remove_element(tag);
            report.removed += 1;
            continue;
        }
        let action = profile::action_for(tag);
        let vr = if vr == VR::UN && action != Action::Remove { known_vr(obj, tag) } else { vr };
        let undecoded_sequence =
            vr == VR::SQ && obj.element(tag).is_ok_and(|e| e.items().is_none());
        if undecoded_sequence && action != Action::Empty {
            // A sequence written as UN (unknown): its items cannot be de-identified one by
            // one, so it goes, whatever the profile would keep of it.
            obj.remove_element(tag);
            report.removed += 1;
            continue;
        }
        match action {
            Action::Remove => {
                obj.remove_element(tag);
                report.removed += 1;
                if tag.0 % 2 == 1 {
                    report.private_removed += 1;
                }
            }
            Action::Empty => {
                obj.put(empty(tag, vr));
                report.emptied += 1;
            }
            // A sequence the profile gives a dummy keeps no original item: its items hold
            // attributes the table does not list (codes and meanings naming a person, report
            // text, annotations), so one empty item stands in for them.
            Action::Dummy if vr == VR::SQ => {
                let item = InMemDicomObject::new_empty();
                obj.put(DataElement::new(tag, vr, Value::from(DataSetSequence::from(vec![item]))));
                report.dummied += 1;
            }
            Action::Keep | Action::ReplaceUid if vr == VR::SQ => {
                if let Ok(mut element) = obj.take_element(tag) {
                    if let Some(items) = element.items_mut() {
                        for item in items.iter_mut() {
                            apply(item, key, shift, report);
                        }
                    }
                    obj.put(element);
                }
            }
            Action::Keep => {}
            Action::Dummy if vr == VR::UI => replace_uids(obj, tag, key, report),
            Action::Dummy => {
                obj.put(dummy(tag, vr));
                report.dummied += 1;
            }
            Action::ReplaceUid => replace_uids(obj, tag, key, report),
            Action::ShiftDate => match shifted(obj, tag, vr, shift) {
                Some(element) => {
                    obj.put(element);
                    report.dates_shifted += 1;
                }
                None => {
                    obj.put(empty(tag, vr));
                    report.emptied += 1;
                }
            },
        }
    }
}

/// `tag` with a zero-length value of its VR.
fn empty(tag: Tag, vr: VR) -> InMemElement {
    if vr == VR::SQ {
        return DataElement::new(tag, vr, Value::from(DataSetSequence::empty()));
    }
    DataElement::new(tag, vr, PrimitiveValue::Empty)
}

/// `tag` with a non-zero-length dummy value valid for its VR.
fn dummy(tag: Tag, vr: VR) -> InMemElement {
    let value: PrimitiveValue = match vr {
        VR::PN => "ANONYMIZED".into(),
        VR::DA => "19000101".into(),
        VR::TM => "000000".into(),
        VR::DT => "19000101000000".into(),
        VR::AS => "000Y".into(),
        VR::IS | VR::DS => "0".into(),
        VR::UR => "urn:deidentified".into(),
        VR::US => 0u16.into(),
        VR::SS => 0i16.into(),
        VR::UL => 0u32.into(),
        VR::SL => 0i32.into(),
        VR::UV => 0u64.into(),
        VR::SV => 0i64.into(),
        VR::FL => 0f32.into(),
        VR::FD => 0f64.into(),
        VR::AT => Tag(0, 0).into(),
        VR::OB | VR::OW | VR::OD | VR::OF | VR::OL | VR::OV | VR::UN => vec![0u8; 2].into(),
        // AE, CS, LO, LT, SH, ST, UC, UT (and UI, which is replaced instead): at most 16
        // characters of the CS repertoire fits every one.
        _ => "ANONYMIZED".into(),
    };
    DataElement::new(tag, vr, value)
}

/// Replaces each UID of `tag` in `obj` by the key's replacement.
fn replace_uids(obj: &mut InMemDicomObject, tag: Tag, key: &DeidKey, report: &mut Report) {
    let Ok(Some(element)) = obj.element_opt(tag) else { return };
    let uids: Vec<String> = match element.value().primitive() {
        Some(value) => value.to_multi_str().iter().map(|u| key.replace_uid(u)).collect(),
        None => return,
    };
    report.uids_replaced += uids.len();
    let value = PrimitiveValue::Strs(uids.into_iter().collect());
    obj.put(DataElement::new(tag, VR::UI, value));
}

/// `tag` with every date in it moved back `shift` days (a DT keeps its time of day, a TM is
/// kept), or `None` when a value is not a date this can shift.
fn shifted(obj: &InMemDicomObject, tag: Tag, vr: VR, shift: u64) -> Option<InMemElement> {
    let element = obj.element_opt(tag).ok().flatten()?;
    let values = element.value().primitive()?.to_multi_str().into_owned();
    let moved: Option<Vec<String>> = match vr {
        VR::DA => values.iter().map(|v| shift_date(v.trim(), shift)).collect(),
        VR::DT => values
            .iter()
            .map(|v| {
                let v = v.trim();
                let (date, rest) = v.split_at_checked(8)?;
                Some(format!("{}{rest}", shift_date(date, shift)?))
            })
            .collect(),
        VR::TM => Some(values.clone()),
        _ => None,
    };
    let value = PrimitiveValue::Strs(moved?.into_iter().collect());
    Some(DataElement::new(tag, vr, value))
}

/// The date `yyyymmdd` moved back `days` days.
fn shift_date(date: &str, days: u64) -> Option<String> {
    if date.len() != 8 || !date.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let (y, m, d) = (date[..4].parse().ok()?, date[4..6].parse().ok()?, date[6..].parse().ok()?);
    let moved =
        chrono::NaiveDate::from_ymd_opt(y, m, d)?.checked_sub_days(chrono::Days::new(days))?;
    Some(moved.format("%Y%m%d").to_string())
}

/// Records the de-identification in the data set, as PS3.15 E.1.1 asks.
fn mark(obj: &mut InMemDicomObject) {
    obj.put(DataElement::new(PATIENT_IDENTITY_REMOVED, VR::CS, "YES"));
    obj.put(DataElement::new(DEIDENTIFICATION_METHOD, VR::LO, METHOD));
    let code = |value: &str, meaning: &str| {
        InMemDicomObject::from_element_iter([
            DataElement::new(Tag(0x0008, 0x0100), VR::SH, value),
            DataElement::new(Tag(0x0008, 0x0102), VR::SH, "DCM"),
            DataElement::new(Tag(0x0008, 0x0104), VR::LO, meaning),
        ])
    };
    let codes = vec![
        code("113100", "Basic Application Confidentiality Profile"),
        code("113107", "Retain Longitudinal Temporal Information Modified Dates Option"),
    ];
    obj.put(DataElement::new(
        DEIDENTIFICATION_METHOD_CODES,
        VR::SQ,
        Value::from(DataSetSequence::from(codes)),
    ));
    obj.put(DataElement::new(TEMPORAL_INFORMATION_MODIFIED, VR::CS, "MODIFIED"));
}
