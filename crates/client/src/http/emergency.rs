//! Emergency calls: the public part of a profile, the logged read of the sealed profile, a
//! custodian's own escrow piece, a break-glass with the pieces released to its doctor, and a
//! hospital's open reviews.

use medledger_api::{BreakGlassView, EmergencyView, PatientOverview, TxProofResponse, paths};
use medledger_core::{Hash, ids::AccountId, tx::SignedTransaction};

use super::NodeClient;
use crate::error::{ClientError, ProofError};

impl NodeClient {
    /// The public part of a patient's emergency profile, if they have one.
    pub async fn emergency_profile(
        &self,
        patient: &AccountId,
    ) -> Result<Option<EmergencyView>, ClientError> {
        self.get_optional(&format!("{}/{patient}", paths::EMERGENCY)).await
    }

    /// A patient's emergency profile with its emergency key proven against the ledger under
    /// `anchor` by the transaction that set the profile (see
    /// [`crate::proof::verify_emergency_key`]), or `None` if the node says there is none. The
    /// only way the wallet learns an emergency key to wrap record keys to: the view's
    /// `emergency_key` is what the node says, unchecked; the returned view carries the proven
    /// key in its place.
    pub async fn proven_emergency_profile(
        &self,
        patient: &AccountId,
        anchor: &crate::proof::TrustAnchor,
    ) -> Result<Option<EmergencyView>, ClientError> {
        let Some(mut view) = self.emergency_profile(patient).await? else { return Ok(None) };
        let Some(set_by) = view.set_by else {
            return Err(ClientError::Proof(ProofError::UnprovenKey {
                account: AccountId::emergency_of(patient),
                reason: "the node did not name the transaction that set the profile".into(),
            }));
        };
        let proof: TxProofResponse = self
            .get(&format!("{}/{patient}/{}", paths::EMERGENCY, paths::EMERGENCY_KEY_PROOF))
            .await?;
        let genesis = self.genesis().await?;
        let signer = self.trusted_signer(&proof.checkpoint, anchor, &genesis).await?;
        let profile =
            crate::proof::verify_emergency_profile(&proof, &set_by, patient, anchor, &signer)?;
        let key = profile.emergency_key;
        if profile.open_records != view.open_records {
            return Err(ClientError::Proof(ProofError::UnprovenKey {
                account: AccountId::emergency_of(patient),
                reason: format!(
                    "the node says break-glass {} patient {patient}'s records, but the \
                     transaction that set the profile says it {}",
                    if view.open_records { "opens" } else { "does not open" },
                    if profile.open_records { "does" } else { "does not" }
                ),
            }));
        }
        if key != view.emergency_key {
            return Err(ClientError::Proof(ProofError::UnprovenKey {
                account: AccountId::emergency_of(patient),
                reason: format!(
                    "the node says the emergency key of patient {patient} is {}, but the \
                     transaction that set the profile set {key}",
                    view.emergency_key
                ),
            }));
        }
        view.emergency_key = key;
        Ok(Some(view))
    }

    /// The logged read of a patient's sealed profile: `read` is the doctor's signed
    /// `EmergencyTx::ReadProfile`, committed before the node answers.
    pub async fn read_emergency_profile(
        &self,
        patient: &AccountId,
        read: &SignedTransaction,
    ) -> Result<Vec<u8>, ClientError> {
        let url = self.url(&format!("{}/{patient}/read", paths::EMERGENCY));
        let req = self.post_tx(&url, read);
        self.bytes(req, &url, super::MAX_RESPONSE_BYTES).await
    }

    /// The audited overview of everything of a patient: `access` is the reader's access
    /// naming the patient alone, committed (in the patient's trail) before the node lists the
    /// patient's records, cases, devices and sessions.
    pub async fn patient_overview(
        &self,
        patient: &AccountId,
        access: &SignedTransaction,
    ) -> Result<PatientOverview, ClientError> {
        let url = self.url(&format!("{}/{patient}/overview", paths::EMERGENCY));
        let req = self.post_tx(&url, access);
        let resp = self.send(req, &url).await?;
        super::read_json(resp, &url).await
    }

    /// This signer's own escrow piece of a patient's emergency key (as a custodian).
    pub async fn escrow_piece(&self, patient: &AccountId) -> Result<Vec<u8>, ClientError> {
        let path = format!("{}/{patient}/escrow", paths::EMERGENCY);
        let url = self.url(&path);
        let req = self.authorised(self.http.get(&url), "GET", &path, b"")?;
        self.bytes(req, &url, super::MAX_RESPONSE_BYTES).await
    }

    /// A break-glass declaration (with the pieces released, when asked by its doctor).
    pub async fn break_glass(&self, id: &Hash) -> Result<BreakGlassView, ClientError> {
        self.get(&format!("{}/break-glass/{id}", paths::EMERGENCY)).await
    }

    /// The patient and the doctor of break-glass `id`, proven against the ledger under
    /// `anchor` by the transaction that declared it (see [`crate::proof::verify_break_glass`]):
    /// what a custodian releases its escrow piece for, whatever the node's view says.
    pub async fn proven_break_glass(
        &self,
        id: &Hash,
        anchor: &crate::proof::TrustAnchor,
    ) -> Result<(AccountId, AccountId), ClientError> {
        let proof = self.transaction(id).await?;
        let genesis = self.genesis().await?;
        let signer = self.trusted_signer(&proof.checkpoint, anchor, &genesis).await?;
        let (patient, doctor) = crate::proof::verify_break_glass(&proof, id, anchor, &signer)?;
        // Anyone can sign a declaration (the ledger refuses it, yet it is in the log, and the
        // receipt is the node's word): its signer must be proven a doctor.
        match self.proven_registration(&doctor, anchor).await? {
            Some(crate::proof::Registered::DoctorOf(_)) => Ok((patient, doctor)),
            other => Err(ClientError::Proof(ProofError::InvalidProof {
                tx_hash: *id,
                reason: format!(
                    "break-glass {id} was declared by {doctor}, whom the ledger does not prove \
                     a doctor (it proves {other:?})"
                ),
            })),
        }
    }

    /// The signer's (a hospital's) break-glass declarations awaiting review.
    pub async fn open_reviews(&self) -> Result<Vec<BreakGlassView>, ClientError> {
        self.get(&format!("{}/reviews", paths::EMERGENCY)).await
    }
}
