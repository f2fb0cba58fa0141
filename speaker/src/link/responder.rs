//! Answers ARP and NDP on one interface for the addresses this node owns right now.
//!
//! On taking an address it first probes (RFC 5227 for IPv4, duplicate address detection for
//! IPv6) when asked to, then sends a burst of gratuitous ARP requests and replies / unsolicited
//! Neighbor Advertisements so that clients switch at once, and repeats one every refresh
//! period so that switches keep it in their tables. It answers only for addresses it owns at
//! this instant: an address taken away is not answered for from the next packet on.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv6Addr};
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::time::{Instant, MissedTickBehavior, interval, sleep_until};
use tracing::{debug, info, warn};

use super::interfaces::Interface;
use super::sockets::{ArpSocket, BUFFER, FrameSocket, NdpSocket};
use crate::metrics::Metrics;
use crate::packet::{self, MacAddr, Solicitor};

const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timings {
    /// Gratuitous announcements sent on taking an address, and the gap between them.
    pub burst: u32,
    pub burst_interval: Duration,
    /// How often an owned address is announced again, for switches' tables.
    pub refresh: Duration,
    /// How long to listen for another host using an address before first announcing it.
    pub probe_wait: Duration,
}

impl Default for Timings {
    fn default() -> Self {
        Timings {
            burst: 3,
            burst_interval: Duration::from_millis(100),
            refresh: Duration::from_secs(30),
            probe_wait: Duration::from_millis(300),
        }
    }
}

/// What the interface should answer for: each address, and whether to probe before the first
/// announcement (no other node of the cluster has announced it yet).
pub type Wanted = BTreeMap<IpAddr, bool>;

/// Something the responder saw that the runtime reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Report {
    /// Another host answered the probe: the address is not announced.
    Conflict {
        ip: IpAddr,
        interface: String,
        mac: MacAddr,
    },
    /// The address is answered for from now on.
    Announcing { ip: IpAddr, interface: String },
}

struct Probe {
    deadline: Instant,
}

/// Runs until `wanted` is closed. Socket errors end it with the error.
pub async fn run(
    interface: Interface,
    mut wanted: watch::Receiver<Wanted>,
    timings: Timings,
    reports: mpsc::UnboundedSender<Report>,
    metrics: Metrics,
) -> std::io::Result<()> {
    // The first set of addresses counts as a change.
    wanted.mark_changed();
    debug!(interface = %interface.name, index = interface.index, mac = %interface.mac, "responder starting");
    let arp = ArpSocket::open(interface.index)?;
    let ndp = NdpSocket::open(&interface.name, interface.index)?;
    let frames = FrameSocket::open(interface.index)?;
    let (mut arp_buffer, mut ndp_buffer) = ([0; BUFFER], [0; BUFFER]);
    let mut owned: BTreeSet<IpAddr> = BTreeSet::new();
    let mut probing: BTreeMap<IpAddr, Probe> = BTreeMap::new();
    let mut bursts: BTreeMap<IpAddr, u32> = BTreeMap::new();
    let mut joined: BTreeSet<Ipv6Addr> = BTreeSet::new();
    let mut burst_tick = interval(timings.burst_interval);
    burst_tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut refresh_tick = interval(timings.refresh);
    refresh_tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mac = interface.mac;
    let name = interface.name.clone();
    let send = Sender {
        arp: &arp,
        ndp: &ndp,
        frames: &frames,
        mac,
        metrics: &metrics,
    };

    loop {
        let next_probe_end = probing.values().map(|p| p.deadline).min();
        tokio::select! {
            changed = wanted.changed() => {
                if changed.is_err() {
                    return Ok(());
                }
                let now_wanted = wanted.borrow_and_update().clone();
                owned.retain(|ip| now_wanted.contains_key(ip));
                probing.retain(|ip, _| now_wanted.contains_key(ip));
                bursts.retain(|ip, _| now_wanted.contains_key(ip));
                for (ip, probe_first) in &now_wanted {
                    if owned.contains(ip) || probing.contains_key(ip) {
                        continue;
                    }
                    if *probe_first {
                        send.probe(*ip).await;
                        probing.insert(*ip, Probe { deadline: Instant::now() + timings.probe_wait });
                    } else {
                        owned.insert(*ip);
                        bursts.insert(*ip, timings.burst);
                        send.gratuitous(*ip).await;
                        let _ = reports.send(Report::Announcing { ip: *ip, interface: name.clone() });
                    }
                }
                sync_groups(&ndp, &owned, &probing, &mut joined);
            }
            frame = arp.recv(&mut arp_buffer) => {
                let frame = frame?;
                if let Some(request) = packet::parse_arp_request(frame)
                    && owned.contains(&IpAddr::V4(request.target_ip))
                    && request.addressed_to(mac)
                {
                    metrics.requests.arp.inc();
                    send.arp_reply(&request).await;
                }
                let Some(packet) = packet::parse_arp(frame) else { continue };
                probing.retain(|ip, _| {
                    let IpAddr::V4(v4) = *ip else { return true };
                    if packet.claim(v4, mac).is_none() {
                        return true;
                    }
                    warn!(%ip, interface = %name, other = %packet.sender_mac, "address already in use on the LAN; not announcing it");
                    let _ = reports.send(Report::Conflict { ip: *ip, interface: name.clone(), mac: packet.sender_mac });
                    false
                });
            }
            message = ndp.recv(&mut ndp_buffer) => {
                let (message, source, hop_limit) = message?;
                if let Some(solicitation) = packet::parse_neighbor_solicitation(message, hop_limit) {
                    let target = IpAddr::V6(solicitation.target);
                    match solicitation.solicitor(source) {
                        Some(Solicitor::Node(from)) if owned.contains(&target) => {
                            metrics.requests.ndp.inc();
                            send.solicited_advertisement(solicitation.target, from, solicitation.source_mac).await;
                        }
                        // Another node probes for an address we hold: defend it.
                        Some(Solicitor::Dad) if owned.contains(&target) => {
                            send.unsolicited_advertisement(solicitation.target).await;
                        }
                        Some(Solicitor::Dad) if probing.contains_key(&target) => {
                            probing.remove(&target);
                            let other = solicitation.source_mac.unwrap_or(MacAddr::zero());
                            let _ = reports.send(Report::Conflict { ip: target, interface: name.clone(), mac: other });
                        }
                        _ => {}
                    }
                } else if let Some(advertisement) = packet::parse_neighbor_advertisement(message, hop_limit) {
                    let target = IpAddr::V6(advertisement.target);
                    if probing.remove(&target).is_some() {
                        let other = advertisement.target_mac.unwrap_or(MacAddr::zero());
                        warn!(ip = %target, interface = %name, %other, "address already in use on the LAN; not announcing it");
                        let _ = reports.send(Report::Conflict { ip: target, interface: name.clone(), mac: other });
                    }
                }
                sync_groups(&ndp, &owned, &probing, &mut joined);
            }
            () = async { sleep_until(next_probe_end.expect("guarded")).await }, if next_probe_end.is_some() => {
                let now = Instant::now();
                let done: Vec<IpAddr> = probing.iter().filter(|(_, p)| p.deadline <= now).map(|(ip, _)| *ip).collect();
                for ip in done {
                    probing.remove(&ip);
                    owned.insert(ip);
                    bursts.insert(ip, timings.burst);
                    send.gratuitous(ip).await;
                    info!(%ip, interface = %name, "no other host uses the address; announcing it");
                    let _ = reports.send(Report::Announcing { ip, interface: name.clone() });
                }
                sync_groups(&ndp, &owned, &probing, &mut joined);
            }
            _ = burst_tick.tick(), if !bursts.is_empty() => {
                let due: Vec<IpAddr> = bursts.keys().copied().collect();
                for ip in due {
                    send.gratuitous(ip).await;
                    let left = bursts.get_mut(&ip).expect("listed above");
                    *left = left.saturating_sub(1);
                    if *left <= 1 {
                        bursts.remove(&ip);
                    }
                }
            }
            _ = refresh_tick.tick() => {
                for ip in owned.clone() {
                    send.gratuitous(ip).await;
                }
            }
        }
    }
}

/// Joins the solicited-node group of every IPv6 address owned or being probed, and leaves the
/// others, so the NIC passes exactly the solicitations we answer.
fn sync_groups(
    ndp: &NdpSocket,
    owned: &BTreeSet<IpAddr>,
    probing: &BTreeMap<IpAddr, Probe>,
    joined: &mut BTreeSet<Ipv6Addr>,
) {
    let wanted: BTreeSet<Ipv6Addr> = owned
        .iter()
        .chain(probing.keys())
        .filter_map(|ip| match ip {
            IpAddr::V6(v6) => Some(packet::solicited_node_multicast(*v6)),
            IpAddr::V4(_) => None,
        })
        .collect();
    for group in wanted.difference(joined).copied().collect::<Vec<_>>() {
        match ndp.join(group) {
            Ok(()) => {
                debug!(%group, "joined the solicited-node group");
                joined.insert(group);
            }
            Err(e) => warn!(%group, error = %e, "joining a solicited-node group failed"),
        }
    }
    for group in joined.difference(&wanted).copied().collect::<Vec<_>>() {
        if let Err(e) = ndp.leave(group) {
            debug!(%group, error = %e, "leaving a solicited-node group failed");
        }
        joined.remove(&group);
    }
}

struct Sender<'a> {
    arp: &'a ArpSocket,
    ndp: &'a NdpSocket,
    frames: &'a FrameSocket,
    mac: MacAddr,
    metrics: &'a Metrics,
}

impl Sender<'_> {
    async fn arp_reply(&self, request: &packet::ArpRequest) {
        let reply = packet::arp_reply(
            self.mac,
            request.target_ip,
            request.sender_mac,
            request.sender_ip,
        );
        self.log(self.arp.send(&reply).await, "ARP reply");
        self.metrics.replies.arp.inc();
    }

    /// Answers a solicitation the way a host holding `target` does: from `target` itself, to
    /// the solicitor's link-layer address when it gave one (else through the kernel, from a
    /// link-local source).
    async fn solicited_advertisement(
        &self,
        target: Ipv6Addr,
        to: Ipv6Addr,
        to_mac: Option<MacAddr>,
    ) {
        let message = packet::solicited_neighbor_advertisement(target, self.mac);
        let sent = match to_mac {
            Some(mac) => {
                let frame = packet::ipv6_frame(self.mac, mac, target, to, &message);
                self.frames.send(&frame).await
            }
            None => self.ndp.send(&message, to).await,
        };
        self.log(sent, "Neighbor Advertisement");
        self.metrics.replies.ndp.inc();
    }

    /// Tells every node on the link that `target` is here (takeover, refresh, DAD defence).
    async fn unsolicited_advertisement(&self, target: Ipv6Addr) {
        let message = packet::unsolicited_neighbor_advertisement(target, self.mac);
        let frame = packet::ipv6_frame(
            self.mac,
            packet::multicast_mac(ALL_NODES),
            target,
            ALL_NODES,
            &message,
        );
        self.log(
            self.frames.send(&frame).await,
            "unsolicited Neighbor Advertisement",
        );
    }

    /// Linux clients take a gratuitous request at once but ignore a gratuitous reply within
    /// a second of their entry's last change; other stacks want the reply: send both.
    async fn gratuitous(&self, ip: IpAddr) {
        match ip {
            IpAddr::V4(v4) => {
                self.log(
                    self.arp
                        .send(&packet::gratuitous_arp_request(self.mac, v4))
                        .await,
                    "gratuitous ARP",
                );
                self.log(
                    self.arp
                        .send(&packet::gratuitous_arp_reply(self.mac, v4))
                        .await,
                    "gratuitous ARP",
                );
                self.metrics.gratuitous.arp.inc();
            }
            IpAddr::V6(v6) => {
                self.unsolicited_advertisement(v6).await;
                self.metrics.gratuitous.ndp.inc();
            }
        }
    }

    async fn probe(&self, ip: IpAddr) {
        match ip {
            IpAddr::V4(v4) => {
                self.log(
                    self.arp.send(&packet::arp_probe(self.mac, v4)).await,
                    "ARP probe",
                );
            }
            // Duplicate address detection: a solicitation from ::, which a host holding the
            // address answers to all nodes.
            IpAddr::V6(v6) => {
                let group = packet::solicited_node_multicast(v6);
                let message = packet::dad_neighbor_solicitation(v6);
                let frame = packet::ipv6_frame(
                    self.mac,
                    packet::multicast_mac(group),
                    Ipv6Addr::UNSPECIFIED,
                    group,
                    &message,
                );
                self.log(self.frames.send(&frame).await, "DAD solicitation");
            }
        }
    }

    fn log(&self, result: std::io::Result<()>, what: &str) {
        if let Err(e) = result {
            warn!(error = %e, "sending {what} failed");
        }
    }
}
