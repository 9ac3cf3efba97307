//! The de-identified research export: HIPAA Safe Harbor (45 CFR 164.514(b)(2)) as a versioned
//! rule set, [`RULE_SET`], over the FHIR Bulk Data `$export` shape (a manifest and one NDJSON
//! file per resource type).
//!
//! The rule set `safe-harbor-1` is a whitelist: a resource holds only what a rule below lets
//! through, so a field added to the ledger's views later is dropped until a rule names it.
//!
//! - Ids: every id is a pseudonym, HMAC-SHA256 under a key derived (HKDF-SHA256) from a secret
//!   the researcher holds and the project id ([`ProjectKeys`]): the same patient or record
//!   maps to the same id within a project and to unlinkable ones across projects. No account
//!   id, Patient-ID, PMR-ID, content hash, transaction hash or CID is written (identifiers
//!   (A)(R): "any other unique identifying number").
//! - Names, telephone numbers, e-mail addresses, attendants, hospitals and doctors (who can
//!   locate the patient): never written (identifiers (A)(D)(E)).
//! - Dates: only the year ([`year_only`]) of a visit or of birth (identifier (C)); a birth
//!   year that makes the patient 90 or older in the export's year is replaced by the age group
//!   `90+` ([`age_group`]), and then no year of birth is written at all.
//! - Geography: the state is kept; a ZIP code becomes its first three digits unless the
//!   three-digit area has 20,000 people or fewer, then `000` ([`zip3`]; identifier (B)).
//! - Free text (titles, descriptions, record content): dropped. A record is exported as its
//!   category (a code), its version status and the year of its visit. Its content is exported
//!   only if it is DICOM, de-identified by `medledger_dicom::deidentify` (PS3.15 Annex E, the
//!   Basic Profile with modified dates) under [`ProjectKeys::dicom_key`]: the exporter writes
//!   it beside the NDJSON files as [`image_file_name`], and the DocumentReference points at it
//!   ([`PatientInput::images`]). Any other content (free text, PDFs, images with burned-in
//!   annotation) is not exported.
//!
//! Every resource is built as FHIR JSON and parsed through the R4 model with its validation
//! (`crate::parse`) before it is written.

use std::collections::{BTreeMap, BTreeSet};

use fhir::r4::resources::Resource;
use hkdf::Hkdf;
use hmac::{Hmac, KeyInit, Mac};
use medledger_api::ExportedRecordView;
use medledger_core::{Hash, ids::AccountId};
use serde_json::{Value, json};
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::{Error, codes, parse};

/// The rule set this module implements, and its version.
pub const RULE_SET: &str = "safe-harbor-1";

/// The extension URL of the manifest's and the resources' medledger research fields.
pub const EXTENSION: &str = "urn:medledger:research";

/// The three-digit ZIP areas of 20,000 people or fewer (US Census 2000, the list HHS's
/// de-identification guidance cites): their ZIP3 is written `000`.
pub const RESTRICTED_ZIP3: [&str; 17] = [
    "036", "059", "063", "102", "203", "556", "692", "790", "821", "823", "830", "831", "878",
    "879", "884", "890", "893",
];

const KEY_SALT: &[u8] = b"medledger/v1/research-export";

/// The keys of one project: pseudonyms and the DICOM de-identification key, both derived from
/// the researcher's secret and the project id. Redacted in `Debug`, zeroised on drop.
pub struct ProjectKeys {
    pseudonym: Zeroizing<[u8; 32]>,
    dicom: Zeroizing<[u8; 32]>,
}

impl std::fmt::Debug for ProjectKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ProjectKeys([REDACTED])")
    }
}

impl ProjectKeys {
    /// Derives the keys of `project` from the researcher's `secret` (HKDF-SHA256, the salt
    /// naming this use, the info naming the key and the project).
    pub fn derive(secret: &[u8; 32], project: &str) -> Self {
        let hk = Hkdf::<Sha256>::new(Some(KEY_SALT), secret);
        let expand = |label: &str| {
            let mut out = Zeroizing::new([0u8; 32]);
            let info = [label.as_bytes(), &[0], project.as_bytes()].concat();
            // 32 bytes is far below HKDF-SHA256's output limit, so expansion cannot fail.
            hk.expand(&info, out.as_mut_slice()).expect("HKDF-SHA256 expands 32 bytes");
            out
        };
        ProjectKeys { pseudonym: expand("pseudonym"), dicom: expand("dicom") }
    }

    /// The pseudonym of the thing of type `kind` named `id` in this project: 64 hex digits
    /// of HMAC-SHA256 (a valid FHIR id).
    pub fn pseudonym(&self, kind: &str, id: &str) -> String {
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(self.pseudonym.as_slice())
            .expect("HMAC takes keys of any length");
        mac.update(kind.as_bytes());
        mac.update(&[0]);
        mac.update(id.as_bytes());
        data_encoding::HEXLOWER.encode(&mac.finalize().into_bytes())
    }

    /// The key for `medledger_dicom::DeidKey::new` in this project.
    pub fn dicom_key(&self) -> [u8; 32] {
        *self.dicom
    }
}

/// The year of an ISO date (`YYYY-MM-DD`, or a longer date-time), if it starts with one.
pub fn year_only(date: &str) -> Option<u16> {
    let year = date.get(..4)?;
    let rest = &date[4..];
    if !year.bytes().all(|b| b.is_ascii_digit()) || !(rest.is_empty() || rest.starts_with('-')) {
        return None;
    }
    year.parse().ok()
}

/// Safe Harbor's ages: `Some("90+")` for someone born in `birth_year` who is (or turns) 90 or
/// older in `year`, `None` otherwise (then the year of birth may be written).
pub fn age_group(birth_year: u16, year: u16) -> Option<&'static str> {
    (year.saturating_sub(birth_year) >= 90).then_some("90+")
}

/// The first three digits of a US ZIP code (`12345` or `12345-6789`), `000` for the restricted
/// areas ([`RESTRICTED_ZIP3`]); `None` for anything that is not a ZIP code (dropped).
pub fn zip3(zip: &str) -> Option<String> {
    let digits = zip.split('-').next()?;
    if digits.len() != 5 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let three = &digits[..3];
    Some(if RESTRICTED_ZIP3.contains(&three) { "000" } else { three }.to_owned())
}

/// What one patient contributes to an export.
#[derive(Debug)]
pub struct PatientInput<'a> {
    /// The patient's account (only ever hashed into a pseudonym).
    pub account: &'a AccountId,
    /// The patient's sealed details, if the exporter could open them (`name`, `phone`,
    /// `date_of_birth`, and `state` and `postal_code` when present): only the year of birth
    /// (or the age group), the state and the ZIP3 pass.
    pub details: Option<&'a Value>,
    /// The patient's records of the exported categories, as the export's listing names them.
    pub records: &'a [ExportedRecordView],
    /// The records whose de-identified DICOM content the exporter writes beside the files, by
    /// PMR-ID ([`image_file_name`] names the file).
    pub images: &'a BTreeSet<String>,
}

/// The file name of the de-identified DICOM content of record `pmr` in an export: the
/// record's pseudonym (its DocumentReference id) and `.dcm`.
pub fn image_file_name(keys: &ProjectKeys, pmr: &str) -> String {
    format!("{}.dcm", keys.pseudonym("DocumentReference", pmr))
}

/// One patient's de-identified resources, by resource type, each parsed and validated.
pub fn patient_resources(
    keys: &ProjectKeys,
    input: &PatientInput<'_>,
    export_year: u16,
) -> Result<Vec<(&'static str, Resource)>, Error> {
    let patient_id = keys.pseudonym("Patient", &input.account.to_string());
    let mut patient = json!({ "resourceType": "Patient", "id": patient_id });
    let field =
        |k: &str| input.details.and_then(|d| d.get(k)).and_then(Value::as_str).map(str::trim);
    if let Some(birth) = field("date_of_birth").and_then(year_only) {
        match age_group(birth, export_year) {
            Some(group) => {
                patient["extension"] = json!([{
                    "url": format!("{EXTENSION}/age-group"),
                    "valueString": group,
                }]);
            }
            None => patient["birthDate"] = json!(format!("{birth:04}")),
        }
    }
    let mut address = serde_json::Map::new();
    if let Some(state) = field("state").filter(|s| is_state_code(s)) {
        address.insert("state".into(), json!(state));
    }
    if let Some(zip) = field("postal_code").and_then(zip3) {
        address.insert("postalCode".into(), json!(zip));
    }
    if !address.is_empty() {
        address.insert("country".into(), json!("US"));
        patient["address"] = json!([address]);
    }
    let mut out = vec![("Patient", parse(patient)?)];
    for r in input.records {
        let image = input.images.contains(&r.pmr);
        out.push(("DocumentReference", document(keys, &patient_id, r, image)?));
    }
    Ok(out)
}

/// A two-letter US state or territory code (anything else is dropped: free text).
fn is_state_code(s: &str) -> bool {
    s.len() == 2 && s.bytes().all(|b| b.is_ascii_uppercase())
}

/// A record as a de-identified DocumentReference: its category, status and visit year, or,
/// if the exporter wrote its de-identified DICOM content (`image`), the file instead of the
/// year. The image's dates are shifted by a per-patient number of days, so the true year beside
/// them would narrow the shift down; and no size, which would match the ledger's token.
fn document(
    keys: &ProjectKeys,
    patient: &str,
    r: &ExportedRecordView,
    image: bool,
) -> Result<Resource, Error> {
    let attachment = if image {
        json!({ "contentType": "application/dicom", "url": image_file_name(keys, &r.pmr) })
    } else {
        json!({ "title": format!("content not exported ({RULE_SET})") })
    };
    let mut doc = json!({
        "resourceType": "DocumentReference",
        "id": keys.pseudonym("DocumentReference", &r.pmr),
        "status": if r.superseded_by.is_some() { "superseded" } else { "current" },
        "category": [{ "coding": [codes::category_coding(r.category)] }],
        "subject": { "reference": format!("Patient/{patient}") },
        "content": [{ "attachment": attachment }],
    });
    if !image {
        doc["context"] = json!({ "period": { "start": format!("{:04}", r.visit_year) } });
    }
    if let Some(loinc) = codes::category_loinc(r.category) {
        doc["type"] = json!({ "coding": [loinc] });
    }
    if let Some(old) = &r.supersedes {
        doc["relatesTo"] = json!([{
            "code": "replaces",
            "target": { "reference": format!("DocumentReference/{}", keys.pseudonym("DocumentReference", old)) },
        }]);
    }
    parse(doc)
}

/// The NDJSON files of an export, by resource type, as they are filled.
#[derive(Debug, Default)]
pub struct NdjsonFiles {
    /// Resource type -> its lines (one resource each, no newline inside).
    pub files: BTreeMap<&'static str, Vec<u8>>,
    /// Resource type -> how many resources.
    pub counts: BTreeMap<&'static str, u64>,
}

impl NdjsonFiles {
    /// Appends `resource` to the file of `kind`.
    pub fn push(&mut self, kind: &'static str, resource: &Resource) -> Result<(), Error> {
        let line = serde_json::to_vec(resource)
            .map_err(|e| Error::Parse { resource: kind.into(), reason: e.to_string() })?;
        let file = self.files.entry(kind).or_default();
        file.extend_from_slice(&line);
        file.push(b'\n');
        *self.counts.entry(kind).or_default() += 1;
        Ok(())
    }

    /// The file name of the resources of `kind`.
    pub fn file_name(kind: &str) -> String {
        format!("{kind}.ndjson")
    }
}

/// What the manifest says about the export besides its files.
///
/// Nothing that leads back to the ledger: no project, height, chain, exact time or plan
/// digest. Anyone who holds the ledger (every hospital running a node) would find the export's
/// access events by them, and so the cohort by account; those stay in the exporter's own index
/// (`export.json` of the encrypted export).
#[derive(Debug)]
pub struct ManifestInput {
    /// Block time of the block that committed the export's access events (ms since the epoch):
    /// only its year is written, as for every other date.
    pub transaction_time_ms: u64,
    /// How many patients the export covers.
    pub patients: u64,
}

/// The Bulk Data `$export` manifest of `files`, with medledger's research extension. Its
/// `transactionTime` is the first instant of the export's year (Safe Harbor keeps years only).
pub fn manifest(files: &NdjsonFiles, m: &ManifestInput) -> Value {
    let output: Vec<Value> = files
        .counts
        .iter()
        .map(|(kind, count)| {
            json!({ "type": kind, "url": NdjsonFiles::file_name(kind), "count": count })
        })
        .collect();
    json!({
        "transactionTime": format!("{}-01-01T00:00:00.000Z", year_of(m.transaction_time_ms)),
        "request": "urn:medledger:research/$export",
        "requiresAccessToken": false,
        "output": output,
        "error": [],
        "extension": {
            EXTENSION: {
                "ruleSet": RULE_SET,
                "patients": m.patients,
            }
        }
    })
}

/// The UTC year of `ms` (ms since the epoch).
pub fn year_of(ms: u64) -> u16 {
    let ms = i64::try_from(ms).unwrap_or(i64::MAX);
    let t = chrono::DateTime::<chrono::Utc>::from_timestamp_millis(ms).unwrap_or_default();
    chrono::Datelike::year(&t).clamp(0, 9999) as u16
}

/// The digest of a set of plan digests, whatever their order (what the exporter's index
/// names; each plan is committed in its patient's access event).
pub fn plans_digest(plans: &[Hash]) -> Hash {
    let mut sorted = plans.to_vec();
    sorted.sort();
    let parts: Vec<&[u8]> = sorted.iter().map(|h| h.0.as_slice()).collect();
    Hash::of_parts(&[&[b"medledger/v1/research-plans".as_slice()], parts.as_slice()].concat())
}

#[cfg(test)]
mod tests {
    use fhir::r4::validate::Validate;
    use medledger_api::ExportedRecordView;
    use medledger_core::{Hash, ids::AccountId};
    use serde_json::{Value, json};

    use super::*;

    const NAME: &str = "Asha Verma";
    const PHONE: &str = "+91 98450 12345";
    const DOB: &str = "1961-07-14";

    fn keys(project: &str) -> ProjectKeys {
        ProjectKeys::derive(&[7; 32], project)
    }

    /// A record of `patient` as the node shows it, by its wire shape.
    fn record(pmr: &str, category: &str, extra: Value) -> ExportedRecordView {
        let mut v = json!({
            "pmr": pmr, "category": category, "visit_year": 2024,
            "content": Hash([0xab; 32]), "size": 1234,
        });
        for (k, x) in extra.as_object().unwrap() {
            v[k] = x.clone();
        }
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn pseudonyms_are_stable_within_a_project_and_unlinkable_across() {
        let (a, a2, b) = (keys("p1"), keys("p1"), keys("p2"));
        let id = "0123456789abcdef0123456789abcdef01234567";
        assert_eq!(a.pseudonym("Patient", id), a2.pseudonym("Patient", id));
        assert_ne!(a.pseudonym("Patient", id), b.pseudonym("Patient", id));
        assert_ne!(a.pseudonym("Patient", id), a.pseudonym("DocumentReference", id));
        assert_ne!(
            a.pseudonym("Patient", id),
            ProjectKeys::derive(&[8; 32], "p1").pseudonym("Patient", id)
        );
        assert_ne!(a.dicom_key(), b.dicom_key());
        let p = a.pseudonym("Patient", id);
        assert_eq!(p.len(), 64);
        assert!(p.bytes().all(|c| c.is_ascii_hexdigit()));
        assert_eq!(format!("{a:?}"), "ProjectKeys([REDACTED])");
    }

    #[test]
    fn dates_keep_the_year_and_ages_over_89_are_grouped() {
        assert_eq!(year_only("1961-07-14"), Some(1961));
        assert_eq!(year_only("2024-03-17T10:00:00Z"), Some(2024));
        assert_eq!(year_only("1961"), Some(1961));
        for bad in ["", "61-07-14", "19610714", "abcd-01-01"] {
            assert_eq!(year_only(bad), None, "{bad}");
        }
        assert_eq!(age_group(1936, 2026), Some("90+"));
        assert_eq!(age_group(1937, 2026), None, "89 in the export's year");
        assert_eq!(age_group(1900, 2026), Some("90+"));
    }

    #[test]
    fn zip_codes_keep_three_digits_unless_the_area_is_small() {
        assert_eq!(zip3("94110").as_deref(), Some("941"));
        assert_eq!(zip3("10001-1234").as_deref(), Some("100"));
        for small in RESTRICTED_ZIP3 {
            assert_eq!(zip3(&format!("{small}42")).as_deref(), Some("000"), "{small}");
        }
        for bad in ["9411", "941101", "ABCDE", "", "94 110"] {
            assert_eq!(zip3(bad), None, "{bad}");
        }
    }

    fn scan(resources: &[(&'static str, Resource)]) -> String {
        let mut files = NdjsonFiles::default();
        for (kind, r) in resources {
            files.push(kind, r).unwrap();
        }
        // Every line re-parses as R4 and passes the model's validation.
        for bytes in files.files.values() {
            for line in bytes.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
                let r: Resource = serde_json::from_slice(line).unwrap();
                assert!(r.validate().is_empty(), "{}", String::from_utf8_lossy(line));
            }
        }
        files.files.values().map(|b| String::from_utf8(b.clone()).unwrap()).collect()
    }

    #[test]
    fn a_patient_keeps_the_year_state_and_zip3_and_loses_every_identifier() {
        let account = AccountId([0x5a; 20]);
        let details = json!({
            "name": NAME, "phone": PHONE, "date_of_birth": DOB, "email": "asha@example.org",
            "state": "CA", "postal_code": "94110-2233", "city": "San Francisco",
        });
        let old =
            record("PMR-ML-000042-1", "lab_report", json!({ "superseded_by": "PMR-ML-000042-2" }));
        let new =
            record("PMR-ML-000042-2", "lab_report", json!({ "supersedes": "PMR-ML-000042-1" }));
        let records = [old, new];
        let input = PatientInput {
            account: &account,
            details: Some(&details),
            records: &records,
            images: &BTreeSet::new(),
        };
        let out = patient_resources(&keys("p1"), &input, 2026).unwrap();
        assert_eq!(
            out.iter().map(|(k, _)| *k).collect::<Vec<_>>(),
            ["Patient", "DocumentReference", "DocumentReference"]
        );
        let text = scan(&out);
        for secret in [
            NAME,
            "Asha",
            "Verma",
            PHONE,
            "98450",
            DOB,
            "07-14",
            "asha@",
            "San Francisco",
            "94110",
            "2233",
            "PMR-ML",
            "000042",
            &account.to_string(),
            &Hash([0xab; 32]).to_hex(),
            "2024-03",
            "1234",
        ] {
            assert!(!text.contains(secret), "{secret:?} leaked into {text}");
        }
        let patient: Value =
            serde_json::from_str(text.lines().find(|l| l.contains("\"Patient\"")).unwrap())
                .unwrap();
        assert_eq!(patient["birthDate"], "1961");
        assert_eq!(patient["address"][0]["state"], "CA");
        assert_eq!(patient["address"][0]["postalCode"], "941");
        assert!(text.contains("\"2024\""), "the visit year stays");
        assert!(text.contains("superseded") && text.contains("replaces"));
    }

    #[test]
    fn a_de_identified_image_is_attached_by_its_pseudonymous_file_and_nothing_else_is() {
        let account = AccountId([0x5a; 20]);
        let (scan_pmr, note_pmr) = ("PMR-ML-000042-7", "PMR-ML-000042-8");
        let records =
            [record(scan_pmr, "imaging", json!({})), record(note_pmr, "imaging", json!({}))];
        let images = BTreeSet::from([scan_pmr.to_owned()]);
        let keys = keys("p1");
        let input =
            PatientInput { account: &account, details: None, records: &records, images: &images };
        let out = patient_resources(&keys, &input, 2026).unwrap();
        let text = scan(&out);
        assert!(!text.contains("PMR-ML") && !text.contains("000042"), "{text}");
        let docs: Vec<Value> = text
            .lines()
            .filter(|l| l.contains("DocumentReference"))
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let by_id = |pmr: &str| {
            let id = keys.pseudonym("DocumentReference", pmr);
            docs.iter().find(|d| d["id"] == id.as_str()).unwrap().clone()
        };
        let scan = by_id(scan_pmr);
        let attachment = &scan["content"][0]["attachment"];
        assert_eq!(attachment["contentType"], "application/dicom");
        assert_eq!(attachment["url"], image_file_name(&keys, scan_pmr).as_str());
        assert!(image_file_name(&keys, scan_pmr).ends_with(".dcm"));
        // No size (the ledger's token would match it) and no year (the image's shifted dates
        // beside the true year would give the shift away).
        assert!(attachment.get("size").is_none(), "{scan}");
        assert!(scan.get("context").is_none(), "{scan}");
        let note = by_id(note_pmr);
        let attachment = &note["content"][0]["attachment"];
        assert!(attachment.get("url").is_none(), "{note}");
        assert_eq!(attachment["title"], format!("content not exported ({RULE_SET})"));
        assert_eq!(note["context"]["period"]["start"], "2024");
    }

    #[test]
    fn a_patient_of_90_or_more_has_an_age_group_and_no_year_of_birth() {
        let account = AccountId([0x6b; 20]);
        let details = json!({ "name": NAME, "date_of_birth": "1930-02-01", "state": "California" });
        let input = PatientInput {
            account: &account,
            details: Some(&details),
            records: &[],
            images: &BTreeSet::new(),
        };
        let out = patient_resources(&keys("p1"), &input, 2026).unwrap();
        let text = scan(&out);
        assert!(!text.contains("1930") && !text.contains("birthDate"), "{text}");
        assert!(text.contains("90+"));
        assert!(!text.contains("California"), "a state as free text is dropped: {text}");
    }

    #[test]
    fn the_manifest_has_the_bulk_data_shape() {
        let account = AccountId([0x5a; 20]);
        let records = [record("PMR-1", "imaging", json!({}))];
        let input = PatientInput {
            account: &account,
            details: None,
            records: &records,
            images: &BTreeSet::new(),
        };
        let mut files = NdjsonFiles::default();
        for (kind, r) in patient_resources(&keys("p1"), &input, 2026).unwrap() {
            files.push(kind, &r).unwrap();
        }
        let plans = plans_digest(&[Hash([1; 32]), Hash([2; 32])]);
        assert_eq!(plans, plans_digest(&[Hash([2; 32]), Hash([1; 32])]));
        // 2026-07-14T09:21:03.123Z: only the year is written.
        let m = manifest(
            &files,
            &ManifestInput { transaction_time_ms: 1_784_020_863_123, patients: 1 },
        );
        assert_eq!(m["transactionTime"], "2026-01-01T00:00:00.000Z");
        assert_eq!(m["request"], "urn:medledger:research/$export");
        assert_eq!(m["requiresAccessToken"], false);
        assert_eq!(
            m["output"],
            json!([
                { "type": "DocumentReference", "url": "DocumentReference.ndjson", "count": 1 },
                { "type": "Patient", "url": "Patient.ndjson", "count": 1 },
            ])
        );
        let ext = &m["extension"][EXTENSION];
        assert_eq!(ext["ruleSet"], RULE_SET);
        assert_eq!(ext["patients"], 1);
        assert!(
            medledger_core::tx::research::RULE_SETS.contains(&RULE_SET),
            "the ledger refuses it"
        );
        // Nothing that finds the export's access events on the ledger.
        let text = m.to_string();
        for linkable in ["cardio", "height", "plans", "chain", &plans.to_hex()] {
            assert!(!text.contains(linkable), "{linkable} in {text}");
        }
    }
}
