//! Researcher and insurer organisations: the regulator admits one (public directory name, kind;
//! contact details sealed off-ledger as for hospitals) and may suspend and reinstate it; the
//! organisation adds and removes its members, each an identity with its own signing and
//! encryption keys. A member acts under the organisation's grants (see the ledger's
//! `authorize`), never under a grant of its own.
//!
//! A member's key holder agrees to the membership: [`AddMember::acceptance`] is a signature by
//! the member's key over [`membership_message`], so that an organisation cannot enrol a key it
//! does not hold (a doctor's, say) and put its holder in its directory.

use serde::{Deserialize, Serialize};

use crate::{
    encoding,
    ids::AccountId,
    keys::{BadSignature, EncryptionKey, PublicKey, Signature, SigningKey, namespace},
    tx::{OrganisationKind, SealedRef},
};

/// Admission of a researcher or insurer organisation by the regulator.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdmitOrganisation {
    /// The organisation's first signing key; its account id derives from it.
    pub key: PublicKey,
    /// The organisation's encryption key (record keys a grant wraps to it, sealed details).
    pub encryption_key: EncryptionKey,
    /// Researcher or insurer: fixes which purpose patients may grant it.
    pub kind: OrganisationKind,
    /// Name (public directory).
    pub name: String,
    /// Contact details, sealed off-ledger to the organisation and the regulator.
    pub contact: SealedRef,
}

/// An organisation adds a member: a new account with its own keys, whose holder accepted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddMember {
    /// The member's first signing key; the member's account id derives from it.
    pub key: PublicKey,
    /// The member's encryption key (record keys are wrapped to it).
    pub encryption_key: EncryptionKey,
    /// Name (public directory, under the organisation).
    pub name: String,
    /// The member key's signature over [`membership_message`] for this organisation, this
    /// encryption key and this name.
    pub acceptance: Signature,
}

/// What a member's key signs to accept membership of `organisation`.
pub fn membership_message(
    organisation: &AccountId,
    encryption_key: &EncryptionKey,
    name: &str,
) -> Vec<u8> {
    encoding::encode(&(organisation, encryption_key, name))
}

impl AddMember {
    /// An acceptance signed by the future member's `key`.
    pub fn accept(
        key: &SigningKey,
        organisation: &AccountId,
        encryption_key: EncryptionKey,
        name: &str,
    ) -> AddMember {
        let acceptance = key
            .sign(namespace::MEMBERSHIP, &membership_message(organisation, &encryption_key, name));
        AddMember { key: key.public_key(), encryption_key, name: name.to_owned(), acceptance }
    }

    /// Checks that the member's key accepted membership of `organisation`.
    pub fn verify_acceptance(&self, organisation: &AccountId) -> Result<(), BadSignature> {
        self.key.verify(
            namespace::MEMBERSHIP,
            &membership_message(organisation, &self.encryption_key, &self.name),
            &self.acceptance,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::DecryptionKey;

    #[test]
    fn an_acceptance_binds_the_organisation_the_encryption_key_and_the_name() {
        let member = SigningKey::generate();
        let enc = DecryptionKey::generate().public_key();
        let org = AccountId::from_initial_key(&SigningKey::generate().public_key());
        let other = AccountId::from_initial_key(&SigningKey::generate().public_key());
        let add = AddMember::accept(&member, &org, enc, "Dr Lee");
        assert!(add.verify_acceptance(&org).is_ok());
        assert!(add.verify_acceptance(&other).is_err(), "another organisation");
        let renamed = AddMember { name: "Someone else".into(), ..add.clone() };
        assert!(renamed.verify_acceptance(&org).is_err(), "another name");
        let rekeyed = AddMember { encryption_key: DecryptionKey::generate().public_key(), ..add };
        assert!(rekeyed.verify_acceptance(&org).is_err(), "another encryption key");
        // A signature by anyone but the member's key (the organisation forging it) fails.
        let forged = AddMember::accept(&SigningKey::generate(), &org, enc, "Dr Lee");
        let forged = AddMember { key: member.public_key(), ..forged };
        assert!(forged.verify_acceptance(&org).is_err());
    }
}
