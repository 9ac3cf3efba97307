//! Queries over committed case state: a case, a patient's cases, a case's entries and key
//! holders, the follow-ups of a case, and every transaction of a case with its receipt and
//! block (what an export proves).

use medledger_core::{Hash, ids::AccountId};
use redb::ReadableDatabase;

use crate::{
    Ledger, LedgerError, TxRecord,
    state::{keys, *},
};

/// Every transaction that made a case what it is, read in one consistent snapshot.
#[derive(Clone, Debug)]
pub struct CaseTransactions {
    /// The case as of the snapshot.
    pub case: CaseLog,
    /// The open.
    pub open: TxRecord,
    /// Each entry with its append, in order (entry 1 first).
    pub entries: Vec<(CaseLogEntry, TxRecord)>,
    /// The seal, if sealed.
    pub seal: Option<TxRecord>,
}

fn case_in(read: &redb::ReadTransaction, id: &str) -> Result<Option<CaseLog>, LedgerError> {
    let table = read.open_table(CASES)?;
    let v = table.get(id)?;
    v.map(|v| decode_entry("case", v.value())).transpose()
}

fn entries_in(
    read: &redb::ReadTransaction,
    id: &str,
    after: u64,
    limit: usize,
) -> Result<Vec<(u64, CaseLogEntry)>, LedgerError> {
    let table = read.open_table(CASE_ENTRIES)?;
    let lo = keys::str_seq(id, after.saturating_add(1));
    let (_, hi) = keys::str_range(id);
    let mut out = Vec::new();
    if after == u64::MAX {
        return Ok(out);
    }
    for row in table.range(lo.as_slice()..hi.as_slice())? {
        if out.len() >= limit {
            break;
        }
        let (k, v) = row?;
        let k = k.value();
        let mut seq = [0u8; 8];
        seq.copy_from_slice(&k[k.len() - 8..]);
        out.push((u64::from_be_bytes(seq), decode_entry("case entry", v.value())?));
    }
    Ok(out)
}

impl Ledger {
    /// A case log.
    pub fn case(&self, id: &str) -> Result<Option<CaseLog>, LedgerError> {
        case_in(&self.db.begin_read()?, id)
    }

    /// Every case of `patient`, by id.
    pub fn cases_of_patient(
        &self,
        patient: &AccountId,
    ) -> Result<Vec<(String, CaseLog)>, LedgerError> {
        let read = self.db.begin_read()?;
        let index = read.open_table(CASES_BY_PATIENT)?;
        let lo = patient.0.to_vec();
        let hi = [&patient.0[..], &[0xff]].concat();
        let mut out = Vec::new();
        for row in index.range(lo.as_slice()..hi.as_slice())? {
            let (k, _) = row?;
            let id = std::str::from_utf8(&k.value()[20..])
                .map_err(|_| LedgerError::Corrupt("a case id in an index is not text".into()))?
                .to_owned();
            let c = case_in(&read, &id)?
                .ok_or_else(|| LedgerError::Corrupt(format!("indexed case {id} missing")))?;
            out.push((id, c));
        }
        Ok(out)
    }

    /// The cases that name `id` as the case they follow up.
    pub fn follow_ups(&self, id: &str) -> Result<Vec<String>, LedgerError> {
        let Some(c) = self.case(id)? else { return Ok(Vec::new()) };
        Ok(self
            .cases_of_patient(&c.patient)?
            .into_iter()
            .filter(|(_, other)| other.follow_up_of.as_deref() == Some(id))
            .map(|(other, _)| other)
            .collect())
    }

    /// Entries of case `id` numbered after `after` (0: from the first), at most `limit`, in
    /// order, with their numbers.
    pub fn case_entries(
        &self,
        id: &str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<(u64, CaseLogEntry)>, LedgerError> {
        entries_in(&self.db.begin_read()?, id, after, limit)
    }

    /// Who holds a wrapped key of case `id`, and in which blob.
    pub fn case_keys(&self, id: &str) -> Result<Vec<(AccountId, Hash)>, LedgerError> {
        let read = self.db.begin_read()?;
        let table = read.open_table(CASE_KEYS)?;
        let (lo, hi) = keys::str_range(id);
        let mut out = Vec::new();
        for row in table.range(lo.as_slice()..hi.as_slice())? {
            let (k, v) = row?;
            let k = k.value();
            let mut account = [0u8; 20];
            account.copy_from_slice(&k[k.len() - 20..]);
            out.push((AccountId(account), Hash(*v.value())));
        }
        Ok(out)
    }

    /// The blob holding case `id`'s key wrapped to `recipient`, if there is one.
    pub fn case_key(&self, id: &str, recipient: &AccountId) -> Result<Option<Hash>, LedgerError> {
        let read = self.db.begin_read()?;
        let table = read.open_table(CASE_KEYS)?;
        Ok(table.get(keys::str_account(id, recipient).as_slice())?.map(|v| Hash(*v.value())))
    }

    /// The blob holding case `id`'s key wrapped to `recipient`, and the transaction that
    /// wrapped it (the case's open or a key share), if there is one. A key wrapped by a ledger
    /// version that did not keep the transaction has none (wallets then ask for it to be
    /// shared again).
    pub fn case_key_and_tx(
        &self,
        id: &str,
        recipient: &AccountId,
    ) -> Result<Option<(Hash, Option<Hash>)>, LedgerError> {
        let read = self.db.begin_read()?;
        let key = keys::str_account(id, recipient);
        let Some(blob) = read.open_table(CASE_KEYS)?.get(key.as_slice())?.map(|v| Hash(*v.value()))
        else {
            return Ok(None);
        };
        let tx = read.open_table(CASE_KEY_TXS)?.get(key.as_slice())?.map(|v| Hash(*v.value()));
        Ok(Some((blob, tx)))
    }

    /// Every transaction of case `id` (open, appends, seal) with its receipt and block header,
    /// from one snapshot of committed state, or `None` if there is no such case.
    pub fn case_transactions(&self, id: &str) -> Result<Option<CaseTransactions>, LedgerError> {
        let read = self.db.begin_read()?;
        let Some(case) = case_in(&read, id)? else { return Ok(None) };
        let index = read.open_table(TX_INDEX)?;
        let record = |hash: &Hash| -> Result<TxRecord, LedgerError> {
            let loc = index.get(&hash.0)?.ok_or_else(|| {
                LedgerError::Corrupt(format!("transaction {hash} of case {id} is not indexed"))
            })?;
            let (height, _, log_index) = loc.value();
            self.transaction_at_in(&read, log_index, Some(height))
        };
        let open = record(&case.open_tx)?;
        let mut entries = Vec::with_capacity(usize::try_from(case.entries).unwrap_or(0));
        for (seq, e) in entries_in(&read, id, 0, usize::MAX)? {
            if seq != entries.len() as u64 + 1 {
                return Err(LedgerError::Corrupt(format!(
                    "case {id} lacks entry {}",
                    entries.len() + 1
                )));
            }
            let tx = record(&e.tx)?;
            entries.push((e, tx));
        }
        if entries.len() as u64 != case.entries {
            return Err(LedgerError::Corrupt(format!(
                "case {id} says it has {} entries, {} are stored",
                case.entries,
                entries.len()
            )));
        }
        let seal = case.sealed.as_ref().map(|s| record(&s.tx)).transpose()?;
        Ok(Some(CaseTransactions { case, open, entries, seal }))
    }
}
