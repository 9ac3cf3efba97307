//! The patient's emergency profile and card in the portal: the profile is sealed to a key
//! derived from a new code, which is shown once (as text and as a QR code) for the card and
//! stored nowhere; with "open records", an open break-glass opens the patient's records.

use askama::Template;
use axum::{
    Form, Router,
    extract::State,
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::get,
};
use medledger_client::emergency::ProfileContent;
use medledger_core::{ids::AccountId, tx::registry::Role};
use serde::Deserialize;

use super::{
    Portal, Unlocked,
    pages::{Flash, Me, render, unlocked_as},
};

pub fn routes() -> Router<Portal> {
    Router::new().route("/emergency", get(page).post(save))
}

/// What the page shows of the profile in force (its content is sealed to the card's key,
/// which the portal does not keep).
pub struct Current {
    open_records: bool,
    custodians: String,
    threshold: u8,
}

/// The card, right after a profile was saved.
pub struct Card {
    code: String,
    patient_id: String,
    account: String,
    /// The QR code as an SVG data URL.
    qr: String,
    wrapped: usize,
    /// Records the emergency key could not be given, and why (empty if none).
    unwrapped: String,
}

#[derive(Template)]
#[template(path = "portal/emergency.html")]
struct EmergencyPage {
    csrf: String,
    me: Me,
    flash: Option<Flash>,
    current: Option<Current>,
    card: Option<Card>,
}

async fn page(State(p): State<Portal>) -> Response {
    let u = match unlocked_as(&p, &[Role::Patient], "the emergency profile") {
        Ok(u) => u,
        Err(stop) => return stop.into_response(),
    };
    // Right after a save: its card, this once.
    match p.take_outcome() {
        Some(o) => emergency_page(&p, &u, Flash::ok(o.text), o.card, StatusCode::OK).await,
        None => emergency_page(&p, &u, None, None, StatusCode::OK).await,
    }
}

async fn emergency_page(
    p: &Portal,
    u: &Unlocked,
    flash: Option<Flash>,
    card: Option<Card>,
    status: StatusCode,
) -> Response {
    let s = &u.session;
    let (current, flash) = match s.client.emergency_profile(&s.wallet.account()).await {
        Ok(view) => (
            view.map(|v| Current {
                open_records: v.open_records,
                custodians: v
                    .custodians
                    .iter()
                    .map(|c| u.names.of(c))
                    .collect::<Vec<_>>()
                    .join(", "),
                threshold: v.threshold,
            }),
            flash,
        ),
        Err(e) => (None, flash.or_else(|| Flash::error(&e.into()))),
    };
    let mut page = render(&EmergencyPage { csrf: p.csrf(), me: Me::of(u), flash, current, card });
    *page.status_mut() = status;
    page
}

#[derive(Deserialize)]
struct ProfileForm {
    blood_type: String,
    #[serde(default)]
    allergies: String,
    #[serde(default)]
    medications: String,
    #[serde(default)]
    conditions: String,
    #[serde(default)]
    contacts: String,
    /// A checkbox: present when ticked.
    open_records: Option<String>,
    #[serde(default)]
    custodians: String,
    #[serde(default)]
    threshold: String,
}

fn list(s: &str) -> Vec<String> {
    s.split(',').map(str::trim).filter(|x| !x.is_empty()).map(str::to_owned).collect()
}

async fn save(State(p): State<Portal>, Form(f): Form<ProfileForm>) -> Response {
    let u = match unlocked_as(&p, &[Role::Patient], "the emergency profile") {
        Ok(u) => u,
        Err(stop) => return stop.into_response(),
    };
    let saved = async {
        anyhow::ensure!(!f.blood_type.trim().is_empty(), "the blood type is needed");
        let custodians = list(&f.custodians)
            .iter()
            .map(|c| c.parse::<AccountId>().map_err(|e| anyhow::anyhow!("custodian {c:?}: {e}")))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let threshold = match f.threshold.trim() {
            "" => None,
            t => Some(t.parse::<u8>().map_err(|_| anyhow::anyhow!("{t:?} is not a threshold"))?),
        };
        let open_records = f.open_records.is_some();
        let content = ProfileContent {
            blood_type: f.blood_type.trim().to_owned(),
            allergies: list(&f.allergies),
            medications: list(&f.medications),
            conditions: list(&f.conditions),
            contacts: list(&f.contacts),
        };
        let set = crate::emergency::set_profile(
            &u.session,
            content,
            open_records,
            &custodians,
            threshold,
        )
        .await?;
        // The profile is replaced: from here on nothing may lose the code, which is held
        // nowhere else. The records are wrapped after the card exists; a failure there is
        // reported beside the card.
        let qr = qrcode::QrCode::new(format!("medledger-emergency:{}:{}", set.pid, set.text))
            .map(|qr| {
                let svg =
                    qr.render::<qrcode::render::svg::Color>().min_dimensions(200, 200).build();
                format!(
                    "data:image/svg+xml;base64,{}",
                    data_encoding::BASE64.encode(svg.as_bytes())
                )
            })
            .unwrap_or_default();
        let mut card = Card {
            code: set.text,
            patient_id: set.pid.to_string(),
            account: u.session.wallet.account().to_string(),
            qr,
            wrapped: 0,
            unwrapped: String::new(),
        };
        if open_records {
            match crate::emergency::wrap_records(&u.session, u.session.wallet.account()).await {
                Ok((wrapped, missing)) => {
                    card.wrapped = wrapped;
                    if !missing.is_empty() {
                        card.unwrapped = format!(
                            "this wallet holds no key of {}: they stay closed under break-glass",
                            missing.join(", ")
                        );
                    }
                }
                Err(e) => {
                    card.unwrapped = format!(
                        "your records were not all wrapped to the emergency key ({e:#}); run \
                         `medledger emergency wrap-records` to finish"
                    )
                }
            }
        }
        anyhow::Ok(card)
    }
    .await;
    match saved {
        // To the page, which shows the card once: a reload makes no new profile.
        Ok(card) => {
            p.set_outcome(super::Outcome {
                text: "emergency profile saved: write the code on your card now; it is shown \
                       only this once"
                    .into(),
                declared: None,
                card: Some(card),
            });
            axum::response::Redirect::to("/emergency").into_response()
        }
        Err(e) => emergency_page(&p, &u, Flash::error(&e), None, StatusCode::BAD_REQUEST).await,
    }
}
