//! When to read FRR's sessions: every poll period, and right after each reload, then again
//! shortly, backing off, until FRR runs what this node rendered: every session of a rendered
//! peer Established and sent exactly its prefixes. FRR takes a moment after `frr-reload.py`
//! returns before a change shows (a new peer's session comes up, then its first prefixes wait
//! for FRR's update-group timer), so a single read right after the reload can miss it and leave
//! the session states a whole period behind. Pure: the runtime's poller reads, and asks this
//! how long to wait.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use herald_core::bgp::NodeBgp;

use crate::frr::Session;

/// The wait before the first read that follows a reload's own; each next one waits twice as
/// long.
pub const FIRST_FOLLOW_UP: Duration = Duration::from_millis(200);
/// How many reads at most follow a reload's own: 200 ms to 3.2 s apart, 6.2 s in all, which
/// covers a session coming up with a router that answers. A peer that stays down costs five
/// reads per reload, not a busy poller.
pub const FOLLOW_UP_READS: u32 = 5;

/// The prefixes each peer is to be sent, by its address as FRR names the neighbor.
pub type Rendered = BTreeMap<String, BTreeSet<String>>;

/// What `bgp` (this node's share, as rendered) sends each peer.
pub fn rendered(bgp: Option<&NodeBgp>) -> Rendered {
    bgp.into_iter()
        .flat_map(|bgp| &bgp.sessions)
        .map(|session| {
            let prefixes = session.prefixes.keys().map(ToString::to_string).collect();
            (session.peer.address.to_string(), prefixes)
        })
        .collect()
}

/// Whether FRR runs what was rendered: every session it has with a rendered peer is Established
/// and sent exactly that peer's prefixes. Rendered peers FRR has no neighbor for (left out for
/// their password, or in a reload still to come) and neighbors not rendered have nothing to
/// wait for: the next reload starts its own reads.
pub fn runs_as_rendered(rendered: &Rendered, sessions: &[Session]) -> bool {
    sessions
        .iter()
        .all(|s| match rendered.get(&s.neighbor.peer) {
            None => true,
            Some(wanted) => {
                let sent: BTreeSet<String> = s.advertised.iter().map(ToString::to_string).collect();
                s.neighbor.established() && &sent == wanted
            }
        })
}

/// The poller's schedule.
#[derive(Debug)]
pub struct Reads {
    period: Duration,
    /// The follow-up reads done since the last reload; None when none is due.
    follow_ups: Option<u32>,
}

impl Reads {
    pub fn new(period: Duration) -> Self {
        Reads {
            period,
            follow_ups: None,
        }
    }

    /// A reload ended: FRR is read at once, and again shortly while it lags behind.
    pub fn on_reload(&mut self) {
        self.follow_ups = Some(0);
    }

    /// After a read: how long until the next one. `settled`: FRR runs what was rendered
    /// ([`runs_as_rendered`]).
    pub fn after_read(&mut self, settled: bool) -> Duration {
        match self.follow_ups {
            Some(done) if !settled && done < FOLLOW_UP_READS => {
                self.follow_ups = Some(done + 1);
                (FIRST_FOLLOW_UP * 2u32.pow(done)).min(self.period)
            }
            _ => {
                self.follow_ups = None;
                self.period
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frr::state::{BgpState, Neighbor, Prefix};
    use herald_core::bgp::{Peer, Session as WantedSession};

    const PERIOD: Duration = Duration::from_secs(60);

    fn node_bgp(peers: &[(&str, &str, &[&str])]) -> NodeBgp {
        NodeBgp {
            node: "node1".into(),
            my_asn: 64512,
            router_id: None,
            sessions: peers
                .iter()
                .map(|(name, address, prefixes)| WantedSession {
                    peer: Peer::new(*name, address.parse().unwrap(), 64500, 64512),
                    prefixes: prefixes
                        .iter()
                        .map(|p| (p.parse().unwrap(), Default::default()))
                        .collect(),
                })
                .collect(),
        }
    }

    fn session(peer: &str, state: BgpState, advertised: &[&str]) -> Session {
        Session {
            neighbor: Neighbor::example(peer, state),
            bfd: None,
            advertised: advertised
                .iter()
                .map(|p| {
                    let (address, length) = p.split_once('/').unwrap();
                    Prefix {
                        address: address.parse().unwrap(),
                        length: length.parse().unwrap(),
                    }
                })
                .collect(),
        }
    }

    #[test]
    fn frr_runs_what_was_rendered_when_every_session_is_up_with_its_prefixes() {
        let bgp = node_bgp(&[
            ("tor", "192.0.2.1", &["203.0.113.10/32", "203.0.113.11/32"]),
            ("tor6", "2001:db8::1", &["2001:db8:ff::100/128"]),
        ]);
        let rendered = rendered(Some(&bgp));
        let v6 = session(
            "2001:db8::1",
            BgpState::Established,
            &["2001:db8:ff::100/128"],
        );
        let all = session(
            "192.0.2.1",
            BgpState::Established,
            &["203.0.113.11/32", "203.0.113.10/32"],
        );
        assert!(runs_as_rendered(&rendered, &[all.clone(), v6.clone()]));
        // The new Service's prefix is not sent yet, or a removed one still is.
        let behind = session("192.0.2.1", BgpState::Established, &["203.0.113.10/32"]);
        assert!(!runs_as_rendered(&rendered, &[behind, v6.clone()]));
        let ahead = session(
            "192.0.2.1",
            BgpState::Established,
            &["203.0.113.10/32", "203.0.113.11/32", "203.0.113.12/32"],
        );
        assert!(!runs_as_rendered(&rendered, &[ahead]));
        // A new peer's session is still coming up.
        let connecting = session("2001:db8::1", BgpState::Connect, &[]);
        assert!(!runs_as_rendered(&rendered, &[all.clone(), connecting]));
        // A neighbor not rendered, or a rendered peer FRR does not have: nothing to wait for.
        let stranger = session("198.51.100.1", BgpState::Active, &[]);
        assert!(runs_as_rendered(&rendered, &[all, stranger]));
        assert!(runs_as_rendered(&super::rendered(None), &[]));
    }

    #[test]
    fn a_reload_is_followed_by_reads_backing_off_until_frr_runs_what_was_rendered() {
        let mut reads = Reads::new(PERIOD);
        assert_eq!(reads.after_read(false), PERIOD);
        reads.on_reload();
        assert_eq!(reads.after_read(false), FIRST_FOLLOW_UP);
        assert_eq!(reads.after_read(false), FIRST_FOLLOW_UP * 2);
        assert_eq!(reads.after_read(true), PERIOD);
        // Settled is settled: a later read that differs waits for the next reload or period.
        assert_eq!(reads.after_read(false), PERIOD);
        reads.on_reload();
        assert_eq!(reads.after_read(false), FIRST_FOLLOW_UP);
    }

    #[test]
    fn the_reads_after_a_reload_are_bounded() {
        let mut reads = Reads::new(PERIOD);
        reads.on_reload();
        let waits: Vec<Duration> = (0..=FOLLOW_UP_READS)
            .map(|_| reads.after_read(false))
            .collect();
        let ms = |ms| Duration::from_millis(ms);
        assert_eq!(
            waits,
            [ms(200), ms(400), ms(800), ms(1600), ms(3200), PERIOD]
        );
    }

    #[test]
    fn a_period_shorter_than_a_follow_up_rules() {
        let short = Duration::from_millis(300);
        let mut reads = Reads::new(short);
        reads.on_reload();
        assert_eq!(reads.after_read(false), FIRST_FOLLOW_UP);
        assert_eq!(reads.after_read(false), short);
    }
}
