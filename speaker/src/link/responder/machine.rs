//! The responder's decisions, without I/O: what it answers, probes, announces and reports for
//! the frames it reads and the time it is given. [`super::run`] reads the sockets and the clock,
//! feeds them in here, and performs the [`Action`]s that come back.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv6Addr};
use std::time::{Duration, Instant};

use crate::packet::{self, ArpRequest, MacAddr, Nonce, Solicitor};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timings {
    /// Gratuitous announcements sent on taking an address, and the gap between them.
    pub burst: u32,
    pub burst_interval: Duration,
    /// How often an owned address is announced again, for switches' tables.
    pub refresh: Duration,
    /// How long to listen for another host using an address before first announcing it.
    pub probe_wait: Duration,
    /// How long an address another node has won is still answered while that node has not
    /// announced it.
    pub handover: Duration,
}

impl Default for Timings {
    fn default() -> Self {
        Timings {
            burst: 3,
            burst_interval: Duration::from_millis(100),
            refresh: Duration::from_secs(30),
            probe_wait: Duration::from_millis(300),
            handover: Duration::from_secs(1),
        }
    }
}

/// How an interface answers for an address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// From now on, after probing for another host using it: no node of the cluster has
    /// announced it yet.
    AfterProbe,
    /// From now on, at once: a failover must not wait.
    AtOnce,
    /// Another node of the cluster has won it: answered while that node has not announced it
    /// yet (at most `handover`), so that requests get one answer, never none or two. Never
    /// started: only an address answered now is handed over.
    UntilTakenOver,
}

/// What the interface should answer for, and how.
pub type Wanted = BTreeMap<IpAddr, Answer>;

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
    /// The address, handed over, is no longer answered for: its new owner announced it, or the
    /// handover ran out.
    HandedOver { ip: IpAddr, interface: String },
    /// A frame from `other_mac`, another interface of this node, arrived on `interface`: the two
    /// are on one segment, where one of them is enough to answer.
    SharedSegment {
        interface: String,
        other_mac: MacAddr,
    },
}

/// A frame to send out of the interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frame {
    /// The answer to an ARP request for an owned address.
    ArpReply(ArpRequest),
    /// The answer to a Neighbor Solicitation for owned `target` from `to` (at `to_mac` when the
    /// solicitation said).
    SolicitedAdvertisement {
        target: Ipv6Addr,
        to: Ipv6Addr,
        to_mac: Option<MacAddr>,
    },
    /// Gratuitous ARP or an unsolicited Neighbor Advertisement: taking the address over, or
    /// refreshing switches' tables.
    Gratuitous(IpAddr),
    /// An unsolicited Neighbor Advertisement answering another host's DAD probe for an owned
    /// address.
    Defence(Ipv6Addr),
    /// An RFC 5227 ARP probe, or a DAD Neighbor Solicitation carrying the speaker's nonce.
    Probe(IpAddr),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Send(Frame),
    Report(Report),
    /// Join or leave the solicited-node group of an address owned or probed, so that the NIC
    /// passes exactly the solicitations answered.
    Join(Ipv6Addr),
    Leave(Ipv6Addr),
}

/// The rest of a burst of gratuitous announcements for one address.
#[derive(Debug, Clone, Copy)]
struct Burst {
    left: u32,
    next: Instant,
}

/// One interface's responder.
#[derive(Debug)]
pub struct Responder {
    interface: String,
    mac: MacAddr,
    /// The nonce of this speaker's DAD probes, the same on all its interfaces.
    nonce: Nonce,
    timings: Timings,
    /// Every interface's MAC on this node, this one's included: never a conflict.
    own_macs: BTreeSet<MacAddr>,
    /// Other interfaces of this node heard on this one, and reported.
    heard: BTreeSet<MacAddr>,
    owned: BTreeSet<IpAddr>,
    /// Addresses being probed, and when the probe ends.
    probing: BTreeMap<IpAddr, Instant>,
    bursts: BTreeMap<IpAddr, Burst>,
    /// Owned addresses being handed over, and when the handover runs out.
    handing_over: BTreeMap<IpAddr, Instant>,
    /// Owned addresses another host announced or answered for, and when it last did: a node
    /// that takes an address over may announce it before this one learns it lost it.
    claimed: BTreeMap<IpAddr, Instant>,
    next_refresh: Instant,
    joined: BTreeSet<Ipv6Addr>,
}

impl Responder {
    pub fn new(
        interface: impl Into<String>,
        mac: MacAddr,
        nonce: Nonce,
        timings: Timings,
        own_macs: BTreeSet<MacAddr>,
        now: Instant,
    ) -> Self {
        let mut responder = Responder {
            interface: interface.into(),
            mac,
            nonce,
            timings,
            own_macs: BTreeSet::new(),
            heard: BTreeSet::new(),
            owned: BTreeSet::new(),
            probing: BTreeMap::new(),
            bursts: BTreeMap::new(),
            handing_over: BTreeMap::new(),
            claimed: BTreeMap::new(),
            next_refresh: now + timings.refresh,
            joined: BTreeSet::new(),
        };
        responder.on_own_macs(own_macs);
        responder
    }

    /// When the loop must call [`Responder::on_deadline`] next.
    pub fn next_deadline(&self) -> Instant {
        self.probing
            .values()
            .chain(self.bursts.values().map(|b| &b.next))
            .chain(self.handing_over.values())
            .copied()
            .chain([self.next_refresh])
            .min()
            .unwrap_or(self.next_refresh)
    }

    /// The addresses to answer for now: those no longer wanted are not answered from the next
    /// packet on; new ones are probed first or announced at once; those handed over are
    /// answered until their new owner announces them.
    pub fn on_wanted(&mut self, wanted: &Wanted, now: Instant) -> Vec<Action> {
        let answered = |ip: &IpAddr| {
            wanted
                .get(ip)
                .is_some_and(|answer| *answer != Answer::UntilTakenOver)
        };
        self.owned.retain(|ip| wanted.contains_key(ip));
        self.probing.retain(|ip, _| answered(ip));
        self.bursts.retain(|ip, _| answered(ip));
        self.handing_over
            .retain(|ip, _| wanted.get(ip) == Some(&Answer::UntilTakenOver));
        let handover = self.timings.handover;
        self.claimed
            .retain(|ip, when| self.owned.contains(ip) && now < *when + handover);
        let mut actions = Vec::new();
        for (ip, answer) in wanted {
            match answer {
                Answer::UntilTakenOver => {
                    if !self.owned.contains(ip) || self.handing_over.contains_key(ip) {
                        continue;
                    }
                    if self.claimed.contains_key(ip) {
                        self.hand_over(*ip, &mut actions);
                    } else {
                        self.handing_over.insert(*ip, now + handover);
                    }
                }
                _ if self.owned.contains(ip) || self.probing.contains_key(ip) => {}
                Answer::AfterProbe => {
                    actions.push(Action::Send(Frame::Probe(*ip)));
                    self.probing.insert(*ip, now + self.timings.probe_wait);
                }
                Answer::AtOnce => self.announce(*ip, now, &mut actions),
            }
        }
        self.sync_groups(&mut actions);
        actions
    }

    /// The MACs of the node's interfaces changed (the runtime's snapshot).
    pub fn on_own_macs(&mut self, mut macs: BTreeSet<MacAddr>) {
        macs.insert(self.mac);
        // An interface that went away and returns is reported again: the runtime forgot it.
        self.heard.retain(|mac| macs.contains(mac));
        self.own_macs = macs;
    }

    /// An ARP frame as read from the interface.
    pub fn on_arp(&mut self, frame: &[u8], now: Instant) -> Vec<Action> {
        let mut actions = Vec::new();
        if let Some(request) = packet::parse_arp_request(frame)
            && self.owned.contains(&IpAddr::V4(request.target_ip))
            && request.addressed_to(self.mac)
        {
            actions.push(Action::Send(Frame::ArpReply(request)));
        }
        let Some(packet) = packet::parse_arp(frame) else {
            return actions;
        };
        self.heard_from(packet.sender_mac, &mut actions);
        let sender_ip = IpAddr::V4(packet.sender_ip);
        if self.owned.contains(&sender_ip)
            && packet.claim(packet.sender_ip, &self.own_macs).is_some()
        {
            self.on_claim(sender_ip, now, &mut actions);
        }
        let (own_macs, interface) = (&self.own_macs, &self.interface);
        self.probing.retain(|ip, _| {
            let IpAddr::V4(v4) = *ip else { return true };
            if packet.claim(v4, own_macs).is_none() {
                return true;
            }
            actions.push(Action::Report(Report::Conflict {
                ip: *ip,
                interface: interface.clone(),
                mac: packet.sender_mac,
            }));
            false
        });
        actions
    }

    /// An ICMPv6 message as the raw socket read it: from `source`, with `hop_limit`.
    pub fn on_ndp(
        &mut self,
        message: &[u8],
        source: Ipv6Addr,
        hop_limit: u8,
        now: Instant,
    ) -> Vec<Action> {
        let mut actions = Vec::new();
        if let Some(solicitation) = packet::parse_neighbor_solicitation(message, hop_limit) {
            let target = IpAddr::V6(solicitation.target);
            match solicitation.solicitor(source) {
                Some(Solicitor::Node(from)) if self.owned.contains(&target) => {
                    actions.push(Action::Send(Frame::SolicitedAdvertisement {
                        target: solicitation.target,
                        to: from,
                        to_mac: solicitation.source_mac,
                    }));
                }
                // Our own probe, from another interface on this segment: neither a conflict nor
                // a host to defend the address against.
                Some(Solicitor::Dad) if solicitation.nonce == Some(self.nonce) => {}
                // Another node probes for an address we hold: defend it.
                Some(Solicitor::Dad) if self.owned.contains(&target) => {
                    actions.push(Action::Send(Frame::Defence(solicitation.target)));
                }
                Some(Solicitor::Dad) if self.probing.remove(&target).is_some() => {
                    actions.push(Action::Report(Report::Conflict {
                        ip: target,
                        interface: self.interface.clone(),
                        mac: solicitation.source_mac.unwrap_or(MacAddr::zero()),
                    }));
                }
                _ => {}
            }
        } else if let Some(advertisement) = packet::parse_neighbor_advertisement(message, hop_limit)
        {
            let target = IpAddr::V6(advertisement.target);
            match advertisement.target_mac {
                Some(mac) if self.own_macs.contains(&mac) => self.heard_from(mac, &mut actions),
                Some(_) if self.owned.contains(&target) => {
                    self.on_claim(target, now, &mut actions);
                }
                other => {
                    if self.probing.remove(&target).is_some() {
                        actions.push(Action::Report(Report::Conflict {
                            ip: target,
                            interface: self.interface.clone(),
                            mac: other.unwrap_or(MacAddr::zero()),
                        }));
                    }
                }
            }
        }
        self.sync_groups(&mut actions);
        actions
    }

    /// Ends the probes and handovers that are due, sends the bursts and refreshes that are due.
    pub fn on_deadline(&mut self, now: Instant) -> Vec<Action> {
        let mut actions = Vec::new();
        let run_out: Vec<IpAddr> = self
            .handing_over
            .iter()
            .filter(|(_, end)| **end <= now)
            .map(|(ip, _)| *ip)
            .collect();
        for ip in run_out {
            self.hand_over(ip, &mut actions);
        }
        let done: Vec<IpAddr> = self
            .probing
            .iter()
            .filter(|(_, end)| **end <= now)
            .map(|(ip, _)| *ip)
            .collect();
        for ip in done {
            self.probing.remove(&ip);
            self.announce(ip, now, &mut actions);
        }
        let interval = self.timings.burst_interval;
        self.bursts.retain(|ip, burst| {
            if burst.next > now {
                return true;
            }
            actions.push(Action::Send(Frame::Gratuitous(*ip)));
            burst.left -= 1;
            burst.next = now + interval;
            burst.left > 0
        });
        if self.next_refresh <= now {
            // Not those being handed over: that would take clients back from the new owner.
            for ip in self
                .owned
                .iter()
                .filter(|ip| !self.handing_over.contains_key(ip))
            {
                actions.push(Action::Send(Frame::Gratuitous(*ip)));
            }
            self.next_refresh = now + self.timings.refresh;
        }
        self.sync_groups(&mut actions);
        actions
    }

    /// Joining `group` failed: it is tried again on the next change.
    pub fn join_failed(&mut self, group: Ipv6Addr) {
        self.joined.remove(&group);
    }

    /// Answers for `ip` from now on: the first of a burst of gratuitous announcements goes now.
    fn announce(&mut self, ip: IpAddr, now: Instant, actions: &mut Vec<Action>) {
        self.owned.insert(ip);
        actions.push(Action::Send(Frame::Gratuitous(ip)));
        if self.timings.burst > 1 {
            let burst = Burst {
                left: self.timings.burst - 1,
                next: now + self.timings.burst_interval,
            };
            self.bursts.insert(ip, burst);
        }
        actions.push(Action::Report(Report::Announcing {
            ip,
            interface: self.interface.clone(),
        }));
    }

    /// Another host announced or answered for owned `ip`: the new owner, if it is being handed
    /// over. Anyone else is ignored: only the election takes an address away.
    fn on_claim(&mut self, ip: IpAddr, now: Instant, actions: &mut Vec<Action>) {
        if self.handing_over.contains_key(&ip) {
            self.hand_over(ip, actions);
        } else {
            self.claimed.insert(ip, now);
        }
    }

    /// Stops answering for `ip`, handed over.
    fn hand_over(&mut self, ip: IpAddr, actions: &mut Vec<Action>) {
        self.owned.remove(&ip);
        self.handing_over.remove(&ip);
        self.claimed.remove(&ip);
        actions.push(Action::Report(Report::HandedOver {
            ip,
            interface: self.interface.clone(),
        }));
    }

    /// A frame from `mac`: when that is another interface of this node, the two share this
    /// segment; reported once.
    fn heard_from(&mut self, mac: MacAddr, actions: &mut Vec<Action>) {
        if mac != self.mac && self.own_macs.contains(&mac) && self.heard.insert(mac) {
            actions.push(Action::Report(Report::SharedSegment {
                interface: self.interface.clone(),
                other_mac: mac,
            }));
        }
    }

    /// Joins the solicited-node group of every IPv6 address owned or being probed, and leaves
    /// the others.
    fn sync_groups(&mut self, actions: &mut Vec<Action>) {
        let wanted: BTreeSet<Ipv6Addr> = self
            .owned
            .iter()
            .chain(self.probing.keys())
            .filter_map(|ip| match ip {
                IpAddr::V6(v6) => Some(packet::solicited_node_multicast(*v6)),
                IpAddr::V4(_) => None,
            })
            .collect();
        for group in wanted.difference(&self.joined) {
            actions.push(Action::Join(*group));
        }
        for group in self.joined.difference(&wanted) {
            actions.push(Action::Leave(*group));
        }
        self.joined = wanted;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    const MAC: MacAddr = MacAddr(0x02, 0, 0, 0, 0, 0x0b);
    const OTHER_HOST: MacAddr = MacAddr(0x02, 0, 0, 0, 0, 0x99);
    const CLIENT: MacAddr = MacAddr(0x02, 0, 0, 0, 0, 0x64);
    const CLIENT_IP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 100);
    const CLIENT_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x100);
    const NONCE: Nonce = [1, 2, 3, 4, 5, 6];
    const V4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 200);
    const V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x200);

    fn timings() -> Timings {
        Timings::default()
    }

    fn responder(now: Instant) -> Responder {
        Responder::new("eth0", MAC, NONCE, timings(), BTreeSet::new(), now)
    }

    fn wanted(ips: &[(IpAddr, Answer)]) -> Wanted {
        ips.iter().copied().collect()
    }

    fn sends(actions: &[Action]) -> Vec<Frame> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Send(frame) => Some(*frame),
                _ => None,
            })
            .collect()
    }

    fn reports(actions: &[Action]) -> Vec<Report> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Report(report) => Some(report.clone()),
                _ => None,
            })
            .collect()
    }

    fn announcing(ip: impl Into<IpAddr>) -> Report {
        Report::Announcing {
            ip: ip.into(),
            interface: "eth0".into(),
        }
    }

    fn client_request(ip: Ipv4Addr) -> Vec<u8> {
        let mut frame = packet::arp_probe(CLIENT, ip);
        // A resolution, not a probe: from the client's own address.
        frame[28..32].copy_from_slice(&CLIENT_IP.octets());
        frame
    }

    fn client_solicitation(ip: Ipv6Addr) -> Vec<u8> {
        packet::neighbor_solicitation(ip, CLIENT)
    }

    /// `responder` answers for `ip` now: an ARP request or a Neighbor Solicitation gets a reply.
    fn answers(responder: &mut Responder, ip: IpAddr, now: Instant) -> bool {
        let actions = match ip {
            IpAddr::V4(v4) => responder.on_arp(&client_request(v4), now),
            IpAddr::V6(v6) => responder.on_ndp(&client_solicitation(v6), CLIENT_V6, 255, now),
        };
        sends(&actions)
            .iter()
            .any(|f| matches!(f, Frame::ArpReply(_) | Frame::SolicitedAdvertisement { .. }))
    }

    #[test]
    fn a_new_address_is_probed_then_announced_after_probe_wait() {
        let start = Instant::now();
        let mut responder = responder(start);
        let group = packet::solicited_node_multicast(V6);
        let actions = responder.on_wanted(
            &wanted(&[
                (V4.into(), Answer::AfterProbe),
                (V6.into(), Answer::AfterProbe),
            ]),
            start,
        );
        assert_eq!(
            actions,
            [
                Action::Send(Frame::Probe(V4.into())),
                Action::Send(Frame::Probe(V6.into())),
                // Listening for other hosts' answers and probes.
                Action::Join(group),
            ]
        );
        // Not answered while probing.
        assert!(!answers(&mut responder, V4.into(), start));
        assert!(!answers(&mut responder, V6.into(), start));
        let end = start + timings().probe_wait;
        assert_eq!(responder.next_deadline(), end);
        assert_eq!(responder.on_deadline(end - Duration::from_millis(1)), []);
        let actions = responder.on_deadline(end);
        assert_eq!(
            sends(&actions),
            [Frame::Gratuitous(V4.into()), Frame::Gratuitous(V6.into())]
        );
        assert_eq!(reports(&actions), [announcing(V4), announcing(V6)]);
        assert!(answers(&mut responder, V4.into(), end));
        assert!(answers(&mut responder, V6.into(), end));
    }

    /// While probing, each of these from another host means the address is taken: the conflict is
    /// reported and the address never announced.
    #[test]
    fn a_conflict_while_probing_is_reported_and_never_announced() {
        let arp_cases: [(&str, Vec<u8>); 3] = [
            (
                "ARP reply",
                packet::arp_reply(OTHER_HOST, V4, MAC, Ipv4Addr::UNSPECIFIED),
            ),
            ("in use", packet::gratuitous_arp_request(OTHER_HOST, V4)),
            ("another host's probe", packet::arp_probe(OTHER_HOST, V4)),
        ];
        for (case, frame) in arp_cases {
            let start = Instant::now();
            let mut responder = responder(start);
            responder.on_wanted(&wanted(&[(V4.into(), Answer::AfterProbe)]), start);
            let actions = responder.on_arp(&frame, start);
            let conflict = Report::Conflict {
                ip: V4.into(),
                interface: "eth0".into(),
                mac: OTHER_HOST,
            };
            assert_eq!(reports(&actions), [conflict], "{case}");
            let later = responder.on_deadline(start + timings().probe_wait);
            assert_eq!(later, [], "{case}");
            assert!(!answers(&mut responder, V4.into(), start), "{case}");
        }

        let advertisement = packet::unsolicited_neighbor_advertisement(V6, OTHER_HOST);
        let foreign_dad = packet::dad_neighbor_solicitation(V6, [9; 6]);
        let ndp_cases: [(&str, &[u8], Ipv6Addr, MacAddr); 2] = [
            ("Neighbor Advertisement", &advertisement, V6, OTHER_HOST),
            (
                "another host's DAD probe",
                &foreign_dad,
                Ipv6Addr::UNSPECIFIED,
                MacAddr::zero(),
            ),
        ];
        for (case, message, source, mac) in ndp_cases {
            let start = Instant::now();
            let mut responder = responder(start);
            responder.on_wanted(&wanted(&[(V6.into(), Answer::AfterProbe)]), start);
            let actions = responder.on_ndp(message, source, 255, start);
            let conflict = Report::Conflict {
                ip: V6.into(),
                interface: "eth0".into(),
                mac,
            };
            assert_eq!(reports(&actions), [conflict], "{case}");
            // The probe is over: its group is left.
            assert!(
                actions.contains(&Action::Leave(packet::solicited_node_multicast(V6))),
                "{case}"
            );
            let later = responder.on_deadline(start + timings().probe_wait);
            assert_eq!(later, [], "{case}");
            assert!(!answers(&mut responder, V6.into(), start), "{case}");
        }
    }

    #[test]
    fn ndp_whose_hop_limit_is_not_255_is_ignored() {
        let start = Instant::now();
        let mut responder = responder(start);
        responder.on_wanted(&wanted(&[(V6.into(), Answer::AfterProbe)]), start);
        let advertisement = packet::unsolicited_neighbor_advertisement(V6, OTHER_HOST);
        assert_eq!(responder.on_ndp(&advertisement, V6, 64, start), []);
        responder.on_deadline(start + timings().probe_wait);
        let solicitation = client_solicitation(V6);
        assert_eq!(responder.on_ndp(&solicitation, CLIENT_V6, 64, start), []);
        assert!(answers(&mut responder, V6.into(), start));
    }

    #[test]
    fn a_takeover_announces_at_once_with_a_burst_then_stops() {
        let start = Instant::now();
        let mut responder = responder(start);
        let actions = responder.on_wanted(&wanted(&[(V4.into(), Answer::AtOnce)]), start);
        assert_eq!(sends(&actions), [Frame::Gratuitous(V4.into())]);
        assert_eq!(reports(&actions), [announcing(V4)]);
        assert!(answers(&mut responder, V4.into(), start));
        // The rest of the burst, one per interval; then nothing until the refresh.
        let mut gratuitous = 1;
        let mut now = start;
        while responder.next_deadline() < start + timings().refresh {
            now = responder.next_deadline();
            gratuitous += sends(&responder.on_deadline(now)).len();
        }
        assert_eq!(gratuitous, timings().burst as usize);
        assert_eq!(
            now,
            start + timings().burst_interval * (timings().burst - 1)
        );
    }

    #[test]
    fn owned_addresses_are_announced_again_every_refresh() {
        let start = Instant::now();
        let mut responder = responder(start);
        responder.on_wanted(
            &wanted(&[(V4.into(), Answer::AtOnce), (V6.into(), Answer::AtOnce)]),
            start,
        );
        let refresh = start + timings().refresh;
        while responder.next_deadline() < refresh {
            responder.on_deadline(responder.next_deadline());
        }
        let both = [Frame::Gratuitous(V4.into()), Frame::Gratuitous(V6.into())];
        assert_eq!(sends(&responder.on_deadline(refresh)), both);
        assert_eq!(responder.next_deadline(), refresh + timings().refresh);
        assert_eq!(
            sends(&responder.on_deadline(refresh + timings().refresh)),
            both
        );
    }

    #[test]
    fn an_address_taken_away_is_not_answered_from_the_next_packet_on() {
        let start = Instant::now();
        let mut responder = responder(start);
        let group = packet::solicited_node_multicast(V6);
        let actions = responder.on_wanted(
            &wanted(&[(V4.into(), Answer::AtOnce), (V6.into(), Answer::AtOnce)]),
            start,
        );
        assert!(actions.contains(&Action::Join(group)));
        let actions = responder.on_wanted(&Wanted::new(), start);
        assert_eq!(actions, [Action::Leave(group)]);
        assert!(!answers(&mut responder, V4.into(), start));
        assert!(!answers(&mut responder, V6.into(), start));
        // No burst left either, and nothing to refresh.
        let refresh = start + timings().refresh;
        assert_eq!(responder.next_deadline(), refresh);
        assert_eq!(responder.on_deadline(refresh), []);
    }

    fn handed_over(ip: impl Into<IpAddr>) -> Report {
        Report::HandedOver {
            ip: ip.into(),
            interface: "eth0".into(),
        }
    }

    #[test]
    fn an_address_handed_over_is_answered_until_its_new_owner_announces_it() {
        let start = Instant::now();
        let mut responder = responder(start);
        let both = [(V4.into(), Answer::AtOnce), (V6.into(), Answer::AtOnce)];
        responder.on_wanted(&wanted(&both), start);
        let giving_up = [
            (V4.into(), Answer::UntilTakenOver),
            (V6.into(), Answer::UntilTakenOver),
        ];
        let actions = responder.on_wanted(&wanted(&giving_up), start);
        assert_eq!(actions, []);
        assert!(answers(&mut responder, V4.into(), start));
        assert!(answers(&mut responder, V6.into(), start));

        // The new owner's gratuitous ARP: IPv4 is its own now, IPv6 still answered here.
        let taken = packet::gratuitous_arp_request(OTHER_HOST, V4);
        assert_eq!(reports(&responder.on_arp(&taken, start)), [handed_over(V4)]);
        assert!(!answers(&mut responder, V4.into(), start));
        assert!(answers(&mut responder, V6.into(), start));
        let taken = packet::unsolicited_neighbor_advertisement(V6, OTHER_HOST);
        let actions = responder.on_ndp(&taken, V6, 255, start);
        assert_eq!(reports(&actions), [handed_over(V6)]);
        assert!(actions.contains(&Action::Leave(packet::solicited_node_multicast(V6))));
        assert!(!answers(&mut responder, V6.into(), start));
        // Gone for good: the handover's deadline finds nothing.
        assert_eq!(responder.on_deadline(start + timings().handover), []);
    }

    #[test]
    fn a_handover_runs_out_when_the_new_owner_stays_silent() {
        let start = Instant::now();
        let mut responder = responder(start);
        responder.on_wanted(&wanted(&[(V4.into(), Answer::AtOnce)]), start);
        responder.on_wanted(&wanted(&[(V4.into(), Answer::UntilTakenOver)]), start);
        let end = start + timings().handover;
        while responder.next_deadline() < end {
            responder.on_deadline(responder.next_deadline());
        }
        assert_eq!(responder.next_deadline(), end);
        assert!(answers(&mut responder, V4.into(), end));
        assert_eq!(reports(&responder.on_deadline(end)), [handed_over(V4)]);
        assert!(!answers(&mut responder, V4.into(), end));
    }

    /// Another host claiming an owned address takes nothing away (only the election does), but
    /// a node that won the address and announced it before this one learnt so is its new owner.
    #[test]
    fn a_claim_takes_nothing_away_until_the_address_is_handed_over() {
        let start = Instant::now();
        let mut fresh = responder(start);
        fresh.on_wanted(&wanted(&[(V4.into(), Answer::AtOnce)]), start);
        let claim = packet::gratuitous_arp_request(OTHER_HOST, V4);
        assert_eq!(reports(&fresh.on_arp(&claim, start)), []);
        assert!(answers(&mut fresh, V4.into(), start));
        let soon = start + timings().handover / 2;
        let actions = fresh.on_wanted(&wanted(&[(V4.into(), Answer::UntilTakenOver)]), soon);
        assert_eq!(reports(&actions), [handed_over(V4)]);
        assert!(!answers(&mut fresh, V4.into(), soon));

        // A claim heard longer ago than a handover lasts is no announcement of a new owner.
        let mut stale = responder(start);
        stale.on_wanted(&wanted(&[(V4.into(), Answer::AtOnce)]), start);
        stale.on_arp(&claim, start);
        let late = start + timings().handover;
        let actions = stale.on_wanted(&wanted(&[(V4.into(), Answer::UntilTakenOver)]), late);
        assert_eq!(actions, []);
        assert!(answers(&mut stale, V4.into(), late));
    }

    /// A refresh during a handover would take clients back from the new owner.
    #[test]
    fn an_address_being_handed_over_is_not_announced_again() {
        let start = Instant::now();
        let mut responder = responder(start);
        let both = [(V4.into(), Answer::AtOnce), (V6.into(), Answer::AtOnce)];
        responder.on_wanted(&wanted(&both), start);
        let refresh = start + timings().refresh;
        while responder.next_deadline() < refresh {
            responder.on_deadline(responder.next_deadline());
        }
        let giving_up = [
            (V4.into(), Answer::UntilTakenOver),
            (V6.into(), Answer::AtOnce),
        ];
        responder.on_wanted(&wanted(&giving_up), refresh - timings().handover / 2);
        assert_eq!(
            sends(&responder.on_deadline(refresh)),
            [Frame::Gratuitous(V6.into())]
        );
        assert!(answers(&mut responder, V4.into(), refresh));
    }

    #[test]
    fn a_handover_never_starts_answering_and_ends_when_the_address_is_won_back() {
        let start = Instant::now();
        let mut responder = responder(start);
        let actions = responder.on_wanted(&wanted(&[(V4.into(), Answer::UntilTakenOver)]), start);
        assert_eq!(actions, []);
        assert!(!answers(&mut responder, V4.into(), start));

        responder.on_wanted(&wanted(&[(V4.into(), Answer::AtOnce)]), start);
        responder.on_wanted(&wanted(&[(V4.into(), Answer::UntilTakenOver)]), start);
        responder.on_wanted(&wanted(&[(V4.into(), Answer::AtOnce)]), start);
        let after = start + timings().handover;
        while responder.next_deadline() <= after {
            let actions = responder.on_deadline(responder.next_deadline());
            assert_eq!(reports(&actions), []);
        }
        assert!(answers(&mut responder, V4.into(), after));
    }

    #[test]
    fn answers_requests_to_broadcast_or_to_it_and_the_client_its_solicitation_names() {
        let start = Instant::now();
        let mut responder = responder(start);
        responder.on_wanted(
            &wanted(&[(V4.into(), Answer::AtOnce), (V6.into(), Answer::AtOnce)]),
            start,
        );
        let mut unicast_elsewhere = client_request(V4);
        unicast_elsewhere[..6].copy_from_slice(&OTHER_HOST.octets());
        assert_eq!(responder.on_arp(&unicast_elsewhere, start), []);
        let mut unicast_to_us = client_request(V4);
        unicast_to_us[..6].copy_from_slice(&MAC.octets());
        let request = packet::parse_arp_request(&unicast_to_us).unwrap();
        assert_eq!(
            responder.on_arp(&unicast_to_us, start),
            [Action::Send(Frame::ArpReply(request))]
        );
        assert_eq!(
            responder.on_ndp(&client_solicitation(V6), CLIENT_V6, 255, start),
            [Action::Send(Frame::SolicitedAdvertisement {
                target: V6,
                to: CLIENT_V6,
                to_mac: Some(CLIENT),
            })]
        );
    }

    #[test]
    fn a_held_address_is_defended_against_another_hosts_dad_probe_not_our_own() {
        let start = Instant::now();
        let mut responder = responder(start);
        responder.on_wanted(&wanted(&[(V6.into(), Answer::AtOnce)]), start);
        let foreign = packet::dad_neighbor_solicitation(V6, [9; 6]);
        assert_eq!(
            responder.on_ndp(&foreign, Ipv6Addr::UNSPECIFIED, 255, start),
            [Action::Send(Frame::Defence(V6))]
        );
        let ours = packet::dad_neighbor_solicitation(V6, NONCE);
        assert_eq!(
            responder.on_ndp(&ours, Ipv6Addr::UNSPECIFIED, 255, start),
            []
        );
    }

    #[test]
    fn a_failed_join_is_tried_again() {
        let start = Instant::now();
        let mut responder = responder(start);
        let group = packet::solicited_node_multicast(V6);
        responder.on_wanted(&wanted(&[(V6.into(), Answer::AfterProbe)]), start);
        responder.join_failed(group);
        let actions = responder.on_deadline(start + timings().probe_wait);
        assert!(actions.contains(&Action::Join(group)), "{actions:?}");
    }
}
