//! The `ResearchExport` transaction: a member of an active researcher organisation declares a
//! de-identified export of one patient's records of some categories for a project. It is
//! allowed only if [`consent_allows`] lets the member, under purpose research, read every
//! category it names at this block (that is, a research grant in force from the patient to the
//! member's organisation covers each, and no deny rule stops it); it then writes one audit
//! event, `ResearchExport`, in the patient's trail (and the member's and the organisation's),
//! with the project, the categories, the rule set, the plan digest and the grants that allowed
//! it. Anything short of that is refused and writes nothing: an export is all or nothing.
//!
//! The export is also the only thing that opens identified content to a researcher's member:
//! each record its plan names *of a category whose content the rule set exports*
//! (`content_categories`: imaging, for DICOM, under `safe-harbor-1`) may be read by that member,
//! for research, within [`medledger_core::tx::consent::RESEARCH_READ_WINDOW_MS`] of the
//! export's block and under one of the grants that allowed the export, still in force
//! (`crate::consent::authorize`). Nothing else does (the review's M2): without it a research
//! grant would be a licence to read the records as they are.
//!
//! The plan digest must be the one the ledger computes at this block from the patient's
//! records of the categories named as they now stand, neither erased nor amended since
//! (`plan_digest`): the event commits to exactly what the export may contain, and a plan made
//! before a record was added, amended or erased is refused.
//!
//! Fails closed: the signer must be a member (role `Member`) whose organisation is a
//! researcher; the patient, the owner of the records, a delegate or a doctor with a research
//! grant of their own cannot declare one, and only a grant (not ownership, delegation, a case
//! or a break-glass) allows it.

use medledger_core::{
    Hash,
    block::{Created, Refusal},
    ids::AccountId,
    tx::{
        OrganisationKind, Role,
        consent::{Action, Basis, Decision, Purpose, RecordCategory, Resource},
        research::{PlannedRecord, ResearchExportTx, check_shape, content_categories, plan_digest},
    },
};

use crate::{
    audit::{AuditKind, record_event},
    consent::{acting_organisation, consent_allows},
    handler::HandlerResult,
    state::{Account, RecordEntry, ResearchReadEntry, StateTxn},
};

/// Applies a `ResearchExport` for an authenticated signer (see the module doc).
pub(crate) fn apply(
    state: &mut StateTxn<'_, '_>,
    signer: &AccountId,
    signer_account: &Account,
    tx: &ResearchExportTx,
) -> HandlerResult {
    if let Err(reason) = check_shape(tx) {
        return Ok(Err(Refusal::Invalid { reason }));
    }
    let organisation = match acting_organisation(&*state, signer, signer_account)? {
        Some((id, o)) if o.role == Role::Organisation(OrganisationKind::Researcher) => id,
        _ => {
            return Ok(Err(Refusal::Unauthorised {
                reason: "only a member of a researcher organisation exports for research".into(),
            }));
        }
    };
    // One refusal for every reason past this point (not a patient, no grant, a grant that
    // does not cover a category, a deny rule): a refused export is in no patient's trail, so
    // a reason naming a deny rule, a category or an account's kind would let a member probe
    // patients' choices unseen.
    let refused = || {
        Ok(Err(Refusal::Unauthorised {
            reason: format!(
                "no research export of patient {} for {organisation}: a research grant in force \
                 must cover every category named, and nothing of the patient's may stop it",
                tx.patient
            ),
        }))
    };
    let patient = state.account(&tx.patient)?;
    if !patient.is_some_and(|p| p.role == Role::Patient) {
        return refused();
    }
    let mut grants: Vec<Hash> = Vec::new();
    for category in &tx.categories {
        let at = (state.height, state.time_ms);
        match research_grant(&*state, signer, &tx.patient, *category, at)? {
            Some(grant) if !grants.contains(&grant) => grants.push(grant),
            Some(_) => {}
            None => return refused(),
        }
    }
    grants.sort();
    // The plan must be the ledger's: every current record of the patient of the exported
    // categories, at this block.
    let records = planned(&state.records_of_patient(&tx.patient)?, &tx.categories);
    let plan = plan_digest(&tx.project, &tx.rule_set, &tx.patient, &tx.categories, &records);
    if plan != tx.plan {
        // No count of the records: a refused export is in no trail, so the reason must tell
        // nothing of what the patient has.
        return Ok(Err(Refusal::Invalid {
            reason: format!(
                "the export's plan is not that of patient {}'s records of those categories at \
                 this block: ask for the cohort again",
                tx.patient
            ),
        }));
    }
    let kind = AuditKind::ResearchExport {
        project: tx.project.clone(),
        categories: tx.categories.clone(),
        rule_set: tx.rule_set.clone(),
        plan: tx.plan,
        grants: grants.clone(),
    };
    let event = record_event(state, signer, &tx.patient, &[*signer, organisation], kind)?;
    // Of what the export names, the records whose content its rule set exports, and nothing
    // else, the member may now read for research, under the grants that allowed it (M2).
    let content = content_categories(&tx.rule_set);
    let named = ResearchReadEntry { event, time_ms: state.time_ms, grants: grants.clone() };
    for r in records.iter().filter(|r| content.contains(&r.category)) {
        state.put_research_read(signer, &r.pmr, &named)?;
    }
    Ok(Ok(Some(Created::ResearchExport { event })))
}

/// The grant on which [`consent_allows`] lets `member` read `patient`'s records of `category`
/// for research at `(height, time_ms)`, if a grant is what allows it: the one rule of an
/// export, its cohort and its listing.
fn research_grant(
    view: &impl crate::consent::ConsentView,
    member: &AccountId,
    patient: &AccountId,
    category: RecordCategory,
    (height, time_ms): (u64, u64),
) -> Result<Option<Hash>, crate::LedgerError> {
    let resource =
        Resource { patient: *patient, category: Some(category), record: None, case: None };
    let decision =
        consent_allows(view, member, Action::Read, &resource, Purpose::Research, height, time_ms)?;
    Ok(match decision {
        Decision::Allow(Basis::Grant { grant }) => Some(grant),
        _ => None,
    })
}

/// What an export of `categories` plans from a patient's `records`: every one of those
/// categories as it now stands, neither erased nor replaced by an amendment (research gets the
/// record as corrected, not the version the doctor corrected). The one rule for the plan a
/// transaction must commit to, the plan the cohort offers and the listing an export opens.
fn planned(records: &[(String, RecordEntry)], categories: &[RecordCategory]) -> Vec<PlannedRecord> {
    records
        .iter()
        .filter(|(_, r)| in_plan(r, categories))
        .map(|(pmr, r)| PlannedRecord {
            pmr: pmr.clone(),
            category: r.category,
            content: r.content,
        })
        .collect()
}

/// Whether [`planned`] takes `r` into an export of `categories`.
fn in_plan(r: &RecordEntry, categories: &[RecordCategory]) -> bool {
    r.erased_at.is_none() && r.superseded_by.is_none() && categories.contains(&r.category)
}

/// One patient of a research cohort: who, the categories the export may name, and the plan
/// an export of them must commit to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CohortPatient {
    /// The patient's account.
    pub patient: AccountId,
    /// The categories the member's organisation may export for research now, in order: those
    /// a research grant in force covers (a grant of every record covers every category) and
    /// no deny rule stops. Grants of single records or cases name no category and are not
    /// exported.
    pub categories: Vec<RecordCategory>,
    /// The digest of the plan of an export of these categories for the project and rule set
    /// asked ([`plan_digest`]): what the member signs without seeing the records, which are
    /// listed to it only once the export is committed ([`crate::Ledger::research_export_listing`]).
    pub plan: Hash,
}

/// Which page of a research cohort to read ([`crate::Ledger::research_cohort_page`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CohortPage {
    /// The last patient of the page before (none: the first page).
    pub after: Option<AccountId>,
    /// Most patients in the page (0 counts as 1).
    pub limit: usize,
}

/// One page of a research cohort: its patients, and the last of them when more may follow
/// (the `after` of the next page).
pub type CohortPageOf = (Vec<CohortPatient>, Option<AccountId>);

/// What a committed research export lets its member see of what it named.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ExportListing {
    /// No research export of the member has that event: the same answer as for an event that
    /// does not exist, or is another's.
    Unknown,
    /// The export no longer opens its listing to the member, and why (the day is over, no
    /// grant that allowed it is still in force, the member or its organisation is no longer
    /// active).
    Closed(String),
    /// The patient's records of those categories are no longer those the plan committed to
    /// (one was added, amended or erased since): the listing would not be the export's.
    Changed,
    /// The export and the records its plan named, in PMR-ID order.
    Named {
        /// The patient.
        patient: AccountId,
        /// The project, the rule set, the categories and the plan, as the event says.
        project: String,
        /// The rule set.
        rule_set: String,
        /// The categories.
        categories: Vec<RecordCategory>,
        /// The plan digest.
        plan: Hash,
        /// The block time of the export.
        time_ms: u64,
        /// The records.
        records: Vec<(String, RecordEntry)>,
    },
}

impl crate::Ledger {
    /// The research cohort of `member` at the next block (at the node's clock `now_ms`):
    /// every patient whose research grant in force to the member's researcher organisation
    /// covers some category, with the categories [`consent_allows`] lets the member read for
    /// research and the digest of the plan an export of them for `project` under `rule_set`
    /// would commit to now. `None` if `member` is not an active member of a researcher
    /// organisation.
    pub fn research_cohort(
        &self,
        member: &AccountId,
        project: &str,
        rule_set: &str,
        now_ms: u64,
    ) -> Result<Option<Vec<CohortPatient>>, crate::LedgerError> {
        let page = CohortPage { after: None, limit: usize::MAX };
        let cohort = self.research_cohort_page(member, project, rule_set, now_ms, page)?;
        Ok(cohort.map(|(patients, _)| patients))
    }

    /// One page of [`crate::Ledger::research_cohort`]: of the patients after `page.after` (by
    /// account) with a research grant to the organisation, the first `page.limit` (at least
    /// one) are looked at and those with a category to export are given; with the account to
    /// ask after for the next page when more follow (a page may hold fewer patients than the
    /// limit, even none, and still have a next). Each page reads only its own patients'
    /// grants and records, so a cohort of any size is served in bounded pieces.
    pub fn research_cohort_page(
        &self,
        member: &AccountId,
        project: &str,
        rule_set: &str,
        now_ms: u64,
        page: CohortPage,
    ) -> Result<Option<CohortPageOf>, crate::LedgerError> {
        use medledger_core::tx::consent::Scope;
        use redb::ReadableDatabase;

        use crate::consent::ConsentView;
        let (height, time_ms) = self.next_block_time(now_ms);
        let read = self.db.begin_read()?;
        let view = crate::consent::CommittedView(read);
        let Some(account) = view.account(member)? else { return Ok(None) };
        if crate::consent::inactive(&view, &account)? {
            return Ok(None);
        }
        let organisation = match acting_organisation(&view, member, &account)? {
            Some((id, o)) if o.role == Role::Organisation(OrganisationKind::Researcher) => id,
            _ => return Ok(None),
        };
        // The grants to the organisation, by patient (the index is grantee || patient || id),
        // from the page's start: those of at most `limit` patients, and a look at whether
        // another patient follows. A page's work is bounded by its own patients' grants and
        // records, whatever the size of the cohort.
        let limit = page.limit.max(1);
        let mut candidates: std::collections::BTreeMap<AccountId, Vec<RecordCategory>> =
            Default::default();
        let mut more = false;
        {
            let index = view.0.open_table(crate::state::GRANTS_BY_GRANTEE)?;
            let grants = view.0.open_table(crate::state::GRANTS)?;
            let mut lo = [0u8; 72];
            lo[..20].copy_from_slice(&organisation.0);
            if let Some(after) = page.after {
                lo[20..40].copy_from_slice(&after.0);
            }
            let mut hi = [0xffu8; 72];
            hi[..20].copy_from_slice(&organisation.0);
            for row in index.range::<&[u8; 72]>(&lo..=&hi)? {
                let (k, _) = row?;
                let mut patient = [0u8; 20];
                patient.copy_from_slice(&k.value()[20..40]);
                let patient = AccountId(patient);
                if Some(patient) == page.after {
                    continue;
                }
                if !candidates.contains_key(&patient) && candidates.len() == limit {
                    more = true;
                    break;
                }
                let covered = candidates.entry(patient).or_default();
                let mut id = [0u8; 32];
                id.copy_from_slice(&k.value()[40..]);
                let Some(v) = grants.get(&id)? else {
                    return Err(crate::LedgerError::Corrupt(format!(
                        "indexed grant {} missing",
                        Hash(id)
                    )));
                };
                let g: crate::state::GrantEntry = crate::state::decode_entry("grant", v.value())?;
                if g.purpose != Purpose::Research || !g.in_force(height, time_ms) {
                    continue;
                }
                covered.extend_from_slice(match &g.scope {
                    Scope::All => &RecordCategory::ALL,
                    Scope::Categories(cs) => cs,
                    Scope::Records(_) | Scope::Case(_) => &[],
                });
            }
        }
        let mut cohort = Vec::new();
        let mut last = None;
        for (patient, mut categories) in candidates {
            last = Some(patient);
            categories.sort();
            categories.dedup();
            let mut allowed = Vec::new();
            for category in categories {
                if research_grant(&view, member, &patient, category, (height, time_ms))?.is_some() {
                    allowed.push(category);
                }
            }
            if !allowed.is_empty() {
                let records = planned(&self.records_of_patient(&patient)?, &allowed);
                let plan = plan_digest(project, rule_set, &patient, &allowed, &records);
                cohort.push(CohortPatient { patient, categories: allowed, plan });
            }
        }
        let next = if more { last } else { None };
        Ok(Some((cohort, next)))
    }

    /// What research export `event` of `member` named, at the next block (at the node's
    /// clock `now_ms`): the patient's records its plan committed to, with their metadata
    /// (PMR-IDs, dates, categories, content addresses), to de-identify. The export's audit
    /// event, in the patient's trail, is the record of this disclosure; so it is open only to
    /// the member that committed the export, within [`RESEARCH_READ_WINDOW_MS`] of its block,
    /// while the member and its researcher organisation are active and a grant that allowed
    /// the export is still in force, only while the records are still those the plan names,
    /// and only while the member may still read what the export let it read (a suspension of
    /// the organisation since took that back). Nothing else lists a patient's records to a
    /// researcher (`crate::visibility`).
    pub fn research_export_listing(
        &self,
        member: &AccountId,
        event: u64,
        now_ms: u64,
    ) -> Result<ExportListing, crate::LedgerError> {
        use crate::consent::ConsentView;
        use medledger_core::tx::consent::RESEARCH_READ_WINDOW_MS;
        use redb::ReadableDatabase;
        let (height, time_ms) = self.next_block_time(now_ms);
        let read = self.db.begin_read()?;
        let e: medledger_core::audit::AuditEvent = {
            let events = read.open_table(crate::state::AUDIT)?;
            let Some(v) = events.get(event)? else { return Ok(ExportListing::Unknown) };
            crate::state::decode_entry("audit event", v.value())?
        };
        let AuditKind::ResearchExport { project, categories, rule_set, plan, grants } = e.kind
        else {
            return Ok(ExportListing::Unknown);
        };
        if e.actor != *member {
            return Ok(ExportListing::Unknown);
        }
        let view = crate::consent::CommittedView(read);
        let closed =
            |why: &str| Ok(ExportListing::Closed(format!("research export {event}: {why}")));
        let Some(account) = view.account(member)? else { return Ok(ExportListing::Unknown) };
        let organisation = match acting_organisation(&view, member, &account)? {
            Some((id, o))
                if o.role == Role::Organisation(OrganisationKind::Researcher)
                    && !crate::consent::inactive(&view, &account)? =>
            {
                id
            }
            _ => return closed("you are no longer an active member of a researcher organisation"),
        };
        if e.time_ms > time_ms || time_ms - e.time_ms >= RESEARCH_READ_WINDOW_MS {
            return closed("its listing is open for a day after its block, and that day is over");
        }
        // The export's own rule, asked again now: every category it names still allowed to
        // the member for research under a grant that allowed the export (a grant revoked, or
        // a deny rule added since, closes the listing as it stops the reads).
        for category in &categories {
            let resource = Resource {
                patient: e.patient,
                category: Some(*category),
                record: None,
                case: None,
            };
            let mut still =
                research_grant(&view, member, &e.patient, *category, (height, time_ms))?.is_some();
            if still {
                // Not necessarily the first grant that allows it: one of the export's.
                still = false;
                view.visit_grants(&organisation, &e.patient, &mut |id, g| {
                    still = grants.contains(&id)
                        && g.purpose == Purpose::Research
                        && g.in_force(height, time_ms)
                        && g.covers(&resource);
                    still
                })?;
            }
            if !still {
                return closed(
                    "the patient's consent no longer lets it name every category it named under \
                     the grants that allowed it",
                );
            }
        }
        let records = self.records_of_patient(&e.patient)?;
        let named = planned(&records, &categories);
        if plan_digest(&project, &rule_set, &e.patient, &categories, &named) != plan {
            return Ok(ExportListing::Changed);
        }
        let mut records: Vec<(String, RecordEntry)> =
            records.into_iter().filter(|(_, r)| in_plan(r, &categories)).collect();
        records.sort_by(|a, b| a.0.cmp(&b.0));
        // What the export let the member read must not have been taken back since (a
        // suspension of the organisation ends the reads of every earlier export). A later
        // export of the member's naming a record holds its read now, which leaves this
        // listing open: two projects' exports of one patient on one day both stay listed.
        let content = content_categories(&rule_set);
        for (pmr, _) in records.iter().filter(|(_, r)| content.contains(&r.category)) {
            if view.research_read(member, pmr)?.is_none() {
                return closed(
                    "what it let you read was taken back since (your organisation was \
                     suspended)",
                );
            }
        }
        Ok(ExportListing::Named {
            patient: e.patient,
            project,
            rule_set,
            categories,
            plan,
            time_ms: e.time_ms,
            records,
        })
    }
}
