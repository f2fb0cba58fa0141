//! One node's BGP share as a complete `frr.conf`, for FRR 8.4 (Debian bookworm's).
//!
//! Entry point: [`render`]`(node name, the node's [`NodeBgp`] from
//! [`herald_core::bgp::decide`] (None when it peers with nobody), passwords by peer name,
//! every BFD profile)`. Pure and deterministic: the same inputs give the same bytes, whatever
//! their order, so the speaker can skip a reload when nothing changed.
//!
//! The shape is chosen so that FRR's `frr-reload.py` never has to reset a session for a change
//! of Services:
//! - every peer has its own prefix-lists and its own outbound route-map, `herald-<peer>-out`;
//!   prefixes without attributes sit in `herald-<peer>`, which always exists (a `deny any`
//!   stands in when it is empty), so adding or removing a Service changes only `prefix-list`
//!   and `network` lines. Prefixes with a local preference or communities are grouped by those
//!   attributes, each group a list `herald-<peer>-<n>` and a route-map entry that sets them;
//! - inbound, `herald-<peer>-in` denies every route: the speaker only advertises;
//! - nothing is written at its default value where FRR's running configuration hides defaults
//!   (the peer port 179, BFD's 300 ms / x3 / 50 ms echo / TTL 254), since `frr-reload.py`
//!   would see such a line as new on every reload and re-apply it; for graceful restart that
//!   re-application resets every session (FRR issue #22953), so its timers are never written;
//! - graceful restart is on for peers that enable it and off (`graceful-restart-disable`) for
//!   the others: FRR's default helper mode offers the capability, and a router that helps
//!   keeps a dead node's routes, stale, for the restart time (120 s) after its hold time
//!   expires, where it should withdraw them (measured with BIRD 2);
//! - `no bgp network import-check`: the addresses are not in the node's routing table, and
//!   `network` lines must advertise them anyway.
//!
//! A peer whose password Secret cannot be read, or whose password FRR cannot take, is left out
//! with a comment saying why (the session state says it too); a peer whose BFD profile does not
//! exist peers without BFD, also with a comment. Passwords never appear in comments.

use std::collections::BTreeMap;
use std::fmt::Write;

use herald_core::bgp::{Attributes, BfdProfile, Community, DEFAULT_PORT, NodeBgp, Session};
use ipnet::IpNet;

/// Passwords read from the peers' Secrets, by peer name.
pub type Passwords = BTreeMap<String, String>;

/// The longest TCP MD5 key Linux takes (`TCP_MD5SIG_MAXKEYLEN`).
const MAX_PASSWORD_BYTES: usize = 80;

/// FRR's BFD defaults, which its running configuration does not show.
const BFD_DEFAULT_INTERVAL_MS: u32 = 300;
const BFD_DEFAULT_MULTIPLIER: u32 = 3;
const BFD_DEFAULT_ECHO_INTERVAL_MS: u32 = 50;
const BFD_DEFAULT_MINIMUM_TTL: u32 = 254;

/// Why FRR cannot take `password`, in words for the peer's session state; None if it can.
pub fn password_problem(password: &str) -> Option<String> {
    if password.is_empty() {
        Some("the password is empty".into())
    } else if password.len() > MAX_PASSWORD_BYTES {
        Some(format!(
            "the password has {} bytes; TCP MD5 keys hold at most {MAX_PASSWORD_BYTES}",
            password.len()
        ))
    } else if !password.bytes().all(|b| b.is_ascii_graphic()) {
        Some(
            "the password has spaces, control or non-ASCII characters, which FRR's configuration \
             cannot carry"
                .into(),
        )
    } else {
        None
    }
}

/// The `frr.conf` of node `node`. See the module's documentation.
pub fn render(
    node: &str,
    bgp: Option<&NodeBgp>,
    passwords: &Passwords,
    profiles: &[BfdProfile],
) -> String {
    let mut out = String::new();
    line(
        &mut out,
        format_args!(
            "! herald-speaker's FRR configuration for node {node}, from the cluster's BGPPeers, \
             BGPAdvertisements and BFDProfiles. The speaker rewrites it: do not edit."
        ),
    );
    line(&mut out, format_args!("frr defaults traditional"));
    line(&mut out, format_args!("log stdout informational"));
    line(&mut out, format_args!("!"));
    let Some(bgp) = bgp else {
        return out;
    };

    let mut sessions: Vec<&Session> = bgp.sessions.iter().collect();
    sessions.sort_by(|a, b| a.peer.name.cmp(&b.peer.name));
    let mut peers = Vec::new();
    for session in sessions {
        match configured(session, passwords, profiles) {
            Ok(peer) => peers.push(peer),
            Err(why) => line(
                &mut out,
                format_args!("! BGPPeer {} is left out: {why}", session.peer.name),
            ),
        }
    }
    for peer in &peers {
        if let (Some(profile), None) = (&peer.session.peer.bfd_profile, peer.bfd) {
            line(
                &mut out,
                format_args!(
                    "! BGPPeer {} peers without BFD: BFDProfile {profile} does not exist",
                    peer.session.peer.name
                ),
            );
        }
    }
    if peers.is_empty() {
        return out;
    }
    for peer in &peers {
        policy(&mut out, peer.session);
    }
    router(&mut out, bgp, &peers);
    bfd(&mut out, &peers);
    out
}

/// A peer that is rendered, with what it needs besides its session.
struct Configured<'a> {
    session: &'a Session,
    password: Option<&'a str>,
    bfd: Option<&'a BfdProfile>,
}

fn configured<'a>(
    session: &'a Session,
    passwords: &'a Passwords,
    profiles: &'a [BfdProfile],
) -> Result<Configured<'a>, String> {
    let peer = &session.peer;
    let password = match &peer.password {
        None => None,
        Some(secret) => {
            let Some(password) = passwords.get(&peer.name) else {
                return Err(format!(
                    "its password Secret {}/{} or its key {} cannot be read",
                    secret.namespace, secret.name, secret.key
                ));
            };
            if let Some(problem) = password_problem(password) {
                return Err(format!(
                    "key {} of Secret {}/{}: {problem}",
                    secret.key, secret.namespace, secret.name
                ));
            }
            Some(password.as_str())
        }
    };
    let bfd = peer
        .bfd_profile
        .as_ref()
        .and_then(|name| profiles.iter().find(|p| &p.name == name));
    Ok(Configured {
        session,
        password,
        bfd,
    })
}

/// `ip` or `ipv6`, as prefix-lists and matches name the family of `address`.
fn ip_keyword(peer: &Session) -> &'static str {
    if peer.peer.address.is_ipv4() {
        "ip"
    } else {
        "ipv6"
    }
}

/// The peer's prefix-lists and route-maps.
fn policy(out: &mut String, session: &Session) {
    let name = &session.peer.name;
    let ip = ip_keyword(session);
    let mut groups: BTreeMap<&Attributes, Vec<&IpNet>> = BTreeMap::new();
    for (prefix, attributes) in &session.prefixes {
        groups.entry(attributes).or_default().push(prefix);
    }
    let plain = Attributes::default();
    let unset = groups.remove(&plain).unwrap_or_default();
    prefix_list(out, ip, &format!("herald-{name}"), &unset);
    for (n, prefixes) in groups.values().enumerate() {
        prefix_list(out, ip, &format!("herald-{name}-{}", n + 1), prefixes);
    }
    line(out, format_args!("!"));
    line(out, format_args!("route-map herald-{name}-in deny 10"));
    line(out, format_args!("exit"));
    line(out, format_args!("!"));
    line(out, format_args!("route-map herald-{name}-out permit 10"));
    line(
        out,
        format_args!(" match {ip} address prefix-list herald-{name}"),
    );
    line(out, format_args!("exit"));
    line(out, format_args!("!"));
    for (n, attributes) in groups.keys().enumerate() {
        let n = n + 1;
        line(
            out,
            format_args!("route-map herald-{name}-out permit {}", 10 + 10 * n),
        );
        line(
            out,
            format_args!(" match {ip} address prefix-list herald-{name}-{n}"),
        );
        if let Some(local_pref) = attributes.local_pref {
            line(out, format_args!(" set local-preference {local_pref}"));
        }
        let (standard, large): (Vec<&Community>, Vec<&Community>) = attributes
            .communities
            .iter()
            .partition(|c| matches!(c, Community::Standard(..)));
        if !standard.is_empty() {
            line(out, format_args!(" set community {}", joined(&standard)));
        }
        if !large.is_empty() {
            line(out, format_args!(" set large-community {}", joined(&large)));
        }
        line(out, format_args!("exit"));
        line(out, format_args!("!"));
    }
}

/// Communities as FRR writes them: `a:b` or a well-known one's name, and large ones without
/// the `large:` of the API. Written otherwise, frr-reload.py would find the route-map changed
/// at every reload.
fn joined(communities: &[&Community]) -> String {
    communities
        .iter()
        .map(|c| match c {
            Community::Standard(a, b) => well_known(*a, *b)
                .map(str::to_owned)
                .unwrap_or_else(|| format!("{a}:{b}")),
            Community::Large(a, b, c) => format!("{a}:{b}:{c}"),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The name FRR 8.4 shows a well-known community by (`bgpd/bgp_community.c`).
fn well_known(asn: u16, value: u16) -> Option<&'static str> {
    let name = match (asn, value) {
        (0, 0) => "internet",
        (65535, 0) => "graceful-shutdown",
        (65535, 1) => "accept-own",
        (65535, 2) => "route-filter-translated-v4",
        (65535, 3) => "route-filter-v4",
        (65535, 4) => "route-filter-translated-v6",
        (65535, 5) => "route-filter-v6",
        (65535, 6) => "llgr-stale",
        (65535, 7) => "no-llgr",
        (65535, 8) => "accept-own-nexthop",
        (65535, 666) => "blackhole",
        (65535, 65281) => "no-export",
        (65535, 65282) => "no-advertise",
        (65535, 65283) => "local-AS",
        (65535, 65284) => "no-peer",
        _ => return None,
    };
    Some(name)
}

/// A prefix-list; an empty one denies everything, so that it exists for its route-map.
fn prefix_list(out: &mut String, ip: &str, name: &str, prefixes: &[&IpNet]) {
    if prefixes.is_empty() {
        line(out, format_args!("{ip} prefix-list {name} seq 5 deny any"));
    }
    for (i, prefix) in prefixes.iter().enumerate() {
        line(
            out,
            format_args!(
                "{ip} prefix-list {name} seq {} permit {prefix}",
                5 * (i + 1)
            ),
        );
    }
}

fn router(out: &mut String, bgp: &NodeBgp, peers: &[Configured]) {
    line(out, format_args!("router bgp {}", bgp.my_asn));
    if let Some(router_id) = bgp.router_id {
        line(out, format_args!(" bgp router-id {router_id}"));
    }
    line(out, format_args!(" no bgp ebgp-requires-policy"));
    line(out, format_args!(" no bgp default ipv4-unicast"));
    line(out, format_args!(" no bgp network import-check"));
    if peers.iter().any(|p| p.session.peer.graceful_restart) {
        // Forwarding goes on through kube-proxy while FRR restarts: say so to the routers.
        line(out, format_args!(" bgp graceful-restart preserve-fw-state"));
    }
    for configured in peers {
        let peer = &configured.session.peer;
        let address = peer.address;
        let neighbor = |out: &mut String, rest: std::fmt::Arguments| {
            line(out, format_args!(" neighbor {address} {rest}"));
        };
        neighbor(out, format_args!("remote-as {}", peer.asn));
        neighbor(out, format_args!("description BGPPeer {}", peer.name));
        if let Some(port) = peer.port.filter(|p| *p != DEFAULT_PORT) {
            neighbor(out, format_args!("port {port}"));
        }
        if let Some(source) = peer.source_address {
            neighbor(out, format_args!("update-source {source}"));
        }
        if let Some((keepalive, hold)) = peer.timers() {
            neighbor(out, format_args!("timers {keepalive} {hold}"));
        }
        if let Some(connect) = peer.connect_time {
            neighbor(out, format_args!("timers connect {connect}"));
        }
        if peer.ebgp_multihop {
            // The TTL FRR gives it, and shows: written without it, frr-reload.py sets it again
            // at every reload.
            neighbor(out, format_args!("ebgp-multihop 255"));
        }
        if let Some(password) = configured.password {
            neighbor(out, format_args!("password {password}"));
        }
        if let Some(profile) = configured.bfd {
            // FRR shows both lines once given the second; with only the second written,
            // frr-reload.py takes the first away at every reload, and BFD with it.
            neighbor(out, format_args!("bfd"));
            neighbor(out, format_args!("bfd profile {}", profile.name));
        }
        // Without it FRR still offers to be a restarting speaker (its default helper mode
        // sends the capability), and a router that helps keeps a dead node's routes, stale,
        // for the restart time (120 s) after its hold time expires instead of withdrawing them.
        if peer.graceful_restart {
            neighbor(out, format_args!("graceful-restart"));
        } else {
            neighbor(out, format_args!("graceful-restart-disable"));
        }
    }
    for (family, v4) in [("ipv4", true), ("ipv6", false)] {
        let members: Vec<&Session> = peers
            .iter()
            .map(|p| p.session)
            .filter(|s| s.peer.address.is_ipv4() == v4)
            .collect();
        if members.is_empty() {
            continue;
        }
        line(out, format_args!(" !"));
        line(out, format_args!(" address-family {family} unicast"));
        let networks: std::collections::BTreeSet<&IpNet> =
            members.iter().flat_map(|s| s.prefixes.keys()).collect();
        for network in networks {
            line(out, format_args!("  network {network}"));
        }
        for session in members {
            let (address, name) = (session.peer.address, &session.peer.name);
            line(out, format_args!("  neighbor {address} activate"));
            line(
                out,
                format_args!("  neighbor {address} route-map herald-{name}-in in"),
            );
            line(
                out,
                format_args!("  neighbor {address} route-map herald-{name}-out out"),
            );
        }
        line(out, format_args!(" exit-address-family"));
    }
    line(out, format_args!("exit"));
    line(out, format_args!("!"));
}

/// The `bfd` block: the profiles the rendered peers use, each once, by name.
fn bfd(out: &mut String, peers: &[Configured]) {
    let profiles: BTreeMap<&str, &BfdProfile> = peers
        .iter()
        .filter_map(|p| p.bfd)
        .map(|p| (p.name.as_str(), p))
        .collect();
    // Written even empty: once FRR has had a `bfd` block it shows one, and without it here
    // frr-reload.py would remove it at every reload.
    line(out, format_args!("bfd"));
    for profile in profiles.values() {
        line(out, format_args!(" profile {}", profile.name));
        let set = |value: Option<u32>, default: u32| value.filter(|v| *v != default);
        if let Some(v) = set(profile.detect_multiplier, BFD_DEFAULT_MULTIPLIER) {
            line(out, format_args!("  detect-multiplier {v}"));
        }
        if let Some(v) = set(profile.receive_interval, BFD_DEFAULT_INTERVAL_MS) {
            line(out, format_args!("  receive-interval {v}"));
        }
        if let Some(v) = set(profile.transmit_interval, BFD_DEFAULT_INTERVAL_MS) {
            line(out, format_args!("  transmit-interval {v}"));
        }
        if profile.echo_mode {
            line(out, format_args!("  echo-mode"));
        }
        if let Some(v) = set(profile.echo_interval, BFD_DEFAULT_ECHO_INTERVAL_MS) {
            line(out, format_args!("  echo receive-interval {v}"));
            line(out, format_args!("  echo transmit-interval {v}"));
        }
        if profile.passive_mode {
            line(out, format_args!("  passive-mode"));
        }
        if let Some(v) = set(profile.minimum_ttl, BFD_DEFAULT_MINIMUM_TTL) {
            line(out, format_args!("  minimum-ttl {v}"));
        }
        line(out, format_args!(" exit"));
        line(out, format_args!(" !"));
    }
    line(out, format_args!("exit"));
    line(out, format_args!("!"));
}

fn line(out: &mut String, text: std::fmt::Arguments) {
    out.write_fmt(text).expect("writing to a String");
    out.push('\n');
}
