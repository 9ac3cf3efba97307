//! The RFC 9162 (Certificate Transparency v2) Merkle log: leaf and node hashing, an in-memory
//! log tree with inclusion and consistency proofs, their verification, and a compact frontier.
//!
//! Definitions follow RFC 9162 §2.1: `MTH({}) = SHA-256()`, `MTH({d}) = SHA-256(0x00 || d)`,
//! and for `n > 1`, with `k` the largest power of two smaller than `n`,
//! `MTH(D[n]) = SHA-256(0x01 || MTH(D[0:k]) || MTH(D[k:n]))`.
//!
//! Everything in the log is held as *leaf hashes* (`SHA-256(0x00 || entry)`); callers hash their
//! entries with [`leaf_hash`] first.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::Hash;

/// The longest proof path [`InclusionProof::verify`] and [`ConsistencyProof::verify`] accept.
///
/// Checked before any other work, so that a proof deserialised from an untrusted peer cannot make
/// the verifier hash an arbitrary amount of data. 64 is enough for every valid proof in any tree
/// of up to 2^63 leaves.
pub const MAX_PATH_LEN: usize = 64;

/// Domain-separation prefix of a leaf hash.
const LEAF_PREFIX: u8 = 0x00;
/// Domain-separation prefix of an interior node hash.
const NODE_PREFIX: u8 = 0x01;

/// The hash of a log entry: `SHA-256(0x00 || data)`.
pub fn leaf_hash(data: &[u8]) -> Hash {
    Hash::of_parts(&[&[LEAF_PREFIX], data])
}

/// The hash of an interior node: `SHA-256(0x01 || left || right)`.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut buf = [0u8; 1 + 2 * Hash::LEN];
    buf[0] = NODE_PREFIX;
    buf[1..=Hash::LEN].copy_from_slice(&left.0);
    buf[1 + Hash::LEN..].copy_from_slice(&right.0);
    Hash::of(&buf)
}

/// The root of the empty tree: SHA-256 of the empty string.
pub fn empty_root() -> Hash {
    Hash::of(&[])
}

/// Why a proof could not be produced or did not verify.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ProofError {
    /// The leaf index is not inside the tree.
    #[error("leaf index {index} is outside a tree of {tree_size} leaves")]
    IndexOutOfRange {
        /// The requested leaf index.
        index: u64,
        /// The size of the tree it was looked for in.
        tree_size: u64,
    },
    /// The requested tree size is larger than the log.
    #[error("tree size {size} is larger than the log, which has {log_len} leaves")]
    SizeOutOfRange {
        /// The requested tree size.
        size: u64,
        /// The number of leaves in the log.
        log_len: u64,
    },
    /// The two sizes of a consistency proof are not `0 < old_size <= new_size`.
    #[error(
        "invalid consistency proof sizes: old size {old_size}, new size {new_size} \
         (need 0 < old size <= new size)"
    )]
    BadSizes {
        /// The size of the older tree.
        old_size: u64,
        /// The size of the newer tree.
        new_size: u64,
    },
    /// The proof path does not have the length its sizes call for.
    #[error("proof path has {got} hashes, but its sizes call for {expected}")]
    WrongPathLength {
        /// The length the sizes (and index) call for.
        expected: usize,
        /// The length of the path in the proof.
        got: usize,
    },
    /// The proof path is longer than any valid proof; rejected before any hashing.
    #[error("proof path has {len} hashes, more than the maximum of {max}")]
    PathTooLong {
        /// The length of the path in the proof.
        len: usize,
        /// The maximum accepted, [`MAX_PATH_LEN`].
        max: usize,
    },
    /// The root computed from the proof is not the expected root.
    #[error("the root computed from the proof does not match the expected root")]
    RootMismatch,
    /// The leaves read back for a full chunk of a [`ChunkedLog`] do not hash to the root the
    /// log recorded for that chunk (the stored entries changed, or were lost).
    #[error("the stored entries of log chunk {chunk} do not hash to the root recorded for it")]
    ChunkMismatch {
        /// The chunk's index (its first leaf is `chunk * chunk_size`).
        chunk: u64,
    },
}

/// The largest power of two strictly smaller than `n`, for `n >= 2` (1 for smaller `n`).
fn split_point(n: u64) -> u64 {
    1u64 << (63 - n.saturating_sub(1).max(1).leading_zeros())
}

/// Right-shifts `f` and `s` together while `f` is even and non-zero.
fn shift_while_even(f: &mut u64, s: &mut u64) {
    while *f & 1 == 0 && *f != 0 {
        *f >>= 1;
        *s >>= 1;
    }
}

/// How many path hashes the RFC 9162 §2.1.3.2 verification loop consumes for leaf `index` in a
/// tree of `tree_size` leaves (`index < tree_size`): the loop runs until `sn` reaches 0, and a
/// path of any other length is rejected by it.
fn inclusion_path_len(index: u64, tree_size: u64) -> usize {
    let (mut f, mut s) = (index, tree_size - 1);
    let mut steps = 0;
    while s != 0 {
        if f & 1 == 1 || f == s {
            shift_while_even(&mut f, &mut s);
        }
        f >>= 1;
        s >>= 1;
        steps += 1;
    }
    steps
}

/// How many path hashes the RFC 9162 §2.1.4.2 verification consumes for `0 < old_size <
/// new_size`: the first hash (unless `old_size` is a power of two, when the old root is used in
/// its place), then one per loop step until `sn` reaches 0.
fn consistency_path_len(old_size: u64, new_size: u64) -> usize {
    let (mut f, mut s) = (old_size - 1, new_size - 1);
    while f & 1 == 1 {
        f >>= 1;
        s >>= 1;
    }
    let mut steps = usize::from(!old_size.is_power_of_two());
    while s != 0 {
        if f & 1 == 1 || f == s {
            shift_while_even(&mut f, &mut s);
        }
        f >>= 1;
        s >>= 1;
        steps += 1;
    }
    steps
}

/// An in-memory Merkle log over leaf hashes.
///
/// Stored as levels: `levels[0]` holds the leaf hashes and `levels[k][i]` the hash of the full,
/// aligned subtree of `2^k` leaves starting at leaf `i * 2^k`. Only full subtrees are stored, so
/// `levels[k + 1].len() == levels[k].len() / 2`, and the whole tree takes about twice the space
/// of its leaves. The hash of any subtree that RFC 9162 proofs need is either one stored node or,
/// for the partial subtree on the right edge of a tree, computed from `O(log n)` stored nodes.
#[derive(Clone, PartialEq, Eq)]
pub struct MerkleLog {
    /// Never empty: `levels[0]` always exists (possibly with no leaves).
    levels: Vec<Vec<Hash>>,
}

impl Default for MerkleLog {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for MerkleLog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MerkleLog")
            .field("len", &self.len())
            .field("levels", &self.levels.len())
            .field("root", &self.root())
            .finish()
    }
}

impl MerkleLog {
    /// An empty log.
    pub fn new() -> Self {
        Self { levels: vec![Vec::new()] }
    }

    /// Builds the log over `leaves` (leaf hashes, in log order) level by level, hashing each
    /// interior node once. Equivalent to pushing the leaves one by one, but faster.
    pub fn from_leaf_hashes(leaves: Vec<Hash>) -> Self {
        let mut levels = vec![leaves];
        loop {
            let next: Vec<Hash> = match levels.last() {
                Some(row) if row.len() >= 2 => row
                    .chunks_exact(2)
                    .filter_map(|pair| match pair {
                        [left, right] => Some(node_hash(left, right)),
                        _ => None,
                    })
                    .collect(),
                _ => break,
            };
            levels.push(next);
        }
        Self { levels }
    }

    /// Appends a leaf hash, completing every parent subtree it fills (amortised O(1) hashes).
    pub fn push(&mut self, leaf: Hash) {
        let mut node = leaf;
        let mut level = 0;
        loop {
            if self.levels.len() <= level {
                self.levels.push(Vec::new());
            }
            let Some(row) = self.levels.get_mut(level) else { return };
            row.push(node);
            match row.as_slice() {
                // An even count means the node just pushed completed its parent.
                [.., left, right] if row.len() % 2 == 0 => node = node_hash(left, right),
                _ => return,
            }
            level += 1;
        }
    }

    /// The number of leaves.
    pub fn len(&self) -> u64 {
        self.levels.first().map_or(0, |leaves| leaves.len() as u64)
    }

    /// Whether the log has no leaves.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The leaf hash at `index`, if there is one.
    pub fn leaf(&self, index: u64) -> Option<Hash> {
        let index = usize::try_from(index).ok()?;
        self.levels.first()?.get(index).copied()
    }

    /// The root of the whole log (the [`empty_root`] if it is empty).
    pub fn root(&self) -> Hash {
        // The last node of each odd-length level is the root of one perfect subtree of the
        // right-edge decomposition; fold them from the smallest (rightmost) up.
        fold_peaks(self.levels.iter().filter(|row| row.len() % 2 == 1).filter_map(|row| row.last()))
    }

    /// The root of the tree of the first `size` leaves, for any `size <= len()`; the
    /// [`empty_root`] for size 0.
    pub fn root_at(&self, size: u64) -> Result<Hash, ProofError> {
        root_at(&mut &*self, size)
    }

    /// The RFC 9162 §2.1.3 inclusion proof (audit path) of leaf `index` in the tree of the first
    /// `tree_size` leaves, for any `tree_size <= len()`.
    pub fn inclusion_proof(
        &self,
        index: u64,
        tree_size: u64,
    ) -> Result<InclusionProof, ProofError> {
        inclusion_proof(&mut &*self, index, tree_size)
    }

    /// The RFC 9162 §2.1.4 consistency proof between the trees of the first `old_size` and the
    /// first `new_size` leaves, for `0 < old_size <= new_size <= len()`. Equal sizes give an
    /// empty proof.
    pub fn consistency_proof(
        &self,
        old_size: u64,
        new_size: u64,
    ) -> Result<ConsistencyProof, ProofError> {
        consistency_proof(&mut &*self, old_size, new_size)
    }

    /// The frontier (compact range) of the whole log.
    pub fn frontier(&self) -> Frontier {
        Frontier { len: self.len(), peaks: self.peaks().collect() }
    }

    /// The roots of the perfect subtrees the log decomposes into, largest (leftmost) first.
    fn peaks(&self) -> impl Iterator<Item = Hash> + '_ {
        self.levels
            .iter()
            .rev()
            .filter(|row| row.len() % 2 == 1)
            .filter_map(|row| row.last().copied())
    }

    /// A stored node: the full subtree of `2^level` leaves starting at leaf `start`.
    fn stored(&self, level: u32, start: u64) -> Result<Hash, ProofError> {
        let out_of_range = || ProofError::SizeOutOfRange {
            size: start.saturating_add(1 << level),
            log_len: self.len(),
        };
        let row = usize::try_from(level).ok().and_then(|l| self.levels.get(l));
        let index = usize::try_from(start >> level).ok();
        match (row, index) {
            (Some(row), Some(index)) => row.get(index).copied().ok_or_else(out_of_range),
            _ => Err(out_of_range()),
        }
    }
}

/// Where the proof walks below get the hash of a full, aligned subtree: the in-memory
/// [`MerkleLog`], or a [`ChunkedLog`] that reads the leaves of a chunk when it needs them.
trait Nodes {
    /// What fetching a node can fail with besides a [`ProofError`].
    type Error: From<ProofError>;
    /// The number of leaves.
    fn len(&self) -> u64;
    /// The hash of the full subtree of `2^level` leaves starting at leaf `start` (aligned to
    /// its size, and inside the log).
    fn node(&mut self, level: u32, start: u64) -> Result<Hash, Self::Error>;
}

impl Nodes for &MerkleLog {
    type Error = ProofError;
    fn len(&self) -> u64 {
        MerkleLog::len(self)
    }
    fn node(&mut self, level: u32, start: u64) -> Result<Hash, ProofError> {
        self.stored(level, start)
    }
}

fn check_size<N: Nodes>(nodes: &N, size: u64) -> Result<(), N::Error> {
    let log_len = nodes.len();
    if size > log_len { Err(ProofError::SizeOutOfRange { size, log_len }.into()) } else { Ok(()) }
}

/// `MTH(D[start:end])` for `end <= len()`. A full aligned subtree is one node; any other range
/// is split as RFC 9162 defines. The ranges that proofs and `root_at` ask for are full aligned
/// subtrees or right-edge partial ones (`start` aligned to the largest power of two below
/// `end - start`), which cost `O(log n)` hashes.
fn subtree_hash<N: Nodes>(nodes: &mut N, start: u64, end: u64) -> Result<Hash, N::Error> {
    let n = end.saturating_sub(start);
    if n == 0 {
        return Ok(empty_root());
    }
    if n.is_power_of_two() && start.is_multiple_of(n) {
        return nodes.node(n.trailing_zeros(), start);
    }
    let mid = start + split_point(n);
    Ok(node_hash(&subtree_hash(nodes, start, mid)?, &subtree_hash(nodes, mid, end)?))
}

fn root_at<N: Nodes>(nodes: &mut N, size: u64) -> Result<Hash, N::Error> {
    check_size(nodes, size)?;
    subtree_hash(nodes, 0, size)
}

fn inclusion_proof<N: Nodes>(
    nodes: &mut N,
    index: u64,
    tree_size: u64,
) -> Result<InclusionProof, N::Error> {
    check_size(nodes, tree_size)?;
    if index >= tree_size {
        return Err(ProofError::IndexOutOfRange { index, tree_size }.into());
    }
    // Walk down from the root of D[0:tree_size]; each step records the sibling subtree.
    let mut path = Vec::with_capacity(inclusion_path_len(index, tree_size));
    let (mut lo, mut hi) = (0, tree_size);
    while hi - lo > 1 {
        let mid = lo + split_point(hi - lo);
        if index < mid {
            path.push(subtree_hash(nodes, mid, hi)?);
            hi = mid;
        } else {
            path.push(subtree_hash(nodes, lo, mid)?);
            lo = mid;
        }
    }
    path.reverse();
    Ok(InclusionProof { leaf_index: index, tree_size, path })
}

fn consistency_proof<N: Nodes>(
    nodes: &mut N,
    old_size: u64,
    new_size: u64,
) -> Result<ConsistencyProof, N::Error> {
    check_size(nodes, new_size)?;
    if old_size == 0 || old_size > new_size {
        return Err(ProofError::BadSizes { old_size, new_size }.into());
    }
    let mut path = Vec::new();
    if old_size < new_size {
        path.reserve_exact(consistency_path_len(old_size, new_size));
        // SUBPROOF(m, D[lo:hi], complete), walked down from the root of D[0:new_size]; the
        // sibling at each step is appended after the deeper part, so collect and reverse.
        let (mut lo, mut hi) = (0, new_size);
        let mut complete = true;
        while old_size != hi {
            let mid = lo + split_point(hi - lo);
            if old_size <= mid {
                path.push(subtree_hash(nodes, mid, hi)?);
                hi = mid;
            } else {
                path.push(subtree_hash(nodes, lo, mid)?);
                lo = mid;
                complete = false;
            }
        }
        if !complete {
            path.push(subtree_hash(nodes, lo, hi)?);
        }
        path.reverse();
    }
    Ok(ConsistencyProof { old_size, new_size, path })
}

/// A Merkle log that keeps in memory only the roots of its full chunks of `2^shift` leaves
/// (with the tree above them) and the leaves of its last, incomplete chunk. A full chunk's
/// leaves are read back (through the caller's `leaves_of`) when a proof needs a node inside it,
/// and checked against the chunk's recorded root. Its roots, frontier and proofs are those of a
/// [`MerkleLog`] over the same leaves; its memory is `64 / 2^shift` bytes per leaf plus one
/// chunk, so that a log of millions of entries costs kilobytes rather than a hundred megabytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChunkedLog {
    shift: u32,
    /// The tree over the chunk roots: its level `k` is level `shift + k` of the whole log.
    upper: MerkleLog,
    /// The leaves of the last chunk, fewer than `2^shift`.
    tail: MerkleLog,
}

impl ChunkedLog {
    /// An empty log with chunks of `2^shift` leaves (`1 <= shift <= 32`).
    pub fn new(shift: u32) -> Self {
        assert!((1..=32).contains(&shift), "a chunk is 2^1 to 2^32 leaves");
        Self { shift, upper: MerkleLog::new(), tail: MerkleLog::new() }
    }

    /// The log whose full chunks have `chunk_roots` (in order) and whose last chunk holds the
    /// leaf hashes `tail`; `None` if `tail` is a full chunk or more.
    pub fn from_parts(shift: u32, chunk_roots: Vec<Hash>, tail: Vec<Hash>) -> Option<Self> {
        let mut log = Self::new(shift);
        if tail.len() as u64 >= log.chunk_size() {
            return None;
        }
        log.upper = MerkleLog::from_leaf_hashes(chunk_roots);
        log.tail = MerkleLog::from_leaf_hashes(tail);
        Some(log)
    }

    /// The number of leaves in a chunk.
    pub fn chunk_size(&self) -> u64 {
        1 << self.shift
    }

    /// The number of full chunks.
    pub fn chunks(&self) -> u64 {
        self.upper.len()
    }

    /// The root of full chunk `chunk`.
    pub fn chunk_root(&self, chunk: u64) -> Option<Hash> {
        self.upper.leaf(chunk)
    }

    /// The number of leaves.
    pub fn len(&self) -> u64 {
        (self.chunks() << self.shift) + self.tail.len()
    }

    /// Whether the log has no leaves.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Appends a leaf hash; the root of the chunk it completes, if it completes one.
    pub fn push(&mut self, leaf: Hash) -> Option<Hash> {
        self.tail.push(leaf);
        if self.tail.len() < self.chunk_size() {
            return None;
        }
        let root = self.tail.root();
        self.upper.push(root);
        self.tail = MerkleLog::new();
        Some(root)
    }

    /// The roots of the chunks that appending `leaves` would complete, in order, without
    /// appending them.
    pub fn completed_by(&self, leaves: &[Hash]) -> Vec<Hash> {
        let mut tail = self.tail.clone();
        let mut roots = Vec::new();
        for leaf in leaves {
            tail.push(*leaf);
            if tail.len() == self.chunk_size() {
                roots.push(tail.root());
                tail = MerkleLog::new();
            }
        }
        roots
    }

    /// The root of the whole log (the [`empty_root`] if it is empty).
    pub fn root(&self) -> Hash {
        self.frontier().root()
    }

    /// The frontier (compact range) of the whole log.
    pub fn frontier(&self) -> Frontier {
        Frontier { len: self.len(), peaks: self.upper.peaks().chain(self.tail.peaks()).collect() }
    }

    /// [`MerkleLog::root_at`]; `leaves_of(chunk)` gives the leaf hashes of a full chunk.
    pub fn root_at<E: From<ProofError>>(
        &self,
        size: u64,
        leaves_of: impl FnMut(u64) -> Result<Vec<Hash>, E>,
    ) -> Result<Hash, E> {
        root_at(&mut self.reader(leaves_of), size)
    }

    /// [`MerkleLog::inclusion_proof`]; `leaves_of(chunk)` gives the leaf hashes of a full
    /// chunk (one or two chunks are read).
    pub fn inclusion_proof<E: From<ProofError>>(
        &self,
        index: u64,
        tree_size: u64,
        leaves_of: impl FnMut(u64) -> Result<Vec<Hash>, E>,
    ) -> Result<InclusionProof, E> {
        inclusion_proof(&mut self.reader(leaves_of), index, tree_size)
    }

    /// [`MerkleLog::consistency_proof`]; `leaves_of(chunk)` gives the leaf hashes of a full
    /// chunk (at most one chunk is read).
    pub fn consistency_proof<E: From<ProofError>>(
        &self,
        old_size: u64,
        new_size: u64,
        leaves_of: impl FnMut(u64) -> Result<Vec<Hash>, E>,
    ) -> Result<ConsistencyProof, E> {
        consistency_proof(&mut self.reader(leaves_of), old_size, new_size)
    }

    fn reader<F>(&self, leaves_of: F) -> ChunkReader<'_, F> {
        ChunkReader { log: self, leaves_of, read: Vec::new() }
    }
}

/// A [`ChunkedLog`] with the means to read its full chunks, and the chunks read so far.
struct ChunkReader<'a, F> {
    log: &'a ChunkedLog,
    leaves_of: F,
    read: Vec<(u64, MerkleLog)>,
}

impl<E: From<ProofError>, F: FnMut(u64) -> Result<Vec<Hash>, E>> Nodes for ChunkReader<'_, F> {
    type Error = E;

    fn len(&self) -> u64 {
        self.log.len()
    }

    fn node(&mut self, level: u32, start: u64) -> Result<Hash, E> {
        let shift = self.log.shift;
        let chunk = start >> shift;
        if level >= shift {
            return Ok(self.log.upper.stored(level - shift, chunk)?);
        }
        let offset = start - (chunk << shift);
        if chunk == self.log.chunks() {
            return Ok(self.log.tail.stored(level, offset)?);
        }
        if let Some((_, tree)) = self.read.iter().find(|(c, _)| *c == chunk) {
            return Ok(tree.stored(level, offset)?);
        }
        let recorded = self.log.chunk_root(chunk).ok_or(ProofError::SizeOutOfRange {
            size: start.saturating_add(1),
            log_len: self.log.len(),
        })?;
        let leaves = (self.leaves_of)(chunk)?;
        let tree = MerkleLog::from_leaf_hashes(leaves);
        if tree.len() != self.log.chunk_size() || tree.root() != recorded {
            return Err(ProofError::ChunkMismatch { chunk }.into());
        }
        let node = tree.stored(level, offset)?;
        self.read.push((chunk, tree));
        Ok(node)
    }
}

/// Folds perfect-subtree roots, given from the rightmost (smallest) to the leftmost, into the
/// RFC 9162 root: `node(left, node(..., node(second_to_last, last)))`.
fn fold_peaks<'a>(right_to_left: impl Iterator<Item = &'a Hash>) -> Hash {
    right_to_left
        .fold(None, |acc: Option<Hash>, peak| {
            Some(match acc {
                None => *peak,
                Some(right) => node_hash(peak, &right),
            })
        })
        .unwrap_or_else(empty_root)
}

/// A compact range of a log: the roots of the perfect subtrees its leaves decompose into (one per
/// set bit of the size, largest first), enough to append leaves and compute the root in
/// `O(log n)` space and hashes per leaf, without the rest of the tree.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Frontier {
    len: u64,
    /// Left to right: the largest (leftmost) subtree first.
    peaks: Vec<Hash>,
}

impl Frontier {
    /// The frontier of an empty log.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends a leaf hash, merging the equal-sized subtrees it completes.
    pub fn push(&mut self, leaf: Hash) {
        let mut node = leaf;
        let mut level = 0;
        // Each trailing set bit of the size is a subtree of the size `node` now reaches.
        while level < u64::BITS && (self.len >> level) & 1 == 1 {
            match self.peaks.pop() {
                Some(left) => node = node_hash(&left, &node),
                None => break,
            }
            level += 1;
        }
        self.peaks.push(node);
        self.len = self.len.saturating_add(1);
    }

    /// The number of leaves appended.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether no leaves have been appended.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The RFC 9162 root of the leaves appended (the [`empty_root`] if none); equal to
    /// [`MerkleLog::root`] over the same leaves.
    pub fn root(&self) -> Hash {
        fold_peaks(self.peaks.iter().rev())
    }
}

/// An RFC 9162 §2.1.3 inclusion proof: the audit path of one leaf in a tree of a given size.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InclusionProof {
    /// Index of the leaf (0-based).
    pub leaf_index: u64,
    /// Size of the tree the leaf is proven to be in.
    pub tree_size: u64,
    /// Sibling hashes from the leaf up to the root.
    pub path: Vec<Hash>,
}

impl InclusionProof {
    /// Verifies that `leaf` (a leaf hash) is at `leaf_index` in the tree of `tree_size` leaves
    /// whose root is `root`, as RFC 9162 §2.1.3.2 specifies.
    pub fn verify(&self, leaf: &Hash, root: &Hash) -> Result<(), ProofError> {
        let got = self.path.len();
        if got > MAX_PATH_LEN {
            return Err(ProofError::PathTooLong { len: got, max: MAX_PATH_LEN });
        }
        // Step 1.
        if self.leaf_index >= self.tree_size {
            return Err(ProofError::IndexOutOfRange {
                index: self.leaf_index,
                tree_size: self.tree_size,
            });
        }
        // The RFC's loop accepts exactly this length (rejecting longer paths at step 4a and
        // shorter ones at step 5); checking it first only gives a clearer error.
        let expected = inclusion_path_len(self.leaf_index, self.tree_size);
        let wrong_length = ProofError::WrongPathLength { expected, got };
        if got != expected {
            return Err(wrong_length);
        }
        // Steps 2 to 4.
        let (mut f, mut s) = (self.leaf_index, self.tree_size - 1);
        let mut r = *leaf;
        for p in &self.path {
            if s == 0 {
                return Err(wrong_length);
            }
            if f & 1 == 1 || f == s {
                r = node_hash(p, &r);
                shift_while_even(&mut f, &mut s);
            } else {
                r = node_hash(&r, p);
            }
            f >>= 1;
            s >>= 1;
        }
        // Step 5.
        if s != 0 {
            return Err(wrong_length);
        }
        if r != *root {
            return Err(ProofError::RootMismatch);
        }
        Ok(())
    }
}

/// An RFC 9162 §2.1.4 consistency proof: that the tree of `old_size` leaves is a prefix of the
/// tree of `new_size` leaves.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsistencyProof {
    /// Size of the older tree.
    pub old_size: u64,
    /// Size of the newer tree.
    pub new_size: u64,
    /// The proof hashes.
    pub path: Vec<Hash>,
}

impl ConsistencyProof {
    /// Verifies that the tree of `old_size` leaves with root `old_root` is a prefix of the tree
    /// of `new_size` leaves with root `new_root`, as RFC 9162 §2.1.4.2 specifies.
    ///
    /// Sizes must satisfy `0 < old_size <= new_size`. Equal sizes need an empty path and equal
    /// roots.
    pub fn verify(&self, old_root: &Hash, new_root: &Hash) -> Result<(), ProofError> {
        let got = self.path.len();
        if got > MAX_PATH_LEN {
            return Err(ProofError::PathTooLong { len: got, max: MAX_PATH_LEN });
        }
        let (old_size, new_size) = (self.old_size, self.new_size);
        if old_size == 0 || old_size > new_size {
            return Err(ProofError::BadSizes { old_size, new_size });
        }
        if old_size == new_size {
            if got != 0 {
                return Err(ProofError::WrongPathLength { expected: 0, got });
            }
            return if old_root == new_root { Ok(()) } else { Err(ProofError::RootMismatch) };
        }
        // The RFC's algorithm accepts exactly this length (an empty path at step 1, longer paths
        // at step 6a, shorter ones at step 7); checking it first only gives a clearer error.
        let expected = consistency_path_len(old_size, new_size);
        let wrong_length = ProofError::WrongPathLength { expected, got };
        if got != expected {
            return Err(wrong_length);
        }
        // Steps 1 and 2: an old size that is a power of two is a complete subtree of the new
        // tree, and the proof leaves its hash (the old root) out.
        let mut path = self.path.iter();
        let first = if old_size.is_power_of_two() {
            *old_root
        } else {
            let Some(first) = path.next() else { return Err(wrong_length) };
            *first
        };
        // Steps 3 and 4.
        let (mut f, mut s) = (old_size - 1, new_size - 1);
        while f & 1 == 1 {
            f >>= 1;
            s >>= 1;
        }
        // Steps 5 and 6.
        let (mut fr, mut sr) = (first, first);
        for c in path {
            if s == 0 {
                return Err(wrong_length);
            }
            if f & 1 == 1 || f == s {
                fr = node_hash(c, &fr);
                sr = node_hash(c, &sr);
                shift_while_even(&mut f, &mut s);
            } else {
                sr = node_hash(&sr, c);
            }
            f >>= 1;
            s >>= 1;
        }
        // Step 7.
        if s != 0 {
            return Err(wrong_length);
        }
        if fr != *old_root || sr != *new_root {
            return Err(ProofError::RootMismatch);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The leaves of the test tree used across RFC 6962 / 9162 implementations.
    fn test_leaves() -> Vec<Vec<u8>> {
        [
            "",
            "00",
            "10",
            "2021",
            "3031",
            "40414243",
            "5051525354555657",
            "606162636465666768696a6b6c6d6e6f",
        ]
        .iter()
        .map(|h| hex::decode(h).unwrap())
        .collect()
    }

    /// Known roots of the test tree for sizes 1 to 8.
    const ROOTS: [&str; 8] = [
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
        "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
        "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
    ];

    fn test_log() -> MerkleLog {
        MerkleLog::from_leaf_hashes(test_leaves().iter().map(|d| leaf_hash(d)).collect())
    }

    #[test]
    fn empty_root_known_answer() {
        assert_eq!(
            empty_root().to_hex(),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(MerkleLog::new().root(), empty_root());
        assert_eq!(MerkleLog::new().root_at(0), Ok(empty_root()));
        assert_eq!(Frontier::new().root(), empty_root());
        assert_eq!(MerkleLog::from_leaf_hashes(Vec::new()).root(), empty_root());
    }

    #[test]
    fn leaf_and_node_hash_prefixes() {
        assert_eq!(leaf_hash(b"").to_hex(), ROOTS[0]);
        assert_eq!(leaf_hash(b"abc"), Hash::of(b"\x00abc"));
        let (a, b) = (leaf_hash(b"a"), leaf_hash(b"b"));
        assert_eq!(node_hash(&a, &b), Hash::of_parts(&[&[1], &a.0, &b.0]));
        assert_ne!(node_hash(&a, &b), node_hash(&b, &a));
    }

    #[test]
    fn known_roots_of_test_tree() {
        let log = test_log();
        let mut pushed = MerkleLog::new();
        let mut frontier = Frontier::new();
        for (i, data) in test_leaves().iter().enumerate() {
            pushed.push(leaf_hash(data));
            frontier.push(leaf_hash(data));
            let size = i as u64 + 1;
            assert_eq!(log.root_at(size).unwrap().to_hex(), ROOTS[i], "root_at({size})");
            assert_eq!(pushed.root().to_hex(), ROOTS[i], "root after {size} pushes");
            assert_eq!(frontier.root().to_hex(), ROOTS[i], "frontier root at {size}");
            assert_eq!(frontier.len(), size);
            assert_eq!(pushed.frontier(), frontier);
        }
        assert_eq!(pushed, log);
        assert_eq!(log.root().to_hex(), ROOTS[7]);
    }

    #[test]
    fn all_proofs_in_test_tree_verify() {
        let log = test_log();
        for size in 1..=8u64 {
            let root = log.root_at(size).unwrap();
            for index in 0..size {
                let proof = log.inclusion_proof(index, size).unwrap();
                assert_eq!(proof.path.len(), inclusion_path_len(index, size));
                proof.verify(&log.leaf(index).unwrap(), &root).unwrap();
            }
            for old in 1..=size {
                let proof = log.consistency_proof(old, size).unwrap();
                if old < size {
                    assert_eq!(proof.path.len(), consistency_path_len(old, size));
                }
                proof.verify(&log.root_at(old).unwrap(), &root).unwrap();
            }
        }
    }

    #[test]
    fn proof_shapes_in_test_tree() {
        let log = test_log();
        let leaf = |i: u64| log.leaf(i).unwrap();
        let node = |a: u64, b: u64| node_hash(&leaf(a), &leaf(b));
        // Leaf 0 of 8: sibling leaf 1, then D[2:4], then D[4:8].
        let p = log.inclusion_proof(0, 8).unwrap();
        assert_eq!(p.path, vec![leaf(1), node(2, 3), subtree_hash(&mut &log, 4, 8).unwrap()]);
        // Leaf 6 of 7: PATH(6, D[7]) = PATH(2, D[4:7]) : MTH(D[0:4]), and
        // PATH(2, D[4:7]) = PATH(0, D[6:7]) : MTH(D[4:6]) = [MTH(D[4:6])].
        let p = log.inclusion_proof(6, 7).unwrap();
        assert_eq!(p.path, vec![node(4, 5), log.root_at(4).unwrap()]);
        // Consistency 3 -> 7 (RFC 9162 §2.1.5 example shape): [c, d, g, l].
        let p = log.consistency_proof(3, 7).unwrap();
        assert_eq!(
            p.path,
            vec![leaf(2), leaf(3), node(0, 1), subtree_hash(&mut &log, 4, 7).unwrap()]
        );
        // Consistency 4 -> 7: the old root is left out: [l].
        let p = log.consistency_proof(4, 7).unwrap();
        assert_eq!(p.path, vec![subtree_hash(&mut &log, 4, 7).unwrap()]);
        // Consistency 6 -> 7: D[4:6], D[6:7], D[0:4].
        let p = log.consistency_proof(6, 7).unwrap();
        assert_eq!(p.path, vec![node(4, 5), leaf(6), log.root_at(4).unwrap()]);
    }

    #[test]
    fn requests_out_of_range_are_errors() {
        let log = test_log();
        assert_eq!(
            log.inclusion_proof(8, 8),
            Err(ProofError::IndexOutOfRange { index: 8, tree_size: 8 })
        );
        assert_eq!(
            log.inclusion_proof(0, 9),
            Err(ProofError::SizeOutOfRange { size: 9, log_len: 8 })
        );
        assert_eq!(
            log.consistency_proof(0, 4),
            Err(ProofError::BadSizes { old_size: 0, new_size: 4 })
        );
        assert_eq!(
            log.consistency_proof(5, 4),
            Err(ProofError::BadSizes { old_size: 5, new_size: 4 })
        );
        assert_eq!(log.root_at(9), Err(ProofError::SizeOutOfRange { size: 9, log_len: 8 }));
        assert_eq!(log.leaf(8), None);
        assert_eq!(log.leaf(u64::MAX), None);
    }

    #[test]
    fn too_long_path_rejected_first() {
        let path = vec![Hash::default(); MAX_PATH_LEN + 1];
        let p = InclusionProof { leaf_index: 5, tree_size: 1, path: path.clone() };
        assert_eq!(
            p.verify(&Hash::default(), &Hash::default()),
            Err(ProofError::PathTooLong { len: 65, max: 64 })
        );
        let p = ConsistencyProof { old_size: 0, new_size: 0, path };
        assert_eq!(
            p.verify(&Hash::default(), &Hash::default()),
            Err(ProofError::PathTooLong { len: 65, max: 64 })
        );
    }

    #[test]
    fn path_lengths_fit_the_cap() {
        // The deepest trees representable: every valid path stays within MAX_PATH_LEN.
        assert_eq!(inclusion_path_len(0, 1 << 63), 63);
        assert_eq!(inclusion_path_len(0, u64::MAX), 64);
        assert_eq!(inclusion_path_len(u64::MAX - 1, u64::MAX), 63);
        assert_eq!(consistency_path_len(3, 1 << 63), 64);
        assert_eq!(consistency_path_len((1 << 63) - 1, 1 << 63), 64);
        // Beyond 2^63 leaves a valid consistency proof can need one more hash than the cap.
        assert_eq!(consistency_path_len(3, u64::MAX), 65);
    }

    /// The leaves `0..n` of a test log (distinct leaf hashes).
    fn numbered(n: u64) -> Vec<Hash> {
        (0..n).map(|i| leaf_hash(&i.to_be_bytes())).collect()
    }

    /// A chunked log over `leaves`, built by pushing, with the chunks it completed.
    fn chunked(shift: u32, leaves: &[Hash]) -> (ChunkedLog, Vec<Hash>) {
        let mut log = ChunkedLog::new(shift);
        let completed = log.completed_by(leaves);
        let pushed: Vec<Hash> = leaves.iter().filter_map(|l| log.push(*l)).collect();
        assert_eq!(pushed, completed, "completed_by foresees exactly what push completes");
        (log, pushed)
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

        /// A chunked log gives the same root, frontier and proofs as the whole log in memory,
        /// for any size, any earlier size and any leaf, reading full chunks back only through
        /// its reader.
        #[test]
        fn a_chunked_log_answers_as_the_whole_log(
            n in 0u64..700,
            shift in 1u32..6,
            picks in proptest::collection::vec((0u64..1_000, 0u64..1_000), 8),
        ) {
            let leaves = numbered(n);
            let whole = MerkleLog::from_leaf_hashes(leaves.clone());
            let (log, _) = chunked(shift, &leaves);
            let size = 1u64 << shift;
            // Counts the chunks each call reads: one or two for any query.
            let reads = std::cell::Cell::new(0);
            let mut leaves_of = |chunk: u64| -> Result<Vec<Hash>, ProofError> {
                reads.set(reads.get() + 1);
                assert!(reads.get() <= 2, "a query read more than two chunks");
                let from = (chunk * size) as usize;
                Ok(leaves[from..from + size as usize].to_vec())
            };
            proptest::prop_assert_eq!(log.len(), n);
            proptest::prop_assert_eq!(log.root(), whole.root());
            proptest::prop_assert_eq!(log.frontier(), whole.frontier());
            let parts = ChunkedLog::from_parts(
                shift,
                (0..log.chunks()).map(|c| log.chunk_root(c).unwrap()).collect(),
                leaves[(log.chunks() * size) as usize..].to_vec(),
            );
            proptest::prop_assert_eq!(parts.as_ref(), Some(&log));
            for (a, b) in picks {
                let (small, large) = (a.min(b) % (n + 1), a.max(b) % (n + 1));
                proptest::prop_assert_eq!(
                    { reads.set(0); log.root_at(large, &mut leaves_of) },
                    whole.root_at(large)
                );
                if large > 0 {
                    let index = small.min(large - 1);
                    proptest::prop_assert_eq!(
                        { reads.set(0); log.inclusion_proof(index, large, &mut leaves_of) },
                        whole.inclusion_proof(index, large)
                    );
                }
                proptest::prop_assert_eq!(
                    { reads.set(0); log.consistency_proof(small, large, &mut leaves_of) },
                    whole.consistency_proof(small, large)
                );
            }
            // Beyond the log: the same refusals.
            proptest::prop_assert_eq!(
                log.inclusion_proof(0, n + 1, &mut leaves_of),
                whole.inclusion_proof(0, n + 1)
            );
        }
    }

    #[test]
    fn a_chunk_whose_leaves_changed_is_refused() {
        let leaves = numbered(40);
        let (log, roots) = chunked(3, &leaves);
        assert_eq!(roots.len(), 5);
        let whole = MerkleLog::from_leaf_hashes(leaves.clone());
        for (chunk, root) in roots.iter().enumerate() {
            assert_eq!(whole.stored(3, chunk as u64 * 8), Ok(*root), "a chunk's root is its node");
        }
        // Leaf 13 (in chunk 1) read back altered, or a chunk read back short.
        let altered = |chunk: u64| -> Result<Vec<Hash>, ProofError> {
            let mut part = leaves[(chunk * 8) as usize..(chunk * 8 + 8) as usize].to_vec();
            part[5] = leaf_hash(b"altered");
            Ok(part)
        };
        assert_eq!(
            log.inclusion_proof(13, 40, altered),
            Err(ProofError::ChunkMismatch { chunk: 1 })
        );
        let short = |chunk: u64| -> Result<Vec<Hash>, ProofError> {
            Ok(leaves[(chunk * 8) as usize..(chunk * 8 + 7) as usize].to_vec())
        };
        assert_eq!(log.inclusion_proof(13, 40, short), Err(ProofError::ChunkMismatch { chunk: 1 }));
        // A proof whose nodes are all chunk roots, the tree above them or the last chunk's
        // reads no chunk.
        let leaves = numbered(44);
        let (log, _) = chunked(3, &leaves);
        let whole = MerkleLog::from_leaf_hashes(leaves);
        let none = |_: u64| -> Result<Vec<Hash>, ProofError> { panic!("no chunk is needed") };
        assert_eq!(log.inclusion_proof(41, 44, none), whole.inclusion_proof(41, 44));
        assert_eq!(log.consistency_proof(16, 44, none), whole.consistency_proof(16, 44));
        // A tail of a whole chunk or more is not a tail.
        assert_eq!(ChunkedLog::from_parts(3, vec![], numbered(8)), None);
    }
}
