//! Export, then import: a record's DocumentReference and Binary, as the export writes them,
//! read back by the import into the same record content and metadata.

use super::*;

#[test]
fn an_exported_document_reference_and_binary_import_back_to_the_same_record() {
    let w = world();
    let e = run(&w, &contents());
    let v = serde_json::to_value(&e.bundle).unwrap();
    let entries = v["entry"].as_array().unwrap();
    let doc = entries
        .iter()
        .find(|x| x["resource"]["masterIdentifier"]["value"] == "PMR-2")
        .unwrap()
        .clone();
    let bin_url = doc["resource"]["content"][1]["attachment"]["url"].clone();
    let bin = entries.iter().find(|x| x["fullUrl"] == bin_url).unwrap().clone();
    let b = json!({ "resourceType": "Bundle", "type": "collection", "entry": [doc, bin] });
    let records = crate::read_bundle(&serde_json::to_vec(&b).unwrap()).unwrap();
    assert_eq!(records.len(), 1);
    let r = &records[0];
    let c = &contents()["PMR-2"];
    assert_eq!(r.bytes, c.bytes);
    assert_eq!(r.title, c.title);
    assert_eq!(r.content_type, c.content_type);
    assert_eq!(r.file_name, c.file_name);
    assert_eq!(r.category, RecordCategory::LabReport);
    assert_eq!(r.visit_date.as_deref(), Some("2026-01-02"));
    // The encrypted copy the export points at (ipfs://) is named, not imported.
    assert!(r.notes.contains("ipfs://bafkreitest2"), "{}", r.notes);
}
