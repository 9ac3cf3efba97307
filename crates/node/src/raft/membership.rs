//! Raft membership follows the ledger's node table, and nothing else.
//!
//! The driver ([`run`]) runs on every node and acts only while the node leads: after each
//! applied block (and every second) it compares the ledger's active nodes with Raft's
//! membership, one change at a time. A node the ledger has suspended or removed leaves the
//! membership (voters and learners); a newly admitted node is added as a learner at the address
//! the ledger holds for it, and once its log has caught up with the leader's it is promoted to
//! voter. The genesis node (id 1) is a member from the start.
//!
//! Every node checks each membership entry it applies ([`check_admitted`]): a node the entry
//! adds must be active on the ledger at that point of the log (the admission is always applied
//! before the membership entry it causes). An entry that adds any other node stops the node
//! with a clear error rather than let it follow a membership no committed transaction asked
//! for.

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::Arc,
    time::Duration,
};

use medledger_ledger::Ledger;
use openraft::{BasicNode, ChangeMembers, Membership};

use super::{Raft, transport};

/// How long the driver waits for a new learner to catch up before trying again later.
pub const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(60);

/// A node as the ledger's node table has it, for membership.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerNode {
    /// Its Raft id.
    pub id: u64,
    /// Its base URL ("" for the genesis node: Raft's membership holds where it listens).
    pub address: String,
    /// Whether it is active (neither suspended nor removed).
    pub active: bool,
}

/// The ledger's nodes, by id (contract: `Ledger::node_members`).
pub fn ledger_nodes(ledger: &Ledger) -> Result<Vec<LedgerNode>, String> {
    let nodes = ledger.node_members().map_err(|e| format!("reading the ledger's nodes: {e}"))?;
    Ok(nodes
        .into_iter()
        .map(|n| LedgerNode {
            id: n.id,
            address: n.address,
            active: n.status == medledger_ledger::NodeStatus::Active,
        })
        .collect())
}

/// Refuses a membership entry that adds (as voter or learner) a node the ledger has not
/// admitted or that is not active: `previous` is the membership before the entry, `next` the
/// entry's.
pub fn check_admitted(
    ledger: &Ledger,
    previous: &Membership<u64, BasicNode>,
    next: &Membership<u64, BasicNode>,
) -> Result<(), String> {
    voters_are_nodes(next)?;
    for (id, _) in next.nodes() {
        if previous.get_node(id).is_some() {
            continue;
        }
        let active = transport::active_node_key(ledger, *id).map_err(|e| e.to_string())?;
        if active.is_none() {
            return Err(format!(
                "a Raft membership entry adds node {id}, which the ledger has not admitted (or \
                 which is suspended or removed): no committed transaction asked for this \
                 membership; this node stops rather than follow it"
            ));
        }
    }
    Ok(())
}

/// Refuses a membership with a voter that is not among its nodes (a decoded membership is not
/// validated: a voter listed only in its configurations would escape the checks of its
/// nodes).
fn voters_are_nodes(m: &Membership<u64, BasicNode>) -> Result<(), String> {
    match m.voter_ids().find(|id| m.get_node(id).is_none()) {
        Some(id) => Err(format!(
            "it names node {id} as a voter but not as a node; this node stops rather than follow it"
        )),
        None => Ok(()),
    }
}

/// Refuses the membership a snapshot carries if it names a node its own ledger (`known`: the
/// nodes of the ledger it holds) never admitted, beyond those in `previous` (this node's membership before the install). A node
/// admitted and since suspended or removed may still be a member at the snapshot's point
/// (the leader's driver removes it after the ledger does), so any status passes here.
pub fn check_snapshot_members(
    known: &[medledger_ledger::NodeEntry],
    previous: &Membership<u64, BasicNode>,
    next: &Membership<u64, BasicNode>,
) -> Result<(), String> {
    voters_are_nodes(next)?;
    for (id, _) in next.nodes() {
        if previous.get_node(id).is_none() && !known.iter().any(|n| n.id == *id) {
            return Err(format!(
                "it names node {id} as a member, which its own ledger never admitted; this node \
                 stops rather than follow it"
            ));
        }
    }
    Ok(())
}

/// Runs the membership driver of node `me` until Raft shuts down.
pub async fn run(
    raft: Raft,
    ledger: Arc<Ledger>,
    me: u64,
    mut applied: tokio::sync::watch::Receiver<u64>,
) {
    loop {
        let _ = tokio::time::timeout(Duration::from_secs(1), applied.changed()).await;
        let (leading, running) = {
            let m = raft.metrics();
            let m = m.borrow();
            (m.current_leader == Some(me), m.running_state.is_ok())
        };
        if !running {
            return;
        }
        if !leading {
            continue;
        }
        if let Err(e) = reconcile(&raft, &ledger).await {
            tracing::warn!(error = %e, "membership: could not follow the ledger's node table yet");
        }
    }
}

/// One step towards the membership the ledger asks for: a departure, else one arrival.
async fn reconcile(raft: &Raft, ledger: &Ledger) -> Result<(), String> {
    let nodes = tokio::task::block_in_place(|| ledger_nodes(ledger))?;
    let wanted: BTreeMap<u64, &LedgerNode> =
        nodes.iter().filter(|n| n.active).map(|n| (n.id, n)).collect();
    let (voters, learners) = {
        let m = raft.metrics();
        let m = m.borrow();
        let membership = m.membership_config.membership();
        let voters: BTreeSet<u64> = membership.voter_ids().collect();
        let learners: BTreeSet<u64> = membership.learner_ids().collect();
        (voters, learners)
    };
    let leaving_voters: BTreeSet<u64> =
        voters.iter().filter(|id| !wanted.contains_key(id)).copied().collect();
    if !leaving_voters.is_empty() {
        if leaving_voters.len() == voters.len() {
            return Err("the ledger leaves no active voter; membership is kept".into());
        }
        tracing::info!(nodes = ?leaving_voters, "membership: removing suspended or removed voters");
        raft.change_membership(ChangeMembers::RemoveVoters(leaving_voters), false)
            .await
            .map_err(|e| e.to_string())?;
        return Ok(());
    }
    let leaving_learners: BTreeSet<u64> =
        learners.iter().filter(|id| !wanted.contains_key(id)).copied().collect();
    if !leaving_learners.is_empty() {
        tracing::info!(nodes = ?leaving_learners, "membership: removing suspended or removed learners");
        raft.change_membership(ChangeMembers::RemoveNodes(leaving_learners), false)
            .await
            .map_err(|e| e.to_string())?;
        return Ok(());
    }
    let Some(arrival) = wanted.values().find(|n| !voters.contains(&n.id) && !n.address.is_empty())
    else {
        return Ok(());
    };
    let id = arrival.id;
    if !learners.contains(&id) {
        tracing::info!(node = id, address = %arrival.address, "membership: adding an admitted node as a learner");
        raft.add_learner(id, BasicNode { addr: arrival.address.clone() }, false)
            .await
            .map_err(|e| e.to_string())?;
    }
    let target = raft.metrics().borrow().last_log_index.unwrap_or(0);
    raft.wait(Some(CATCH_UP_TIMEOUT))
        .metrics(
            |m| {
                m.replication
                    .as_ref()
                    .and_then(|r| r.get(&id).cloned().flatten())
                    .is_some_and(|matched| matched.index >= target)
            },
            "the learner caught up",
        )
        .await
        .map_err(|e| format!("node {id} has not caught up yet: {e}"))?;
    tracing::info!(node = id, "membership: promoting a caught-up learner to voter");
    raft.change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([id])), false)
        .await
        .map_err(|e| e.to_string())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use medledger_core::keys::{DecryptionKey, SigningKey};

    use super::*;

    fn membership(voters: &[u64], learners: &[u64]) -> Membership<u64, BasicNode> {
        let nodes: BTreeMap<u64, BasicNode> = voters
            .iter()
            .chain(learners)
            .map(|id| (*id, BasicNode { addr: format!("http://127.0.0.1:{}", 7300 + id) }))
            .collect();
        Membership::new(vec![voters.iter().copied().collect()], nodes)
    }

    /// A membership entry adding a node the ledger never admitted (as voter or learner) is
    /// refused on every node; one adding nothing new, or the genesis node, is followed.
    #[test]
    fn a_membership_entry_adding_a_node_the_ledger_has_not_admitted_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let genesis = medledger_core::block::Genesis {
            chain_id: "c".into(),
            time_ms: 1,
            regulator_key: SigningKey::generate().public_key(),
            regulator_encryption_key: DecryptionKey::generate().public_key(),
            node_key: SigningKey::generate().public_key(),
        };
        let ledger = Ledger::create(&dir.path().join("ledger.redb"), genesis).unwrap();
        let founding = membership(&[1], &[]);
        assert_eq!(check_admitted(&ledger, &Membership::default(), &founding), Ok(()));
        assert_eq!(check_admitted(&ledger, &founding, &founding), Ok(()));
        for next in [membership(&[1], &[2]), membership(&[1, 2], &[]), membership(&[1], &[9])] {
            let refused = check_admitted(&ledger, &founding, &next).unwrap_err();
            assert!(refused.contains("has not admitted"), "{refused}");
        }
        // Removing a node needs no admission.
        assert_eq!(check_admitted(&ledger, &membership(&[1], &[2]), &founding), Ok(()));
    }
}
