//! ARP for IPv4 over Ethernet (RFC 826), with RFC 5227's probes and announcements.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use pnet_packet::arp::{
    ArpHardwareTypes, ArpOperation, ArpOperations, ArpPacket, MutableArpPacket,
};
use pnet_packet::ethernet::{EtherTypes, EthernetPacket, MutableEthernetPacket};
use pnet_packet::{MutablePacket, Packet};

use super::MacAddr;

/// Length of the frames built here: the 42 bytes of Ethernet header and ARP body, padded to
/// Ethernet's 60-byte minimum (without FCS). Drivers usually pad short frames themselves, but
/// virtual ones (veth, some tunnels) pass them on as they are and some receivers drop runts.
pub const FRAME_LEN: usize = 60;

/// An Ethernet frame carrying an Ethernet/IPv4 ARP request or reply: what the speaker reads of
/// it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArpFrame {
    pub eth_destination: MacAddr,
    pub eth_source: MacAddr,
    /// [`ArpOperations::Request`] or [`ArpOperations::Reply`]: the parser drops the others.
    pub operation: ArpOperation,
    pub sender_mac: MacAddr,
    pub sender_ip: Ipv4Addr,
    pub target_mac: MacAddr,
    pub target_ip: Ipv4Addr,
}

/// What an ARP packet from another host says about one of our addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// The sender uses the address: it is the sender IP of a request or a reply (RFC 5227 §2.1.1,
    /// §2.4). Before announcing, the address is taken; while announcing, someone else fights for
    /// it.
    InUse,
    /// The sender probes for the address (sender IP 0.0.0.0, target IP the address): it is about
    /// to take it. A conflict while we probe ourselves (RFC 5227 §2.1.1); while we hold the
    /// address, our ordinary reply to the probe defends it.
    Probe,
}

impl ArpFrame {
    /// An RFC 5227 probe: a request from 0.0.0.0 asking whether `target_ip` is taken.
    pub fn is_probe(&self) -> bool {
        self.operation == ArpOperations::Request && self.sender_ip.is_unspecified()
    }

    /// What this packet says about `addr` when its sender is not us: none of `own_macs`, the
    /// MACs of every interface of this node (two of them on one segment hear each other's probes
    /// and announcements). `None` if it says nothing about it.
    pub fn claim(&self, addr: Ipv4Addr, own_macs: &BTreeSet<MacAddr>) -> Option<Claim> {
        if own_macs.contains(&self.sender_mac) {
            None
        } else if self.sender_ip == addr {
            Some(Claim::InUse)
        } else if self.is_probe() && self.target_ip == addr {
            Some(Claim::Probe)
        } else {
            None
        }
    }
}

/// An ARP request: someone asks who has `target_ip`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArpRequest {
    /// The frame's Ethernet destination: broadcast, or a unicast MAC when a host re-checks its
    /// entry.
    pub eth_destination: MacAddr,
    pub sender_mac: MacAddr,
    /// 0.0.0.0 in an RFC 5227 probe. Linux answers probes (to the sender MAC, target IP 0.0.0.0),
    /// and that is how the prober learns the address is taken.
    pub sender_ip: Ipv4Addr,
    pub target_ip: Ipv4Addr,
}

impl ArpRequest {
    /// Whether the request is for a host with this MAC to answer: sent to broadcast or to it.
    /// Like MetalLB, answer only those, not requests unicast to another host that we see anyway.
    pub fn addressed_to(&self, mac: MacAddr) -> bool {
        self.eth_destination.is_broadcast() || self.eth_destination == mac
    }
}

/// Parses an Ethernet frame holding an Ethernet/IPv4 ARP request or reply; `None` for anything
/// else. Trailing bytes (padding to 60 bytes) are ignored.
pub fn parse_arp(frame: &[u8]) -> Option<ArpFrame> {
    let ethernet = EthernetPacket::new(frame)?;
    if ethernet.get_ethertype() != EtherTypes::Arp {
        return None;
    }
    let arp = ArpPacket::new(ethernet.payload())?;
    let operation = arp.get_operation();
    // pnet reads the addresses as Ethernet's and IPv4's whatever the header says: check it does.
    let ethernet_ipv4 = arp.get_hardware_type() == ArpHardwareTypes::Ethernet
        && arp.get_protocol_type() == EtherTypes::Ipv4
        && arp.get_hw_addr_len() == 6
        && arp.get_proto_addr_len() == 4;
    if !ethernet_ipv4 || ![ArpOperations::Request, ArpOperations::Reply].contains(&operation) {
        return None;
    }
    Some(ArpFrame {
        eth_destination: ethernet.get_destination(),
        eth_source: ethernet.get_source(),
        operation,
        sender_mac: arp.get_sender_hw_addr(),
        sender_ip: arp.get_sender_proto_addr(),
        target_mac: arp.get_target_hw_addr(),
        target_ip: arp.get_target_proto_addr(),
    })
}

/// Parses an Ethernet frame holding an Ethernet/IPv4 ARP request; `None` for anything else.
pub fn parse_arp_request(frame: &[u8]) -> Option<ArpRequest> {
    let packet = parse_arp(frame)?;
    (packet.operation == ArpOperations::Request).then_some(ArpRequest {
        eth_destination: packet.eth_destination,
        sender_mac: packet.sender_mac,
        sender_ip: packet.sender_ip,
        target_ip: packet.target_ip,
    })
}

/// The reply to a request from `requester_mac`/`requester_ip`: `our_ip` is at `our_mac`,
/// unicast to the requester.
pub fn arp_reply(
    our_mac: MacAddr,
    our_ip: Ipv4Addr,
    requester_mac: MacAddr,
    requester_ip: Ipv4Addr,
) -> Vec<u8> {
    let sender = (our_mac, our_ip);
    let target = (requester_mac, requester_ip);
    frame(requester_mac, ArpOperations::Reply, sender, target)
}

/// A gratuitous ARP request (RFC 5227 §2.3 announcement): sender and target IP both `ip`, target
/// MAC zero, broadcast. Linux updates an existing entry from it at once.
pub fn gratuitous_arp_request(mac: MacAddr, ip: Ipv4Addr) -> Vec<u8> {
    frame(
        MacAddr::broadcast(),
        ArpOperations::Request,
        (mac, ip),
        (MacAddr::zero(), ip),
    )
}

/// A gratuitous ARP reply, for stacks that only learn from replies: sender and target IP both
/// `ip`, broadcast. The target MAC is `mac` too, as RFC 2002 §4.6 asks of a gratuitous reply.
pub fn gratuitous_arp_reply(mac: MacAddr, ip: Ipv4Addr) -> Vec<u8> {
    frame(
        MacAddr::broadcast(),
        ArpOperations::Reply,
        (mac, ip),
        (mac, ip),
    )
}

/// An RFC 5227 §2.1.1 probe: "is `ip` in use?" asked from 0.0.0.0, so that no host learns a
/// mapping from it, broadcast.
pub fn arp_probe(mac: MacAddr, ip: Ipv4Addr) -> Vec<u8> {
    frame(
        MacAddr::broadcast(),
        ArpOperations::Request,
        (mac, Ipv4Addr::UNSPECIFIED),
        (MacAddr::zero(), ip),
    )
}

/// An Ethernet frame from the sender's MAC carrying one ARP packet, padded to [`FRAME_LEN`].
fn frame(
    eth_destination: MacAddr,
    operation: ArpOperation,
    (sender_mac, sender_ip): (MacAddr, Ipv4Addr),
    (target_mac, target_ip): (MacAddr, Ipv4Addr),
) -> Vec<u8> {
    let mut frame = vec![0; FRAME_LEN];
    let mut ethernet =
        MutableEthernetPacket::new(&mut frame).expect("FRAME_LEN holds an Ethernet header");
    ethernet.set_destination(eth_destination);
    ethernet.set_source(sender_mac);
    ethernet.set_ethertype(EtherTypes::Arp);
    let mut arp =
        MutableArpPacket::new(ethernet.payload_mut()).expect("FRAME_LEN holds an ARP body too");
    arp.set_hardware_type(ArpHardwareTypes::Ethernet);
    arp.set_protocol_type(EtherTypes::Ipv4);
    arp.set_hw_addr_len(6);
    arp.set_proto_addr_len(4);
    arp.set_operation(operation);
    arp.set_sender_hw_addr(sender_mac);
    arp.set_sender_proto_addr(sender_ip);
    arp.set_target_hw_addr(target_mac);
    arp.set_target_proto_addr(target_ip);
    frame
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const A_MAC: MacAddr = MacAddr(0x02, 0, 0, 0, 0, 0x0a);
    const B_MAC: MacAddr = MacAddr(0x02, 0, 0, 0, 0, 0x0b);
    const A_IP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 10);
    const B_IP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 11);

    /// `arping -i va 192.0.2.11` (Thomas Habets' arping 2.23, Debian's `arping`) from
    /// 02:00:00:00:00:0a / 192.0.2.10, captured with tcpdump on the peer veth. It pads the ARP
    /// body to 44 bytes, so the frame is 58 bytes long.
    const ARPING_REQUEST: [u8; 58] = [
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02, 0x00, 0x00, 0x00, 0x00, 0x0a, 0x08, 0x06, 0x00,
        0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x01, 0x02, 0x00, 0x00, 0x00, 0x00, 0x0a, 0xc0, 0x00,
        0x02, 0x0a, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xc0, 0x00, 0x02, 0x0b, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    ];

    /// `arping -U -S 192.0.2.10 192.0.2.10`: an unsolicited request whose target MAC is broadcast.
    const ARPING_UNSOLICITED: [u8; 58] = [
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02, 0x00, 0x00, 0x00, 0x00, 0x0a, 0x08, 0x06, 0x00,
        0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x01, 0x02, 0x00, 0x00, 0x00, 0x00, 0x0a, 0xc0, 0x00,
        0x02, 0x0a, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xc0, 0x00, 0x02, 0x0a, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    ];

    /// The Linux kernel's own request for 192.0.2.11, as it leaves a veth: 42 bytes, no padding.
    const KERNEL_REQUEST: [u8; 42] = [
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02, 0x00, 0x00, 0x00, 0x00, 0x0a, 0x08, 0x06, 0x00,
        0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x01, 0x02, 0x00, 0x00, 0x00, 0x00, 0x0a, 0xc0, 0x00,
        0x02, 0x0a, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xc0, 0x00, 0x02, 0x0b,
    ];

    #[test]
    fn parses_arping_request() {
        let want = ArpRequest {
            eth_destination: MacAddr::broadcast(),
            sender_mac: A_MAC,
            sender_ip: A_IP,
            target_ip: B_IP,
        };
        assert_eq!(parse_arp_request(&ARPING_REQUEST), Some(want));
        assert_eq!(parse_arp_request(&KERNEL_REQUEST), Some(want));
        assert!(want.addressed_to(B_MAC));
    }

    #[test]
    fn parses_unsolicited_request_as_a_claim() {
        let packet = parse_arp(&ARPING_UNSOLICITED).unwrap();
        assert_eq!(packet.operation, ArpOperations::Request);
        assert_eq!((packet.sender_ip, packet.target_ip), (A_IP, A_IP));
        assert_eq!(packet.target_mac, MacAddr::broadcast());
        assert!(!packet.is_probe());
        assert_eq!(
            packet.claim(A_IP, &BTreeSet::from([B_MAC])),
            Some(Claim::InUse)
        );
        assert_eq!(
            packet.claim(A_IP, &BTreeSet::from([A_MAC])),
            None,
            "our own packet"
        );
        assert_eq!(packet.claim(B_IP, &BTreeSet::from([B_MAC])), None);
    }

    #[test]
    fn unicast_request_to_another_host_is_not_ours_to_answer() {
        let mut frame = ARPING_REQUEST;
        frame[..6].copy_from_slice(&B_MAC.octets());
        let request = parse_arp_request(&frame).unwrap();
        assert!(request.addressed_to(B_MAC));
        assert!(!request.addressed_to(MacAddr(0x02, 0, 0, 0, 0, 0x0c)));
    }

    #[test]
    fn reply_round_trips() {
        let frame = arp_reply(B_MAC, B_IP, A_MAC, A_IP);
        assert_eq!(frame.len(), FRAME_LEN);
        assert_eq!(
            parse_arp(&frame),
            Some(ArpFrame {
                eth_destination: A_MAC,
                eth_source: B_MAC,
                operation: ArpOperations::Reply,
                sender_mac: B_MAC,
                sender_ip: B_IP,
                target_mac: A_MAC,
                target_ip: A_IP,
            })
        );
        assert_eq!(parse_arp_request(&frame), None, "a reply is not a request");
    }

    #[test]
    fn reply_bytes() {
        let mut want = [0; FRAME_LEN];
        want[..42].copy_from_slice(&[
            0x02, 0x00, 0x00, 0x00, 0x00, 0x0a, 0x02, 0x00, 0x00, 0x00, 0x00, 0x0b, 0x08, 0x06,
            0x00, 0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x02, 0x02, 0x00, 0x00, 0x00, 0x00, 0x0b,
            0xc0, 0x00, 0x02, 0x0b, 0x02, 0x00, 0x00, 0x00, 0x00, 0x0a, 0xc0, 0x00, 0x02, 0x0a,
        ]);
        assert_eq!(arp_reply(B_MAC, B_IP, A_MAC, A_IP), want);
    }

    #[test]
    fn gratuitous_request_round_trips() {
        let packet = parse_arp(&gratuitous_arp_request(B_MAC, B_IP)).unwrap();
        assert_eq!(
            packet,
            ArpFrame {
                eth_destination: MacAddr::broadcast(),
                eth_source: B_MAC,
                operation: ArpOperations::Request,
                sender_mac: B_MAC,
                sender_ip: B_IP,
                target_mac: MacAddr::zero(),
                target_ip: B_IP,
            }
        );
        assert_eq!(
            packet.claim(B_IP, &BTreeSet::from([A_MAC])),
            Some(Claim::InUse)
        );
    }

    #[test]
    fn gratuitous_reply_round_trips() {
        let packet = parse_arp(&gratuitous_arp_reply(B_MAC, B_IP)).unwrap();
        assert_eq!(
            packet,
            ArpFrame {
                eth_destination: MacAddr::broadcast(),
                eth_source: B_MAC,
                operation: ArpOperations::Reply,
                sender_mac: B_MAC,
                sender_ip: B_IP,
                target_mac: B_MAC,
                target_ip: B_IP,
            }
        );
        assert_eq!(
            packet.claim(B_IP, &BTreeSet::from([A_MAC])),
            Some(Claim::InUse)
        );
    }

    #[test]
    fn probe_round_trips() {
        let frame = arp_probe(B_MAC, B_IP);
        let packet = parse_arp(&frame).unwrap();
        assert_eq!(
            packet,
            ArpFrame {
                eth_destination: MacAddr::broadcast(),
                eth_source: B_MAC,
                operation: ArpOperations::Request,
                sender_mac: B_MAC,
                sender_ip: Ipv4Addr::UNSPECIFIED,
                target_mac: MacAddr::zero(),
                target_ip: B_IP,
            }
        );
        assert!(packet.is_probe());
        assert_eq!(
            packet.claim(B_IP, &BTreeSet::from([A_MAC])),
            Some(Claim::Probe)
        );
        assert_eq!(
            packet.claim(B_IP, &BTreeSet::from([B_MAC])),
            None,
            "our own probe"
        );
        assert_eq!(
            packet.claim(B_IP, &BTreeSet::from([A_MAC, B_MAC])),
            None,
            "the probe of another interface of ours"
        );
        assert_eq!(packet.claim(A_IP, &BTreeSet::from([A_MAC])), None);
        // A probe is still a request: the owner answers it.
        assert_eq!(
            parse_arp_request(&frame).unwrap().sender_ip,
            Ipv4Addr::UNSPECIFIED
        );
    }

    #[test]
    fn rejects_truncated_frames() {
        for len in 0..42 {
            assert_eq!(parse_arp(&KERNEL_REQUEST[..len]), None, "length {len}");
        }
    }

    #[test]
    fn rejects_other_formats() {
        // (byte offset, value) that makes the frame something else.
        let changes = [
            (12, 0x86), // EtherType 0x8606
            (13, 0x00), // EtherType 0x0800: IPv4
            (15, 0x06), // hardware type 6 (IEEE 802)
            (17, 0xdd), // protocol type 0x08dd
            (18, 0x08), // hardware address length 8
            (19, 0x10), // protocol address length 16
            (21, 0x03), // operation 3 (RARP request)
            (20, 0x01), // operation 0x0101
        ];
        for (at, value) in changes {
            let mut frame = ARPING_REQUEST;
            frame[at] = value;
            assert_eq!(parse_arp(&frame), None, "byte {at} = {value:#04x}");
        }
    }

    proptest! {
        #[test]
        fn parsers_never_panic(frame in proptest::collection::vec(any::<u8>(), 0..100)) {
            let _ = parse_arp(&frame);
            let _ = parse_arp_request(&frame);
        }

        // Random bytes almost never get past the EtherType: keep a valid header and vary the rest.
        #[test]
        fn parses_any_body_behind_a_valid_header(
            tail in proptest::collection::vec(any::<u8>(), 0..60),
            operation in 0u16..4,
        ) {
            let mut frame = KERNEL_REQUEST[..20].to_vec();
            frame.extend_from_slice(&operation.to_be_bytes());
            frame.extend_from_slice(&tail);
            let parsed = parse_arp(&frame);
            prop_assert_eq!(parsed.is_some(), (1..=2).contains(&operation) && tail.len() >= 20);
        }

        #[test]
        fn builders_round_trip(mac: [u8; 6], ip: [u8; 4], peer_mac: [u8; 6], peer_ip: [u8; 4]) {
            let (mac, ip, peer_mac, peer_ip) =
                (MacAddr::from(mac), Ipv4Addr::from(ip), MacAddr::from(peer_mac), Ipv4Addr::from(peer_ip));
            let reply = parse_arp(&arp_reply(mac, ip, peer_mac, peer_ip)).unwrap();
            prop_assert_eq!((reply.sender_mac, reply.sender_ip), (mac, ip));
            prop_assert_eq!((reply.target_mac, reply.target_ip), (peer_mac, peer_ip));
            for frame in [gratuitous_arp_request(mac, ip), gratuitous_arp_reply(mac, ip)] {
                let packet = parse_arp(&frame).unwrap();
                let addresses = (packet.sender_mac, packet.sender_ip, packet.target_ip);
                prop_assert_eq!(addresses, (mac, ip, ip));
            }
            let probe = parse_arp(&arp_probe(mac, ip)).unwrap();
            prop_assert!(probe.is_probe());
            prop_assert_eq!(probe.target_ip, ip);
        }
    }
}
