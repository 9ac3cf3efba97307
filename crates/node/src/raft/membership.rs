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
//! before the membership entry it causes), at the address the ledger admitted it at, and no
//! member may move to another address. An entry that breaks this stops the node with a clear
//! error rather than let it follow a membership no committed transaction asked for (or send
//! Raft traffic where none was admitted).

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
/// admitted or that is not active, that adds an admitted node at another address than the
/// ledger holds for it, or that moves a member to another address (no transaction changes a
/// node's address): `previous` is the membership before the entry, `next` the entry's.
pub fn check_admitted(
    ledger: &Ledger,
    previous: &Membership<u64, BasicNode>,
    next: &Membership<u64, BasicNode>,
) -> Result<(), String> {
    check_arrivals(previous, next, |id| {
        let active = transport::active_node_key(ledger, id).map_err(|e| e.to_string())?;
        if active.is_none() {
            return Err(format!(
                "a Raft membership entry adds node {id}, which the ledger has not admitted (or \
                 which is suspended or removed): no committed transaction asked for this \
                 membership; this node stops rather than follow it"
            ));
        }
        let admitted = ledger.node_member(id).map_err(|e| e.to_string())?;
        Ok(admitted.map(|n| n.address).unwrap_or_default())
    })
}

/// The checks every membership passes: its voters are among its nodes, no member of
/// `previous` moves, and each node it adds is `admitted` (which gives the address the ledger
/// admitted it at, or says why not) and listed at that address.
fn check_arrivals(
    previous: &Membership<u64, BasicNode>,
    next: &Membership<u64, BasicNode>,
    admitted: impl Fn(u64) -> Result<String, String>,
) -> Result<(), String> {
    voters_are_nodes(next)?;
    stays_put(previous, next)?;
    for (id, node) in next.nodes() {
        if previous.get_node(id).is_none() {
            at_admitted_address(*id, node, &admitted(*id)?)?;
        }
    }
    Ok(())
}

/// Refuses `next` if it lists a member of `previous` at another address.
fn stays_put(
    previous: &Membership<u64, BasicNode>,
    next: &Membership<u64, BasicNode>,
) -> Result<(), String> {
    for (id, node) in next.nodes() {
        if let Some(before) = previous.get_node(id)
            && before.addr != node.addr
        {
            return Err(format!(
                "it moves node {id} from {} to {}, but no transaction changes a node's address; \
                 this node stops rather than send Raft traffic there",
                before.addr, node.addr
            ));
        }
    }
    Ok(())
}

/// Refuses node `id` at `node`'s address unless it is `admitted` (the ledger's address for
/// it; the genesis node has none there, and Raft's founding membership names where it listens).
fn at_admitted_address(id: u64, node: &BasicNode, admitted: &str) -> Result<(), String> {
    match admitted {
        address if !address.is_empty() && address != node.addr => Err(format!(
            "it adds node {id} at {}, but the ledger admitted it at {address}; this node stops \
             rather than send Raft traffic there",
            node.addr
        )),
        _ => Ok(()),
    }
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
/// nodes of the ledger it holds) never admitted, beyond those in `previous` (this node's
/// membership before the install), or names one at another address than the ledger admitted
/// it at or than `previous` lists. A node
/// admitted and since suspended or removed may still be a member at the snapshot's point
/// (the leader's driver removes it after the ledger does), so any status passes here.
pub fn check_snapshot_members(
    known: &[medledger_ledger::NodeEntry],
    previous: &Membership<u64, BasicNode>,
    next: &Membership<u64, BasicNode>,
) -> Result<(), String> {
    check_arrivals(previous, next, |id| match known.iter().find(|n| n.id == id) {
        Some(admitted) => Ok(admitted.address.clone()),
        None => Err(format!(
            "it names node {id} as a member, which its own ledger never admitted; this node \
             stops rather than follow it"
        )),
    })
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
        // No entry moves a member: Raft traffic goes only where the ledger admitted a node.
        let mut moved = founding.clone();
        let nodes = BTreeMap::from([(1, BasicNode { addr: "http://10.9.9.9:1".into() })]);
        moved = Membership::new(moved.get_joint_config().clone(), nodes);
        let refused = check_admitted(&ledger, &founding, &moved).unwrap_err();
        assert!(refused.contains("moves node 1"), "{refused}");
    }

    fn entry(id: u64, address: &str) -> medledger_ledger::NodeEntry {
        medledger_ledger::NodeEntry {
            id,
            node_key: SigningKey::generate().public_key(),
            address: address.into(),
            hospital: None,
            status: medledger_ledger::NodeStatus::Active,
            admitted_at: id,
        }
    }

    /// A member enters at the address its admission names and stays there: an entry or a
    /// snapshot that adds a node elsewhere, or moves one, is refused.
    #[test]
    fn a_member_is_only_ever_at_the_address_the_ledger_admitted() {
        let founding = membership(&[1], &[]);
        let admitted = [entry(1, ""), entry(2, "http://127.0.0.1:7302")];
        // `membership` puts node 2 at http://127.0.0.1:7302, the admitted address.
        assert_eq!(check_snapshot_members(&admitted, &founding, &membership(&[1, 2], &[])), Ok(()));
        let elsewhere = [entry(1, ""), entry(2, "https://10.0.0.2:7300")];
        let refused =
            check_snapshot_members(&elsewhere, &founding, &membership(&[1, 2], &[])).unwrap_err();
        assert!(refused.contains("admitted it at https://10.0.0.2:7300"), "{refused}");
        let node2 = |addr: &str| {
            Membership::new(
                vec![BTreeSet::from([1, 2])],
                BTreeMap::from([
                    (1, BasicNode { addr: "http://127.0.0.1:7301".into() }),
                    (2, BasicNode { addr: addr.into() }),
                ]),
            )
        };
        let refused = check_snapshot_members(
            &admitted,
            &node2("http://127.0.0.1:7302"),
            &node2("http://10.9.9.9:7302"),
        )
        .unwrap_err();
        assert!(refused.contains("moves node 2"), "{refused}");
        // The genesis node has no address on the ledger: Raft's founding membership names it.
        assert_eq!(at_admitted_address(1, &BasicNode { addr: "10.0.0.1:7300".into() }, ""), Ok(()));
        assert!(
            at_admitted_address(2, &BasicNode { addr: "http://a:1".into() }, "http://b:1").is_err()
        );
    }
}
