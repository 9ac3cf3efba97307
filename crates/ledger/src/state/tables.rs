//! THE list of state tables. Each line of `state_tables!` gives a table's field in
//! [`Tables`], its definition, its name on disk, its key and value types and which digest
//! covers it; from that one line come the `TableDefinition` const, the field and its opening in
//! `Tables::open`, the typed write handle (`Write`) that keeps the digest on every write,
//! the start-up digest ([`crate::verify::state_digest`]) and `verify`'s table-by-table
//! comparison, all of which iterate [`TABLES`]. A new table is one line here plus its
//! accessors in the feature's file.

use std::{borrow::Cow, marker::PhantomData};

use redb::{ReadableTable, ReadableTableMetadata, TableDefinition};

use super::{Digested, Digests};
use crate::{LedgerError, snapshot::SnapshotError};

/// Ledger metadata: genesis, tip, state and index digests, the caller's applied marker.
pub(crate) const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
/// Committed block headers by height (checked by the hash chain, not a digest).
pub(crate) const BLOCKS: TableDefinition<u64, &[u8]> = TableDefinition::new("blocks");
/// The proposing node's seal on each block applied as a network's log entry, by height
/// (checked by its signature against the nodes admitted before the block, not a digest;
/// `crate::nodes::seals`). A block applied outside a network (tests, tools) has none.
pub(crate) const SEALS: TableDefinition<u64, &[u8]> = TableDefinition::new("seals");
/// Committed transactions (canonical encoding) by log index (checked by the block roots).
pub(crate) const TXS: TableDefinition<u64, &[u8]> = TableDefinition::new("txs");
/// The root of every full chunk of [`LOG_CHUNK_SHIFT`] transactions of the Merkle log, by chunk
/// index (checked against the blocks' log roots, not a digest): what lets a node keep only
/// these roots in memory, and start without reading every transaction.
pub(crate) const LOG_CHUNKS: TableDefinition<u64, &[u8; 32]> = TableDefinition::new("log_chunks");
/// A chunk of the Merkle log is `2^LOG_CHUNK_SHIFT` transactions: a proof reads back at most two
/// chunks (256 stored transactions each), and the roots kept in memory cost 32 bytes per 256
/// transactions.
pub(crate) const LOG_CHUNK_SHIFT: u32 = 8;

pub(crate) const META_GENESIS: &str = "genesis";
pub(crate) const META_TIP: &str = "tip";
pub(crate) const META_STATE_DIGEST: &str = "state_digest";
/// The digest of the index tables (`Cover::Index`); absent in ledgers written before it
/// existed, which record it at their first open.
pub(crate) const META_INDEX_DIGEST: &str = "index_digest";
pub(crate) const META_APPLIED_MARKER: &str = "applied_marker";
/// Present once `erased_blobs` holds every erased blob: written at create, or by the fill of a
/// ledger written before the table existed (in the fill's own transaction, so that a crash
/// before it leaves the fill to be done again).
pub(crate) const META_ERASED_FILLED: &str = "erased_blobs_filled";
/// Present once `registration_blobs` indexes every registration's sealed blobs: written at
/// create, or by the fill of a ledger written before the index existed (in its own
/// transaction, like [`META_ERASED_FILLED`]).
pub(crate) const META_REGISTRATION_BLOBS_FILLED: &str = "registration_blobs_filled";
/// Present once `log_chunks` holds the root of every full chunk: written at create, or by the
/// first open of a ledger written before the table existed (after that open's full check).
pub(crate) const META_LOG_CHUNKS_FILLED: &str = "log_chunks_filled";

/// Which running digest covers a table. Every table is covered by one; a node checks both at
/// start ([`crate::Ledger::open`]) and `medledger verify` compares every table after a replay.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cover {
    /// The state digest: the entries themselves (and receipts). Its value is the one every
    /// earlier version stored, so that existing ledgers open unchanged.
    State,
    /// The index digest: tables derivable from the entries (lookup indexes, the transaction
    /// index). Kept apart from the state digest only so that the state digest keeps its value;
    /// a deleted index row (say, of a deny rule) is caught at start like an altered entry.
    Index,
}

/// A table value or key whose bytes the digests hash. For every type but the integers these
/// are the stored bytes; integers hash big-endian (as the state digest always has).
pub(crate) trait Column: redb::Value + 'static {
    /// An owned copy, returned for a replaced or removed value.
    type Owned;
    /// An owned copy of `v`.
    fn owned(v: Self::SelfType<'_>) -> Self::Owned;
    /// The bytes of `v` as the digests hash them.
    fn digest_bytes<'a>(v: &'a Self::SelfType<'_>) -> Cow<'a, [u8]>;
    /// Whether `stored` is a well-formed stored encoding (for raw writes).
    fn valid(stored: &[u8]) -> bool {
        Self::fixed_width().is_none_or(|n| n == stored.len())
    }
}

impl Column for &'static [u8] {
    type Owned = Vec<u8>;
    fn owned(v: &[u8]) -> Vec<u8> {
        v.to_vec()
    }
    fn digest_bytes<'a>(v: &'a &[u8]) -> Cow<'a, [u8]> {
        Cow::Borrowed(v)
    }
}

impl<const N: usize> Column for &'static [u8; N] {
    type Owned = [u8; N];
    fn owned(v: &[u8; N]) -> [u8; N] {
        *v
    }
    fn digest_bytes<'a>(v: &'a &[u8; N]) -> Cow<'a, [u8]> {
        Cow::Borrowed(&v[..])
    }
}

impl Column for &'static str {
    type Owned = String;
    fn owned(v: &str) -> String {
        v.to_owned()
    }
    fn digest_bytes<'a>(v: &'a &str) -> Cow<'a, [u8]> {
        Cow::Borrowed(v.as_bytes())
    }
    fn valid(stored: &[u8]) -> bool {
        std::str::from_utf8(stored).is_ok()
    }
}

impl Column for u64 {
    type Owned = u64;
    fn owned(v: u64) -> u64 {
        v
    }
    fn digest_bytes<'a>(v: &'a u64) -> Cow<'a, [u8]> {
        Cow::Owned(v.to_be_bytes().to_vec())
    }
}

impl Column for u8 {
    type Owned = u8;
    fn owned(v: u8) -> u8 {
        v
    }
    fn digest_bytes<'a>(v: &'a u8) -> Cow<'a, [u8]> {
        Cow::Owned(vec![*v])
    }
}

impl Column for () {
    type Owned = ();
    fn owned(_: ()) {}
    fn digest_bytes<'a>(_: &'a ()) -> Cow<'a, [u8]> {
        Cow::Borrowed(&[])
    }
}

impl Column for (u64, u32, u64) {
    type Owned = (u64, u32, u64);
    fn owned(v: (u64, u32, u64)) -> (u64, u32, u64) {
        v
    }
    fn digest_bytes<'a>(v: &'a (u64, u32, u64)) -> Cow<'a, [u8]> {
        Cow::Owned([&v.0.to_be_bytes()[..], &v.1.to_be_bytes(), &v.2.to_be_bytes()].concat())
    }
}

/// The open state tables and the running digests of one block: a write through
/// `Write::<table>()` is the only way a state table changes.
pub(crate) struct Write<'a, 'txn> {
    pub(crate) tables: &'a mut Tables<'txn>,
    pub(crate) digests: &'a mut Digests,
}

/// What the registry does with one table, for any key and value types.
trait TableOps: Sync {
    fn digest(
        &self,
        read: &redb::ReadTransaction,
        name: &str,
        stop: &Stop<'_>,
    ) -> Result<[u8; 32], LedgerError>;
    fn same(
        &self,
        a: &redb::ReadTransaction,
        b: &redb::ReadTransaction,
        name: &str,
    ) -> Result<bool, LedgerError>;
    fn rows(&self, read: &redb::ReadTransaction, name: &str) -> Result<Rows, LedgerError>;
    fn put_raw(
        &self,
        write: &redb::WriteTransaction,
        name: &str,
        key: &[u8],
        value: &[u8],
    ) -> Result<(), LedgerError>;
    fn remove_raw(
        &self,
        write: &redb::WriteTransaction,
        name: &str,
        key: &[u8],
    ) -> Result<bool, LedgerError>;
    fn len(&self, read: &redb::ReadTransaction, name: &str) -> Result<u64, LedgerError>;
    fn export(
        &self,
        read: &redb::ReadTransaction,
        name: &str,
        sink: &mut RowSink<'_>,
    ) -> Result<[u8; 32], SnapshotError>;
    fn check_rows(
        &self,
        write: &redb::WriteTransaction,
        name: &str,
        source: &mut RowSource<'_>,
    ) -> Result<(), SnapshotError>;
}

/// Asked now and then by a long check: whether to give up ([`LedgerError::Stopped`]).
pub(crate) type Stop<'a> = dyn Fn() -> bool + Sync + 'a;

/// Rows as stored bytes: (key, value), in key order.
pub type Rows = Vec<(Vec<u8>, Vec<u8>)>;

/// Where a snapshot's export puts each row (stored key and value bytes).
pub(crate) type RowSink<'a> = dyn FnMut(&[u8], &[u8]) -> Result<(), SnapshotError> + 'a;
/// Where a snapshot's import takes each row from (`None` after the table's last).
pub(crate) type RowSource<'a> =
    dyn FnMut() -> Result<Option<(Vec<u8>, Vec<u8>)>, SnapshotError> + 'a;

struct Typed<K, V>(PhantomData<fn() -> (K, V)>);

impl<K: Column + redb::Key, V: Column> TableOps for Typed<K, V> {
    fn digest(
        &self,
        read: &redb::ReadTransaction,
        name: &str,
        stop: &Stop<'_>,
    ) -> Result<[u8; 32], LedgerError> {
        let mut digest = [0u8; 32];
        for (i, row) in read.open_table(TableDefinition::<K, V>::new(name))?.iter()?.enumerate() {
            if i % 4096 == 0 && stop() {
                return Err(LedgerError::Stopped);
            }
            let (k, v) = row?;
            let d = super::entry_digest(
                name,
                &K::digest_bytes(&k.value()),
                &V::digest_bytes(&v.value()),
            );
            super::xor_into(&mut digest, &d);
        }
        Ok(digest)
    }

    fn same(
        &self,
        a: &redb::ReadTransaction,
        b: &redb::ReadTransaction,
        name: &str,
    ) -> Result<bool, LedgerError> {
        let def = TableDefinition::<K, V>::new(name);
        let (a, b) = (a.open_table(def)?, b.open_table(def)?);
        let (mut ai, mut bi) = (a.iter()?, b.iter()?);
        loop {
            match (ai.next().transpose()?, bi.next().transpose()?) {
                (None, None) => return Ok(true),
                (Some((ka, va)), Some((kb, vb)))
                    if K::as_bytes(&ka.value()).as_ref() == K::as_bytes(&kb.value()).as_ref()
                        && V::as_bytes(&va.value()).as_ref()
                            == V::as_bytes(&vb.value()).as_ref() => {}
                _ => return Ok(false),
            }
        }
    }

    fn rows(&self, read: &redb::ReadTransaction, name: &str) -> Result<Rows, LedgerError> {
        let mut out = Vec::new();
        for row in read.open_table(TableDefinition::<K, V>::new(name))?.iter()? {
            let (k, v) = row?;
            out.push((
                K::as_bytes(&k.value()).as_ref().to_vec(),
                V::as_bytes(&v.value()).as_ref().to_vec(),
            ));
        }
        Ok(out)
    }

    fn put_raw(
        &self,
        write: &redb::WriteTransaction,
        name: &str,
        key: &[u8],
        value: &[u8],
    ) -> Result<(), LedgerError> {
        if !K::valid(key) || !V::valid(value) {
            return Err(LedgerError::BadQuery(format!("not a row of table {name}")));
        }
        let mut table = write.open_table(TableDefinition::<K, V>::new(name))?;
        table.insert(K::from_bytes(key), V::from_bytes(value))?;
        Ok(())
    }

    fn remove_raw(
        &self,
        write: &redb::WriteTransaction,
        name: &str,
        key: &[u8],
    ) -> Result<bool, LedgerError> {
        if !K::valid(key) {
            return Err(LedgerError::BadQuery(format!("not a key of table {name}")));
        }
        let mut table = write.open_table(TableDefinition::<K, V>::new(name))?;
        Ok(table.remove(K::from_bytes(key))?.is_some())
    }

    fn len(&self, read: &redb::ReadTransaction, name: &str) -> Result<u64, LedgerError> {
        Ok(read.open_table(TableDefinition::<K, V>::new(name))?.len()?)
    }

    fn export(
        &self,
        read: &redb::ReadTransaction,
        name: &str,
        sink: &mut RowSink<'_>,
    ) -> Result<[u8; 32], SnapshotError> {
        let mut digest = [0u8; 32];
        for row in read.open_table(TableDefinition::<K, V>::new(name))?.iter()? {
            let (k, v) = row?;
            let (k, v) = (k.value(), v.value());
            let d = super::entry_digest(name, &K::digest_bytes(&k), &V::digest_bytes(&v));
            super::xor_into(&mut digest, &d);
            sink(K::as_bytes(&k).as_ref(), V::as_bytes(&v).as_ref())?;
        }
        Ok(digest)
    }

    fn check_rows(
        &self,
        write: &redb::WriteTransaction,
        name: &str,
        source: &mut RowSource<'_>,
    ) -> Result<(), SnapshotError> {
        let table = write.open_table(TableDefinition::<K, V>::new(name))?;
        let mut ours = table.iter()?;
        let differs = || {
            SnapshotError::Mismatch(format!(
                "its table {name} differs from the state that replaying its blocks gives"
            ))
        };
        while let Some((key, value)) = source()? {
            if !K::valid(&key) || !V::valid(&value) {
                return Err(SnapshotError::Malformed(format!("a row of table {name} is not one")));
            }
            // Ours come in strictly ascending key order: equal rows are in that order too.
            let Some(row) = ours.next().transpose()? else { return Err(differs()) };
            let (k, v) = (row.0.value(), row.1.value());
            if K::as_bytes(&k).as_ref() != key.as_slice() || V::as_bytes(&v).as_ref() != value {
                return Err(differs());
            }
        }
        match ours.next() {
            None => Ok(()),
            Some(_) => Err(differs()),
        }
    }
}

/// One registered state table: its name on disk, the digest that covers it, and what the
/// start-up check and `verify` do with it.
pub struct StateTable {
    /// The redb table name.
    pub name: &'static str,
    /// The digest it is in.
    pub cover: Cover,
    ops: &'static dyn TableOps,
}

impl std::fmt::Debug for StateTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateTable").field("name", &self.name).field("cover", &self.cover).finish()
    }
}

impl StateTable {
    /// The XOR of the digests of its rows.
    pub(crate) fn digest(
        &self,
        read: &redb::ReadTransaction,
        stop: &Stop<'_>,
    ) -> Result<[u8; 32], LedgerError> {
        self.ops.digest(read, self.name, stop)
    }

    /// Whether it holds the same rows in `a` and in `b`.
    pub(crate) fn same(
        &self,
        a: &redb::ReadTransaction,
        b: &redb::ReadTransaction,
    ) -> Result<bool, LedgerError> {
        self.ops.same(a, b, self.name)
    }

    /// Every row as stored bytes, in key order: for tools and tests that look at a ledger file
    /// as the disk holds it.
    pub fn rows(&self, read: &redb::ReadTransaction) -> Result<Rows, LedgerError> {
        self.ops.rows(read, self.name)
    }

    /// Writes a row given as stored bytes, bypassing the ledger (and its digests): what a disk
    /// fault or an editor does, for tests that check it is caught.
    pub fn put_raw(
        &self,
        write: &redb::WriteTransaction,
        key: &[u8],
        value: &[u8],
    ) -> Result<(), LedgerError> {
        self.ops.put_raw(write, self.name, key, value)
    }

    /// Removes a row given its stored key bytes, bypassing the ledger (see [`Self::put_raw`]);
    /// whether there was one.
    pub fn remove_raw(
        &self,
        write: &redb::WriteTransaction,
        key: &[u8],
    ) -> Result<bool, LedgerError> {
        self.ops.remove_raw(write, self.name, key)
    }

    /// How many rows it holds.
    pub(crate) fn len(&self, read: &redb::ReadTransaction) -> Result<u64, LedgerError> {
        self.ops.len(read, self.name)
    }

    /// Hands every row (stored bytes, in key order) to `sink`; returns the digest of the rows.
    pub(crate) fn export(
        &self,
        read: &redb::ReadTransaction,
        sink: &mut RowSink<'_>,
    ) -> Result<[u8; 32], SnapshotError> {
        self.ops.export(read, self.name, sink)
    }

    /// Checks that the table holds exactly the rows `source` yields (stored bytes, until
    /// `None`), in that order: [`SnapshotError::Mismatch`] naming the table if not.
    pub(crate) fn check_rows(
        &self,
        write: &redb::WriteTransaction,
        source: &mut RowSource<'_>,
    ) -> Result<(), SnapshotError> {
        self.ops.check_rows(write, self.name, source)
    }
}

/// Declares the state tables: see the module documentation.
macro_rules! state_tables {
    ($(
        $(#[doc = $doc:literal])*
        $field:ident: $def:ident = $name:literal <$k:ty, $v:ty> $cover:ident;
    )*) => {
        $(
            $(#[doc = $doc])*
            pub(crate) const $def: TableDefinition<$k, $v> = TableDefinition::new($name);
        )*

        /// The open state tables of one block's write transaction. Opened once per block:
        /// opening a redb table per access would rewrite the table directory each time.
        #[allow(missing_debug_implementations)] // reason: redb tables have no Debug
        pub struct Tables<'txn> {
            $(pub(crate) $field: redb::Table<'txn, $k, $v>,)*
        }

        impl<'txn> Tables<'txn> {
            /// Opens (creating if need be) every state table in `txn`.
            pub(crate) fn open(txn: &'txn redb::WriteTransaction) -> Result<Self, LedgerError> {
                Ok(Tables { $($field: txn.open_table($def)?,)* })
            }
        }

        impl<'a, 'txn> Write<'a, 'txn> {
            $(
                #[doc = concat!("Writes to `", $name, "`, keeping its digest current.")]
                pub(crate) fn $field(self) -> Digested<'a, 'txn, $k, $v> {
                    Digested::new(&mut self.tables.$field, $name, self.digests.slot(Cover::$cover))
                }
            )*
        }

        /// Every state table, in the order the digests and `verify` visit them.
        pub static TABLES: &[StateTable] = &[
            $(StateTable {
                name: $name,
                cover: Cover::$cover,
                ops: &Typed::<$k, $v>(PhantomData),
            },)*
        ];
    };
}

state_tables! {
    /// Accounts by id.
    accounts: ACCOUNTS = "accounts" <&'static [u8; 20], &'static [u8]> State;
    /// Hospital directory entries by account.
    hospitals: HOSPITALS = "hospitals" <&'static [u8; 20], &'static [u8]> State;
    /// Doctor directory entries by account.
    doctors: DOCTORS = "doctors" <&'static [u8; 20], &'static [u8]> State;
    /// Index: a doctor's registration number (normalised, `registration_key`) -> the
    /// account it was last onboarded as, so that one registration number is one doctor.
    doctors_by_registration: DOCTORS_BY_REGISTRATION = "doctors_by_registration"
        <&'static str, &'static [u8; 20]> Index;
    /// Patients by Patient-ID.
    patients: PATIENTS = "patients" <u64, &'static [u8]> State;
    /// Transaction hash -> (height, index in block, log index): the applied occurrence of a
    /// transaction, or else its first.
    tx_index: TX_INDEX = "tx_index" <&'static [u8; 32], (u64, u32, u64)> Index;
    /// Log index -> encoded outcome.
    receipts: RECEIPTS = "receipts" <u64, &'static [u8]> State;

    /// Grants by id.
    grants: GRANTS = "grants" <&'static [u8; 32], &'static [u8]> State;
    /// Index: grantee || patient || grant id.
    grants_by_grantee: GRANTS_BY_GRANTEE = "grants_by_grantee" <&'static [u8; 72], ()> Index;
    /// Index: patient || grant id.
    grants_by_patient: GRANTS_BY_PATIENT = "grants_by_patient" <&'static [u8; 52], ()> Index;
    /// Access requests by id.
    requests: REQUESTS = "requests" <&'static [u8; 32], &'static [u8]> State;
    /// Deny rules by id.
    deny_rules: DENY_RULES = "deny_rules" <&'static [u8; 32], &'static [u8]> State;
    /// Index: patient || deny rule id.
    deny_by_patient: DENY_BY_PATIENT = "deny_by_patient" <&'static [u8; 52], ()> Index;
    /// Delegates: patient || delegate.
    delegates: DELEGATES = "delegates" <&'static [u8; 40], ()> State;
    /// The powers of a delegate named with only some (`ScopeDelegate`): patient || delegate ->
    /// the [`DelegatePowers`](medledger_core::tx::DelegatePowers) bits. A delegate with no row
    /// here holds every power.
    delegate_powers: DELEGATE_POWERS = "delegate_powers" <&'static [u8; 40], u8> State;

    /// Audit events by sequence number.
    audit: AUDIT = "audit" <u64, &'static [u8]> State;
    /// Index: account || sequence number, for every account an event concerns.
    audit_by_account: AUDIT_BY_ACCOUNT = "audit_by_account" <&'static [u8; 28], ()> Index;

    /// Record tokens by PMR-ID.
    records: RECORDS = "records" <&'static str, &'static [u8]> State;
    /// Index: owner || PMR-ID.
    records_by_owner: RECORDS_BY_OWNER = "records_by_owner" <&'static [u8], ()> Index;
    /// Index: patient || PMR-ID.
    records_by_patient: RECORDS_BY_PATIENT = "records_by_patient" <&'static [u8], ()> Index;
    /// Wrapped data keys: PMR-ID || 0 || recipient -> the wrapped-key blob's hash.
    record_keys: RECORD_KEYS = "record_keys" <&'static [u8], &'static [u8; 32]> State;
    /// Released key shares: PMR-ID || 0 || holder || share index -> the wrapped share's blob.
    /// At mint the holders are the custodians; a release adds the reader's copy.
    record_shares: RECORD_SHARES = "record_shares" <&'static [u8], &'static [u8; 32]> State;
    /// Operators (ERC-721 approval for all): owner || operator.
    operators: OPERATORS = "operators" <&'static [u8; 40], ()> State;
    /// Vault blobs the ledger references (record content, metadata, wrapped keys; case
    /// descriptions, entries, wrapped case keys) -> the PMR-ID or case id they belong to. A
    /// blob not in here may be collected by the vault.
    blob_refs: BLOB_REFS = "blob_refs" <&'static [u8; 32], &'static str> State;
    /// Vault blobs of erased records (content, metadata, every wrapped key and key share) ->
    /// the height of the erasure. Erasure is for good: a transaction naming one is refused,
    /// and nodes neither store nor serve one again (a lagging peer's copy cannot return).
    erased_blobs: ERASED_BLOBS = "erased_blobs" <&'static [u8; 32], u64> State;
    /// Index: the sealed blobs of registrations (patients' details and attendants, hospitals'
    /// contacts, devices' details, thresholds) -> what they belong to. With `blob_refs` and
    /// `device_blobs` it answers, in one point read each, whether a blob already belongs to
    /// something: each blob belongs to one owner ([`crate::apply`] refuses a second).
    registration_blobs: REGISTRATION_BLOBS = "registration_blobs"
        <&'static [u8; 32], &'static str> Index;

    /// Emergency profiles by patient.
    emergency_profiles: EMERGENCY_PROFILES = "emergency_profiles"
        <&'static [u8; 20], &'static [u8]> State;
    /// The transaction that set each patient's emergency profile (patient -> transaction
    /// hash), so that a wallet can prove the emergency key it wraps records to.
    emergency_profile_txs: EMERGENCY_PROFILE_TXS = "emergency_profile_txs"
        <&'static [u8; 20], &'static [u8; 32]> State;
    /// Break-glass declarations by id.
    break_glass: BREAK_GLASS = "break_glass" <&'static [u8; 32], &'static [u8]> State;
    /// Index: doctor || patient || break-glass id.
    break_glass_by_pair: BREAK_GLASS_BY_PAIR = "break_glass_by_pair" <&'static [u8; 72], ()> Index;
    /// Index: hospital || break-glass id, for every break-glass not yet reviewed.
    open_reviews: OPEN_REVIEWS = "open_reviews" <&'static [u8; 52], ()> Index;
    /// Escrow pieces released: break-glass id || custodian -> the piece's blob.
    escrow_releases: ESCROW_RELEASES = "escrow_releases" <&'static [u8], &'static [u8; 32]> State;
    /// Network parameters set by the regulator (name -> value).
    network: NETWORK = "network" <&'static str, &'static [u8]> State;

    /// Case logs by case id.
    cases: CASES = "cases" <&'static str, &'static [u8]> State;
    /// Case entries: case id || 0 || entry number (u64 big-endian) -> the entry.
    case_entries: CASE_ENTRIES = "case_entries" <&'static [u8], &'static [u8]> State;
    /// Index: patient || case id.
    cases_by_patient: CASES_BY_PATIENT = "cases_by_patient" <&'static [u8], ()> Index;
    /// Wrapped case keys: case id || 0 || recipient -> the wrapped-key blob's hash.
    case_keys: CASE_KEYS = "case_keys" <&'static [u8], &'static [u8; 32]> State;
    /// The transaction that wrapped each case key (the case's open or a key share), keyed as
    /// `case_keys`, so that a wallet can prove the key it seals an entry under.
    case_key_txs: CASE_KEY_TXS = "case_key_txs" <&'static [u8], &'static [u8; 32]> State;

    /// Devices by account.
    devices: DEVICES = "devices" <&'static [u8; 20], &'static [u8]> State;
    /// Index: patient || device.
    devices_by_patient: DEVICES_BY_PATIENT = "devices_by_patient" <&'static [u8; 40], ()> Index;
    /// Measurement sessions by id (the hash of the transaction that started them).
    device_sessions: DEVICE_SESSIONS = "device_sessions" <&'static [u8; 32], &'static [u8]> State;
    /// Index: device || start height || session, so that a device's sessions list in order.
    sessions_by_device: SESSIONS_BY_DEVICE = "sessions_by_device" <&'static [u8; 60], ()> Index;
    /// A session's secret key wrapped to a recipient: session || recipient -> the blob's hash.
    session_keys: SESSION_KEYS = "session_keys" <&'static [u8; 52], &'static [u8; 32]> State;
    /// Committed batches of normal readings: session || first sequence number -> batch.
    device_batches: DEVICE_BATCHES = "device_batches" <&'static [u8; 40], &'static [u8]> State;
    /// Committed alerts: session || sequence number -> alert.
    device_alerts: DEVICE_ALERTS = "device_alerts" <&'static [u8; 40], &'static [u8]> State;
    /// Thresholds by id (the hash of the transaction that set them).
    device_thresholds: DEVICE_THRESHOLDS = "device_thresholds"
        <&'static [u8; 32], &'static [u8]> State;
    /// Vault blobs of device sessions (batches, sealed alert readings, wrapped session keys) ->
    /// their session: what the vault must keep.
    device_blobs: DEVICE_BLOBS = "device_blobs" <&'static [u8; 32], &'static [u8; 32]> State;

    /// Organisation directory entries (researchers, insurers) by account.
    organisations: ORGANISATIONS = "organisations" <&'static [u8; 20], &'static [u8]> State;
    /// Organisation members by account: their organisation, name, and removal.
    members: MEMBERS = "members" <&'static [u8; 20], &'static [u8]> State;
    /// Index: organisation || member, for every member ever added.
    members_by_organisation: MEMBERS_BY_ORGANISATION = "members_by_organisation"
        <&'static [u8; 40], ()> Index;
    /// Records a researcher organisation's member may read for research: member || PMR-ID ->
    /// the research export that named them last (`ResearchReadEntry`). Nothing else opens
    /// identified content to a researcher's member.
    research_reads: RESEARCH_READS = "research_reads" <&'static [u8], &'static [u8]> State;

    /// Nodes of the network by id (the genesis node, 1, only once its status changed).
    nodes: NODES = "nodes" <u64, &'static [u8]> State;
    /// Index: node key -> node id, for every node with a row.
    nodes_by_key: NODES_BY_KEY = "nodes_by_key" <&'static [u8; 32], u64> Index;
    /// The node id counter: `last` -> the id assigned last (absent: none after genesis).
    node_ids: NODE_IDS = "node_ids" <&'static str, u64> State;
    /// `seed` -> the hash chain over every applied patient registration (its transaction hash
    /// and the index digest before it), in order (absent: none yet), from which the next
    /// Patient-ID is drawn (`registry/register_patient.rs`). No route serves it.
    patient_id_seed: PATIENT_ID_SEED = "patient_id_seed" <&'static str, &'static [u8; 32]> State;
}
