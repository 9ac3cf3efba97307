//! `medledger organisation`: the regulator admits, suspends and reinstates researcher and
//! insurer organisations (contact details sealed off-ledger, as for hospitals); an organisation
//! adds and removes its members; anyone registered lists the directory.
//!
//! A member's key accepts the membership first (`member accept`, in the member's wallet): it
//! prints a member card (`mlmember1:` and the hex of the signed acceptance) that the
//! organisation passes to `member add --identity`. An organisation cannot enrol a key whose
//! holder did not accept.

use anyhow::{Context, Result, bail};
use clap::{Subcommand, ValueEnum};
use medledger_core::{
    block::Receipt,
    encoding,
    ids::AccountId,
    tx::{AddMember, AdmitOrganisation, OrganisationKind, RegistryTx, TxBody},
};

use crate::common::{Session, WalletArgs, print_created, print_json, unlock_wallet};
use crate::registry::{created_account, print_receipt, seal_details};

/// The prefix of a member card (a signed acceptance of membership).
const MEMBER_CARD_PREFIX: &str = "mlmember1:";

#[derive(Debug, Subcommand)]
pub enum OrganisationCommand {
    /// Admit a researcher or insurer organisation (regulator).
    Admit {
        #[command(flatten)]
        wallet: WalletArgs,
        /// The organisation's identity card (`medledger wallet show --identity-only`).
        #[arg(long)]
        identity: String,
        /// Researcher (granted research) or insurer (granted insurance).
        #[arg(long, value_enum)]
        kind: KindArg,
        /// Name, for the public directory.
        #[arg(long)]
        name: String,
        /// Contact details (kept off the ledger, sealed to the organisation and the regulator).
        #[arg(long, default_value = "")]
        contact: String,
        /// Print JSON: `account` (the organisation's), `tx_hash`, `height`, `log_index`.
        #[arg(long)]
        json: bool,
    },
    /// Suspend an organisation (regulator): it and its members act no more.
    Suspend {
        #[command(flatten)]
        wallet: WalletArgs,
        /// The organisation's account id.
        organisation: AccountId,
        /// Why, for the public record.
        #[arg(long)]
        reason: String,
    },
    /// Lift an organisation's suspension (regulator).
    Reinstate {
        #[command(flatten)]
        wallet: WalletArgs,
        /// The organisation's account id.
        organisation: AccountId,
    },
    /// Members: accept (the member's wallet), add and remove (the organisation).
    #[command(subcommand)]
    Member(MemberCommand),
    /// List the organisation directory with each organisation's members (the request is
    /// signed).
    List {
        #[command(flatten)]
        wallet: WalletArgs,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum MemberCommand {
    /// Accept membership of an organisation with this wallet's keys: prints the member card
    /// the organisation adds you with. Nothing is sent.
    Accept {
        /// The future member's wallet.
        #[arg(long, env = "MEDLEDGER_WALLET")]
        wallet: std::path::PathBuf,
        /// The organisation's account id.
        #[arg(long)]
        organisation: AccountId,
        /// Your name in the directory (default: the wallet's identity name).
        #[arg(long)]
        name: Option<String>,
    },
    /// Add a member (organisation), from the card `member accept` printed in its wallet.
    Add {
        #[command(flatten)]
        wallet: WalletArgs,
        /// The member card (`mlmember1:...`).
        #[arg(long)]
        identity: String,
        /// Print JSON: `account` (the member's), `tx_hash`, `height`, `log_index`.
        #[arg(long)]
        json: bool,
    },
    /// Remove a member (organisation): its key is revoked for good.
    Remove {
        #[command(flatten)]
        wallet: WalletArgs,
        /// The member's account id.
        member: AccountId,
    },
}

/// Kinds of organisation.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum KindArg {
    Researcher,
    Insurer,
}

impl From<KindArg> for OrganisationKind {
    fn from(k: KindArg) -> Self {
        match k {
            KindArg::Researcher => OrganisationKind::Researcher,
            KindArg::Insurer => OrganisationKind::Insurer,
        }
    }
}

pub(crate) fn kind_word(kind: OrganisationKind) -> &'static str {
    match kind {
        OrganisationKind::Researcher => "researcher",
        OrganisationKind::Insurer => "insurer",
    }
}

/// The member card of a signed acceptance.
pub(crate) fn member_card(add: &AddMember) -> String {
    format!("{MEMBER_CARD_PREFIX}{}", hex::encode(encoding::encode(add)))
}

/// Reads a member card; a plain identity card is refused with how to make a member card.
pub(crate) fn parse_member_card(card: &str) -> Result<AddMember> {
    let card = card.trim();
    let Some(hex_part) = card.strip_prefix(MEMBER_CARD_PREFIX) else {
        bail!(
            "a member is added from its member card (`{MEMBER_CARD_PREFIX}...`), which the member prints with `medledger organisation member accept --wallet MEMBER --organisation ORG_ACCOUNT`: an identity card alone does not show that the key's holder accepted"
        );
    };
    let bytes = hex::decode(hex_part).context("the member card is not hex after its prefix")?;
    encoding::decode("member card", &bytes, 1024).context("the member card is malformed")
}

/// Admits a researcher or insurer organisation (the regulator) from the identity card of its
/// wallet, its contact details sealed to it and the regulator. The receipt and its account.
pub(crate) async fn admit_organisation(
    s: &Session,
    identity: &str,
    kind: OrganisationKind,
    name: &str,
    contact: &str,
) -> Result<(Receipt, AccountId)> {
    let (key, encryption_key) = medledger_client::keystore::parse_public_identity(identity)?;
    let contact = seal_details(
        &s.client,
        serde_json::json!({ "contact": contact }),
        &[encryption_key, s.wallet.encryption_key()],
    )
    .await?;
    let body = TxBody::Registry(RegistryTx::AdmitOrganisation(AdmitOrganisation {
        key,
        encryption_key,
        kind,
        name: name.to_owned(),
        contact,
    }));
    let receipt = s.submit(body).await?;
    let account = created_account(&receipt, "organisation")?;
    Ok((receipt, account))
}

pub async fn run(command: OrganisationCommand) -> Result<()> {
    match command {
        OrganisationCommand::Admit { wallet, identity, kind, name, contact, json } => {
            let s = Session::open(&wallet).await?;
            let (receipt, account) =
                admit_organisation(&s, &identity, kind.into(), &name, &contact).await?;
            if json {
                return print_created(&receipt, serde_json::json!({ "account": account }));
            }
            print_receipt("organisation admitted", &receipt);
            println!("{name}: account {account}");
            Ok(())
        }
        OrganisationCommand::Suspend { wallet, organisation, reason } => {
            let s = Session::open(&wallet).await?;
            let body = RegistryTx::SuspendOrganisation { organisation, reason };
            print_receipt("organisation suspended", &s.submit(TxBody::Registry(body)).await?);
            Ok(())
        }
        OrganisationCommand::Reinstate { wallet, organisation } => {
            let s = Session::open(&wallet).await?;
            let body = RegistryTx::ReinstateOrganisation { organisation };
            print_receipt("organisation reinstated", &s.submit(TxBody::Registry(body)).await?);
            Ok(())
        }
        OrganisationCommand::Member(MemberCommand::Accept { wallet, organisation, name }) => {
            let (_, identity) = unlock_wallet(&wallet)?;
            let name = name.unwrap_or_else(|| identity.name.clone());
            let add = AddMember::accept(
                &identity.signing,
                &organisation,
                identity.decryption.public_key(),
                &name,
            );
            println!("{}", member_card(&add));
            Ok(())
        }
        OrganisationCommand::Member(MemberCommand::Add { wallet, identity, json }) => {
            let add = parse_member_card(&identity)?;
            let s = Session::open(&wallet).await?;
            let name = add.name.clone();
            let receipt = s.submit(TxBody::Registry(RegistryTx::AddMember(add))).await?;
            let account = created_account(&receipt, "member")?;
            if json {
                return print_created(&receipt, serde_json::json!({ "account": account }));
            }
            print_receipt("member added", &receipt);
            println!("{name}: account {account}");
            Ok(())
        }
        OrganisationCommand::Member(MemberCommand::Remove { wallet, member }) => {
            let s = Session::open(&wallet).await?;
            let body = RegistryTx::RemoveMember { member };
            print_receipt("member removed", &s.submit(TxBody::Registry(body)).await?);
            Ok(())
        }
        OrganisationCommand::List { wallet, json } => {
            let list = Session::open(&wallet).await?.client.organisations().await?;
            if json {
                return print_json(&list);
            }
            println!("{:<40}  {:<28}  {:<10}  STATUS", "ACCOUNT", "NAME", "KIND");
            for o in list {
                let status = match (o.suspended, o.key_active) {
                    (_, false) => "revoked",
                    (true, true) => "suspended",
                    (false, true) => "active",
                };
                println!("{:<40}  {:<28}  {:<10}  {status}", o.account, o.name, kind_word(o.kind));
                for m in &o.members {
                    let state = match m.removed_at {
                        Some(at) => format!("removed at block {at}"),
                        None => "member".to_owned(),
                    };
                    println!("  {:<38}  {:<28}  {state}", m.account, m.name);
                }
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use medledger_core::keys::{DecryptionKey, SigningKey};

    #[test]
    fn a_member_card_round_trips_and_an_identity_card_is_refused_with_the_way_to_accept() {
        let key = SigningKey::generate();
        let org = AccountId::from_initial_key(&SigningKey::generate().public_key());
        let add = AddMember::accept(&key, &org, DecryptionKey::generate().public_key(), "Ann");
        let card = member_card(&add);
        assert_eq!(parse_member_card(&card).unwrap(), add);
        let plain = format!("mlid1:{}:{}", "00".repeat(32), "00".repeat(32));
        let err = parse_member_card(&plain).unwrap_err().to_string();
        assert!(err.contains("member accept"), "{err}");
        assert!(parse_member_card("mlmember1:zz").is_err());
        assert!(parse_member_card("mlmember1:00").is_err());
    }
}
