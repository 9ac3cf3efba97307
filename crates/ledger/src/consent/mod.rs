//! Consent: grants, revocations, access requests, deny rules and delegates (one file per
//! transaction kind), and [`authorize`], the one function that decides every access to a
//! patient's records from committed state.
//!
//! How grants combine: the patient and their delegates may always access; otherwise an access
//! is allowed if at least one grant to the requester is in force at the block's time (not
//! revoked before this block, within its validity period), has the access's purpose and
//! covers the resource (a grant allows exactly what its scope names: see
//! [`medledger_core::tx::consent::Scope::covers`]); and it is denied, whatever the grants, if
//! any of the patient's deny rules matches it. A deny rule with a category matches accesses
//! that name that category (records of it, device data); cases have no category, so a
//! category rule does not reach them: a rule naming the grantee does.
//!
//! Organisations: a member of a researcher or insurer organisation has no grants of its own;
//! while it and its organisation are active it acts under the organisation's grants (same
//! purpose, same scope, same validity and revocation), and a deny rule reaching the member or
//! the organisation (by account or by role) stops it. A researcher is granted research only,
//! an insurer insurance only.

mod delegate;
mod deny;
mod grant;
mod request;
mod revoke;

pub use medledger_core::tx::consent::{Action, Basis, Decision, Denial, Resource};
use medledger_core::{
    Hash,
    block::Refusal,
    ids::AccountId,
    tx::{
        ConsentTx, DelegatePowers, OrganisationKind, Role,
        consent::{
            MAX_ID_LEN, MAX_SCOPE_ITEMS, Purpose, RESEARCH_READ_WINDOW_MS, RecordCategory, Scope,
            Validity,
        },
    },
};

use crate::{
    LedgerError,
    handler::HandlerResult,
    state::{Account, BreakGlassEntry, DenyEntry, GrantEntry, StateTxn},
};

/// Read access to the consent state, from a block being applied or from committed state, so
/// that [`authorize`] is one function for both.
pub trait ConsentView {
    /// An account.
    fn account(&self, id: &AccountId) -> Result<Option<Account>, LedgerError>;
    /// Whether `delegate` acts for `patient`.
    fn is_delegate(&self, patient: &AccountId, delegate: &AccountId) -> Result<bool, LedgerError>;
    /// Visits the grants (in force or not) from `patient` to `grantee` in the order of their
    /// ids until `visit` returns true.
    fn visit_grants(
        &self,
        grantee: &AccountId,
        patient: &AccountId,
        visit: &mut dyn FnMut(Hash, GrantEntry) -> bool,
    ) -> Result<(), LedgerError>;
    /// Every grant (in force or not) from `patient` to `grantee`, in the order of their ids.
    fn grants_between(
        &self,
        grantee: &AccountId,
        patient: &AccountId,
    ) -> Result<Vec<(Hash, GrantEntry)>, LedgerError> {
        let mut out = Vec::new();
        self.visit_grants(grantee, patient, &mut |id, g| {
            out.push((id, g));
            false
        })?;
        Ok(out)
    }
    /// Every deny rule of `patient`.
    fn deny_rules_of(&self, patient: &AccountId) -> Result<Vec<(Hash, DenyEntry)>, LedgerError>;
    /// Whether `patient` allowed break-glass to open their records.
    fn break_glass_opens_records(&self, patient: &AccountId) -> Result<bool, LedgerError>;
    /// Visits the break-glass declarations by `doctor` for `patient` until `visit` returns true.
    fn visit_break_glass(
        &self,
        doctor: &AccountId,
        patient: &AccountId,
        visit: &mut dyn FnMut(Hash, BreakGlassEntry) -> bool,
    ) -> Result<(), LedgerError>;
    /// The case log `id`, if there is one.
    fn case(&self, id: &str) -> Result<Option<crate::state::CaseLog>, LedgerError>;
    /// The member entry of `id`, if it is an organisation's member.
    fn member(&self, id: &AccountId) -> Result<Option<crate::state::MemberEntry>, LedgerError>;
    /// The research export that last named record `pmr` for `member`, if one did.
    fn research_read(
        &self,
        member: &AccountId,
        pmr: &str,
    ) -> Result<Option<crate::state::ResearchReadEntry>, LedgerError>;
}

/// Decides whether `requester` may perform `action` on `resource` for `purpose` at a block of
/// `height` and `time_ms`. Used by every read path.
///
/// It is [`consent_allows`] with one rule more, for what a grant to a researcher organisation
/// allows ([`Denial::NoResearchExport`] otherwise): the organisation's own account reads
/// nothing under it (only members export); a member reads only a record that a research export
/// it committed named for its content (`research_reads`), within [`RESEARCH_READ_WINDOW_MS`]
/// of that export's block, under one of the grants that allowed the export, still in force and
/// covering the read. So not a category, a case, device data, a record no export of its own
/// named, a record whose content the rule set does not export, an export too old, or a grant
/// given after the export. A research grant is for de-identified research: identified content
/// reaches a researcher's member only through an export that the patient's trail names with
/// its rule set and its plan.
pub fn authorize(
    view: &impl ConsentView,
    requester: &AccountId,
    action: Action,
    resource: &Resource,
    purpose: Purpose,
    height: u64,
    time_ms: u64,
) -> Result<Decision, LedgerError> {
    let decision = consent_allows(view, requester, action, resource, purpose, height, time_ms)?;
    if !matches!(decision, Decision::Allow(Basis::Grant { .. })) {
        return Ok(decision);
    }
    let Some(account) = view.account(requester)? else { return Ok(decision) };
    let researcher = Role::Organisation(OrganisationKind::Researcher);
    let no_export = Ok(Decision::Deny(Denial::NoResearchExport));
    if account.role == researcher {
        return no_export;
    }
    let organisation = match acting_organisation(view, requester, &account)? {
        Some((id, o)) if o.role == researcher => id,
        _ => return Ok(decision),
    };
    let named = match &resource.record {
        Some(pmr) if resource.case.is_none() => view.research_read(requester, pmr)?,
        _ => None,
    };
    let Some(named) =
        named.filter(|e| e.time_ms <= time_ms && time_ms - e.time_ms < RESEARCH_READ_WINDOW_MS)
    else {
        return no_export;
    };
    // The first grant in id order that allowed the export and still allows this read.
    let mut found = None;
    view.visit_grants(&organisation, &resource.patient, &mut |id, g| {
        let matches = named.grants.contains(&id)
            && g.purpose == purpose
            && g.in_force(height, time_ms)
            && g.covers(resource);
        if matches {
            found = Some(id);
        }
        matches
    })?;
    match found {
        Some(grant) => Ok(Decision::Allow(Basis::Grant { grant })),
        None => no_export,
    }
}

/// What the patient's consent alone decides: [`authorize`] without its research-export rule.
/// Only the research export and its cohort ask this directly, since the export is what that
/// rule asks for (a research grant covering the categories it names); [`crate::visibility`]
/// asks it for everyone but a researcher, whose sight is [`authorize`]'s.
pub fn consent_allows(
    view: &impl ConsentView,
    requester: &AccountId,
    action: Action,
    resource: &Resource,
    purpose: Purpose,
    height: u64,
    time_ms: u64,
) -> Result<Decision, LedgerError> {
    let Some(account) = view.account(requester)? else {
        return Ok(Decision::Deny(Denial::UnknownRequester));
    };
    if inactive(view, &account)? {
        return Ok(Decision::Deny(Denial::RequesterInactive));
    }
    if *requester == resource.patient {
        return Ok(Decision::Allow(Basis::Ownership));
    }
    if view.is_delegate(&resource.patient, requester)? {
        return Ok(Decision::Allow(Basis::Delegation));
    }
    // A member acts under its organisation's grants, and a deny rule reaching either stops it.
    let organisation = acting_organisation(view, requester, &account)?;
    for (id, d) in view.deny_rules_of(&resource.patient)? {
        let r = &d.rule;
        let reaches = deny_reaches(r, requester, &account, resource)
            || organisation.as_ref().is_some_and(|(o, oa)| deny_reaches(r, o, oa, resource));
        if reaches && r.purpose.is_none_or(|p| p == purpose) {
            return Ok(Decision::Deny(Denial::DenyRule { rule: id }));
        }
    }
    // The first matching grant in id order, without loading the rest: to the requester, or to
    // the organisation a member acts for.
    let grantee = organisation.as_ref().map_or(*requester, |(o, _)| *o);
    let mut found = None;
    view.visit_grants(&grantee, &resource.patient, &mut |id, g| {
        let matches = g.purpose == purpose && g.in_force(height, time_ms) && g.covers(resource);
        if matches {
            found = Some(id);
        }
        matches
    })?;
    if let Some(grant) = found {
        return Ok(Decision::Allow(Basis::Grant { grant }));
    }
    // A doctor who opened or wrote in a case reads it (after deny rules and inactivity).
    if action == Action::Read
        && let Some(id) = &resource.case
        && view.case(id)?.is_some_and(|c| {
            c.patient == resource.patient
                && (c.opener == *requester || c.authors.contains(requester))
        })
    {
        return Ok(Decision::Allow(Basis::CaseAuthor));
    }
    // Emergency: an open break-glass by the requester, if the patient allowed it in advance.
    if view.break_glass_opens_records(&resource.patient)? {
        let mut open = None;
        view.visit_break_glass(requester, &resource.patient, &mut |id, b| {
            let now = b.open_at(height, time_ms);
            if now {
                open = Some(id);
            }
            now
        })?;
        if let Some(id) = open {
            return Ok(Decision::Allow(Basis::BreakGlass { id }));
        }
    }
    Ok(Decision::Deny(Denial::NoGrant))
}

/// Whether `account` may not act at all: no active key (a removed member's is revoked),
/// suspended, a doctor of a suspended hospital or a member of a suspended organisation.
/// `authorize` and [`crate::visibility`] ask this one rule.
pub(crate) fn inactive(view: &impl ConsentView, account: &Account) -> Result<bool, LedgerError> {
    if account.key.is_none() || account.suspended {
        return Ok(true);
    }
    let answers_to = match account.role {
        Role::Doctor => account.hospital,
        Role::Member => account.authority,
        _ => None,
    };
    Ok(match answers_to {
        Some(a) => view.account(&a)?.is_some_and(|a| a.suspended),
        None => false,
    })
}

/// The organisation under whose grants `requester` (of `account`) acts: for a member, its
/// organisation (id and account), if the member entry names it and it is an organisation with
/// an active key; `None` for everyone else, whose grants are their own. Asked after
/// [`inactive`], which refuses a member of a suspended organisation; a member has no grants of
/// its own (a grant to a member is refused).
pub(crate) fn acting_organisation(
    view: &impl ConsentView,
    requester: &AccountId,
    account: &Account,
) -> Result<Option<(AccountId, Account)>, LedgerError> {
    let Some(organisation) = account.authority.filter(|_| account.role == Role::Member) else {
        return Ok(None);
    };
    if view.member(requester)?.is_none_or(|m| m.organisation != organisation) {
        return Ok(None);
    }
    Ok(view
        .account(&organisation)?
        .filter(|o| matches!(o.role, Role::Organisation(_)) && o.key.is_some())
        .map(|o| (organisation, o)))
}

/// Refuses a grant or request a researcher organisation may not hold: one of single records
/// or of a case. Only categories or everything are exported (the cohort names a patient's
/// categories), and a record's or case's id, which carries the Patient-ID and a date, would
/// be shown to the organisation by the grant itself (its event, its transaction).
pub(crate) fn check_organisation_scope(role: Role, scope: &Scope) -> Result<(), Refusal> {
    if role != Role::Organisation(OrganisationKind::Researcher)
        || matches!(scope, Scope::All | Scope::Categories(_))
    {
        return Ok(());
    }
    Err(Refusal::Invalid {
        reason: "a researcher organisation is granted categories of records or all of them, \
                 for de-identified export; not single records or a case"
            .into(),
    })
}

/// Refuses a grant or request for a purpose the organisation's kind is not for: a researcher
/// is granted research, an insurer insurance, nothing else.
pub(crate) fn check_organisation_purpose(role: Role, purpose: Purpose) -> Result<(), Refusal> {
    let expected = match role {
        Role::Organisation(OrganisationKind::Researcher) => Purpose::Research,
        Role::Organisation(OrganisationKind::Insurer) => Purpose::Insurance,
        _ => return Ok(()),
    };
    if purpose == expected {
        return Ok(());
    }
    Err(Refusal::Invalid {
        reason: format!(
            "a {role:?} organisation is granted access for {expected:?} only, not {purpose:?}"
        ),
    })
}

/// Whether deny rule `rule` reaches `requester` (of `account`) reading `resource`, for the
/// purposes the rule names (all when it names none). `authorize` and [`crate::visibility`]
/// ask this one rule.
pub(crate) fn deny_reaches(
    rule: &medledger_core::tx::consent::DenyRule,
    requester: &AccountId,
    account: &Account,
    resource: &Resource,
) -> bool {
    rule.grantee.is_none_or(|g| g == *requester)
        && rule.grantee_role.is_none_or(|role| role == account.role)
        && rule.category.is_none_or(|c| resource.category == Some(c))
}

/// Whether the patient's deny rules (`rules`) leave anything of grant `g` to `requester` (of
/// `account`, acting for `organisation` if a member), by the rule `authorize` applies: a
/// rule reaching either, for the grant's purpose, closes the category it names, or everything
/// if it names none. A grant of categories is closed whole when every category it names is
/// closed; a grant of everything (which also covers the patient's cases, which have no
/// category), of records or of a case only by a rule naming no category (the categories of
/// its records are not looked up here, so such a grant may be listed though a rule closes
/// each of its records).
pub(crate) fn deny_leaves_something(
    rules: &[(Hash, DenyEntry)],
    requester: &AccountId,
    account: &Account,
    organisation: Option<&(AccountId, Account)>,
    g: &GrantEntry,
) -> bool {
    let closed = |category: Option<RecordCategory>| {
        let resource = Resource { patient: g.patient, category, record: None, case: None };
        rules.iter().any(|(_, d)| {
            let r = &d.rule;
            r.purpose.is_none_or(|p| p == g.purpose)
                && (deny_reaches(r, requester, account, &resource)
                    || organisation.is_some_and(|(o, oa)| deny_reaches(r, o, oa, &resource)))
        })
    };
    match &g.scope {
        Scope::Categories(list) => !list.iter().all(|c| closed(Some(*c))),
        Scope::All | Scope::Records(_) | Scope::Case(_) => !closed(None),
    }
}

/// Applies one consent transaction for an authenticated signer.
pub(crate) fn apply(
    state: &mut StateTxn<'_, '_>,
    signer: &AccountId,
    signer_account: &Account,
    tx: &ConsentTx,
) -> HandlerResult {
    match tx {
        ConsentTx::Grant { patient, grantee, scope, purpose, validity } => {
            grant::grant(state, signer, patient, grantee, scope, *purpose, validity, None)
        }
        ConsentTx::Revoke { grant } => revoke::apply(state, signer, grant),
        ConsentTx::Request { patient, scope, purpose } => {
            request::request(state, signer, signer_account, patient, scope, *purpose)
        }
        ConsentTx::Approve { request, scope, validity } => {
            request::approve(state, signer, request, scope, validity)
        }
        ConsentTx::Decline { request } => request::decline(state, signer, request),
        ConsentTx::Deny { patient, rule } => deny::add(state, signer, patient, rule),
        ConsentTx::RemoveDeny { rule } => deny::remove(state, signer, rule),
        ConsentTx::NameDelegate { delegate } => {
            delegate::set(state, signer, signer_account, delegate, true)
        }
        ConsentTx::RemoveDelegate { delegate } => {
            delegate::set(state, signer, signer_account, delegate, false)
        }
        ConsentTx::ScopeDelegate { delegate, powers } => {
            delegate::scope(state, signer, signer_account, delegate, *powers)
        }
    }
}

/// Refuses unless `doctor` treats the patient of `resource`: the patient was registered at the
/// doctor's hospital, or a treatment grant to the doctor covering `resource` is in force. The
/// rule for minting records and opening cases; `what` names what the grant would have to cover.
pub(crate) fn require_treating(
    state: &StateTxn<'_, '_>,
    doctor: &AccountId,
    doctor_hospital: AccountId,
    patient: &Account,
    resource: &Resource,
    action: Action,
    what: &str,
) -> Result<Result<(), Refusal>, LedgerError> {
    if patient.hospital == Some(doctor_hospital) {
        return Ok(Ok(()));
    }
    let decision = authorize(
        state,
        doctor,
        action,
        resource,
        Purpose::Treatment,
        state.height,
        state.time_ms,
    )?;
    if matches!(decision, Decision::Allow(Basis::Grant { .. })) {
        return Ok(Ok(()));
    }
    let why = match decision {
        Decision::Deny(denial @ Denial::DenyRule { .. }) => denial.to_string(),
        _ => format!("no treatment grant covers {what}"),
    };
    Ok(Err(Refusal::Unauthorised {
        reason: format!(
            "doctor {doctor} does not treat patient {}: not registered at the doctor's hospital, and {why}",
            resource.patient
        ),
    }))
}

/// Refuses unless `signer` is `patient` (a patient account) or a delegate of theirs holding
/// `power`.
pub(crate) fn require_patient_or_delegate(
    state: &StateTxn<'_, '_>,
    signer: &AccountId,
    patient: &AccountId,
    power: DelegatePowers,
) -> Result<Result<(), Refusal>, LedgerError> {
    let Some(p) = state.account(patient)? else {
        return Ok(Err(Refusal::NotFound { what: format!("patient {patient}") }));
    };
    if p.role != Role::Patient {
        return Ok(Err(Refusal::Invalid { reason: format!("{patient} is not a patient") }));
    }
    if signer == patient || state.delegate_may(patient, signer, power)? {
        return Ok(Ok(()));
    }
    if state.is_delegate(patient, signer)? {
        return Ok(Err(Refusal::Unauthorised {
            reason: format!(
                "{signer} is a delegate of patient {patient} without the {} power",
                power.names().join(", ")
            ),
        }));
    }
    Ok(Err(Refusal::Unauthorised {
        reason: format!("only patient {patient} or a delegate they named may do this"),
    }))
}

/// Refuses a malformed scope.
pub(crate) fn check_scope(scope: &Scope) -> Result<(), Refusal> {
    let bad = |reason: String| Err(Refusal::Invalid { reason });
    match scope {
        Scope::All => Ok(()),
        Scope::Categories(cs) if cs.is_empty() || cs.len() > MAX_SCOPE_ITEMS => {
            bad(format!("a scope lists 1 to {MAX_SCOPE_ITEMS} categories"))
        }
        Scope::Records(ids) if ids.is_empty() || ids.len() > MAX_SCOPE_ITEMS => {
            bad(format!("a scope lists 1 to {MAX_SCOPE_ITEMS} records"))
        }
        Scope::Records(ids) if ids.iter().any(|i| i.is_empty() || i.len() > MAX_ID_LEN) => {
            bad(format!("a record id is 1 to {MAX_ID_LEN} bytes"))
        }
        Scope::Case(c) if c.is_empty() || c.len() > MAX_ID_LEN => {
            bad(format!("a case id is 1 to {MAX_ID_LEN} bytes"))
        }
        _ => Ok(()),
    }
}

/// Refuses an empty or already-ended validity period.
pub(crate) fn check_validity(v: &Validity, now_ms: u64) -> Result<(), Refusal> {
    if v.not_before_ms >= v.expires_at_ms {
        return Err(Refusal::Invalid { reason: "the validity period is empty".into() });
    }
    if v.expires_at_ms <= now_ms {
        return Err(Refusal::Invalid { reason: "the validity period has already ended".into() });
    }
    Ok(())
}

/// Visits, in key order, the entries that the index rows in `lo..=hi` point at: each index key
/// ends with the 32-byte id of an entry in `entries` (decoded as `what`). An index row must
/// agree with the entry it points at (`agrees`); one that does not, or points at nothing, is
/// skipped. Stops when `visit` returns true. Grants, deny rules and break-glass declarations
/// are all found this way, from a block being applied or from committed state.
fn visit_via_index<const N: usize, T: serde::Serialize + serde::de::DeserializeOwned>(
    index: &impl redb::ReadableTable<&'static [u8; N], ()>,
    entries: &impl redb::ReadableTable<&'static [u8; 32], &'static [u8]>,
    (lo, hi): ([u8; N], [u8; N]),
    what: &'static str,
    agrees: impl Fn(&T) -> bool,
    visit: &mut dyn FnMut(Hash, T) -> bool,
) -> Result<(), LedgerError> {
    for row in index.range::<&[u8; N]>(&lo..=&hi)? {
        let (k, _) = row?;
        let mut id = [0u8; 32];
        id.copy_from_slice(&k.value()[N - 32..]);
        if let Some(v) = entries.get(&id)? {
            let entry: T = crate::state::decode_entry(what, v.value())?;
            if agrees(&entry) && visit(Hash(id), entry) {
                break;
            }
        }
    }
    Ok(())
}

/// The index range of the grants (or break-glass declarations) from `patient` to `grantee`:
/// the key ends with the id, so the range comes in id order.
fn pair_range(grantee: &AccountId, patient: &AccountId) -> ([u8; 72], [u8; 72]) {
    (
        crate::state::keys::account_pair_hash(grantee, patient, &Hash([0; 32])),
        crate::state::keys::account_pair_hash(grantee, patient, &Hash([0xff; 32])),
    )
}

/// The index range of a patient's deny rules.
fn patient_range(patient: &AccountId) -> ([u8; 52], [u8; 52]) {
    (
        crate::state::keys::account_hash(patient, &Hash([0; 32])),
        crate::state::keys::account_hash(patient, &Hash([0xff; 32])),
    )
}

/// Grants from `patient` to `grantee` found through the index, in any readable table pair.
fn grants_via_index(
    index: &impl redb::ReadableTable<&'static [u8; 72], ()>,
    grants: &impl redb::ReadableTable<&'static [u8; 32], &'static [u8]>,
    grantee: &AccountId,
    patient: &AccountId,
    visit: &mut dyn FnMut(Hash, GrantEntry) -> bool,
) -> Result<(), LedgerError> {
    let agrees = |g: &GrantEntry| g.grantee == *grantee && g.patient == *patient;
    visit_via_index(index, grants, pair_range(grantee, patient), "grant", agrees, visit)
}

/// A doctor's break-glass declarations for a patient, found through the index.
fn break_glass_via_index(
    index: &impl redb::ReadableTable<&'static [u8; 72], ()>,
    table: &impl redb::ReadableTable<&'static [u8; 32], &'static [u8]>,
    doctor: &AccountId,
    patient: &AccountId,
    visit: &mut dyn FnMut(Hash, BreakGlassEntry) -> bool,
) -> Result<(), LedgerError> {
    let agrees = |b: &BreakGlassEntry| b.doctor == *doctor && b.patient == *patient;
    visit_via_index(index, table, pair_range(doctor, patient), "break-glass", agrees, visit)
}

/// A patient's deny rules found through the index.
fn deny_via_index(
    index: &impl redb::ReadableTable<&'static [u8; 52], ()>,
    rules: &impl redb::ReadableTable<&'static [u8; 32], &'static [u8]>,
    patient: &AccountId,
) -> Result<Vec<(Hash, DenyEntry)>, LedgerError> {
    let mut out = Vec::new();
    let agrees = |d: &DenyEntry| d.patient == *patient;
    visit_via_index(index, rules, patient_range(patient), "deny rule", agrees, &mut |id, d| {
        out.push((id, d));
        false
    })?;
    Ok(out)
}

impl ConsentView for StateTxn<'_, '_> {
    fn account(&self, id: &AccountId) -> Result<Option<Account>, LedgerError> {
        StateTxn::account(self, id)
    }
    fn is_delegate(&self, patient: &AccountId, delegate: &AccountId) -> Result<bool, LedgerError> {
        StateTxn::is_delegate(self, patient, delegate)
    }
    fn visit_grants(
        &self,
        grantee: &AccountId,
        patient: &AccountId,
        visit: &mut dyn FnMut(Hash, GrantEntry) -> bool,
    ) -> Result<(), LedgerError> {
        grants_via_index(
            &self.tables.grants_by_grantee,
            &self.tables.grants,
            grantee,
            patient,
            visit,
        )
    }
    fn deny_rules_of(&self, patient: &AccountId) -> Result<Vec<(Hash, DenyEntry)>, LedgerError> {
        deny_via_index(&self.tables.deny_by_patient, &self.tables.deny_rules, patient)
    }
    fn break_glass_opens_records(&self, patient: &AccountId) -> Result<bool, LedgerError> {
        Ok(self.emergency_profile(patient)?.is_some_and(|p| p.open_records))
    }
    fn visit_break_glass(
        &self,
        doctor: &AccountId,
        patient: &AccountId,
        visit: &mut dyn FnMut(Hash, BreakGlassEntry) -> bool,
    ) -> Result<(), LedgerError> {
        break_glass_via_index(
            &self.tables.break_glass_by_pair,
            &self.tables.break_glass,
            doctor,
            patient,
            visit,
        )
    }
    fn case(&self, id: &str) -> Result<Option<crate::state::CaseLog>, LedgerError> {
        StateTxn::case(self, id)
    }
    fn member(&self, id: &AccountId) -> Result<Option<crate::state::MemberEntry>, LedgerError> {
        StateTxn::member(self, id)
    }
    fn research_read(
        &self,
        member: &AccountId,
        pmr: &str,
    ) -> Result<Option<crate::state::ResearchReadEntry>, LedgerError> {
        StateTxn::research_read(self, member, pmr)
    }
}

/// Committed state, as read by queries and by the read paths of the API.
pub(crate) struct CommittedView(pub(crate) redb::ReadTransaction);

impl ConsentView for CommittedView {
    fn account(&self, id: &AccountId) -> Result<Option<Account>, LedgerError> {
        let t = self.0.open_table(crate::state::ACCOUNTS)?;
        let v = t.get(&id.0)?;
        v.map(|v| crate::state::decode_entry("account", v.value())).transpose()
    }
    fn is_delegate(&self, patient: &AccountId, delegate: &AccountId) -> Result<bool, LedgerError> {
        let t = self.0.open_table(crate::state::DELEGATES)?;
        Ok(t.get(&crate::state::keys::account_pair(patient, delegate))?.is_some())
    }
    fn visit_grants(
        &self,
        grantee: &AccountId,
        patient: &AccountId,
        visit: &mut dyn FnMut(Hash, GrantEntry) -> bool,
    ) -> Result<(), LedgerError> {
        let index = self.0.open_table(crate::state::GRANTS_BY_GRANTEE)?;
        let grants = self.0.open_table(crate::state::GRANTS)?;
        grants_via_index(&index, &grants, grantee, patient, visit)
    }
    fn deny_rules_of(&self, patient: &AccountId) -> Result<Vec<(Hash, DenyEntry)>, LedgerError> {
        let index = self.0.open_table(crate::state::DENY_BY_PATIENT)?;
        let rules = self.0.open_table(crate::state::DENY_RULES)?;
        deny_via_index(&index, &rules, patient)
    }
    fn break_glass_opens_records(&self, patient: &AccountId) -> Result<bool, LedgerError> {
        let t = self.0.open_table(crate::state::EMERGENCY_PROFILES)?;
        let Some(v) = t.get(&patient.0)? else { return Ok(false) };
        let p: medledger_core::tx::emergency::EmergencyProfile =
            crate::state::decode_entry("emergency profile", v.value())?;
        Ok(p.open_records)
    }
    fn visit_break_glass(
        &self,
        doctor: &AccountId,
        patient: &AccountId,
        visit: &mut dyn FnMut(Hash, BreakGlassEntry) -> bool,
    ) -> Result<(), LedgerError> {
        let index = self.0.open_table(crate::state::BREAK_GLASS_BY_PAIR)?;
        let table = self.0.open_table(crate::state::BREAK_GLASS)?;
        break_glass_via_index(&index, &table, doctor, patient, visit)
    }
    fn case(&self, id: &str) -> Result<Option<crate::state::CaseLog>, LedgerError> {
        let t = self.0.open_table(crate::state::CASES)?;
        let v = t.get(id)?;
        v.map(|v| crate::state::decode_entry("case", v.value())).transpose()
    }
    fn member(&self, id: &AccountId) -> Result<Option<crate::state::MemberEntry>, LedgerError> {
        let t = self.0.open_table(crate::state::MEMBERS)?;
        let v = t.get(&id.0)?;
        v.map(|v| crate::state::decode_entry("member", v.value())).transpose()
    }
    fn research_read(
        &self,
        member: &AccountId,
        pmr: &str,
    ) -> Result<Option<crate::state::ResearchReadEntry>, LedgerError> {
        let t = self.0.open_table(crate::state::RESEARCH_READS)?;
        let v = t.get(crate::state::keys::account_str(member, pmr).as_slice())?;
        v.map(|v| crate::state::decode_entry("research read", v.value())).transpose()
    }
}
