//! FRR's session and route state, read from `vtysh ... json` into plain types, and what a person
//! should do about a session that is not up. Pure: the JSON comes from [`super::Frr`].

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use serde::Deserialize;

/// `vtysh` printed JSON that is not what FRR 8.4 prints.
#[derive(Debug, thiserror::Error)]
#[error("FRR printed JSON this speaker does not understand for `{command}`: {reason}")]
pub struct ParseError {
    pub command: String,
    pub reason: String,
}

/// The BGP finite state machine's state (RFC 4271), as FRR names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BgpState {
    Idle,
    Connect,
    Active,
    OpenSent,
    OpenConfirm,
    Established,
    /// FRR's own states (`Clearing`, `Deleted`) and any later one.
    Other(String),
}

impl BgpState {
    fn from_frr(name: &str) -> BgpState {
        match name {
            "Idle" => BgpState::Idle,
            "Connect" => BgpState::Connect,
            "Active" => BgpState::Active,
            "OpenSent" => BgpState::OpenSent,
            "OpenConfirm" => BgpState::OpenConfirm,
            "Established" => BgpState::Established,
            other => BgpState::Other(other.to_string()),
        }
    }
}

impl fmt::Display for BgpState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BgpState::Other(name) => f.write_str(name),
            known => write!(f, "{known:?}"),
        }
    }
}

/// A BFD session's state, as `show bfd peers json` says it (`up`, `down`, `init`,
/// `adm-down`, `shutdown`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BfdState {
    Up,
    Down,
    Init,
    AdminDown,
    Other(String),
}

impl BfdState {
    fn from_frr(name: &str) -> BfdState {
        match name.to_ascii_lowercase().as_str() {
            "up" => BfdState::Up,
            "down" => BfdState::Down,
            "init" => BfdState::Init,
            "adm-down" | "admin-down" | "shutdown" => BfdState::AdminDown,
            other => BfdState::Other(other.to_string()),
        }
    }
}

impl fmt::Display for BfdState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BfdState::Other(name) => f.write_str(name),
            known => write!(f, "{known:?}"),
        }
    }
}

/// One BGP neighbor of `show bgp vrf default neighbors json`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Neighbor {
    /// The neighbor's address (or interface, for an unnumbered one), as configured.
    pub peer: String,
    pub remote_as: u32,
    pub local_as: u32,
    pub state: BgpState,
    /// How long the session has been Established; None when it is not.
    pub up_for: Option<Duration>,
    /// How many times the session reached Established, and how many of those ended: a reload
    /// that resets a session shows in both.
    pub established_count: u64,
    pub dropped_count: u64,
    /// FRR's words for why the session last went down or did not come up (`lastResetDueTo`).
    pub last_reset: Option<String>,
    /// The last NOTIFICATION, `Error/Subcode` (`OPEN Message Error/Bad Peer AS`), and whether
    /// this node sent it (else the peer did).
    pub last_notification: Option<Notification>,
    /// A TCP MD5 password is configured for the session.
    pub password_set: bool,
    pub opens_sent: u64,
    pub messages_received: u64,
    /// Prefixes sent per address family (`ipv4Unicast`, `ipv6Unicast`).
    pub prefixes_sent: BTreeMap<String, u64>,
    /// The state of the session's BFD, when BFD is configured for it.
    pub bfd: Option<BfdState>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    pub reason: String,
    pub sent: bool,
}

/// FRR's `lastResetDueTo` when the session fails because FRR has no route to the peer
/// (next-hop tracking).
const NO_ROUTE: &str = "Waiting for NHT";
/// FRR's `lastResetDueTo` for a NOTIFICATION this node sent.
const NOTIFICATION_SENT: &str = "BGP Notification send";

/// A neighbor `peer` in `state`, as FRR shows one that never dropped a session: the unit
/// tests' example.
#[cfg(test)]
impl Neighbor {
    pub(crate) fn example(peer: &str, state: BgpState) -> Neighbor {
        Neighbor {
            peer: peer.into(),
            remote_as: 64500,
            local_as: 64512,
            state,
            up_for: None,
            established_count: 0,
            dropped_count: 0,
            last_reset: None,
            last_notification: None,
            password_set: false,
            opens_sent: 1,
            messages_received: 3,
            prefixes_sent: BTreeMap::new(),
            bfd: None,
        }
    }
}

impl Neighbor {
    pub fn established(&self) -> bool {
        self.state == BgpState::Established
    }

    /// Why the session is not Established, in words that say what to check; None when it is.
    pub fn problem(&self) -> Option<String> {
        if self.established() {
            return None;
        }
        let peer = &self.peer;
        if let Some(notification) = &self.last_notification {
            if notification.reason.contains("Bad Peer AS") {
                return Some(if notification.sent {
                    format!(
                        "the router at {peer} is not in AS {} (bad peer AS: its OPEN named \
                         another AS): set peerASN to the router's AS",
                        self.remote_as
                    )
                } else {
                    format!(
                        "the router at {peer} refused this node's AS {} (bad peer AS): set myASN \
                         to the AS the router expects, or configure the router for AS {}",
                        self.local_as, self.local_as
                    )
                });
            }
            if notification.reason.contains("BFD Down") {
                return Some(format!(
                    "BFD to {peer} went down: the peer stopped answering BFD within the \
                     profile's detection time (link or router down?)"
                ));
            }
            let who = if notification.sent {
                "this node closed the session"
            } else {
                "the router closed the session"
            };
            return Some(format!(
                "{who} with {peer}: {} (BGP NOTIFICATION)",
                notification.reason
            ));
        }
        if self.last_reset.as_deref() == Some(NO_ROUTE) {
            return Some(format!(
                "no route to {peer}: this node has no route to the peer address; check \
                 peerAddress, and ebgpMultiHop for a peer that is not on a connected network"
            ));
        }
        if self.messages_received == 0 && self.password_set {
            return Some(format!(
                "no answer from {peer} over TCP with a password set: a password mismatch \
                 (TCP MD5) drops every packet silently; check the password Secret and the \
                 router's password for this node"
            ));
        }
        match self.state {
            BgpState::Connect if self.messages_received == 0 => Some(format!(
                "connecting to {peer} gets no answer: check peerAddress, peerPort, firewalls \
                 and that the router is up"
            )),
            BgpState::Active if self.opens_sent == 0 => Some(format!(
                "{peer} refuses the connection (nothing listens on its BGP port): check \
                 peerAddress and peerPort, and that BGP runs on the router"
            )),
            BgpState::Active if self.messages_received == 0 => Some(format!(
                "the router at {peer} closes the connection without answering: it is \
                 probably not configured with this node as a neighbor"
            )),
            _ => Some(format!(
                "the session with {peer} is {}{}",
                self.state,
                self.last_reset
                    .as_deref()
                    .map(|r| format!(": {r}"))
                    .unwrap_or_default()
            )),
        }
    }
}

/// One BFD session of `show bfd peers json`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BfdPeer {
    pub peer: IpAddr,
    pub interface: Option<String>,
    pub state: BfdState,
    /// FRR's diagnostic for the last change (`control detection time expired`, `ok`).
    pub diagnostic: String,
    pub receive_interval: Duration,
    pub transmit_interval: Duration,
    pub detect_multiplier: u32,
}

/// A prefix advertised to a neighbor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Prefix {
    pub address: IpAddr,
    pub length: u8,
}

impl fmt::Display for Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.address, self.length)
    }
}

/// FRR's JSON, as far as it is read here. Fields FRR leaves out while a session is down
/// default.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct NeighborJson {
    #[serde(default)]
    remote_as: u32,
    #[serde(default)]
    local_as: u32,
    bgp_state: String,
    bgp_timer_up_msec: Option<u64>,
    #[serde(default)]
    connections_established: u64,
    #[serde(default)]
    connections_dropped: u64,
    last_reset_due_to: Option<String>,
    last_notification_reason: Option<String>,
    #[serde(default)]
    authentication_enabled: u8,
    #[serde(default)]
    message_stats: MessageStats,
    #[serde(default)]
    address_family_info: BTreeMap<String, AddressFamilyJson>,
    peer_bfd_info: Option<PeerBfdJson>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct MessageStats {
    #[serde(default)]
    opens_sent: u64,
    #[serde(default)]
    total_recv: u64,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AddressFamilyJson {
    sent_prefix_counter: Option<u64>,
}

#[derive(Deserialize)]
struct PeerBfdJson {
    status: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
struct BfdPeerJson {
    peer: IpAddr,
    interface: Option<String>,
    status: String,
    #[serde(default)]
    diagnostic: String,
    #[serde(default)]
    receive_interval: u64,
    #[serde(default)]
    transmit_interval: u64,
    #[serde(default)]
    detect_multiplier: u32,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AdvertisedJson {
    #[serde(default)]
    advertised_routes: BTreeMap<String, AdvertisedRouteJson>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AdvertisedRouteJson {
    addr_prefix: IpAddr,
    prefix_len: u8,
}

fn parse<T: serde::de::DeserializeOwned>(command: &str, json: &str) -> Result<T, ParseError> {
    serde_json::from_str(json).map_err(|e| ParseError {
        command: command.to_string(),
        reason: e.to_string(),
    })
}

/// `show bgp vrf default neighbors json`: every neighbor, by peer.
pub fn parse_neighbors(json: &str) -> Result<Vec<Neighbor>, ParseError> {
    let by_peer: BTreeMap<String, NeighborJson> =
        parse("show bgp vrf default neighbors json", json)?;
    Ok(by_peer
        .into_iter()
        .map(|(peer, n)| {
            let state = BgpState::from_frr(&n.bgp_state);
            let last_reset = n.last_reset_due_to;
            Neighbor {
                up_for: n
                    .bgp_timer_up_msec
                    .filter(|_| state == BgpState::Established)
                    .map(Duration::from_millis),
                last_notification: n.last_notification_reason.map(|reason| Notification {
                    reason,
                    sent: last_reset.as_deref() == Some(NOTIFICATION_SENT),
                }),
                peer,
                remote_as: n.remote_as,
                local_as: n.local_as,
                state,
                established_count: n.connections_established,
                dropped_count: n.connections_dropped,
                last_reset,
                password_set: n.authentication_enabled != 0,
                opens_sent: n.message_stats.opens_sent,
                messages_received: n.message_stats.total_recv,
                prefixes_sent: n
                    .address_family_info
                    .into_iter()
                    .filter_map(|(family, info)| Some((family, info.sent_prefix_counter?)))
                    .collect(),
                bfd: n.peer_bfd_info.map(|b| BfdState::from_frr(&b.status)),
            }
        })
        .collect())
}

/// `show bfd peers json`.
pub fn parse_bfd_peers(json: &str) -> Result<Vec<BfdPeer>, ParseError> {
    let peers: Vec<BfdPeerJson> = parse("show bfd peers json", json)?;
    Ok(peers
        .into_iter()
        .map(|p| BfdPeer {
            peer: p.peer,
            interface: p.interface,
            state: BfdState::from_frr(&p.status),
            diagnostic: p.diagnostic,
            receive_interval: Duration::from_millis(p.receive_interval),
            transmit_interval: Duration::from_millis(p.transmit_interval),
            detect_multiplier: p.detect_multiplier,
        })
        .collect())
}

/// `show bgp <family> unicast neighbors <peer> advertised-routes json`. FRR answers a
/// neighbor it does not know, or a family not active with it, with a warning object: nothing
/// is advertised then.
pub fn parse_advertised(json: &str) -> Result<Vec<Prefix>, ParseError> {
    let routes: AdvertisedJson = parse("show bgp ... advertised-routes json", json)?;
    Ok(routes
        .advertised_routes
        .into_values()
        .map(|r| Prefix {
            address: r.addr_prefix,
            length: r.prefix_len,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    const ESTABLISHED: &str = include_str!("fixtures/neighbors-established.json");
    const FAILURES: &str = include_str!("fixtures/neighbors-failures.json");
    const BFD_DOWN: &str = include_str!("fixtures/neighbors-bfd-down.json");

    fn neighbor<'a>(neighbors: &'a [Neighbor], peer: &str) -> &'a Neighbor {
        neighbors
            .iter()
            .find(|n| n.peer == peer)
            .unwrap_or_else(|| panic!("no neighbor {peer} in {neighbors:#?}"))
    }

    #[test]
    fn established_sessions() {
        let neighbors = parse_neighbors(ESTABLISHED).unwrap();
        assert_eq!(neighbors.len(), 2);
        let v4 = neighbor(&neighbors, "192.0.2.1");
        assert_eq!(v4.state, BgpState::Established);
        assert_eq!((v4.remote_as, v4.local_as), (64500, 64512));
        assert_eq!(v4.up_for, Some(Duration::from_secs(39)));
        assert_eq!((v4.established_count, v4.dropped_count), (1, 0));
        assert_eq!(v4.prefixes_sent.get("ipv4Unicast"), Some(&1));
        assert_eq!(v4.bfd, Some(BfdState::Up));
        assert_eq!(v4.problem(), None);
        let v6 = neighbor(&neighbors, "2001:db8::1");
        assert_eq!(v6.prefixes_sent.get("ipv6Unicast"), Some(&1));
        assert_eq!(v6.bfd, None);
    }

    #[test]
    fn failed_sessions_say_what_to_check() {
        let neighbors = parse_neighbors(FAILURES).unwrap();
        let problem = |peer| neighbor(&neighbors, peer).problem().unwrap();
        // The router was configured for AS 64999 from this node.
        let refused = problem("192.0.2.3");
        assert!(
            refused.contains("refused this node's AS 64512"),
            "{refused}"
        );
        assert!(refused.contains("myASN"), "{refused}");
        // This node expects AS 64501; the router is in 64500.
        let wrong_peer = problem("192.0.2.5");
        assert!(wrong_peer.contains("not in AS 64501"), "{wrong_peer}");
        assert!(wrong_peer.contains("peerASN"), "{wrong_peer}");
        let password = problem("192.0.2.2");
        assert!(password.contains("password mismatch"), "{password}");
        let unreachable = problem("198.51.100.99");
        assert!(
            unreachable.contains("no route to 198.51.100.99"),
            "{unreachable}"
        );
        // Nothing listens on the port this node connects to.
        let refused_port = problem("192.0.2.6");
        assert!(
            refused_port.contains("refuses the connection"),
            "{refused_port}"
        );
        assert_eq!(neighbor(&neighbors, "192.0.2.1").problem(), None);
    }

    #[test]
    fn a_session_that_bfd_took_down() {
        let neighbors = parse_neighbors(BFD_DOWN).unwrap();
        let down = neighbor(&neighbors, "192.0.2.1");
        assert!(!down.established(), "{down:?}");
        assert_eq!(down.up_for, None);
        assert_eq!((down.established_count, down.dropped_count), (1, 1));
        assert_eq!(down.bfd, Some(BfdState::Down));
        let problem = down.problem().unwrap();
        assert!(problem.contains("BFD to 192.0.2.1 went down"), "{problem}");
    }

    #[test]
    fn bfd_peers() {
        let up = parse_bfd_peers(include_str!("fixtures/bfd-peers-up.json")).unwrap();
        assert_eq!(
            up,
            [BfdPeer {
                peer: "192.0.2.1".parse().unwrap(),
                interface: Some("eth0".into()),
                state: BfdState::Up,
                diagnostic: "ok".into(),
                receive_interval: Duration::from_millis(100),
                transmit_interval: Duration::from_millis(100),
                detect_multiplier: 3,
            }]
        );
        let down = parse_bfd_peers(include_str!("fixtures/bfd-peers-down.json")).unwrap();
        assert_eq!(down[0].state, BfdState::Down);
        assert_eq!(down[0].diagnostic, "control detection time expired");
    }

    #[test]
    fn advertised_routes() {
        let prefix = |p: &str| {
            let (address, length) = p.split_once('/').unwrap();
            Prefix {
                address: address.parse().unwrap(),
                length: length.parse().unwrap(),
            }
        };
        let v4 = parse_advertised(include_str!("fixtures/advertised-routes-ipv4.json")).unwrap();
        assert_eq!(v4, [prefix("203.0.113.10/32")]);
        let v6 = parse_advertised(include_str!("fixtures/advertised-routes-ipv6.json")).unwrap();
        assert_eq!(v6, [prefix("2001:db8:100::10/128")]);
        assert_eq!(v6[0].to_string(), "2001:db8:100::10/128");
        for empty in [
            include_str!("fixtures/advertised-routes-down.json"),
            include_str!("fixtures/advertised-routes-no-family.json"),
        ] {
            assert_eq!(parse_advertised(empty).unwrap(), []);
        }
    }

    #[test]
    fn json_that_is_not_frrs() {
        let error = parse_neighbors("% Unknown command").unwrap_err();
        assert!(error.to_string().contains("neighbors json"), "{error}");
    }
}
