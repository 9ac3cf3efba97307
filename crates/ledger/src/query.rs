//! Read-only queries over committed state: directory, accounts, patients, transactions with
//! their receipts, blocks, and Merkle proofs. Readers never block the writer (redb MVCC).

use medledger_core::{
    Hash,
    block::{BlockHeader, Checkpoint, Created, Outcome, Receipt},
    encoding,
    ids::{AccountId, PatientId},
    merkle::{ConsistencyProof, InclusionProof},
    tx::SignedTransaction,
};
use redb::{ReadableDatabase, ReadableTable, ReadableTableMetadata};

use crate::{Ledger, LedgerError, state::*};

/// The grants from `patient` in force at a block of `h` and `t` under which `requester` acts
/// ([`crate::consent::authorize`]'s rules), to list them and to look the patient up: its
/// own, or for a member its organisation's; none for an unknown or inactive requester
/// ([`crate::consent::inactive`]: a removed member, a member of a suspended organisation), for
/// a member [`crate::consent::acting_organisation`] finds no organisation for, and for a
/// researcher organisation and its members: their grants open the research cohort and export
/// and the reads an export names (M2), not a patient's Patient-ID or a listing to export from.
/// A grant the patient's deny rules close whole ([`crate::consent::deny_leaves_something`])
/// is not one: reads under it are all denied, so it lists nothing and looks nobody up.
fn grants_acted_under(
    view: &impl crate::consent::ConsentView,
    requester: &AccountId,
    patient: &AccountId,
    h: u64,
    t: u64,
) -> Result<Vec<(Hash, GrantEntry)>, LedgerError> {
    use medledger_core::tx::{OrganisationKind, Role};
    let researcher = Role::Organisation(OrganisationKind::Researcher);
    let Some(account) = view.account(requester)? else { return Ok(Vec::new()) };
    if crate::consent::inactive(view, &account)? || account.role == researcher {
        return Ok(Vec::new());
    }
    let organisation = match account.role {
        Role::Member => match crate::consent::acting_organisation(view, requester, &account)? {
            Some(o) if o.1.role != researcher => Some(o),
            _ => return Ok(Vec::new()),
        },
        _ => None,
    };
    let grantee = organisation.as_ref().map_or(*requester, |(o, _)| *o);
    let rules = view.deny_rules_of(patient)?;
    Ok(view
        .grants_between(&grantee, patient)?
        .into_iter()
        .filter(|(_, g)| g.in_force(h, t))
        .filter(|(_, g)| {
            crate::consent::deny_leaves_something(
                &rules,
                requester,
                &account,
                organisation.as_ref(),
                g,
            )
        })
        .collect())
}

/// A committed transaction, where it is, and what it did.
#[derive(Clone, Debug)]
pub struct TxRecord {
    /// The transaction.
    pub tx: SignedTransaction,
    /// Its receipt.
    pub receipt: Receipt,
    /// The header of the block that holds it.
    pub header: BlockHeader,
}

impl Ledger {
    /// An account.
    pub fn account(&self, id: &AccountId) -> Result<Option<Account>, LedgerError> {
        let read = self.db.begin_read()?;
        let table = read.open_table(ACCOUNTS)?;
        let v = table.get(&id.0)?;
        v.map(|v| decode_entry("account", v.value())).transpose()
    }

    /// A hospital's directory entry.
    pub fn hospital(&self, id: &AccountId) -> Result<Option<HospitalEntry>, LedgerError> {
        let read = self.db.begin_read()?;
        let table = read.open_table(HOSPITALS)?;
        let v = table.get(&id.0)?;
        v.map(|v| decode_entry("hospital", v.value())).transpose()
    }

    /// All hospitals, with whether each is suspended.
    pub fn hospitals(&self) -> Result<Vec<(AccountId, HospitalEntry, bool)>, LedgerError> {
        let read = self.db.begin_read()?;
        let table = read.open_table(HOSPITALS)?;
        let accounts = read.open_table(ACCOUNTS)?;
        let mut out = Vec::new();
        for row in table.iter()? {
            let (k, v) = row?;
            let id = AccountId(*k.value());
            let suspended = match accounts.get(k.value())? {
                Some(a) => decode_entry::<Account>("account", a.value())?.suspended,
                None => false,
            };
            out.push((id, decode_entry("hospital", v.value())?, suspended));
        }
        Ok(out)
    }

    /// All organisations, each with its account and its members (with their accounts), in
    /// account order.
    #[allow(clippy::type_complexity)] // reason: the directory's rows, read once
    pub fn organisations(
        &self,
    ) -> Result<
        Vec<(AccountId, OrganisationEntry, Account, Vec<(AccountId, MemberEntry, Account)>)>,
        LedgerError,
    > {
        let read = self.db.begin_read()?;
        let table = read.open_table(ORGANISATIONS)?;
        let members = read.open_table(MEMBERS)?;
        let index = read.open_table(MEMBERS_BY_ORGANISATION)?;
        let accounts = read.open_table(ACCOUNTS)?;
        let account = |id: &AccountId| -> Result<Account, LedgerError> {
            let v = accounts.get(&id.0)?.ok_or_else(|| {
                LedgerError::Corrupt(format!("directory entry {id} has no account"))
            })?;
            decode_entry("account", v.value())
        };
        let mut out = Vec::new();
        for row in table.iter()? {
            let (k, v) = row?;
            let id = AccountId(*k.value());
            let mut lo = [0u8; 40];
            lo[..20].copy_from_slice(&id.0);
            let mut hi = lo;
            hi[20..].fill(0xff);
            let mut list = Vec::new();
            for m in index.range::<&[u8; 40]>(&lo..=&hi)? {
                let (mk, _) = m?;
                let mut member = [0u8; 20];
                member.copy_from_slice(&mk.value()[20..]);
                let member = AccountId(member);
                let entry = members.get(&member.0)?.ok_or_else(|| {
                    LedgerError::Corrupt(format!("indexed member {member} missing"))
                })?;
                list.push((member, decode_entry("member", entry.value())?, account(&member)?));
            }
            out.push((id, decode_entry("organisation", v.value())?, account(&id)?, list));
        }
        Ok(out)
    }

    /// Doctors, optionally only those of one hospital.
    pub fn doctors(
        &self,
        hospital: Option<&AccountId>,
    ) -> Result<Vec<(AccountId, DoctorEntry)>, LedgerError> {
        let read = self.db.begin_read()?;
        let table = read.open_table(DOCTORS)?;
        let mut out = Vec::new();
        for row in table.iter()? {
            let (k, v) = row?;
            let entry: DoctorEntry = decode_entry("doctor", v.value())?;
            if hospital.is_none_or(|h| *h == entry.hospital) {
                out.push((AccountId(*k.value()), entry));
            }
        }
        Ok(out)
    }

    /// A patient's registration by Patient-ID.
    pub fn patient(&self, id: PatientId) -> Result<Option<PatientEntry>, LedgerError> {
        let read = self.db.begin_read()?;
        let table = read.open_table(PATIENTS)?;
        let v = table.get(id.0)?;
        v.map(|v| decode_entry("patient", v.value())).transpose()
    }

    /// The Patient-ID of a patient account.
    pub fn patient_id_of(&self, account: &AccountId) -> Result<Option<PatientId>, LedgerError> {
        Ok(self.account(account)?.and_then(|a| a.patient_id))
    }

    /// A committed transaction by hash.
    pub fn transaction(&self, hash: &Hash) -> Result<Option<TxRecord>, LedgerError> {
        let read = self.db.begin_read()?;
        let index = read.open_table(TX_INDEX)?;
        let Some(loc) = index.get(&hash.0)? else { return Ok(None) };
        let (height, _, log_index) = loc.value();
        self.transaction_at_in(&read, log_index, Some(height)).map(Some)
    }

    /// The committed transaction at a log index.
    pub fn transaction_at(&self, log_index: u64) -> Result<Option<TxRecord>, LedgerError> {
        if log_index >= self.log_size() {
            return Ok(None);
        }
        let read = self.db.begin_read()?;
        self.transaction_at_in(&read, log_index, None).map(Some)
    }

    pub(crate) fn transaction_at_in(
        &self,
        read: &redb::ReadTransaction,
        log_index: u64,
        height: Option<u64>,
    ) -> Result<TxRecord, LedgerError> {
        let txs = read.open_table(TXS)?;
        let bytes = txs
            .get(log_index)?
            .ok_or_else(|| LedgerError::Corrupt(format!("transaction {log_index} missing")))?;
        let tx = SignedTransaction::decode(bytes.value())?;
        let receipts = read.open_table(RECEIPTS)?;
        let outcome: Outcome = decode_entry(
            "receipt",
            receipts
                .get(log_index)?
                .ok_or_else(|| LedgerError::Corrupt(format!("receipt {log_index} missing")))?
                .value(),
        )?;
        let blocks = read.open_table(BLOCKS)?;
        let header = match height {
            Some(h) => header_at(&blocks, h)?,
            None => find_block_of(&blocks, log_index)?,
        };
        Ok(TxRecord {
            receipt: Receipt {
                tx_hash: Hash::of(bytes.value()),
                height: header.height,
                log_index,
                outcome,
            },
            tx,
            header,
        })
    }

    /// The applied transaction that created `account` and set its encryption key (encryption
    /// keys are never changed afterwards), or `None` for an account created by genesis (the
    /// regulator) or no such account. Found in the block at the account's `created_at` by its
    /// receipt, which names the account created.
    pub fn registration_of(&self, account: &AccountId) -> Result<Option<TxRecord>, LedgerError> {
        let Some(a) = self.account(account)? else { return Ok(None) };
        if a.created_at == 0 {
            return Ok(None);
        }
        let header = self.header(a.created_at)?.ok_or_else(|| {
            LedgerError::Corrupt(format!("block {} of account {account} missing", a.created_at))
        })?;
        let first = header.log_size - u64::from(header.tx_count);
        for (i, outcome) in self.outcomes_at(a.created_at)?.into_iter().enumerate() {
            if let Outcome::Applied {
                created:
                    Some(Created::Account { account: made } | Created::Patient { account: made, .. }),
            } = outcome
                && made == *account
            {
                return self.transaction_at(first + i as u64);
            }
        }
        Err(LedgerError::Corrupt(format!(
            "no transaction in block {} created account {account}",
            a.created_at
        )))
    }

    /// A block header.
    pub fn header(&self, height: u64) -> Result<Option<BlockHeader>, LedgerError> {
        let read = self.db.begin_read()?;
        let blocks = read.open_table(BLOCKS)?;
        let v = blocks.get(height)?;
        v.map(|v| decode_entry("block header", v.value())).transpose()
    }

    /// The transactions of a block, in order.
    pub fn block_transactions(&self, header: &BlockHeader) -> Result<Vec<Vec<u8>>, LedgerError> {
        let read = self.db.begin_read()?;
        let txs = read.open_table(TXS)?;
        let first = header.log_size - u64::from(header.tx_count);
        txs.range(first..header.log_size)?.map(|row| Ok(row?.1.value().to_vec())).collect()
    }

    /// The outcomes of the transactions of the block at `height`, in order.
    pub fn outcomes_at(&self, height: u64) -> Result<Vec<Outcome>, LedgerError> {
        let Some(header) = self.header(height)? else { return Ok(Vec::new()) };
        let read = self.db.begin_read()?;
        let receipts = read.open_table(RECEIPTS)?;
        let first = header.log_size - u64::from(header.tx_count);
        receipts
            .range(first..header.log_size)?
            .map(|row| decode_entry("receipt", row?.1.value()))
            .collect()
    }

    /// Number of entries in the Merkle log.
    pub fn log_size(&self) -> u64 {
        self.log.read().expect("log lock poisoned").len()
    }

    /// The checkpoint (unsigned) for the current tip.
    pub fn checkpoint(&self) -> Checkpoint {
        let tip = self.tip();
        Checkpoint {
            chain_id: self.chain_id().to_owned(),
            height: tip.height,
            time_ms: tip.time_ms,
            log_size: tip.log.len(),
            log_root: tip.log.root(),
        }
    }

    /// Inclusion proof for the entry at `log_index` in the log of size `tree_size`.
    pub fn inclusion_proof(
        &self,
        log_index: u64,
        tree_size: u64,
    ) -> Result<InclusionProof, LedgerError> {
        let log = self.log.read().expect("log lock poisoned");
        let read = self.db.begin_read()?;
        log.inclusion_proof(log_index, tree_size, |chunk| chunk_leaves(&read, chunk))
    }

    /// Consistency proof between two log sizes.
    pub fn consistency_proof(
        &self,
        old_size: u64,
        new_size: u64,
    ) -> Result<ConsistencyProof, LedgerError> {
        let log = self.log.read().expect("log lock poisoned");
        let read = self.db.begin_read()?;
        log.consistency_proof(old_size, new_size, |chunk| chunk_leaves(&read, chunk))
    }

    /// The log root at a past size.
    pub fn root_at(&self, size: u64) -> Result<Hash, LedgerError> {
        let log = self.log.read().expect("log lock poisoned");
        let read = self.db.begin_read()?;
        log.root_at(size, |chunk| chunk_leaves(&read, chunk))
    }
}

/// The leaf hashes of full chunk `chunk` of the log, from the stored transactions. (A chunk is
/// added to the in-memory log after its block commits: `read`, begun once the log is locked
/// for reading, holds the transactions of every full chunk in it.)
pub(crate) fn chunk_leaves(
    read: &redb::ReadTransaction,
    chunk: u64,
) -> Result<Vec<Hash>, LedgerError> {
    let first = chunk << LOG_CHUNK_SHIFT;
    read.open_table(TXS)?
        .range(first..first + (1 << LOG_CHUNK_SHIFT))?
        .map(|row| Ok(medledger_core::merkle::leaf_hash(row?.1.value())))
        .collect()
}

fn header_at(
    blocks: &redb::ReadOnlyTable<u64, &[u8]>,
    height: u64,
) -> Result<BlockHeader, LedgerError> {
    let v = blocks
        .get(height)?
        .ok_or_else(|| LedgerError::Corrupt(format!("block {height} missing")))?;
    Ok(encoding::decode("block header", v.value(), 1024)?)
}

/// Binary search for the block whose log range holds `log_index`.
fn find_block_of(
    blocks: &redb::ReadOnlyTable<u64, &[u8]>,
    log_index: u64,
) -> Result<BlockHeader, LedgerError> {
    let mut lo = 1u64;
    let mut hi = blocks.len()?;
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if header_at(blocks, mid)?.log_size <= log_index {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    header_at(blocks, lo)
}

/// Most grants no longer in force [`Ledger::who_can_see`] lists (the newest).
pub const PAST_GRANTS_LISTED: usize = 1_000;

/// A patient who granted an account access, as [`Ledger::grants_to`] lists them.
#[derive(Debug, Clone)]
pub struct GrantedBy {
    /// The patient.
    pub patient: AccountId,
    /// Their grants to the account in force, or yet to begin, with their ids.
    pub grants: Vec<(Hash, crate::state::GrantEntry)>,
}

/// Who can see a patient's records at a given block: delegates, and grants in force.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WhoCanSee {
    /// Delegates the patient named.
    pub delegates: Vec<AccountId>,
    /// Each delegate's powers, in the order of `delegates`.
    pub delegate_powers: Vec<medledger_core::tx::DelegatePowers>,
    /// Grants in force, with their ids.
    pub grants: Vec<(Hash, crate::state::GrantEntry)>,
    /// Grants whose period has not begun (and not revoked), with their ids.
    pub upcoming: Vec<(Hash, crate::state::GrantEntry)>,
    /// Grants no longer in force (revoked, or their period over), newest first, at most
    /// [`PAST_GRANTS_LISTED`].
    pub past: Vec<(Hash, crate::state::GrantEntry)>,
    /// The patient's deny rules, with their ids.
    pub deny_rules: Vec<(Hash, crate::state::DenyEntry)>,
}

impl Ledger {
    /// Height and time of a committed block (`None`: the tip).
    fn block_time(&self, height: Option<u64>) -> Result<(u64, u64), LedgerError> {
        match height {
            None => {
                let tip = self.tip();
                Ok((tip.height, tip.time_ms))
            }
            Some(0) => Ok((0, self.genesis().time_ms)),
            Some(h) => {
                let header = self
                    .header(h)?
                    .ok_or_else(|| LedgerError::BadQuery(format!("no block {h}")))?;
                Ok((h, header.time_ms))
            }
        }
    }

    /// The height and time at which a read of committed state is decided "now": the next
    /// block, at `now_ms` (never before the tip's time). A revocation committed at the tip and
    /// an expiry that has passed on the node's clock bite at once, without waiting for a
    /// block (DESIGN invariant 6 orders writes by block time; a read cannot wait for one).
    pub(crate) fn next_block_time(&self, now_ms: u64) -> (u64, u64) {
        let tip = self.tip();
        (tip.height + 1, now_ms.max(tip.time_ms))
    }

    /// What the next block would decide for `requester`'s `access`, at the node's clock
    /// `now_ms`: an access naming a record otherwise than as it is is denied
    /// ([`crate::consent::Denial::NotAsNamed`], as the access handler decides); any other is
    /// decided by [`Ledger::authorize_now`]. What admission charges to the reader's allowance
    /// of denials, and what the audited reads look at before they read a byte.
    pub fn decide_access_now(
        &self,
        requester: &AccountId,
        access: &medledger_core::tx::consent::AccessTx,
        now_ms: u64,
    ) -> Result<crate::consent::Decision, LedgerError> {
        let resource = &access.resource;
        if resource.case.is_none()
            && let Some(pmr) = &resource.record
            && let Some(r) = self.record(pmr)?
            && !crate::records::named_as_it_is(&r, resource)
        {
            return Ok(crate::consent::Decision::Deny(crate::consent::Denial::NotAsNamed));
        }
        self.authorize_now(requester, access.action, resource, access.purpose, now_ms)
    }

    /// [`crate::consent::authorize`] for a read served now (see [`Ledger::grants_in_force_now`]).
    pub fn authorize_now(
        &self,
        requester: &AccountId,
        action: crate::consent::Action,
        resource: &crate::consent::Resource,
        purpose: medledger_core::tx::consent::Purpose,
        now_ms: u64,
    ) -> Result<crate::consent::Decision, LedgerError> {
        let (h, t) = self.next_block_time(now_ms);
        self.authorize_at(requester, action, resource, purpose, h, t)
    }

    /// The grants from `patient` to `grantee` in force now: at the next block, at the node's
    /// clock `now_ms`.
    pub fn grants_in_force_now(
        &self,
        grantee: &AccountId,
        patient: &AccountId,
        now_ms: u64,
    ) -> Result<Vec<(Hash, crate::state::GrantEntry)>, LedgerError> {
        let (h, t) = self.next_block_time(now_ms);
        self.grants_in_force_at(grantee, patient, h, t)
    }

    /// The grants in force now (at the next block, at the node's clock `now_ms`) from
    /// `patient` under which `requester` acts, as [`crate::consent::authorize`] reads them:
    /// its own, or for a member its organisation's. An unknown or inactive requester (a
    /// removed member, a member of a suspended organisation) and a member whose organisation
    /// is not an active one act under none: empty.
    pub fn grants_acted_under_now(
        &self,
        requester: &AccountId,
        patient: &AccountId,
        now_ms: u64,
    ) -> Result<Vec<(Hash, crate::state::GrantEntry)>, LedgerError> {
        let (h, t) = self.next_block_time(now_ms);
        let view = crate::consent::CommittedView(self.db.begin_read()?);
        grants_acted_under(&view, requester, patient, h, t)
    }

    fn authorize_at(
        &self,
        requester: &AccountId,
        action: crate::consent::Action,
        resource: &crate::consent::Resource,
        purpose: medledger_core::tx::consent::Purpose,
        height: u64,
        time_ms: u64,
    ) -> Result<crate::consent::Decision, LedgerError> {
        let view = crate::consent::CommittedView(self.db.begin_read()?);
        crate::consent::authorize(&view, requester, action, resource, purpose, height, time_ms)
    }

    fn grants_in_force_at(
        &self,
        grantee: &AccountId,
        patient: &AccountId,
        height: u64,
        time_ms: u64,
    ) -> Result<Vec<(Hash, crate::state::GrantEntry)>, LedgerError> {
        use crate::consent::ConsentView;
        let view = crate::consent::CommittedView(self.db.begin_read()?);
        Ok(view
            .grants_between(grantee, patient)?
            .into_iter()
            .filter(|(_, g)| g.in_force(height, time_ms))
            .collect())
    }

    /// The suspended party that stops `account` from acting, if any: the account itself, or
    /// a doctor's hospital. The same rule as for transactions, for signed reads.
    pub fn suspension_of(
        &self,
        id: &AccountId,
        account: &Account,
    ) -> Result<Option<AccountId>, LedgerError> {
        crate::apply::suspended_party(id, account, |h| self.account(h))
    }

    /// [`crate::consent::authorize`] against committed state at `height` (`None`: the tip).
    pub fn authorize(
        &self,
        requester: &AccountId,
        action: crate::consent::Action,
        resource: &crate::consent::Resource,
        purpose: medledger_core::tx::consent::Purpose,
        height: Option<u64>,
    ) -> Result<crate::consent::Decision, LedgerError> {
        let (h, t) = self.block_time(height)?;
        self.authorize_at(requester, action, resource, purpose, h, t)
    }

    /// The grants from `patient` to `grantee` in force at `height` (`None`: the tip): what the
    /// grantee may see.
    pub fn grants_in_force(
        &self,
        grantee: &AccountId,
        patient: &AccountId,
        height: Option<u64>,
    ) -> Result<Vec<(Hash, crate::state::GrantEntry)>, LedgerError> {
        let (h, t) = self.block_time(height)?;
        self.grants_in_force_at(grantee, patient, h, t)
    }

    /// "Who can see my records": delegates, grants in force and those yet to begin, and deny
    /// rules of `patient`, at `height` (`None`: the tip) and its block time.
    pub fn who_can_see(
        &self,
        patient: &AccountId,
        height: Option<u64>,
    ) -> Result<WhoCanSee, LedgerError> {
        use crate::consent::ConsentView;
        let (h, t) = self.block_time(height)?;
        let read = self.db.begin_read()?;
        let (mut grants, mut upcoming, mut past) = (Vec::new(), Vec::new(), Vec::new());
        {
            let index = read.open_table(GRANTS_BY_PATIENT)?;
            let table = read.open_table(GRANTS)?;
            let lo = keys::account_hash(patient, &Hash([0; 32]));
            let hi = keys::account_hash(patient, &Hash([0xff; 32]));
            for row in index.range::<&[u8; 52]>(&lo..=&hi)? {
                let (k, _) = row?;
                let mut id = [0u8; 32];
                id.copy_from_slice(&k.value()[20..]);
                if let Some(v) = table.get(&id)? {
                    let g: crate::state::GrantEntry = decode_entry("grant", v.value())?;
                    // In force; or yet to begin, listed apart: the patient sees (and may
                    // revoke) a grant before its period starts.
                    if g.patient != *patient {
                    } else if g.in_force(h, t) {
                        grants.push((Hash(id), g));
                    } else if g.revoked_at.is_none() && t < g.validity.not_before_ms {
                        upcoming.push((Hash(id), g));
                    } else {
                        past.push((Hash(id), g));
                    }
                }
            }
        }
        past.sort_by(|(a, x), (b, y)| (y.granted_at, b).cmp(&(x.granted_at, a)));
        past.truncate(PAST_GRANTS_LISTED);
        let mut delegates = Vec::new();
        let mut delegate_powers = Vec::new();
        {
            let table = read.open_table(DELEGATES)?;
            let powers = read.open_table(crate::state::DELEGATE_POWERS)?;
            let lo = keys::account_pair(patient, &AccountId([0; 20]));
            let hi = keys::account_pair(patient, &AccountId([0xff; 20]));
            for row in table.range::<&[u8; 40]>(&lo..=&hi)? {
                let (k, _) = row?;
                let mut d = [0u8; 20];
                d.copy_from_slice(&k.value()[20..]);
                delegates.push(AccountId(d));
                let bits = powers.get(k.value())?.map(|v| v.value());
                delegate_powers.push(bits.map_or(
                    medledger_core::tx::DelegatePowers::ALL,
                    medledger_core::tx::DelegatePowers,
                ));
            }
        }
        let view = crate::consent::CommittedView(read);
        let deny_rules = view.deny_rules_of(patient)?;
        Ok(WhoCanSee { delegates, delegate_powers, grants, upcoming, past, deny_rules })
    }

    /// The patients whose grants to `grantee` itself (not to an organisation it is a member
    /// of) are in force at the tip's block time, or yet to begin and not revoked: whom it may
    /// see, by patient. Research grants are left out: a researcher learns its cohort only
    /// through the research cohort (`research_cohort`), which lists what an export may take.
    pub fn grants_to(&self, grantee: &AccountId) -> Result<Vec<GrantedBy>, LedgerError> {
        let (h, t) = self.block_time(None)?;
        let read = self.db.begin_read()?;
        let index = read.open_table(GRANTS_BY_GRANTEE)?;
        let table = read.open_table(GRANTS)?;
        let mut lo = [0u8; 72];
        lo[..20].copy_from_slice(&grantee.0);
        let mut hi = [0xffu8; 72];
        hi[..20].copy_from_slice(&grantee.0);
        let mut by_patient: Vec<GrantedBy> = Vec::new();
        // The index is grantee || patient || grant id: one patient's grants are together.
        for row in index.range::<&[u8; 72]>(&lo..=&hi)? {
            let (k, _) = row?;
            let mut id = [0u8; 32];
            id.copy_from_slice(&k.value()[40..]);
            let Some(v) = table.get(&id)? else {
                return Err(LedgerError::Corrupt(format!("indexed grant {} missing", Hash(id))));
            };
            let g: crate::state::GrantEntry = decode_entry("grant", v.value())?;
            let upcoming = g.revoked_at.is_none() && t < g.validity.not_before_ms;
            let research = g.purpose == medledger_core::tx::consent::Purpose::Research;
            if g.grantee != *grantee || research || !(g.in_force(h, t) || upcoming) {
                continue;
            }
            match by_patient.last_mut() {
                Some(last) if last.patient == g.patient => last.grants.push((Hash(id), g)),
                _ => by_patient.push(GrantedBy { patient: g.patient, grants: vec![(Hash(id), g)] }),
            }
        }
        Ok(by_patient)
    }

    /// Whether `delegate` acts on consent for `patient`.
    pub fn is_delegate(
        &self,
        patient: &AccountId,
        delegate: &AccountId,
    ) -> Result<bool, LedgerError> {
        use crate::consent::ConsentView;
        crate::consent::CommittedView(self.db.begin_read()?).is_delegate(patient, delegate)
    }

    /// Whether `who` may map `patient`'s Patient-ID to their account and hospital now (at the
    /// next block, at the node's clock `now_ms`): the patient, a delegate, the registering
    /// hospital and its doctors, an active account holding a grant in force (an organisation's
    /// member: its organisation holding one, [`Ledger::grants_acted_under_now`]), and a doctor
    /// with an open break-glass for the patient or that doctor's hospital. Nobody else: a
    /// Patient-ID is short enough to enumerate (security review M4).
    pub fn may_look_up_patient(
        &self,
        who: &AccountId,
        patient: &PatientEntry,
        now_ms: u64,
    ) -> Result<bool, LedgerError> {
        use crate::consent::ConsentView;
        if *who == patient.account || *who == patient.hospital {
            return Ok(true);
        }
        let (h, t) = self.next_block_time(now_ms);
        let view = crate::consent::CommittedView(self.db.begin_read()?);
        if view.is_delegate(&patient.account, who)? {
            return Ok(true);
        }
        let Some(account) = view.account(who)? else { return Ok(false) };
        let doctor = account.role == medledger_core::tx::Role::Doctor;
        if doctor && account.hospital == Some(patient.hospital) {
            return Ok(true);
        }
        // A grant in force to `who`, or for a member to its organisation, that the patient's
        // deny rules leave something of.
        let mut found = !grants_acted_under(&view, who, &patient.account, h, t)?.is_empty();
        if !found && doctor {
            view.visit_break_glass(who, &patient.account, &mut |_, b| {
                found = b.open_at(h, t);
                found
            })?;
        }
        if !found && account.role == medledger_core::tx::Role::Hospital {
            found = self
                .open_reviews(who)?
                .iter()
                .any(|r| r.entry.patient == patient.account && r.entry.open_at(h, t));
        }
        Ok(found)
    }

    /// An access request.
    pub fn access_request(
        &self,
        id: &Hash,
    ) -> Result<Option<crate::state::RequestEntry>, LedgerError> {
        let read = self.db.begin_read()?;
        let t = read.open_table(REQUESTS)?;
        let v = t.get(&id.0)?;
        v.map(|v| decode_entry("request", v.value())).transpose()
    }
}
