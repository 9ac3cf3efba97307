//! Who a committed transaction concerns, per kind, in one exhaustive function: what decides
//! who may fetch a transaction by hash (security review M7: a grant says who treats whom, a
//! break-glass carries a sealed reason). The parties are the signer, the accounts it names
//! or acts on, and the patient it concerns; the patient's delegates, the patient's
//! registering hospital and the regulator may see it too, and a case's open whoever holds
//! the case's key while they may see the case.

use medledger_core::{
    Hash,
    block::{Created, Outcome, Receipt},
    ids::AccountId,
    tx::{
        CaseTx, ConsentTx, DeviceTx, EmergencyTx, NodeTx, RecordTx, RegistryTx, SignedTransaction,
        TxBody,
    },
};
use redb::ReadableDatabase;

use crate::{
    Ledger, LedgerError,
    state::{DENY_RULES, DenyEntry, GRANTS, GrantEntry, decode_entry},
};

/// Who a transaction concerns.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Parties {
    /// The patient whose records, consent, devices or emergency access it concerns, if any
    /// (a refused transaction may name nothing that exists).
    pub patient: Option<AccountId>,
    /// The signer and every other account it names or acts on.
    pub accounts: Vec<AccountId>,
}

impl Ledger {
    /// Who `tx` concerns (see the module doc). Every kind is listed: a new kind does not
    /// compile until someone says who its parties are.
    pub fn parties(
        &self,
        tx: &SignedTransaction,
        receipt: &Receipt,
    ) -> Result<Parties, LedgerError> {
        let signer = tx.tx.signer;
        let mut accounts = vec![signer];
        // Whoever answers for the signer: a doctor's hospital, the authority over its key.
        if let Some(a) = self.account(&signer)? {
            accounts.extend(a.authority);
            accounts.extend(a.hospital);
        }
        let patient = match &tx.tx.body {
            TxBody::Registry(r) => match r {
                RegistryTx::AdmitHospital(a) => {
                    accounts.push(AccountId::from_initial_key(&a.key));
                    None
                }
                RegistryTx::SuspendHospital { hospital, .. }
                | RegistryTx::ReinstateHospital { hospital } => {
                    accounts.push(*hospital);
                    None
                }
                RegistryTx::OnboardDoctor(d) => {
                    accounts.push(AccountId::from_initial_key(&d.key));
                    None
                }
                RegistryTx::RegisterPatient(p) => Some(AccountId::from_initial_key(&p.key)),
                RegistryTx::AmendPatient(a) => self.patient(a.patient)?.map(|p| p.account),
                RegistryTx::AdmitOrganisation(a) => {
                    accounts.push(AccountId::from_initial_key(&a.key));
                    None
                }
                RegistryTx::SuspendOrganisation { organisation, .. }
                | RegistryTx::ReinstateOrganisation { organisation } => {
                    accounts.push(*organisation);
                    None
                }
                RegistryTx::AddMember(m) => {
                    accounts.push(AccountId::from_initial_key(&m.key));
                    None
                }
                RegistryTx::RemoveMember { member } => {
                    accounts.push(*member);
                    None
                }
                RegistryTx::RotateKey { .. } => None,
                RegistryTx::RevokeKey { account, .. } => {
                    accounts.push(*account);
                    None
                }
            },
            TxBody::Consent(c) => match c {
                ConsentTx::Grant { patient, grantee, .. } => {
                    accounts.push(*grantee);
                    Some(*patient)
                }
                ConsentTx::Revoke { grant } => {
                    let g = self.grant_entry(grant)?;
                    g.map(|g| {
                        accounts.push(g.grantee);
                        g.patient
                    })
                }
                ConsentTx::Request { patient, .. } | ConsentTx::Deny { patient, .. } => {
                    Some(*patient)
                }
                ConsentTx::Approve { request, .. } | ConsentTx::Decline { request } => {
                    self.access_request(request)?.map(|r| {
                        accounts.push(r.requester);
                        r.patient
                    })
                }
                ConsentTx::RemoveDeny { rule } => {
                    let d = self.deny_entry(rule)?;
                    d.map(|d| d.patient)
                }
                ConsentTx::NameDelegate { delegate }
                | ConsentTx::RemoveDelegate { delegate }
                | ConsentTx::ScopeDelegate { delegate, .. } => {
                    accounts.push(*delegate);
                    Some(signer)
                }
            },
            // An access naming a record concerns the record's patient, whatever patient it
            // declares: a false declaration is a denial in that patient's trail (L5).
            TxBody::Access(a) => match &a.resource.record {
                Some(pmr) => self.record(pmr)?.map(|r| r.patient).or(Some(a.resource.patient)),
                None => Some(a.resource.patient),
            },
            // A research export concerns its patient, its member (the signer) and the
            // member's organisation (the authority over its key, above).
            TxBody::ResearchExport(r) => Some(r.patient),
            TxBody::Records(r) => match r {
                RecordTx::Mint(m) => {
                    // Whoever holds the record's key, or a share of it, checks where it comes
                    // from (the custodians are named in the mint).
                    if let Some(sharing) = &m.sharing {
                        accounts.extend(sharing.shares.iter().map(|k| k.recipient));
                    }
                    if let Outcome::Applied { created: Some(Created::Record { pmr }) } =
                        &receipt.outcome
                    {
                        accounts.extend(self.record_key_holders(pmr)?.into_iter().map(|(a, _)| a));
                    }
                    Some(m.patient)
                }
                RecordTx::Approve { record, approved } => {
                    accounts.extend(approved);
                    self.record(record)?.map(|e| e.patient)
                }
                RecordTx::SetApprovalForAll { operator, .. } => {
                    accounts.push(*operator);
                    None
                }
                RecordTx::Transfer { record, to } => {
                    accounts.push(*to);
                    self.record(record)?.map(|e| e.patient)
                }
                RecordTx::ShareKey { record, key } => {
                    accounts.push(key.recipient);
                    self.record(record)?.map(|e| e.patient)
                }
                RecordTx::Erase { record } => self.record(record)?.map(|e| e.patient),
                RecordTx::ReleaseShare { record, reader, .. } => {
                    accounts.push(*reader);
                    self.record(record)?.map(|e| e.patient)
                }
            },
            TxBody::Emergency(e) => match e {
                EmergencyTx::SetProfile { patient, .. } | EmergencyTx::ReadProfile { patient } => {
                    Some(*patient)
                }
                // The custodians of the patient's emergency key release to its doctor: they
                // prove patient and doctor from this transaction (its reason is sealed to
                // others).
                EmergencyTx::BreakGlass { patient, .. } => {
                    if let Some(p) = self.emergency_profile(patient)? {
                        accounts.extend(p.escrow.iter().map(|k| k.recipient));
                    }
                    Some(*patient)
                }
                EmergencyTx::End { break_glass }
                | EmergencyTx::ReleaseEscrow { break_glass, .. }
                | EmergencyTx::FileReview { break_glass, .. } => {
                    self.break_glass(break_glass)?.map(|b| {
                        accounts.extend([b.doctor, b.hospital]);
                        b.patient
                    })
                }
                EmergencyTx::SetWindow { .. } => None,
            },
            TxBody::Cases(c) => match c {
                CaseTx::Open(o) => Some(o.patient),
                CaseTx::ShareKey { case, key } => {
                    accounts.push(key.recipient);
                    self.case(case)?.map(|l| l.patient)
                }
                CaseTx::Append { case, .. } | CaseTx::Seal { case, .. } => {
                    self.case(case)?.map(|l| l.patient)
                }
            },
            TxBody::Devices(d) => match d {
                DeviceTx::Register(r) => {
                    accounts.push(AccountId::from_initial_key(&r.key));
                    Some(r.patient)
                }
                DeviceTx::Retire { device } => {
                    accounts.push(*device);
                    self.device(device)?.map(|e| e.patient)
                }
                DeviceTx::StartSession(s) => {
                    accounts.push(s.device);
                    accounts.extend(s.doctor);
                    self.device(&s.device)?.map(|e| e.patient)
                }
                DeviceTx::EndSession { session } => self.session_patient(session)?,
                DeviceTx::SetThresholds(t) => {
                    accounts.push(t.device);
                    self.device(&t.device)?.map(|e| e.patient)
                }
                DeviceTx::Readings(b) => self.session_patient(&b.session)?,
                DeviceTx::Alert(a) => self.session_patient(&a.session)?,
            },
            // Consortium infrastructure: the regulator and the node's hospital.
            TxBody::Nodes(n) => {
                match n {
                    NodeTx::Admit { hospital, .. } => accounts.push(*hospital),
                    NodeTx::Suspend { node_key }
                    | NodeTx::Reinstate { node_key }
                    | NodeTx::Remove { node_key } => {
                        accounts.extend(self.node_member_by_key(node_key)?.and_then(|n| n.hospital))
                    }
                }
                None
            }
        };
        Ok(Parties { patient, accounts })
    }

    /// Whether `who` may see the committed transaction `tx`: one of its parties, a delegate of
    /// the patient it concerns, the patient's registering hospital, or the regulator.
    pub fn may_see_transaction(
        &self,
        who: &AccountId,
        tx: &SignedTransaction,
        receipt: &Receipt,
        now_ms: u64,
    ) -> Result<bool, LedgerError> {
        if *who == self.genesis().regulator() {
            return Ok(true);
        }
        let parties = self.parties(tx, receipt)?;
        if parties.accounts.contains(who) || parties.patient.as_ref() == Some(who) {
            return Ok(true);
        }
        // Whoever holds a case's key (a doctor the patient shared it with) proves the case by
        // its open before sealing an entry under the key, while they may see the case now:
        // the open shows nothing the case's view does not show them.
        if let (
            TxBody::Cases(CaseTx::Open(_)),
            Outcome::Applied { created: Some(Created::Case { case, .. }) },
        ) = (&tx.tx.body, &receipt.outcome)
            && self.case_key(case, who)?.is_some()
            && self
                .case_visible_to(who, case, crate::visibility::CaseSight::Existence, now_ms)?
                .is_some()
        {
            return Ok(true);
        }
        let Some(patient) = parties.patient else { return Ok(false) };
        if self.is_delegate(&patient, who)? {
            return Ok(true);
        }
        let hospital = match self.patient_id_of(&patient)? {
            Some(pid) => self.patient(pid)?.map(|p| p.hospital),
            None => None,
        };
        Ok(hospital.as_ref() == Some(who))
    }

    fn session_patient(&self, session: &Hash) -> Result<Option<AccountId>, LedgerError> {
        Ok(self.device_session(session)?.map(|s| s.patient))
    }

    fn grant_entry(&self, id: &Hash) -> Result<Option<GrantEntry>, LedgerError> {
        let read = self.db.begin_read()?;
        let t = read.open_table(GRANTS)?;
        let v = t.get(&id.0)?;
        v.map(|v| decode_entry("grant", v.value())).transpose()
    }

    fn deny_entry(&self, id: &Hash) -> Result<Option<DenyEntry>, LedgerError> {
        let read = self.db.begin_read()?;
        let t = read.open_table(DENY_RULES)?;
        let v = t.get(&id.0)?;
        v.map(|v| decode_entry("deny rule", v.value())).transpose()
    }
}
