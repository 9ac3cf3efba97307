//! Researcher and insurer organisations and their members: directory entries and accessors.
//! An organisation's account has role `Organisation(kind)`; a member's has role `Member` and
//! the organisation as its `authority`.

use medledger_core::{
    ids::AccountId,
    tx::{OrganisationKind, SealedRef},
};
use redb::ReadableTable;
use serde::{Deserialize, Serialize};

use super::{StateTxn, get_entry, keys};
use crate::LedgerError;

/// An organisation's public directory entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrganisationEntry {
    /// Researcher or insurer.
    pub kind: OrganisationKind,
    /// Name.
    pub name: String,
    /// Sealed contact details.
    pub contact: SealedRef,
    /// Height of admission.
    pub admitted_at: u64,
}

/// A member's entry: which organisation it acts for, and whether it was removed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberEntry {
    /// The organisation that added the member.
    pub organisation: AccountId,
    /// Name (public directory).
    pub name: String,
    /// Height at which it was added.
    pub added_at: u64,
    /// Height at which the organisation removed it (its key was revoked then).
    pub removed_at: Option<u64>,
}

/// What lets a researcher's member read one record for research: the research export that
/// named it, by its audit event and its block's time (the read must come within
/// [`medledger_core::tx::consent::RESEARCH_READ_WINDOW_MS`] of it), and the grants that allowed
/// the export (the read must come under one of them, still in force).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResearchReadEntry {
    /// The export's audit event (its sequence number).
    pub event: u64,
    /// The time of the export's block.
    pub time_ms: u64,
    /// The grants the export was allowed under, in id order.
    pub grants: Vec<medledger_core::Hash>,
}

impl StateTxn<'_, '_> {
    /// Reads an organisation's entry.
    pub fn organisation(&self, id: &AccountId) -> Result<Option<OrganisationEntry>, LedgerError> {
        get_entry(&self.tables.organisations, &id.0, "organisation")
    }

    /// Writes an organisation's entry (and indexes its sealed contact).
    pub fn put_organisation(
        &mut self,
        id: &AccountId,
        e: &OrganisationEntry,
    ) -> Result<(), LedgerError> {
        let old = match self.write().organisations().put_entry(&id.0, e)? {
            Some(bytes) => {
                let o: OrganisationEntry = super::decode_entry("organisation", &bytes)?;
                super::blobs::of_organisation(id, &o).to_vec()
            }
            None => vec![],
        };
        self.index_registration(&old, &super::blobs::of_organisation(id, e))
    }

    /// Reads a member's entry.
    pub fn member(&self, id: &AccountId) -> Result<Option<MemberEntry>, LedgerError> {
        get_entry(&self.tables.members, &id.0, "member")
    }

    /// Writes a member's entry (and, when new, its index row under the organisation).
    pub fn put_member(&mut self, id: &AccountId, e: &MemberEntry) -> Result<(), LedgerError> {
        if self.write().members().put_entry(&id.0, e)?.is_none() {
            self.write()
                .members_by_organisation()
                .put(&keys::account_pair(&e.organisation, id), ())?;
        }
        Ok(())
    }

    /// What lets `member` read record `pmr` for research, if a research export named it.
    pub fn research_read(
        &self,
        member: &AccountId,
        pmr: &str,
    ) -> Result<Option<ResearchReadEntry>, LedgerError> {
        get_entry(
            &self.tables.research_reads,
            keys::account_str(member, pmr).as_slice(),
            "research read",
        )
    }

    /// Removes every record a research export let `member` read (`research_reads`): its
    /// organisation suspended or the member removed, nothing an export named before stays
    /// readable after a reinstatement.
    pub fn remove_research_reads(&mut self, member: &AccountId) -> Result<(), LedgerError> {
        // Keys are member || PMR-ID (ASCII), so member || 0xff bounds the member's range.
        let (lo, hi) = (member.0.to_vec(), [&member.0[..], &[0xff]].concat());
        let keys = self
            .tables
            .research_reads
            .range(lo.as_slice()..hi.as_slice())?
            .map(|row| row.map(|(k, _)| k.value().to_vec()))
            .collect::<Result<Vec<_>, _>>()?;
        for k in keys {
            self.write().research_reads().remove(k.as_slice())?;
        }
        Ok(())
    }

    /// Every member `organisation` ever added.
    pub fn members_of(&self, organisation: &AccountId) -> Result<Vec<AccountId>, LedgerError> {
        let lo = keys::account_pair(organisation, &AccountId([0; 20]));
        let hi = keys::account_pair(organisation, &AccountId([0xff; 20]));
        let mut out = Vec::new();
        for row in self.tables.members_by_organisation.range::<&[u8; 40]>(&lo..=&hi)? {
            let (k, _) = row?;
            let mut m = [0u8; 20];
            m.copy_from_slice(&k.value()[20..]);
            out.push(AccountId(m));
        }
        Ok(out)
    }

    /// Records that a research export by `member` named record `pmr` (a later one replaces it).
    pub fn put_research_read(
        &mut self,
        member: &AccountId,
        pmr: &str,
        e: &ResearchReadEntry,
    ) -> Result<(), LedgerError> {
        let key = keys::account_str(member, pmr);
        self.write().research_reads().put_entry(key.as_slice(), e)?;
        Ok(())
    }
}
