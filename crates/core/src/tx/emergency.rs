//! Emergency access: the patient's emergency profile, readable with the code on their card,
//! and break-glass for a patient who cannot give the code.
//!
//! The profile (blood type, allergies, medications, conditions, contacts) is sealed under an
//! emergency key EK = HKDF(256 random bits, Patient-ID); the random bits are the code on the
//! patient's card. Any registered doctor may fetch the sealed profile with a logged read; only
//! the code opens it. EK is also escrowed t-of-n among custodian hospitals, and an X25519 key
//! pair derived from EK can receive record keys, so that break-glass can open records.
//!
//! Break-glass: an active doctor declares emergency access with a coded reason from a short
//! list ([`ReasonCode`]) and a text of at least [`MIN_REASON_CHARS`] characters, sealed (HPKE,
//! the wallet's `seal`) to the patient, the doctor's hospital and the regulator: the ledger
//! holds the code and the ciphertext, never the text, and checks the code and that the
//! ciphertext is long enough to hold such a text ([`MIN_SEALED_REASON_BYTES`]). The hospital's
//! review finding is sealed to the same three. The
//! custodians may then release their escrow pieces to that doctor (the ledger checks that the
//! break-glass is open), and, if the patient allowed it in advance, `authorize` lets the doctor
//! read the patient's records until the window closes (by default four hours; the regulator
//! sets it per network). Start, end and every release are logged; the patient, delegates and
//! the doctor's hospital are notified; the hospital must file a review of every break-glass.

use serde::{Deserialize, Serialize};

use crate::{Hash, ids::AccountId, keys::EncryptionKey, tx::records::KeyRef};

/// The break-glass window when the regulator has not set one.
pub const DEFAULT_WINDOW_MS: u64 = 4 * 3_600_000;
/// Longest window the regulator may set (a week).
pub const MAX_WINDOW_MINUTES: u32 = 7 * 24 * 60;
/// Longest reason or review finding text, in bytes.
pub const MAX_REASON_LEN: usize = 2_000;
/// Fewest characters of a break-glass reason's text (the wallet refuses shorter ones).
pub const MIN_REASON_CHARS: usize = 20;
/// Bytes of a sealed text (the wallet's sealed-blob layout) beyond the text itself: 47 bytes
/// of framing and tag...
pub const SEALED_FRAMING_BYTES: usize = 47;
/// ...and 81 bytes per recipient.
pub const SEALED_BYTES_PER_RECIPIENT: usize = 81;
/// Fewest bytes of a sealed break-glass reason: [`MIN_REASON_CHARS`] bytes of text sealed to
/// its three recipients. The ledger cannot read the text; this is the check it can make.
pub const MIN_SEALED_REASON_BYTES: usize =
    SEALED_FRAMING_BYTES + MIN_REASON_CHARS + 3 * SEALED_BYTES_PER_RECIPIENT;
/// Fewest bytes of a sealed review finding: one byte of text to one recipient.
pub const MIN_SEALED_FINDING_BYTES: usize = SEALED_FRAMING_BYTES + 1 + SEALED_BYTES_PER_RECIPIENT;
/// Most bytes of a sealed reason or finding: the longest text to its three recipients (its
/// length takes one more byte).
pub const MAX_SEALED_TEXT_BYTES: usize =
    SEALED_FRAMING_BYTES + 1 + MAX_REASON_LEN + 3 * SEALED_BYTES_PER_RECIPIENT;

/// Why a doctor breaks the glass: one of a short list, public on the ledger (the free text is
/// sealed).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ReasonCode {
    /// The patient is unconscious.
    Unconscious,
    /// Life-threatening bleeding.
    LifeThreateningBleed,
    /// The patient is conscious but unable to consent (confusion, intoxication, ...).
    UnableToConsent,
    /// Anything else; the text must say what.
    Other,
}

impl ReasonCode {
    /// Every code, in the order of the list.
    pub const ALL: [ReasonCode; 4] = [
        ReasonCode::Unconscious,
        ReasonCode::LifeThreateningBleed,
        ReasonCode::UnableToConsent,
        ReasonCode::Other,
    ];

    /// Its name on the command line and in listings.
    pub fn name(self) -> &'static str {
        match self {
            ReasonCode::Unconscious => "unconscious",
            ReasonCode::LifeThreateningBleed => "life-threatening-bleed",
            ReasonCode::UnableToConsent => "unable-to-consent",
            ReasonCode::Other => "other",
        }
    }
}

impl std::fmt::Display for ReasonCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for ReasonCode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        ReasonCode::ALL.into_iter().find(|c| c.name() == s).ok_or_else(|| {
            let names: Vec<_> = ReasonCode::ALL.iter().map(|c| c.name()).collect();
            format!("{s:?} is not a break-glass reason code; one of: {}", names.join(", "))
        })
    }
}
/// Most custodians an emergency key is escrowed with.
pub const MAX_ESCROW: usize = 16;

/// A patient's emergency profile, as the ledger holds it: references and public values only.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EmergencyProfile {
    /// SHA-256 of the profile sealed under EK (a blob in the vault).
    pub profile: Hash,
    /// A check value derived from EK, so a code can be checked before anything is fetched.
    pub key_check: Hash,
    /// The X25519 public key derived from EK: record keys wrapped to it open with the code or
    /// the escrowed key.
    pub emergency_key: EncryptionKey,
    /// Whether break-glass opens the patient's records for the window.
    pub open_records: bool,
    /// Escrow pieces wrapped to custodian hospitals (each recovers EK with `threshold` - 1
    /// others).
    pub escrow: Vec<KeyRef>,
    /// Pieces needed.
    pub threshold: u8,
}

/// An emergency transaction.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum EmergencyTx {
    /// The patient (or a delegate) sets or replaces the emergency profile.
    SetProfile {
        /// Whose.
        patient: AccountId,
        /// The profile.
        profile: EmergencyProfile,
    },
    /// An active doctor fetches the sealed profile (opened with the code on the card).
    ReadProfile {
        /// Whose.
        patient: AccountId,
    },
    /// An active doctor declares emergency access without the code.
    BreakGlass {
        /// Whose.
        patient: AccountId,
        /// Why, from the list.
        code: ReasonCode,
        /// Why, in words: sealed to the patient, the doctor's hospital and the regulator.
        reason: Vec<u8>,
    },
    /// The doctor, their hospital or the patient ends a break-glass before its window closes.
    End {
        /// The break-glass (the id of the transaction that declared it).
        break_glass: Hash,
    },
    /// A custodian releases its escrow piece to the doctor of an open break-glass.
    ReleaseEscrow {
        /// The break-glass.
        break_glass: Hash,
        /// The piece, wrapped to the doctor.
        piece: Hash,
    },
    /// The doctor's hospital files its review of a break-glass.
    FileReview {
        /// The break-glass.
        break_glass: Hash,
        /// What the review found, sealed to the patient, the hospital and the regulator.
        finding: Vec<u8>,
    },
    /// The regulator sets the network's break-glass window.
    SetWindow {
        /// Minutes, 1 to a week.
        minutes: u32,
    },
}

impl EmergencyTx {
    /// A short name for metrics and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            EmergencyTx::SetProfile { .. } => "set_emergency_profile",
            EmergencyTx::ReadProfile { .. } => "read_emergency_profile",
            EmergencyTx::BreakGlass { .. } => "break_glass",
            EmergencyTx::End { .. } => "end_break_glass",
            EmergencyTx::ReleaseEscrow { .. } => "release_escrow",
            EmergencyTx::FileReview { .. } => "file_review",
            EmergencyTx::SetWindow { .. } => "set_emergency_window",
        }
    }
}
