//! Answers ARP and NDP on one interface for the addresses this node owns right now.
//!
//! On taking an address it first probes (RFC 5227 for IPv4, duplicate address detection for
//! IPv6) when asked to, then sends a burst of gratuitous ARP requests and replies / unsolicited
//! Neighbor Advertisements so that clients switch at once, and repeats one every refresh
//! period so that switches keep it in their tables. It answers only for addresses it owns at
//! this instant: an address taken away is not answered for from the next packet on, and one
//! handed over to another node until that node announces it.
//!
//! The decisions are [`Responder`]'s, a state machine without I/O; [`run`] reads the sockets and
//! the clock, and sends, reports and joins what it says.

mod machine;

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv6Addr};
use std::time::Instant;

use tokio::sync::{mpsc, watch};
use tokio::time::sleep_until;
use tracing::{debug, warn};

use super::interfaces::Interface;
use super::sockets::{ArpSocket, BUFFER, FrameSocket, NdpSocket};
use crate::metrics::Metrics;
use crate::packet::{self, MacAddr, Nonce};
pub use machine::{Action, Answer, Frame, Report, Responder, Timings, Wanted};

const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);

/// Runs until `wanted` is closed. Socket errors end it with the error. `own_macs` are the MACs
/// of every interface of the node, and `nonce` the speaker's DAD nonce, shared by its
/// responders: what they hear from each other is never a conflict.
pub async fn run(
    interface: Interface,
    mut wanted: watch::Receiver<Wanted>,
    mut own_macs: watch::Receiver<BTreeSet<MacAddr>>,
    nonce: Nonce,
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
    let macs = own_macs.borrow_and_update().clone();
    let mut responder = Responder::new(
        interface.name.clone(),
        interface.mac,
        nonce,
        timings,
        macs,
        Instant::now(),
    );
    let send = Sender {
        arp: &arp,
        ndp: &ndp,
        frames: &frames,
        mac: interface.mac,
        nonce,
        metrics: &metrics,
    };

    // One timer, moved when the deadline moves: not one made per frame on the reply path.
    let timer = sleep_until(tokio::time::Instant::from_std(responder.next_deadline()));
    tokio::pin!(timer);
    loop {
        let deadline = tokio::time::Instant::from_std(responder.next_deadline());
        if timer.deadline() != deadline {
            timer.as_mut().reset(deadline);
        }
        let actions = tokio::select! {
            changed = wanted.changed() => {
                if changed.is_err() {
                    return Ok(());
                }
                let now_wanted = wanted.borrow_and_update().clone();
                responder.on_wanted(&now_wanted, Instant::now())
            }
            Ok(()) = own_macs.changed() => {
                responder.on_own_macs(own_macs.borrow_and_update().clone());
                continue;
            }
            frame = arp.recv(&mut arp_buffer) => responder.on_arp(frame?, Instant::now()),
            message = ndp.recv(&mut ndp_buffer) => {
                let (message, source, hop_limit) = message?;
                responder.on_ndp(message, source, hop_limit, Instant::now())
            }
            () = &mut timer => responder.on_deadline(Instant::now()),
        };
        for action in actions {
            match action {
                Action::Send(frame) => send.frame(frame).await,
                Action::Report(report) => {
                    if let Report::Conflict { ip, interface, mac } = &report {
                        warn!(%ip, %interface, other = %mac, "address already in use on the LAN; not announcing it");
                    }
                    let _ = reports.send(report);
                }
                Action::Join(group) => match ndp.join(group) {
                    Ok(()) => debug!(%group, "joined the solicited-node group"),
                    Err(e) => {
                        warn!(%group, error = %e, "joining a solicited-node group failed");
                        responder.join_failed(group);
                    }
                },
                Action::Leave(group) => {
                    if let Err(e) = ndp.leave(group) {
                        debug!(%group, error = %e, "leaving a solicited-node group failed");
                    }
                }
            }
        }
    }
}

struct Sender<'a> {
    arp: &'a ArpSocket,
    ndp: &'a NdpSocket,
    frames: &'a FrameSocket,
    mac: MacAddr,
    nonce: Nonce,
    metrics: &'a Metrics,
}

impl Sender<'_> {
    async fn frame(&self, frame: Frame) {
        match frame {
            Frame::ArpReply(request) => {
                self.metrics.requests.arp.inc();
                self.arp_reply(&request).await;
            }
            Frame::SolicitedAdvertisement { target, to, to_mac } => {
                self.metrics.requests.ndp.inc();
                self.solicited_advertisement(target, to, to_mac).await;
            }
            Frame::Gratuitous(ip) => self.gratuitous(ip).await,
            Frame::Defence(target) => self.unsolicited_advertisement(target).await,
            Frame::Probe(ip) => self.probe(ip).await,
        }
    }

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
                let message = packet::dad_neighbor_solicitation(v6, self.nonce);
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
