//! Self-fencing: whether a speaker may answer at all, whatever the election says.
//!
//! Gossip is fast but cannot tell "my peers died" from "I am cut off from them". A speaker
//! that still sees most of its peers trusts gossip. One that has lost sight of most of them
//! answers only while the API server confirms they are gone (their heartbeat Leases expired);
//! if the API server shows them alive (this speaker is the cut-off one) or cannot be reached,
//! it goes quiet. So the cut-off side of a partition goes quiet, and a one- or two-node
//! cluster keeps answering when a node dies.

use std::collections::BTreeSet;
use std::fmt;

/// What the API server says of the speakers' heartbeat Leases.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ApiView {
    /// The speakers whose Lease was renewed within its duration.
    Fresh(BTreeSet<String>),
    Unreachable,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    Answer,
    Quiet(Silence),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Silence {
    LinkDown,
    /// Lost sight of most peers, and the API server shows some of them alive.
    CutOff {
        unseen: usize,
        peers: usize,
    },
    /// Lost sight of most peers, and the API server cannot confirm they are gone.
    Unconfirmed {
        unseen: usize,
        peers: usize,
    },
}

impl fmt::Display for Silence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Silence::LinkDown => f.write_str("the interface is down"),
            Silence::CutOff { unseen, peers } => write!(
                f,
                "gossip lost {unseen} of {peers} peers but the API server shows them alive: \
                 this node is cut off"
            ),
            Silence::Unconfirmed { unseen, peers } => write!(
                f,
                "gossip lost {unseen} of {peers} peers and the API server cannot be reached to \
                 confirm they are gone"
            ),
        }
    }
}

/// `me`'s verdict. `peers` are the other speakers that should be running (one per node with a
/// heartbeat Lease), `alive` those gossip shows alive.
pub fn verdict(
    me: &str,
    link_up: bool,
    peers: &BTreeSet<String>,
    alive: &BTreeSet<String>,
    api: &ApiView,
) -> Verdict {
    if !link_up {
        return Verdict::Quiet(Silence::LinkDown);
    }
    let peers: BTreeSet<&String> = peers.iter().filter(|p| p.as_str() != me).collect();
    let unseen: Vec<&&String> = peers.iter().filter(|p| !alive.contains(**p)).collect();
    // Seeing at least half of the peers: gossip is trusted.
    if unseen.len() * 2 <= peers.len() {
        return Verdict::Answer;
    }
    let (unseen, peers_count) = (unseen.len(), peers.len());
    match api {
        ApiView::Unreachable => Verdict::Quiet(Silence::Unconfirmed {
            unseen,
            peers: peers_count,
        }),
        ApiView::Fresh(fresh) => {
            let confirmed_gone = peers
                .iter()
                .filter(|p| !alive.contains(**p))
                .all(|p| !fresh.contains(*p));
            if confirmed_gone {
                Verdict::Answer
            } else {
                Verdict::Quiet(Silence::CutOff {
                    unseen,
                    peers: peers_count,
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|n| n.to_string()).collect()
    }

    #[test]
    fn a_speaker_that_sees_most_peers_trusts_gossip() {
        let peers = set(&["a", "b", "c", "d", "e"]);
        let alive = set(&["a", "b", "c"]);
        assert_eq!(
            verdict("a", true, &peers, &alive, &ApiView::Unreachable),
            Verdict::Answer
        );
    }

    #[test]
    fn the_cut_off_side_of_a_partition_goes_quiet() {
        let peers = set(&["a", "b", "c"]);
        let alone = set(&["a"]);
        let api_sees_all = ApiView::Fresh(set(&["a", "b", "c"]));
        assert_eq!(
            verdict("a", true, &peers, &alone, &api_sees_all),
            Verdict::Quiet(Silence::CutOff {
                unseen: 2,
                peers: 2
            })
        );
        assert_eq!(
            verdict("a", true, &peers, &alone, &ApiView::Unreachable),
            Verdict::Quiet(Silence::Unconfirmed {
                unseen: 2,
                peers: 2
            })
        );
        // The other side still sees a majority of its peers... of two it sees one: half.
        let majority = set(&["b", "c"]);
        assert_eq!(
            verdict("b", true, &peers, &majority, &api_sees_all),
            Verdict::Answer
        );
    }

    #[test]
    fn a_two_node_cluster_survives_the_death_of_one_node() {
        let peers = set(&["a", "b"]);
        let alone = set(&["a"]);
        // b's Lease expired: it is really gone.
        assert_eq!(
            verdict("a", true, &peers, &alone, &ApiView::Fresh(set(&["a"]))),
            Verdict::Answer
        );
        // b's Lease is fresh: a is the one cut off.
        assert!(matches!(
            verdict("a", true, &peers, &alone, &ApiView::Fresh(set(&["a", "b"]))),
            Verdict::Quiet(Silence::CutOff { .. })
        ));
    }

    #[test]
    fn a_single_node_answers_and_a_down_link_never_does() {
        let me = set(&["a"]);
        assert_eq!(
            verdict("a", true, &me, &me, &ApiView::Unreachable),
            Verdict::Answer
        );
        assert_eq!(
            verdict("a", false, &me, &me, &ApiView::Unreachable),
            Verdict::Quiet(Silence::LinkDown)
        );
    }
}
