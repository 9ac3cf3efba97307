//! `medledger consent`: grant, revoke, request, approve, decline, deny rules and delegates.
//! Every command is a signed transaction; its receipt says what it created.

use std::{
    str::FromStr,
    time::{SystemTime, UNIX_EPOCH},
};

use anyhow::{Context, Result, bail};
use clap::{Subcommand, ValueEnum};
use medledger_api::GrantState;
use medledger_core::{
    Hash,
    block::{Created, Outcome, Receipt},
    ids::AccountId,
    tx::{
        ConsentTx, DelegatePowers, Role, TxBody,
        consent::{DenyRule, Purpose, RecordCategory, Scope, UnknownCategory, Validity},
    },
};

use crate::common::{Names, Session, WalletArgs, local_time, words};

#[derive(Debug, Subcommand)]
pub enum ConsentCommand {
    /// Grant access to your records (as the patient or their delegate).
    Grant {
        #[command(flatten)]
        wallet: WalletArgs,
        /// Who may access them (an account id).
        #[arg(long)]
        grantee: AccountId,
        /// Whose records, when acting as a delegate (default: yours).
        #[arg(long)]
        patient: Option<AccountId>,
        /// Which records: `all`, `categories:lab_report,imaging`, `records:PMR-ID,...` or
        /// `case:ID`.
        #[arg(long, default_value = "all", value_parser = parse_scope)]
        scope: Scope,
        /// For what.
        #[arg(long, value_enum, default_value = "treatment")]
        purpose: PurposeArg,
        /// How many days the grant lasts from now.
        #[arg(long, default_value_t = 30)]
        days: u64,
        /// Print JSON: the grant's id, the transaction and how many record keys were wrapped.
        #[arg(long)]
        json: bool,
    },
    /// Revoke a grant (effective from the next block).
    Revoke {
        #[command(flatten)]
        wallet: WalletArgs,
        /// The grant's id.
        grant: Hash,
    },
    /// Ask a patient for access (as a doctor, hospital or organisation).
    Request {
        #[command(flatten)]
        wallet: WalletArgs,
        /// The patient's account id, which the patient gives you (`medledger wallet show`, or
        /// their emergency card): a request needs no Patient-ID lookup, which only the
        /// patient's own hospital and those they already trust may make.
        #[arg(long)]
        patient: AccountId,
        /// Which records.
        #[arg(long, default_value = "all", value_parser = parse_scope)]
        scope: Scope,
        /// For what.
        #[arg(long, value_enum, default_value = "treatment")]
        purpose: PurposeArg,
        /// Print JSON: the request's id and the transaction.
        #[arg(long)]
        json: bool,
    },
    /// Approve an access request, choosing scope and period.
    Approve {
        #[command(flatten)]
        wallet: WalletArgs,
        /// The request's id.
        request: Hash,
        /// Which records (may be narrower than asked).
        #[arg(long, default_value = "all", value_parser = parse_scope)]
        scope: Scope,
        /// How many days the grant lasts from now.
        #[arg(long, default_value_t = 30)]
        days: u64,
    },
    /// Decline an access request.
    Decline {
        #[command(flatten)]
        wallet: WalletArgs,
        /// The request's id.
        request: Hash,
    },
    /// Add a deny rule that overrides any grant (give at least one of the options).
    Deny {
        #[command(flatten)]
        wallet: WalletArgs,
        /// Whose records, when acting as a delegate (default: yours).
        #[arg(long)]
        patient: Option<AccountId>,
        /// Never this account.
        #[arg(long)]
        grantee: Option<AccountId>,
        /// Never this kind of account.
        #[arg(long, value_enum)]
        role: Option<RoleArg>,
        /// Never this category.
        #[arg(long, value_parser = RecordCategory::from_str)]
        category: Option<RecordCategory>,
        /// Never for this purpose.
        #[arg(long, value_enum)]
        purpose: Option<PurposeArg>,
    },
    /// Remove a deny rule.
    Undeny {
        #[command(flatten)]
        wallet: WalletArgs,
        /// The rule's id.
        rule: Hash,
    },
    /// Who can see your records (or, as a delegate, the patient's): delegates, grants in force,
    /// deny rules. A signed request.
    WhoCanSee {
        #[command(flatten)]
        wallet: WalletArgs,
        /// Whose records, when acting as a delegate (default: yours).
        #[arg(long)]
        patient: Option<AccountId>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// The grants in force that a patient gave you. A signed request.
    Grants {
        #[command(flatten)]
        wallet: WalletArgs,
        /// The patient's account id.
        #[arg(long)]
        patient: AccountId,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show an access request and its state. A signed request.
    ShowRequest {
        #[command(flatten)]
        wallet: WalletArgs,
        /// The request's id.
        request: Hash,
    },
    /// Name a delegate (a parent, a guardian) who may manage your consent.
    Delegate {
        #[command(flatten)]
        wallet: WalletArgs,
        /// The delegate's account id.
        delegate: AccountId,
        /// Remove the delegate instead.
        #[arg(long)]
        remove: bool,
        /// What the delegate may do: a comma-separated list of `consent` (grant, revoke, deny,
        /// answer requests), `records` (share, transfer, erase records; share case keys),
        /// `emergency` (the emergency profile), or `all`. Without it: every power. Given for a
        /// delegate already named, it changes their powers.
        #[arg(long, value_parser = parse_powers, conflicts_with = "remove")]
        powers: Option<DelegatePowers>,
    },
}

fn parse_powers(s: &str) -> Result<DelegatePowers, String> {
    DelegatePowers::parse(s).ok_or_else(|| {
        format!("{s:?} is not a list of powers: consent, records, emergency (or all)")
    })
}

/// Purposes, for the command line.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum PurposeArg {
    Treatment,
    Research,
    Insurance,
    Emergency,
    Other,
}

impl From<PurposeArg> for Purpose {
    fn from(p: PurposeArg) -> Self {
        match p {
            PurposeArg::Treatment => Purpose::Treatment,
            PurposeArg::Research => Purpose::Research,
            PurposeArg::Insurance => Purpose::Insurance,
            PurposeArg::Emergency => Purpose::Emergency,
            PurposeArg::Other => Purpose::Other,
        }
    }
}

/// Kinds of grantee, for deny rules.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum RoleArg {
    Hospital,
    Doctor,
    Researcher,
    Insurer,
}

impl From<RoleArg> for Role {
    fn from(r: RoleArg) -> Self {
        use medledger_core::tx::OrganisationKind;
        match r {
            RoleArg::Hospital => Role::Hospital,
            RoleArg::Doctor => Role::Doctor,
            RoleArg::Researcher => Role::Organisation(OrganisationKind::Researcher),
            RoleArg::Insurer => Role::Organisation(OrganisationKind::Insurer),
        }
    }
}

pub(crate) fn parse_scope(s: &str) -> Result<Scope, String> {
    fn list(rest: &str) -> impl Iterator<Item = String> + '_ {
        rest.split(',').map(str::trim).filter(|x| !x.is_empty()).map(str::to_owned)
    }
    match s.split_once(':') {
        None if s == "all" => Ok(Scope::All),
        Some(("categories", rest)) => list(rest)
            .map(|c| c.parse().map_err(|e: UnknownCategory| e.to_string()))
            .collect::<Result<_, _>>()
            .map(Scope::Categories),
        Some(("records", rest)) => Ok(Scope::Records(list(rest).collect())),
        Some(("case", rest)) if !rest.is_empty() => Ok(Scope::Case(rest.to_owned())),
        _ => Err(format!(
            "{s:?} is not a scope: use all, categories:lab_report,imaging, records:ID,ID or case:ID"
        )),
    }
}

/// The longest a grant may be given for, in days (ten years).
pub(crate) const MAX_DAYS: u64 = 3650;

pub(crate) fn validity(days: u64) -> Result<Validity> {
    if !(1..=MAX_DAYS).contains(&days) {
        bail!("a grant lasts from 1 to {MAX_DAYS} days, not {days}");
    }
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis() as u64;
    Ok(Validity { not_before_ms: now, expires_at_ms: now + days * 24 * 3_600_000 })
}

fn report(what: &str, receipt: &Receipt) {
    println!(
        "{what}: committed in block {} (tx {}, log index {})",
        receipt.height, receipt.tx_hash, receipt.log_index
    );
    if let Outcome::Applied { created: Some(Created::Consent { id }) } = &receipt.outcome {
        println!("id {id}");
    }
}

fn describe(g: &medledger_api::GrantView, names: &Names) -> String {
    format!(
        "{}  grantee {}  scope {}  purpose {}  until {}{}",
        g.id,
        names.of(&g.grantee),
        serde_json::to_string(&g.scope).unwrap_or_default(),
        words(&g.purpose),
        local_time(g.validity.expires_at_ms),
        if g.granted_by == g.patient {
            String::new()
        } else {
            format!("  (by delegate {})", names.of(&g.granted_by))
        }
    )
}

/// The read commands: signed requests, no transaction.
async fn read(command: ConsentCommand) -> Result<Option<ConsentCommand>> {
    match command {
        ConsentCommand::WhoCanSee { wallet, patient, json } => {
            let s = Session::open(&wallet).await?;
            let me = s.wallet.account();
            let view = s.client.who_can_see(&patient.unwrap_or(me)).await?;
            if json {
                return crate::common::print_json(&view).map(|()| None);
            }
            let names = Names::load(&s).await;
            println!(
                "who can see the records of {} (block {}):",
                names.of(&view.patient),
                view.height
            );
            for (i, d) in view.delegates.iter().enumerate() {
                let powers = view.delegate_powers.get(i).map_or_else(
                    || "powers not reported".to_owned(),
                    |p| format!("may: {}", p.join(", ")),
                );
                println!("  delegate {} ({powers})", names.of(d));
            }
            // Where each grant stands by the node's clock, as its next block will judge it.
            for g in view.grants.iter().chain(&view.upcoming) {
                match g.state_at(view.time_ms) {
                    GrantState::Active => println!("  grant {}", describe(g, &names)),
                    state => println!("  grant {}  ({})", describe(g, &names), state.word()),
                }
            }
            for r in &view.deny_rules {
                println!("  deny rule {}  {}", r.id, serde_json::to_string(&r.rule)?);
            }
            for h in &view.case_key_holders {
                println!("  holds the key of case {}: {}", h.case, names.of(&h.holder));
            }
            if view.delegates.is_empty() && view.grants.is_empty() && view.upcoming.is_empty() {
                println!("  nobody but you");
            }
            if !view.past.is_empty() {
                println!("no longer in force:");
            }
            for g in &view.past {
                println!("  grant {}  ({})", describe(g, &names), g.state_at(view.time_ms).word());
            }
            Ok(None)
        }
        ConsentCommand::Grants { wallet, patient, json } => {
            let s = Session::open(&wallet).await?;
            let list = s.client.grants_from(&patient).await?;
            if json {
                return crate::common::print_json(&list).map(|()| None);
            }
            if list.is_empty() {
                println!("no grant from {patient} is in force for you");
            }
            let names = Names::load(&s).await;
            for g in &list {
                println!("grant {}", describe(g, &names));
            }
            Ok(None)
        }
        ConsentCommand::ShowRequest { wallet, request } => {
            let s = Session::open(&wallet).await?;
            let mut r = s.client.access_request(&request).await?;
            // Who asked for what, as the request's own transaction says (proven); the node's
            // word only for where it stands.
            let proven = proven_request(&s, &request).await?;
            (r.patient, r.requester, r.scope, r.purpose) =
                (proven.patient, proven.requester, proven.scope, proven.purpose);
            let mut shown = serde_json::to_value(&r)?;
            shown["requester_name"] = serde_json::json!(proven.requester_name);
            crate::common::print_json(&shown).map(|()| None)
        }
        other => Ok(Some(other)),
    }
}

pub async fn run(command: ConsentCommand) -> Result<()> {
    let Some(command) = read(command).await? else { return Ok(()) };
    let json = matches!(
        command,
        ConsentCommand::Grant { json: true, .. } | ConsentCommand::Request { json: true, .. }
    );
    let (wallet, body, what) = match command {
        ConsentCommand::Grant { wallet, grantee, patient, scope, purpose, days, .. } => {
            let me = crate::common::load_wallet(&wallet.wallet)?.account();
            let body = ConsentTx::Grant {
                patient: patient.unwrap_or(me),
                grantee,
                scope,
                purpose: purpose.into(),
                validity: validity(days)?,
            };
            (wallet, body, "access granted")
        }
        ConsentCommand::Revoke { wallet, grant } => {
            (wallet, ConsentTx::Revoke { grant }, "grant revoked")
        }
        ConsentCommand::Request { wallet, patient, scope, purpose, .. } => (
            wallet,
            ConsentTx::Request { patient, scope, purpose: purpose.into() },
            "access requested",
        ),
        ConsentCommand::Approve { wallet, request, scope, days } => (
            wallet,
            ConsentTx::Approve { request, scope, validity: validity(days)? },
            "request approved",
        ),
        ConsentCommand::Decline { wallet, request } => {
            (wallet, ConsentTx::Decline { request }, "request declined")
        }
        ConsentCommand::Deny { wallet, patient, grantee, role, category, purpose } => {
            if grantee.is_none() && role.is_none() && category.is_none() && purpose.is_none() {
                bail!("a deny rule needs --grantee, --role, --category or --purpose");
            }
            let me = crate::common::load_wallet(&wallet.wallet)?.account();
            let rule = DenyRule {
                grantee,
                grantee_role: role.map(Into::into),
                category,
                purpose: purpose.map(Into::into),
            };
            (wallet, ConsentTx::Deny { patient: patient.unwrap_or(me), rule }, "deny rule added")
        }
        ConsentCommand::Undeny { wallet, rule } => {
            (wallet, ConsentTx::RemoveDeny { rule }, "deny rule removed")
        }
        ConsentCommand::Delegate { wallet, delegate, remove, powers } => match (remove, powers) {
            (true, _) => (wallet, ConsentTx::RemoveDelegate { delegate }, "delegate removed"),
            (false, None) => (wallet, ConsentTx::NameDelegate { delegate }, "delegate named"),
            (false, Some(powers)) => {
                (wallet, ConsentTx::ScopeDelegate { delegate, powers }, "delegate powers set")
            }
        },
        ConsentCommand::WhoCanSee { .. }
        | ConsentCommand::Grants { .. }
        | ConsentCommand::ShowRequest { .. } => unreachable!("handled by read()"),
    };
    let session = Session::open(&wallet).await?;
    // Whom an approval grants, from the request's own transaction (proven), before signing.
    let approved = match &body {
        ConsentTx::Approve { request, .. } => {
            let r = proven_request(&session, request).await?;
            if !json {
                println!(
                    "request {request}: from {}, for {}, asking {}",
                    r.requester_words(),
                    words(&r.purpose),
                    serde_json::to_string(&r.scope)?
                );
            }
            Some(r)
        }
        _ => None,
    };
    let receipt = session.submit(TxBody::Consent(body.clone())).await.context("consent")?;
    if !json {
        report(what, &receipt);
    }
    // Granting access to records re-wraps their keys to the grantee, here in the wallet.
    let unwrapped = || {
        format!(
            "the consent is on the ledger (block {}), but wrapping its record keys failed",
            receipt.height
        )
    };
    let mut wrapped = 0;
    if let ConsentTx::Grant { patient, grantee, scope, .. } = &body {
        wrapped = share_for_grant(&session, *patient, *grantee, scope, json)
            .await
            .with_context(unwrapped)?;
    }
    // An approval is a grant to the requester: their keys too.
    if let (ConsentTx::Approve { scope, .. }, Some(r)) = (&body, &approved) {
        wrapped = share_for_grant(&session, r.patient, r.requester, scope, json)
            .await
            .with_context(unwrapped)?;
    }
    if json {
        let id = match &receipt.outcome {
            Outcome::Applied { created: Some(Created::Consent { id }) } => Some(*id),
            _ => None,
        };
        return crate::common::print_json(&serde_json::json!({
            "id": id,
            "tx_hash": receipt.tx_hash,
            "height": receipt.height,
            "keys_wrapped": wrapped,
        }));
    }
    Ok(())
}

/// An access request as its own transaction says it, proven under a checkpoint of an admitted
/// node ([`Session::proven_transaction`]), not as a node lists it: a node that named another
/// requester would otherwise have the patient wrap record keys to it, and one that widened
/// the scope would have the portal approve more than was asked.
#[derive(Debug)]
pub(crate) struct ProvenRequest {
    pub(crate) patient: AccountId,
    /// The signer, or for a member the organisation the ledger proves it a member of (the
    /// ledger makes the organisation the requester).
    pub(crate) requester: AccountId,
    pub(crate) scope: Scope,
    pub(crate) purpose: Purpose,
    /// The name the requester's registration on the ledger gives it (for a member, its
    /// organisation's), proven with it: never a name from the node's directory, which could
    /// show a stranger under the patient's own doctor's name.
    pub(crate) requester_name: Option<String>,
}

impl ProvenRequest {
    /// The requester as an approval shows it: its account id and its registered name.
    pub(crate) fn requester_words(&self) -> String {
        match &self.requester_name {
            // A registered name is someone's free text: no control character of it reaches
            // the terminal (a newline or an escape could forge the line around it).
            Some(name) => {
                let name: String = name.chars().filter(|c| !c.is_control()).collect();
                format!("{} ({name})", self.requester)
            }
            None => self.requester.to_string(),
        }
    }
}

/// Access request `id`, proven ([`ProvenRequest`]).
pub(crate) async fn proven_request(session: &Session, id: &Hash) -> Result<ProvenRequest> {
    use medledger_client::proof::Registered;
    let (tx, _) =
        session.proven_transaction(id).await.with_context(|| format!("access request {id}"))?;
    let signer = tx.tx.signer;
    let TxBody::Consent(ConsentTx::Request { patient, scope, purpose }) = tx.tx.body else {
        bail!("transaction {id} is no access request");
    };
    let client = &session.client;
    let (requester, requester_name) =
        match client.proven_registrant(&signer, &session.anchor).await? {
            Some((Registered::MemberOf(organisation), _)) => {
                let registrant = client.proven_registrant(&organisation, &session.anchor).await?;
                (organisation, registrant.and_then(|(_, name)| name))
            }
            Some((_, name)) => (signer, name),
            None => bail!("the node proves no registration of {signer}, who signed request {id}"),
        };
    Ok(ProvenRequest { patient, requester, scope, purpose, requester_name })
}

/// What wrapping a grant's record keys did.
pub(crate) struct Wrapped {
    /// Records whose key was wrapped to the grantee.
    pub grantee: usize,
    /// For an organisation: each current member proven by the ledger, and the records whose
    /// key was wrapped to it.
    pub members: Vec<(AccountId, usize)>,
    /// Accounts the node lists as members that the ledger does not prove (no key wrapped).
    pub unproven: Vec<AccountId>,
    /// A grant to a researcher organisation (or a member of one): nothing wrapped now; the
    /// keys of what each research export names are released after it (`medledger research
    /// release`).
    pub per_export: bool,
}

/// What a grant's holder is told when its research grant wrapped nothing.
pub(crate) const PER_EXPORT_NOTE: &str = "no record key wrapped: a researcher's member gets the \
     keys of the records a research export of its own names, after the export, when you run \
     `medledger research release`";

/// Wraps the keys of the records `scope` covers to `grantee` and, when the grantee is an
/// organisation, to each of its current members, who read under its grants (SECURITY.md,
/// "Organisations"). A member added later gets them when the patient shares again
/// (`medledger record share`). A grant to a researcher organisation (as the regulator
/// admitted it, proven) or to a member of one wraps nothing: its members read as they are
/// only the records a research export of their own names, and get those keys only then
/// (`medledger research release`; the ledger refuses a researcher any key outside that), so
/// that no key reaches a researcher for a record no export named (SECURITY.md, "The research
/// export"). The CLI's grant and approval and the portal's forms all wrap through here.
pub(crate) async fn wrap_for_grant(
    session: &Session,
    patient: AccountId,
    grantee: AccountId,
    scope: &Scope,
) -> Result<Wrapped> {
    // Who is an organisation or a member comes from the ledger, proven: the node's listing
    // only says whom to ask about (a node that added its own operator's account to it would
    // otherwise receive the keys).
    use medledger_client::proof::Registered;
    use medledger_core::tx::OrganisationKind::Researcher;
    let client = &session.client;
    let registered = client.proven_registration(&grantee, &session.anchor).await?;
    // A researcher, by the kind the regulator admitted it as (proven), not by the purpose a
    // node reports for a request; the ledger refuses such keys outside an export anyway.
    let researcher = match registered {
        Some(Registered::Organisation(kind)) => kind == Researcher,
        Some(Registered::MemberOf(organisation)) => {
            client.proven_registration(&organisation, &session.anchor).await?
                == Some(Registered::Organisation(Researcher))
        }
        _ => false,
    };
    let mut wrapped =
        Wrapped { grantee: 0, members: Vec::new(), unproven: Vec::new(), per_export: researcher };
    if wrapped.per_export {
        return Ok(wrapped);
    }
    wrapped.grantee = crate::record::share_for_grant(session, patient, grantee, scope).await?;
    if !matches!(registered, Some(Registered::Organisation(_))) {
        return Ok(wrapped);
    }
    let listed: Vec<AccountId> = client
        .organisations()
        .await?
        .into_iter()
        .filter(|o| o.account == grantee)
        .flat_map(|o| o.members.into_iter().filter(|m| m.active()).map(|m| m.account))
        .collect();
    for member in listed {
        let proven = client.proven_registration(&member, &session.anchor).await?;
        if proven != Some(Registered::MemberOf(grantee)) {
            wrapped.unproven.push(member);
            continue;
        }
        let n = crate::record::share_for_grant(session, patient, member, scope).await?;
        wrapped.members.push((member, n));
    }
    Ok(wrapped)
}

/// [`wrap_for_grant`], told on the terminal; how many records were wrapped to the grantee.
async fn share_for_grant(
    session: &Session,
    patient: AccountId,
    grantee: AccountId,
    scope: &Scope,
    json: bool,
) -> Result<usize> {
    let wrapped = wrap_for_grant(session, patient, grantee, scope).await?;
    if wrapped.per_export && !json {
        println!("{PER_EXPORT_NOTE}");
    }
    if wrapped.grantee > 0 && !json {
        println!("data keys of {} record(s) wrapped to {grantee}", wrapped.grantee);
    }
    for member in &wrapped.unproven {
        eprintln!(
            "warning: the node lists {member} as a member of {grantee}, but the ledger does \
             not prove it (no key wrapped to it)"
        );
    }
    for (member, n) in &wrapped.members {
        if *n > 0 && !json {
            println!("data keys of {n} record(s) wrapped to member {member}");
        }
    }
    Ok(wrapped.grantee)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A registered name reaches the approval line without its control characters: a name
    /// with a newline and an escape cannot forge the line around it.
    #[test]
    fn a_requesters_name_is_shown_without_control_characters() {
        let r = ProvenRequest {
            patient: AccountId([1; 20]),
            requester: AccountId([2; 20]),
            scope: Scope::All,
            purpose: Purpose::Treatment,
            requester_name: Some("Dr. A\n\u{1b}[2Jrequest approved\r".into()),
        };
        let shown = r.requester_words();
        assert!(!shown.chars().any(char::is_control), "{shown:?}");
        assert!(shown.ends_with("(Dr. A[2Jrequest approved)"), "{shown:?}");
        let bare = ProvenRequest { requester_name: None, ..r };
        assert_eq!(bare.requester_words(), AccountId([2; 20]).to_string());
    }

    #[test]
    fn scopes_parse_and_bad_ones_are_explained() {
        assert_eq!(parse_scope("all").unwrap(), Scope::All);
        assert_eq!(
            parse_scope("categories:lab_report, imaging").unwrap(),
            Scope::Categories(vec![RecordCategory::LabReport, RecordCategory::Imaging])
        );
        assert_eq!(
            parse_scope("records:8543726012021").unwrap(),
            Scope::Records(vec!["8543726012021".into()])
        );
        assert_eq!(parse_scope("case:c1").unwrap(), Scope::Case("c1".into()));
        assert!(parse_scope("categories:xray").unwrap_err().contains("unknown category"));
        // The spelling `record add --category` takes works in a scope too.
        assert_eq!(
            parse_scope("categories:lab-report,device-data,lab_report").unwrap(),
            Scope::Categories(vec![
                RecordCategory::LabReport,
                RecordCategory::DeviceData,
                RecordCategory::LabReport
            ])
        );
        assert!(parse_scope("everything").unwrap_err().contains("not a scope"));
        assert!(parse_scope("case:").is_err());
    }
}
