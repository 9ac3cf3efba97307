//! Visibility: who may see that a record, case, device, session, patient, emergency profile or
//! break-glass exists (its metadata and hashes, never its content, which only an audited read
//! serves). The node's signed GETs ask these rules; they answer "not found" (or "forbidden"
//! where the route says so) to everyone else.
//!
//! The parties of a thing (a record's patient, owner, author, hospital and custodians; a
//! device's patient, registrant, the session's doctor and the thresholds' author; a case's
//! opener, authors and their hospitals) see it. Anyone else sees it when a basis of
//! [`crate::consent::authorize`] other than an open break-glass lets them read it now, for
//! some purpose: [`readable_on_some_basis`] asks that in one pass over the consent state
//! (the deny rules once, the grants once), not once per purpose. Under break-glass alone a
//! thing is answered as missing, listed or named by its id (M6): the audited overview
//! (`POST /v1/emergency/{patient}/overview`), whose access event the patient sees, lists it.
//! A researcher organisation and a member acting for one see, under its grants, only what
//! `authorize` lets them read for research (a record its own export named for its content,
//! for a day): a research grant is no licence to list a patient's records, cases or devices;
//! what an export plans is listed by `Ledger::research_export_listing`, under its event.
//!
//! "Now" is the next block at the node's clock (`now_ms`), as for every read of committed
//! state (`Ledger::authorize_now`): a revocation or an expiry bites at once.

use medledger_core::{
    Hash,
    ids::AccountId,
    tx::{
        OrganisationKind, Role,
        consent::{Purpose, RecordCategory, Resource},
        emergency::EmergencyProfile,
    },
};

use redb::ReadableDatabase;

use crate::{
    Ledger, LedgerError,
    consent::{CommittedView, ConsentView, acting_organisation, deny_reaches, inactive},
    state::{BreakGlassEntry, CaseLog, DeviceEntry, PatientEntry, RecordEntry, SessionEntry},
};

/// How far someone may see a case.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum CaseSight {
    /// Not at all: the same answer as for a case that does not exist.
    Hidden,
    /// That it exists, who wrote in it and its hashes (the opener's and authors' hospitals,
    /// and authors a deny rule stops).
    Existence,
    /// Its content too, through the audited read: entries, sealed blobs and the export.
    Content,
}

/// Every purpose. The match in [`purpose_bit`] is exhaustive, so a new purpose is a compile
/// error there until it is counted here too.
const PURPOSES: [Purpose; 5] =
    [Purpose::Treatment, Purpose::Research, Purpose::Insurance, Purpose::Emergency, Purpose::Other];

/// One bit per purpose, for the set of purposes the deny rules leave open.
fn purpose_bit(p: Purpose) -> u8 {
    match p {
        Purpose::Treatment => 1,
        Purpose::Research => 2,
        Purpose::Insurance => 4,
        Purpose::Emergency => 8,
        Purpose::Other => 16,
    }
}

/// Whether [`crate::consent::authorize`] would let `who` read `resource` at `height` and
/// `time_ms` for some purpose, on a basis other than an open break-glass: the patient, a
/// delegate, a grant in force covering it whose purpose no deny rule reaching `who` names, or
/// (for a case) its opener or an author no deny rule stops for every purpose. One pass: the
/// deny rules are read once, the grants once, and the case at most once.
pub fn readable_on_some_basis(
    view: &impl ConsentView,
    who: &AccountId,
    resource: &Resource,
    height: u64,
    time_ms: u64,
) -> Result<bool, LedgerError> {
    let Some(account) = view.account(who)? else { return Ok(false) };
    if inactive(view, &account)? {
        return Ok(false);
    }
    if *who == resource.patient || view.is_delegate(&resource.patient, who)? {
        return Ok(true);
    }
    // A member is seen under its organisation's grants, as `authorize` reads them.
    let organisation = acting_organisation(view, who, &account)?;
    // A researcher organisation and its members see nothing under its grants but what
    // `authorize` lets them read: the records a member's own research export named for their
    // content, within the day. A research grant opens the cohort and the export, whose
    // listing the export's audit event covers (`Ledger::research_export_listing`); never the
    // patient's records, cases or devices as they are (identifiers, dates, authors).
    let researcher = Role::Organisation(OrganisationKind::Researcher);
    if account.role == researcher
        || organisation.as_ref().is_some_and(|(_, o)| o.role == researcher)
    {
        if resource.record.is_none() || resource.case.is_some() {
            return Ok(false);
        }
        let decision = crate::consent::authorize(
            view,
            who,
            medledger_core::tx::consent::Action::Read,
            resource,
            Purpose::Research,
            height,
            time_ms,
        )?;
        use medledger_core::tx::consent::{Basis, Decision};
        return Ok(
            matches!(decision, Decision::Allow(b) if !matches!(b, Basis::BreakGlass { .. })),
        );
    }
    // The purposes for which no deny rule stops `who` (nor a member's organisation).
    let all = PURPOSES.iter().fold(0u8, |bits, p| bits | purpose_bit(*p));
    let mut open = all;
    for (_, d) in view.deny_rules_of(&resource.patient)? {
        let reaches = deny_reaches(&d.rule, who, &account, resource)
            || organisation.as_ref().is_some_and(|(o, oa)| deny_reaches(&d.rule, o, oa, resource));
        if reaches {
            open &= !d.rule.purpose.map_or(all, purpose_bit);
        }
    }
    if open == 0 {
        return Ok(false);
    }
    let grantee = organisation.as_ref().map_or(*who, |(o, _)| *o);
    let mut granted = false;
    view.visit_grants(&grantee, &resource.patient, &mut |_, g| {
        granted =
            open & purpose_bit(g.purpose) != 0 && g.in_force(height, time_ms) && g.covers(resource);
        granted
    })?;
    if granted {
        return Ok(true);
    }
    // A doctor who opened or wrote in a case reads it, for any purpose not denied.
    if let Some(id) = &resource.case {
        return Ok(view.case(id)?.is_some_and(|c| {
            c.patient == resource.patient && (c.opener == *who || c.authors.contains(who))
        }));
    }
    Ok(false)
}

/// Whether `who` may see that token `pmr` (`r`) exists at `height` and `time_ms`: its
/// patient, owner, author or the author's hospital, a custodian of its key, a delegate, or
/// whom [`readable_on_some_basis`] lets read the record. What a signed GET shows and what a
/// refusal may tell ([`crate::records`]).
pub(crate) fn record_seen_by(
    view: &impl ConsentView,
    who: &AccountId,
    pmr: &str,
    r: &RecordEntry,
    height: u64,
    time_ms: u64,
) -> Result<bool, LedgerError> {
    if [r.patient, r.owner, r.author, r.hospital].contains(who)
        || r.sharing.as_ref().is_some_and(|sh| sh.custodians.contains(who))
        || view.is_delegate(&r.patient, who)?
    {
        return Ok(true);
    }
    let resource = Resource {
        patient: r.patient,
        category: Some(r.category),
        record: Some(pmr.to_owned()),
        case: None,
    };
    readable_on_some_basis(view, who, &resource, height, time_ms)
}

/// How far `who` may see case `id` (`c`) at `height` and `time_ms`: its content if
/// [`readable_on_some_basis`] lets them read it (the patient, delegates, a case grant in
/// force, its opener and authors unless a deny rule or an inactive key or hospital stops
/// them); its existence if they opened or wrote in it, or are the hospital of its opener or
/// of an author. What a signed GET shows and what a refusal may tell ([`crate::cases`]).
pub(crate) fn case_sight_in(
    view: &impl ConsentView,
    who: &AccountId,
    id: &str,
    c: &CaseLog,
    height: u64,
    time_ms: u64,
) -> Result<CaseSight, LedgerError> {
    if readable_on_some_basis(view, who, &case_resource(id, c), height, time_ms)? {
        return Ok(CaseSight::Content);
    }
    if *who == c.opener || c.authors.contains(who) || c.hospital == *who {
        return Ok(CaseSight::Existence);
    }
    for a in &c.authors {
        if view.account(a)?.and_then(|a| a.hospital).as_ref() == Some(who) {
            return Ok(CaseSight::Existence);
        }
    }
    Ok(CaseSight::Hidden)
}

/// What an access to the patient's device data names.
fn device_data(patient: AccountId) -> Resource {
    Resource { patient, category: Some(RecordCategory::DeviceData), record: None, case: None }
}

/// What an access to case `id` names.
fn case_resource(id: &str, c: &CaseLog) -> Resource {
    Resource { patient: c.patient, category: None, record: None, case: Some(id.to_owned()) }
}

impl Ledger {
    /// [`readable_on_some_basis`] over committed state now (the next block at `now_ms`): what a
    /// signed GET may show without an audited read.
    pub fn readable_now(
        &self,
        who: &AccountId,
        resource: &Resource,
        now_ms: u64,
    ) -> Result<bool, LedgerError> {
        let (height, time_ms) = self.next_block_time(now_ms);
        let view = CommittedView(self.db.begin_read()?);
        readable_on_some_basis(&view, who, resource, height, time_ms)
    }

    /// Whether `who` is `patient` or one of their delegates: who sees the patient's consent
    /// state (who can see, requests) and audit trail.
    pub fn acts_for(&self, who: &AccountId, patient: &AccountId) -> Result<bool, LedgerError> {
        Ok(who == patient || self.is_delegate(patient, who)?)
    }

    /// Whether `who` may see that token `pmr` (`r`) exists now ([`record_seen_by`] at the
    /// next block at `now_ms`).
    pub fn record_entry_visible_to(
        &self,
        who: &AccountId,
        pmr: &str,
        r: &RecordEntry,
        now_ms: u64,
    ) -> Result<bool, LedgerError> {
        let (height, time_ms) = self.next_block_time(now_ms);
        let view = CommittedView(self.db.begin_read()?);
        record_seen_by(&view, who, pmr, r, height, time_ms)
    }

    /// Token `pmr`, if it exists and `who` may see it
    /// ([`Ledger::record_entry_visible_to`]).
    pub fn record_visible_to(
        &self,
        who: &AccountId,
        pmr: &str,
        now_ms: u64,
    ) -> Result<Option<RecordEntry>, LedgerError> {
        match self.record(pmr)? {
            Some(r) if self.record_entry_visible_to(who, pmr, &r, now_ms)? => Ok(Some(r)),
            _ => Ok(None),
        }
    }

    /// The tokens of `patient` that `who` may see.
    pub fn records_of_patient_visible_to(
        &self,
        who: &AccountId,
        patient: &AccountId,
        now_ms: u64,
    ) -> Result<Vec<(String, RecordEntry)>, LedgerError> {
        let mut out = Vec::new();
        for (id, r) in self.records_of_patient(patient)? {
            if self.record_entry_visible_to(who, &id, &r, now_ms)? {
                out.push((id, r));
            }
        }
        Ok(out)
    }

    /// How far `who` may see case `id` (`c`) now: its content if [`Ledger::readable_now`] lets
    /// them read it (the patient, delegates, a case grant in force, its opener and authors
    /// unless a deny rule or an inactive key or hospital stops them); its existence if they
    /// opened or wrote in it, or are the hospital of its opener or of an author.
    pub fn case_sight(
        &self,
        who: &AccountId,
        id: &str,
        c: &CaseLog,
        now_ms: u64,
    ) -> Result<CaseSight, LedgerError> {
        let (height, time_ms) = self.next_block_time(now_ms);
        let view = CommittedView(self.db.begin_read()?);
        case_sight_in(&view, who, id, c, height, time_ms)
    }

    /// Case `id`, if it exists and `who` may see it at least as far as `needed`.
    pub fn case_visible_to(
        &self,
        who: &AccountId,
        id: &str,
        needed: CaseSight,
        now_ms: u64,
    ) -> Result<Option<CaseLog>, LedgerError> {
        let Some(c) = self.case(id)? else { return Ok(None) };
        let sight = self.case_sight(who, id, &c, now_ms)?;
        Ok((sight != CaseSight::Hidden && sight >= needed).then_some(c))
    }

    /// The cases of `patient` that `who` may see exist.
    pub fn cases_of_patient_visible_to(
        &self,
        who: &AccountId,
        patient: &AccountId,
        now_ms: u64,
    ) -> Result<Vec<(String, CaseLog)>, LedgerError> {
        let mut out = Vec::new();
        for (id, c) in self.cases_of_patient(patient)? {
            if self.case_sight(who, &id, &c, now_ms)? != CaseSight::Hidden {
                out.push((id, c));
            }
        }
        Ok(out)
    }

    /// Whether `who` may see that device `device` (`d`), and its sessions, exist: its patient,
    /// the device itself, its registrant, the doctor of `session`, the author of its
    /// thresholds, a delegate, or whom [`Ledger::readable_now`] lets read the patient's device
    /// data.
    pub fn device_entry_visible_to(
        &self,
        who: &AccountId,
        device: &AccountId,
        d: &DeviceEntry,
        session: Option<&SessionEntry>,
        now_ms: u64,
    ) -> Result<bool, LedgerError> {
        if [d.patient, *device, d.registered_by].contains(who)
            || session.is_some_and(|s| s.doctor.as_ref() == Some(who))
            || self.is_delegate(&d.patient, who)?
        {
            return Ok(true);
        }
        if let Some(t) = d.thresholds
            && self.thresholds(&t)?.is_some_and(|t| t.doctor == *who)
        {
            return Ok(true);
        }
        self.readable_now(who, &device_data(d.patient), now_ms)
    }

    /// Device `device`, if it exists and `who` may see it (judged with its current session).
    pub fn device_visible_to(
        &self,
        who: &AccountId,
        device: &AccountId,
        now_ms: u64,
    ) -> Result<Option<DeviceEntry>, LedgerError> {
        let Some(d) = self.device(device)? else { return Ok(None) };
        let session = d.session.map(|s| self.device_session(&s)).transpose()?.flatten();
        Ok(self.device_entry_visible_to(who, device, &d, session.as_ref(), now_ms)?.then_some(d))
    }

    /// The devices of `patient` that `who` may see.
    pub fn devices_of_patient_visible_to(
        &self,
        who: &AccountId,
        patient: &AccountId,
        now_ms: u64,
    ) -> Result<Vec<(AccountId, DeviceEntry)>, LedgerError> {
        let mut out = Vec::new();
        for (id, d) in self.devices_of_patient(patient)? {
            let session = d.session.map(|s| self.device_session(&s)).transpose()?.flatten();
            if self.device_entry_visible_to(who, &id, &d, session.as_ref(), now_ms)? {
                out.push((id, d));
            }
        }
        Ok(out)
    }

    /// Session `id`, if it exists and `who` may see its device (judged with this session).
    pub fn session_visible_to(
        &self,
        who: &AccountId,
        id: &Hash,
        now_ms: u64,
    ) -> Result<Option<SessionEntry>, LedgerError> {
        let Some(s) = self.device_session(id)? else { return Ok(None) };
        let d = self
            .device(&s.device)?
            .ok_or_else(|| LedgerError::Corrupt(format!("session {id} names no device")))?;
        Ok(self.device_entry_visible_to(who, &s.device, &d, Some(&s), now_ms)?.then_some(s))
    }

    /// Whether `who` may map patient `p`'s Patient-ID to their account: a relationship the
    /// ledger can tell ([`Ledger::may_look_up_patient`]), or the key check of the patient's
    /// emergency profile (`card`, derived from the code on their card).
    pub fn patient_visible_to(
        &self,
        who: &AccountId,
        p: &PatientEntry,
        card: Option<&Hash>,
        now_ms: u64,
    ) -> Result<bool, LedgerError> {
        if self.may_look_up_patient(who, p, now_ms)? {
            return Ok(true);
        }
        let Some(card) = card else { return Ok(false) };
        Ok(self.emergency_profile(&p.account)?.is_some_and(|e| e.key_check == *card))
    }

    /// Whether `who` may see the public part of `patient`'s emergency profile `p`: the
    /// patient, a custodian of its escrow, a delegate, or an active doctor. Asked with no
    /// profile (`None`: the patient has none), the same answer but for custodians, of whom
    /// there are none: so that whether a profile exists is told only to whom may see it.
    pub fn emergency_profile_visible_to(
        &self,
        who: &AccountId,
        patient: &AccountId,
        p: Option<&EmergencyProfile>,
    ) -> Result<bool, LedgerError> {
        let custodian = p.is_some_and(|p| p.escrow.iter().any(|k| k.recipient == *who));
        if who == patient || custodian {
            return Ok(true);
        }
        if self.is_delegate(patient, who)? {
            return Ok(true);
        }
        Ok(self
            .account(who)?
            .is_some_and(|a| a.role == Role::Doctor && a.key.is_some() && !a.suspended))
    }

    /// Whether `who` may see break-glass `b`: its doctor, the doctor's hospital, its patient,
    /// the regulator (a reader of the sealed reason and finding), a custodian of the
    /// patient's escrow, or a delegate.
    pub fn break_glass_visible_to(
        &self,
        who: &AccountId,
        b: &BreakGlassEntry,
    ) -> Result<bool, LedgerError> {
        if [b.doctor, b.hospital, b.patient, self.genesis().regulator()].contains(who) {
            return Ok(true);
        }
        let custodian = self
            .emergency_profile(&b.patient)?
            .is_some_and(|p| p.escrow.iter().any(|k| k.recipient == *who));
        Ok(custodian || self.is_delegate(&b.patient, who)?)
    }
}
