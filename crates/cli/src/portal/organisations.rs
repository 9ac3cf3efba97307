//! Organisations in the portal: the regulator admits researcher and insurer organisations and
//! suspends or reinstates them (on the regulator's page); an organisation lists its members and
//! adds them (from the member card the member's own wallet printed with
//! `medledger organisation member accept`, so no key is enrolled without its holder) or removes
//! them for good. The same functions and transactions as `medledger organisation`.

use askama::Template;
use axum::{
    Form, Router,
    extract::State,
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::{get, post},
};
use medledger_core::{
    ids::AccountId,
    tx::{OrganisationKind, RegistryTx, TxBody, registry::Role},
};
use serde::Deserialize;

use super::{
    Portal, Unlocked,
    pages::{Flash, Me, render, unlocked_as, with_status},
};
use crate::organisation::kind_word;

const ORGANISATIONS: [Role; 2] = [
    Role::Organisation(OrganisationKind::Researcher),
    Role::Organisation(OrganisationKind::Insurer),
];

pub fn routes() -> Router<Portal> {
    Router::new()
        .route("/organisation", get(page))
        .route("/organisation/member", post(member))
        .route("/regulator/organisation", post(admit))
        .route("/regulator/organisation/status", post(set_status))
}

/// An organisation as a row of the regulator's page.
pub struct OrganisationRow {
    pub(super) name: String,
    pub(super) account: String,
    pub(super) kind: &'static str,
    pub(super) suspended: bool,
    /// Members not removed.
    pub(super) members: usize,
}

/// The organisation directory, for the regulator's page.
pub async fn organisation_rows(u: &Unlocked) -> anyhow::Result<Vec<OrganisationRow>> {
    Ok(u.session
        .client
        .organisations()
        .await?
        .into_iter()
        .map(|o| OrganisationRow {
            name: o.name,
            account: o.account.to_string(),
            kind: kind_word(o.kind),
            suspended: o.suspended,
            members: o.members.iter().filter(|m| m.removed_at.is_none()).count(),
        })
        .collect())
}

/// A member as a row of the organisation's page.
pub struct MemberRow {
    name: String,
    account: String,
    added: u64,
    removed: Option<u64>,
}

#[derive(Template)]
#[template(path = "portal/organisation.html")]
struct OrganisationPage {
    csrf: String,
    me: Me,
    flash: Option<Flash>,
    kind: &'static str,
    suspended: bool,
    members: Vec<MemberRow>,
}

async fn page(State(p): State<Portal>) -> Response {
    let u = match unlocked_as(&p, &ORGANISATIONS, "the organisation's page") {
        Ok(u) => u,
        Err(stop) => return stop.into_response(),
    };
    let flash = p.take_outcome("/organisation").and_then(|o| Flash::ok(o.text));
    organisation_page(&p, &u, flash, StatusCode::OK).await
}

async fn organisation_page(
    p: &Portal,
    u: &Unlocked,
    flash: Option<Flash>,
    status: StatusCode,
) -> Response {
    let me = u.session.wallet.account();
    let (entry, flash) = match u.session.client.organisations().await {
        Ok(list) => (list.into_iter().find(|o| o.account == me), flash),
        Err(e) => (None, flash.or_else(|| Flash::error(&e.into()))),
    };
    let kind = match u.role {
        Role::Organisation(kind) => kind_word(kind),
        _ => "",
    };
    let (suspended, members) = match entry {
        Some(o) => (
            o.suspended,
            o.members
                .into_iter()
                .map(|m| MemberRow {
                    name: m.name,
                    account: m.account.to_string(),
                    added: m.added_at,
                    removed: m.removed_at,
                })
                .collect(),
        ),
        None => (false, Vec::new()),
    };
    let page = render(&OrganisationPage {
        csrf: p.csrf(),
        me: Me::of(u),
        flash,
        kind,
        suspended,
        members,
    });
    with_status(page, status)
}

#[derive(Deserialize)]
struct MemberForm {
    /// `add` or `remove`.
    action: String,
    /// Adding: the member card (`mlmember1:...`).
    #[serde(default)]
    card: String,
    /// Removing: the member's account id.
    #[serde(default)]
    member: String,
    /// Removing: the box saying the member's key is revoked for good.
    confirm: Option<String>,
}

/// The organisation adds a member from its member card, or removes one (`medledger
/// organisation member add|remove`).
async fn member(State(p): State<Portal>, Form(f): Form<MemberForm>) -> Response {
    let u = match unlocked_as(&p, &ORGANISATIONS, "the organisation's members") {
        Ok(u) => u,
        Err(stop) => return stop.into_response(),
    };
    let done = async {
        match f.action.as_str() {
            "add" => {
                let add = crate::organisation::parse_member_card(f.card.trim())?;
                let name = add.name.clone();
                let r = u.session.submit(TxBody::Registry(RegistryTx::AddMember(add))).await?;
                let account = crate::registry::created_account(&r, "member")?;
                anyhow::Ok(format!("{name} added: account {account} (block {})", r.height))
            }
            "remove" => {
                let member: AccountId = f
                    .member
                    .trim()
                    .parse()
                    .map_err(|e| anyhow::anyhow!("{:?} is not an account id: {e}", f.member))?;
                anyhow::ensure!(
                    f.confirm.is_some(),
                    "a removed member's key is revoked for good: tick the box to confirm; \
                     nothing was done"
                );
                let r =
                    u.session.submit(TxBody::Registry(RegistryTx::RemoveMember { member })).await?;
                anyhow::Ok(format!("member {member} removed (block {})", r.height))
            }
            other => anyhow::bail!("{other:?} is neither add nor remove"),
        }
    }
    .await;
    match done {
        Ok(text) => p.done_with("/organisation", text),
        Err(e) => organisation_page(&p, &u, Flash::error(&e), StatusCode::BAD_REQUEST).await,
    }
}

#[derive(Deserialize)]
struct AdmitForm {
    identity: String,
    /// `researcher` or `insurer`.
    kind: String,
    name: String,
    contact: String,
}

/// The regulator admits an organisation (`medledger organisation admit`).
async fn admit(State(p): State<Portal>, Form(f): Form<AdmitForm>) -> Response {
    let u = match unlocked_as(&p, &[Role::Regulator], "admitting an organisation") {
        Ok(u) => u,
        Err(stop) => return stop.into_response(),
    };
    let done = async {
        let kind = match f.kind.trim() {
            "researcher" => OrganisationKind::Researcher,
            "insurer" => OrganisationKind::Insurer,
            other => anyhow::bail!("{other:?} is neither researcher nor insurer"),
        };
        let name = f.name.trim();
        anyhow::ensure!(!name.is_empty(), "an organisation needs a name");
        let (r, account) = crate::organisation::admit_organisation(
            &u.session,
            f.identity.trim(),
            kind,
            name,
            f.contact.trim(),
        )
        .await?;
        anyhow::Ok(format!("{name} admitted: account {account} (block {})", r.height))
    }
    .await;
    match done {
        Ok(text) => p.done_with("/regulator", text),
        Err(e) => {
            super::admin::regulator_page(&p, &u, Flash::error(&e), StatusCode::BAD_REQUEST).await
        }
    }
}

#[derive(Deserialize)]
struct StatusForm {
    organisation: String,
    /// `suspend` or `reinstate`.
    action: String,
    #[serde(default)]
    reason: String,
}

/// The regulator suspends an organisation (it and its members act no more) or reinstates it.
async fn set_status(State(p): State<Portal>, Form(f): Form<StatusForm>) -> Response {
    let u = match unlocked_as(&p, &[Role::Regulator], "suspending or reinstating an organisation") {
        Ok(u) => u,
        Err(stop) => return stop.into_response(),
    };
    let done = async {
        let (organisation, tx) =
            super::admin::status_change(&f.organisation, &f.action, &f.reason)?;
        let (tx, what) = match tx {
            Some(reason) => (RegistryTx::SuspendOrganisation { organisation, reason }, "suspended"),
            None => (RegistryTx::ReinstateOrganisation { organisation }, "reinstated"),
        };
        let r = u.session.submit(TxBody::Registry(tx)).await?;
        anyhow::Ok(format!("organisation {organisation} {what} (block {})", r.height))
    }
    .await;
    match done {
        Ok(text) => p.done_with("/regulator", text),
        Err(e) => {
            super::admin::regulator_page(&p, &u, Flash::error(&e), StatusCode::BAD_REQUEST).await
        }
    }
}
