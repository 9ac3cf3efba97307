//! A grantee's export: for one patient, what the grantee's grants in force cover and nothing
//! more. The bundle holds the Patient (identifiers only: the grantee does not open the
//! patient's sealed details), a DocumentReference and Provenance (and, when read, a Binary) per
//! record that a grant covers, the Practitioners and Organizations they reference, a Consent
//! per grant, and, when a grant covers the patient's device data, an Observation per device
//! reading the grantee read; no audit trail (so no alerts of sessions it could not read), no
//! cases, no deny rules (the patient's own to see).

use std::collections::BTreeMap;

use fhir::r4::resources::Resource;
use medledger_api::{DoctorView, GrantView, HospitalView, PatientView, RecordView};
use medledger_core::{
    Hash,
    ids::AccountId,
    tx::consent::{RecordCategory, Resource as Res},
};

use crate::{
    DeviceReading, Directory, Error, Export, GrantHistory, RecordContent, bundle, grant_consent,
    patient, reading_observation,
};

/// The grant of `grants` that covers reading `record` (the first, in the order given), if any:
/// its purpose is the one to read it for.
pub fn covering_grant<'a>(grants: &'a [GrantView], record: &RecordView) -> Option<&'a GrantView> {
    covering(
        grants,
        &Res {
            patient: record.patient,
            category: Some(record.category),
            record: Some(record.pmr.clone()),
            case: None,
        },
    )
}

/// The grant of `grants` that covers reading `patient`'s device data (the access a session's
/// read names: the category, no record), if any: its purpose is the one to read it for.
pub fn covering_device_grant<'a>(
    grants: &'a [GrantView],
    patient: &AccountId,
) -> Option<&'a GrantView> {
    covering(
        grants,
        &Res {
            patient: *patient,
            category: Some(RecordCategory::DeviceData),
            record: None,
            case: None,
        },
    )
}

/// The first grant of `grants` from `resource`'s patient whose scope covers it.
fn covering<'a>(grants: &'a [GrantView], resource: &Res) -> Option<&'a GrantView> {
    grants.iter().find(|g| g.patient == resource.patient && g.scope.covers(resource))
}

/// Everything a grantee's export is made of, as the grantee's wallet read it.
#[derive(Debug)]
pub struct GranteeInput<'a> {
    /// The grantee (whose grants these are: for an organisation's member, the organisation).
    pub grantee: AccountId,
    /// The patient's registration.
    pub patient: &'a PatientView,
    /// The hospital directory.
    pub hospitals: &'a [HospitalView],
    /// The doctor directory.
    pub doctors: &'a [DoctorView],
    /// The grants in force from the patient to the grantee.
    pub grants: &'a [GrantView],
    /// The patient's records the node shows the grantee (filtered again here).
    pub records: &'a [RecordView],
    /// Decrypted contents by PMR-ID (only when the export includes content).
    pub contents: &'a BTreeMap<String, RecordContent>,
    /// The device readings the grantee read (sessions whose key is wrapped to it: the doctor
    /// the patient named); exported only if a grant covers device data.
    pub readings: &'a [DeviceReading],
    /// The export's time, ms since the Unix epoch.
    pub now_ms: u64,
}

/// Maps a grantee's view of one patient to a `collection` Bundle: only the records a grant of
/// `input.grants` covers (a record the node listed for another reason, say as its author, is
/// left out, as is any content of it), and the device readings only if a grant covers device
/// data; a grant to someone else, or from another patient, or a record or reading of another
/// patient refuses the export ([`Error::Foreign`]).
pub fn grantee_export(input: &GranteeInput<'_>) -> Result<Export, Error> {
    let me = input.patient.account;
    for g in input.grants {
        if g.patient != me {
            return Err(Error::Foreign { what: format!("grant {}", g.id), patient: g.patient });
        }
        if g.grantee != input.grantee {
            return Err(Error::Foreign {
                what: format!("grant {} (to {}, not to this grantee)", g.id, g.grantee),
                patient: g.patient,
            });
        }
    }
    for r in input.records {
        if r.patient != me {
            return Err(Error::Foreign { what: format!("record {}", r.pmr), patient: r.patient });
        }
    }
    for r in input.readings {
        if r.patient != me {
            return Err(Error::Foreign {
                what: format!("reading {} of device session {}", r.seq, r.session),
                patient: r.patient,
            });
        }
    }
    let covered: Vec<&RecordView> =
        input.records.iter().filter(|r| covering_grant(input.grants, r).is_some()).collect();
    let mut dir = Directory::new(input.patient, None, input.hospitals, input.doctors);
    for r in &covered {
        dir.add_present("DocumentReference", &r.pmr);
    }
    for g in input.grants {
        dir.add_present("Consent", &format!("grant/{}", g.id));
    }
    let mut rest: Vec<(String, Resource)> = Vec::new();
    for r in covered {
        crate::push_record(r, input.contents.get(&r.pmr), &dir, &mut rest)?;
    }
    for g in input.grants {
        let history = GrantHistory {
            id: g.id,
            granted_by: g.granted_by,
            grantee: g.grantee,
            scope: g.scope.clone(),
            purpose: g.purpose,
            validity: g.validity,
            // The view has the grant's block height, not its time: the start of its validity
            // (the grant's block time unless it was made to start later) stands for it.
            granted_ms: g.validity.not_before_ms,
            revoked_ms: None,
            in_force: true,
        };
        rest.push(grant_consent(&history, input.now_ms, &dir)?);
    }
    if covering_device_grant(input.grants, &me).is_some() {
        let read: BTreeMap<(Hash, u64), &DeviceReading> =
            input.readings.iter().map(|r| ((r.session, r.seq), r)).collect();
        for r in read.values() {
            rest.push(reading_observation(r, &dir)?);
        }
    }
    let mut all = vec![patient(input.patient, None, None, &dir)?];
    all.extend(dir.resources()?);
    all.extend(rest);
    bundle(all, input.patient, input.now_ms)
}
