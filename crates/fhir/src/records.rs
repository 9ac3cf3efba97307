//! Records as DocumentReference (and Binary, with the decrypted content), who wrote them as
//! Provenance, and cases as EpisodeOfCare with one Encounter each.

use fhir::r4::resources::Resource;
use medledger_api::{CaseView, RecordView};
use serde_json::{Value, json};
use sha1::Digest;

use crate::{
    Directory, Error,
    codes::{category_coding, category_loinc, coding, systems},
    consent::period,
    identifier, instant, parse, uuid,
};

/// A record's decrypted content and sealed metadata, as `record get` opens them.
#[derive(Clone, PartialEq, Eq)]
pub struct RecordContent {
    /// The title.
    pub title: String,
    /// The media type.
    pub content_type: String,
    /// When the record was made, `YYYY-MM-DD`.
    pub date: String,
    /// The original file name.
    pub file_name: Option<String>,
    /// The plaintext.
    pub bytes: Vec<u8>,
}

impl std::fmt::Debug for RecordContent {
    /// Never the plaintext.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordContent")
            .field("title", &self.title)
            .field("content_type", &self.content_type)
            .field("len", &self.bytes.len())
            .finish_non_exhaustive()
    }
}

/// A media type the model accepts as a `code` (no whitespace), or octet-stream.
fn media_type(t: &str) -> &str {
    let t = t.trim();
    if t.is_empty() || t.chars().any(char::is_whitespace) { "application/octet-stream" } else { t }
}

/// The decrypted content as a Binary, whose security context is the record's
/// DocumentReference.
pub fn binary(r: &RecordView, c: &RecordContent) -> Result<(String, Resource), Error> {
    let id = uuid("Binary", &r.pmr);
    let b = parse(json!({
        "resourceType": "Binary",
        "id": id,
        "contentType": media_type(&c.content_type),
        "securityContext": {
            "reference": format!("urn:uuid:{}", uuid("DocumentReference", &r.pmr)),
        },
        "data": data_encoding::BASE64.encode(&c.bytes),
    }))?;
    Ok((format!("urn:uuid:{id}"), b))
}

/// A record as a DocumentReference: the PMR-ID and the ledger's SHA-256 of the ciphertext as
/// identifiers; the category (medledger's code, and LOINC's document type where one fits);
/// the author and custodian hospital; the encrypted content at `ipfs://CID` with its size; and,
/// when the content was decrypted, a second content whose attachment points at the Binary
/// (`binary_url`) with the plaintext's media type, size, SHA-1 (as `Attachment.hash` is
/// defined) and title. `superseded` once amended; an amendment `replaces` the record before it.
pub fn document_reference(
    r: &RecordView,
    content: Option<&RecordContent>,
    binary_url: Option<&str>,
    dir: &Directory<'_>,
) -> Result<(String, Resource), Error> {
    let id = uuid("DocumentReference", &r.pmr);
    let status = if r.superseded_by.is_some() { "superseded" } else { "current" };
    let mut contents = vec![json!({
        "attachment": {
            "contentType": "application/octet-stream",
            "url": format!("ipfs://{}", r.cid),
            "size": u32::try_from(r.size).ok(),
            "title": "encrypted content (medledger envelope)",
        },
    })];
    if let (Some(c), Some(url)) = (content, binary_url) {
        let mut attachment = json!({
            "contentType": media_type(&c.content_type),
            "url": url,
            "size": u32::try_from(c.bytes.len()).ok(),
            "hash": data_encoding::BASE64.encode(&sha1::Sha1::digest(&c.bytes)),
            "title": c.file_name.clone().unwrap_or_else(|| c.title.clone()),
        });
        if crate::records::is_date(&c.date) {
            attachment["creation"] = json!(c.date);
        }
        contents.push(json!({ "attachment": attachment }));
    }
    let mut category = vec![json!({ "coding": [category_coding(r.category)] })];
    if let Some(l) = category_loinc(r.category) {
        category.push(json!({ "coding": [l] }));
    }
    let mut d = json!({
        "resourceType": "DocumentReference",
        "id": id,
        "masterIdentifier": identifier(systems::PMR, &r.pmr),
        "identifier": [
            identifier(systems::CONTENT_SHA256, r.content),
            identifier(systems::TX, r.mint_tx),
        ],
        "status": status,
        "category": category,
        "subject": dir.patient_ref(),
        "date": instant(r.minted_time_ms),
        "author": [dir.reference(&r.author)],
        "custodian": dir.reference(&r.hospital),
        "content": contents,
        "context": { "period": { "start": r.visit_date.to_string() } },
    });
    match (content, r.erased_at) {
        (_, Some(h)) => d["description"] = json!(format!("content erased at block {h}")),
        (Some(c), None) => d["description"] = json!(c.title),
        (None, None) => {}
    }
    if let Some(old) = r.supersedes.as_deref().and_then(|o| dir.local("DocumentReference", o)) {
        d["relatesTo"] = json!([{ "code": "replaces", "target": { "reference": old } }]);
    }
    Ok((format!("urn:uuid:{id}"), parse(d)?))
}

/// Whether `s` is `YYYY-MM-DD` (the metadata's date, checked at sealing; checked again here).
pub(crate) fn is_date(s: &str) -> bool {
    chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").is_ok() && s.len() == 10
}

/// Who wrote a record: the doctor (author) on behalf of the hospital, recorded at the mint's
/// block time; the mint transaction as the source entity, by its hash (its inclusion proof:
/// `medledger proof <hash>`).
pub fn provenance(r: &RecordView, dir: &Directory<'_>) -> Result<(String, Resource), Error> {
    let id = uuid("Provenance", &r.pmr);
    let p = parse(json!({
        "resourceType": "Provenance",
        "id": id,
        "target": [{ "reference": format!("urn:uuid:{}", uuid("DocumentReference", &r.pmr)) }],
        "recorded": instant(r.minted_time_ms),
        "activity": { "coding": [coding(
            "http://terminology.hl7.org/CodeSystem/v3-DataOperation", "CREATE", "create",
        )] },
        "agent": [{
            "type": { "coding": [coding(
                "http://terminology.hl7.org/CodeSystem/provenance-participant-type",
                "author",
                "Author",
            )] },
            "who": dir.reference(&r.author),
            "onBehalfOf": dir.reference(&r.hospital),
        }],
        "entity": [{
            "role": "source",
            "what": {
                "identifier": identifier(systems::TX, r.mint_tx),
                "display": format!(
                    "ledger transaction {} (block {}); its inclusion proof: medledger proof {}",
                    r.mint_tx, r.minted_at, r.mint_tx
                ),
            },
        }],
    }))?;
    Ok((format!("urn:uuid:{id}"), p))
}

/// A case as an EpisodeOfCare: `active` while open, `finished` once sealed; the hospital
/// manages it and the opening doctor is its care manager.
pub fn episode_of_care(c: &CaseView, dir: &Directory<'_>) -> Result<(String, Resource), Error> {
    let id = uuid("EpisodeOfCare", &c.case);
    let status = if c.sealed.is_some() { "finished" } else { "active" };
    let e = parse(json!({
        "resourceType": "EpisodeOfCare",
        "id": id,
        "identifier": [identifier(systems::CASE, &c.case), identifier(systems::TX, c.open_tx)],
        "status": status,
        "patient": dir.patient_ref(),
        "managingOrganization": dir.reference(&c.hospital),
        "period": period(c.opened_time_ms, c.sealed.as_ref().map(|s| s.time_ms)),
        "careManager": dir.reference(&c.opener),
    }))?;
    Ok((format!("urn:uuid:{id}"), e))
}

/// The case's encounter: the doctors who wrote in it as participants, the hospital as service
/// provider. The ledger does not record the encounter's class, so it is v3-NullFlavor UNK.
pub fn encounter(
    c: &CaseView,
    episode_url: &str,
    dir: &Directory<'_>,
) -> Result<(String, Resource), Error> {
    let id = uuid("Encounter", &c.case);
    let status = if c.sealed.is_some() { "finished" } else { "in-progress" };
    let mut people = vec![c.opener];
    people.extend(c.authors.iter().copied().filter(|a| *a != c.opener));
    let participant: Vec<Value> =
        people.iter().map(|a| json!({ "individual": dir.reference(a) })).collect();
    let e = parse(json!({
        "resourceType": "Encounter",
        "id": id,
        "identifier": [identifier(systems::CASE, &c.case)],
        "status": status,
        "class": coding("http://terminology.hl7.org/CodeSystem/v3-NullFlavor", "UNK", "unknown"),
        "subject": dir.patient_ref(),
        "episodeOfCare": [{ "reference": episode_url }],
        "participant": participant,
        "period": period(c.opened_time_ms, c.sealed.as_ref().map(|s| s.time_ms)),
        "serviceProvider": dir.reference(&c.hospital),
    }))?;
    Ok((format!("urn:uuid:{id}"), e))
}
