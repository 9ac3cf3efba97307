//! Consent calls, each signed by the client's signer: who can see a patient's records, the
//! grants from a patient to the signer, an access request, and a researcher's cohort.

use medledger_api::{
    CohortView, ExportListingView, GrantView, GrantedToMeView, RequestView, WhoCanSeeView, paths,
};
use medledger_core::{Hash, ids::AccountId};

use super::NodeClient;
use crate::error::{ClientError, HttpError};

/// Most patients (and pages) a research cohort may have, as the client takes it in: a node
/// that sends pages without end is stopped there.
pub const MAX_COHORT: usize = 10_000_000;

impl NodeClient {
    /// Who can see `patient`'s records (the signer is the patient or a delegate).
    pub async fn who_can_see(&self, patient: &AccountId) -> Result<WhoCanSeeView, ClientError> {
        self.get(&format!("{}/{patient}", paths::WHO_CAN_SEE)).await
    }

    /// The grants in force from `patient` to the signer.
    pub async fn grants_from(&self, patient: &AccountId) -> Result<Vec<GrantView>, ClientError> {
        self.get(&format!("{}?patient={patient}", paths::GRANTS)).await
    }

    /// The patients whose grants to the signer are in force or yet to begin, with them.
    pub async fn granted_to_me(&self) -> Result<GrantedToMeView, ClientError> {
        self.get(paths::GRANTED_TO_ME).await
    }

    /// The signer's research cohort (the signer is a member of a researcher organisation),
    /// with each patient's plan for an export for `project` under `rule_set`: every page of
    /// it, in account order.
    pub async fn research_cohort(
        &self,
        project: &str,
        rule_set: &str,
    ) -> Result<CohortView, ClientError> {
        self.research_cohort_in_pages(project, rule_set, None).await
    }

    /// [`NodeClient::research_cohort`], asked in pages of at most `page` patients (none: the
    /// node's page size).
    pub async fn research_cohort_in_pages(
        &self,
        project: &str,
        rule_set: &str,
        page: Option<usize>,
    ) -> Result<CohortView, ClientError> {
        // Both are checked to be short words of URL-safe characters before they are sent.
        medledger_core::tx::research::check_project(project, rule_set)
            .map_err(|reason| ClientError::InvalidInput { what: "research project", reason })?;
        let mut first = format!("{}?project={project}&rule_set={rule_set}", paths::RESEARCH_COHORT);
        if let Some(limit) = page {
            first.push_str(&format!("&limit={limit}"));
        }
        let mut cohort = CohortView { patients: Vec::new(), next: None };
        let mut path = first.clone();
        let mut after: Option<AccountId> = None;
        let mut pages = 0usize;
        loop {
            pages += 1;
            let page: CohortView = self.get(&path).await?;
            let taken = cohort.patients.len();
            check_cohort_page(after, &page, taken, pages, MAX_COHORT).map_err(|reason| {
                ClientError::Http(HttpError::BadResponse { url: self.url(&path), reason })
            })?;
            cohort.patients.extend(page.patients);
            match page.next {
                Some(next) => {
                    after = Some(next);
                    path = format!("{first}&after={next}");
                }
                None => return Ok(cohort),
            }
        }
    }

    /// What the signer's committed research export `event` planned: its records, listed
    /// while the export is open to the signer.
    pub async fn research_export_listing(
        &self,
        event: u64,
    ) -> Result<ExportListingView, ClientError> {
        self.get(&format!("{}/{event}", paths::RESEARCH_EXPORTS)).await
    }

    /// An access request (the signer is the patient, a delegate or the requester).
    pub async fn access_request(&self, id: &Hash) -> Result<RequestView, ClientError> {
        self.get(&format!("{}/{id}", paths::REQUESTS)).await
    }
}

/// Checks a research cohort's page as the client takes it in, after `taken` patients in
/// `pages - 1` pages whose last `next` was `after`: pages follow one another in account order,
/// each past the last one's `next` (a node that repeats or goes back would make the loop
/// endless or the cohort wrong), and together hold at most `max` patients and pages (a page may
/// hold no patient and still lead on: pages count too).
fn check_cohort_page(
    after: Option<AccountId>,
    page: &CohortView,
    taken: usize,
    pages: usize,
    max: usize,
) -> Result<(), String> {
    let mut at = after;
    let ordered = page.patients.iter().all(|p| {
        let ok = at.is_none_or(|at| at < p.patient);
        at = Some(p.patient);
        ok
    });
    let advances = match page.next {
        Some(next) => after.is_none_or(|a| a < next) && at.is_none_or(|at| at <= next),
        None => true,
    };
    if taken + page.patients.len() + pages > max {
        return Err(format!("a research cohort of more than {max} patients"));
    }
    if !ordered || !advances {
        return Err("the research cohort's pages are not in account order".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    //! The client's checks of a research cohort's pages: each refusal is one a misbehaving
    //! node could provoke.

    use medledger_api::CohortPatientView;

    use super::*;

    fn account(n: u8) -> AccountId {
        AccountId([n; 20])
    }

    fn page(patients: &[u8], next: Option<u8>) -> CohortView {
        CohortView {
            patients: patients
                .iter()
                .map(|&n| CohortPatientView {
                    patient: account(n),
                    categories: Vec::new(),
                    plan: Hash::of(&[n]),
                })
                .collect(),
            next: next.map(account),
        }
    }

    const IN_ORDER: &str = "the research cohort's pages are not in account order";

    #[test]
    fn pages_in_account_order_are_taken() {
        assert_eq!(check_cohort_page(None, &page(&[1, 2, 3], Some(3)), 0, 1, 100), Ok(()));
        assert_eq!(check_cohort_page(Some(account(3)), &page(&[4, 5], None), 3, 2, 100), Ok(()));
        // A page may hold nobody and still lead on, past where the last one led.
        assert_eq!(check_cohort_page(Some(account(3)), &page(&[], Some(9)), 3, 2, 100), Ok(()));
    }

    #[test]
    fn a_page_out_of_order_repeating_or_going_back_is_refused() {
        let refused =
            |after: Option<u8>, p: CohortView| check_cohort_page(after.map(account), &p, 0, 1, 100);
        // Patients out of order, or one twice, within a page.
        assert_eq!(refused(None, page(&[2, 1], None)), Err(IN_ORDER.into()));
        assert_eq!(refused(None, page(&[2, 2], None)), Err(IN_ORDER.into()));
        // A patient at or before where the last page led (a repeat or a step back).
        assert_eq!(refused(Some(3), page(&[3, 4], None)), Err(IN_ORDER.into()));
        assert_eq!(refused(Some(3), page(&[1], None)), Err(IN_ORDER.into()));
        // A `next` that does not advance (an endless loop), or that leads back before the
        // page's own last patient.
        assert_eq!(refused(Some(3), page(&[], Some(3))), Err(IN_ORDER.into()));
        assert_eq!(refused(Some(3), page(&[], Some(2))), Err(IN_ORDER.into()));
        assert_eq!(refused(None, page(&[4, 5], Some(4))), Err(IN_ORDER.into()));
    }

    #[test]
    fn a_cohort_past_its_limit_is_refused_counting_empty_pages() {
        let too_many = Err("a research cohort of more than 10 patients".to_owned());
        assert_eq!(check_cohort_page(None, &page(&[1, 2], Some(2)), 8, 1, 10), too_many);
        assert_eq!(check_cohort_page(None, &page(&[1], Some(2)), 8, 1, 10), Ok(()));
        // Empty pages without end are stopped by their count.
        assert_eq!(check_cohort_page(Some(account(1)), &page(&[], Some(2)), 0, 11, 10), too_many);
    }
}
