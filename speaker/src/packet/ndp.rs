//! Neighbor Discovery for IPv6 (RFC 4861): solicitations and advertisements as ICMPv6 messages,
//! with RFC 4862's Duplicate Address Detection.

use std::net::Ipv6Addr;

use pnet_packet::ethernet::{EtherTypes, MutableEthernetPacket};
use pnet_packet::icmpv6::ndp::{
    Icmpv6Codes, MutableNeighborAdvertPacket, MutableNeighborSolicitPacket, NdpOption,
    NdpOptionPacket, NdpOptionType, NdpOptionTypes, NeighborAdvert, NeighborAdvertFlags,
    NeighborAdvertPacket, NeighborSolicit, NeighborSolicitPacket,
};
use pnet_packet::icmpv6::{self, Icmpv6Types, MutableIcmpv6Packet};
use pnet_packet::ip::IpNextHeaderProtocols;
use pnet_packet::ipv6::{Ipv6Packet, MutableIpv6Packet};
use pnet_packet::{MutablePacket, Packet};

use super::MacAddr;

/// The hop limit of every NDP message (RFC 4861 §4): a router decrements it, so a message that
/// arrives with 255 was sent on this link, and one with less is discarded (§7.1).
pub const NDP_HOP_LIMIT: u8 = 255;

/// A Neighbor Solicitation: someone asks for the link-layer address of `target`, or (from ::)
/// checks whether `target` is free.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NeighborSolicitation {
    pub target: Ipv6Addr,
    /// The Source Link-Layer Address option, if present and an Ethernet address.
    pub source_mac: Option<MacAddr>,
    /// The Nonce option (RFC 7527), if present and 6 bytes long: a DAD probe carrying the nonce
    /// its receiver put in its own probes is that receiver's, looped back.
    pub nonce: Option<Nonce>,
}

/// The nonce of a DAD probe (RFC 7527 §4.1): 6 random bytes, the option's one 8-byte unit.
pub type Nonce = [u8; 6];

/// Who sent a Neighbor Solicitation, from its IPv6 source address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Solicitor {
    /// The unspecified address: another node's Duplicate Address Detection probe, about to take
    /// the target (RFC 4862 §5.4.3). A conflict while we probe for it ourselves; while we hold
    /// the address, answer to ff02::1 with Solicited clear (RFC 4861 §7.2.4).
    Dad,
    /// A node resolving the target: answer it with a solicited advertisement.
    Node(Ipv6Addr),
}

impl NeighborSolicitation {
    /// Who sent this solicitation, given the source of its IPv6 header; `None` if RFC 4861 §7.1.1
    /// says to discard it: a multicast source, or a DAD probe carrying a source link-layer address.
    pub fn solicitor(&self, source: Ipv6Addr) -> Option<Solicitor> {
        if source.is_multicast() {
            None
        } else if source.is_unspecified() {
            self.source_mac.is_none().then_some(Solicitor::Dad)
        } else {
            Some(Solicitor::Node(source))
        }
    }
}

/// A Neighbor Advertisement: its sender says `target` is at `target_mac` (or at its own link-layer
/// source when the option is absent). From another node, for one of our addresses: a conflict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NeighborAdvertisement {
    pub target: Ipv6Addr,
    /// R: the sender is a router.
    pub router: bool,
    /// S: an answer to a solicitation.
    pub solicited: bool,
    /// O: replace cached link-layer addresses (`override` is a keyword).
    pub override_: bool,
    /// The Target Link-Layer Address option, if present and an Ethernet address.
    pub target_mac: Option<MacAddr>,
}

/// Parses an ICMPv6 message holding a Neighbor Solicitation that arrived with `hop_limit` in its
/// IPv6 header; `None` for anything else or when RFC 4861 §7.1.1 says to discard it (hop limit
/// not 255, bad code, short, multicast target, zero-length option). The checksum is the
/// kernel's to check on raw ICMPv6 sockets, and the source the caller's
/// ([`NeighborSolicitation::solicitor`]).
pub fn parse_neighbor_solicitation(message: &[u8], hop_limit: u8) -> Option<NeighborSolicitation> {
    let solicitation = NeighborSolicitPacket::new(message)?;
    let valid = hop_limit == NDP_HOP_LIMIT
        && solicitation.get_icmpv6_type() == Icmpv6Types::NeighborSolicit
        && solicitation.get_icmpv6_code() == Icmpv6Codes::NoCode
        && !solicitation.get_target_addr().is_multicast();
    if !valid {
        return None;
    }
    let options = Options::parse(solicitation.get_options_raw(), NdpOptionTypes::SourceLLAddr)?;
    Some(NeighborSolicitation {
        target: solicitation.get_target_addr(),
        source_mac: options.link_layer,
        nonce: options.nonce,
    })
}

/// Parses an ICMPv6 message holding a Neighbor Advertisement that arrived with `hop_limit`; `None`
/// for anything else or when RFC 4861 §7.1.2 says to discard it, as for solicitations. The
/// caller checks that an advertisement sent to a multicast address has Solicited clear.
pub fn parse_neighbor_advertisement(
    message: &[u8],
    hop_limit: u8,
) -> Option<NeighborAdvertisement> {
    let advertisement = NeighborAdvertPacket::new(message)?;
    let valid = hop_limit == NDP_HOP_LIMIT
        && advertisement.get_icmpv6_type() == Icmpv6Types::NeighborAdvert
        && advertisement.get_icmpv6_code() == Icmpv6Codes::NoCode
        && !advertisement.get_target_addr().is_multicast();
    if !valid {
        return None;
    }
    let flags = advertisement.get_flags();
    Some(NeighborAdvertisement {
        target: advertisement.get_target_addr(),
        router: flags & NeighborAdvertFlags::Router != 0,
        solicited: flags & NeighborAdvertFlags::Solicited != 0,
        override_: flags & NeighborAdvertFlags::Override != 0,
        target_mac: Options::parse(
            advertisement.get_options_raw(),
            NdpOptionTypes::TargetLLAddr,
        )?
        .link_layer,
    })
}

/// The answer to a solicitation for `target`, which we hold at `mac`: Solicited and Override set,
/// Router clear, with a Target Link-Layer Address option. Checksum zero: the kernel fills it.
pub fn solicited_neighbor_advertisement(target: Ipv6Addr, mac: MacAddr) -> Vec<u8> {
    advertisement(
        NeighborAdvertFlags::Solicited | NeighborAdvertFlags::Override,
        target,
        mac,
    )
}

/// An advertisement nobody asked for, sent to ff02::1 when taking `target` over, and the answer to
/// a DAD probe for it: Override set so that neighbours replace their entries, Solicited clear.
/// Checksum zero: the kernel fills it.
pub fn unsolicited_neighbor_advertisement(target: Ipv6Addr, mac: MacAddr) -> Vec<u8> {
    advertisement(NeighborAdvertFlags::Override, target, mac)
}

/// A solicitation resolving `target`, sent from one of our unicast addresses (at `mac`) to
/// [`solicited_node_multicast`]`(target)`, as `ndisc6` sends it: whoever holds `target` answers.
/// A raw ICMPv6 socket cannot send from ::, so it checks an address is free with this instead of
/// a DAD probe; unlike DAD, a host still probing for `target` itself stays silent.
/// Checksum zero: the kernel fills it.
pub fn neighbor_solicitation(target: Ipv6Addr, mac: MacAddr) -> Vec<u8> {
    solicitation(
        target,
        link_layer_address(NdpOptionTypes::SourceLLAddr, mac),
    )
}

/// A Duplicate Address Detection probe for `target` (RFC 4862 §5.4.2), to send from :: to
/// [`solicited_node_multicast`]`(target)`: no source link-layer option, as none may come from ::,
/// but a Nonce option (RFC 7527), so that the sender knows its own probe when it comes back, on
/// this interface or on another of its interfaces on the same segment. Checksum zero: the
/// kernel fills it.
pub fn dad_neighbor_solicitation(target: Ipv6Addr, nonce: Nonce) -> Vec<u8> {
    let option = NdpOption {
        option_type: NONCE,
        length: 1,
        data: nonce.to_vec(),
    };
    solicitation(target, option)
}

/// The solicited-node multicast group of `addr`, ff02::1:ffXX:XXXX (RFC 4291 §2.7.1): where
/// solicitations for it are sent, so the group to join to hear them.
pub fn solicited_node_multicast(addr: Ipv6Addr) -> Ipv6Addr {
    let [.., a, b, c] = addr.octets();
    Ipv6Addr::new(
        0xff02,
        0,
        0,
        0,
        0,
        1,
        0xff00 | u16::from(a),
        u16::from_be_bytes([b, c]),
    )
}

/// The Ethernet address of IPv6 multicast `group`, 33:33 and its last 32 bits (RFC 2464 §7):
/// 33:33:ff:XX:XX:XX for a solicited-node group, 33:33:00:00:00:01 for ff02::1.
pub fn multicast_mac(group: Ipv6Addr) -> MacAddr {
    let [.., a, b, c, d] = group.octets();
    MacAddr(0x33, 0x33, a, b, c, d)
}

/// A whole Ethernet frame carrying the ICMPv6 `message` (one built here) from `source` to
/// `destination`, with hop limit 255 and the checksum filled in: NDP sent on a packet socket, so
/// that it can come from an address the interface does not hold (an advertisement from the
/// address it advertises, as stacks such as ndisc6 expect; a DAD probe from ::).
pub fn ipv6_frame(
    source_mac: MacAddr,
    destination_mac: MacAddr,
    source: Ipv6Addr,
    destination: Ipv6Addr,
    message: &[u8],
) -> Vec<u8> {
    let headers = MutableEthernetPacket::minimum_packet_size() + Ipv6Packet::minimum_packet_size();
    let mut frame = vec![0; headers + message.len()];
    let mut ethernet =
        MutableEthernetPacket::new(&mut frame).expect("sized for the Ethernet header");
    ethernet.set_destination(destination_mac);
    ethernet.set_source(source_mac);
    ethernet.set_ethertype(EtherTypes::Ipv6);
    let mut ipv6 =
        MutableIpv6Packet::new(ethernet.payload_mut()).expect("sized for the IPv6 header");
    ipv6.set_version(6);
    ipv6.set_payload_length(
        u16::try_from(message.len()).expect("an NDP message is far shorter than 64 KiB"),
    );
    ipv6.set_next_header(IpNextHeaderProtocols::Icmpv6);
    ipv6.set_hop_limit(NDP_HOP_LIMIT);
    ipv6.set_source(source);
    ipv6.set_destination(destination);
    ipv6.set_payload(message);
    if let Some(mut icmp) = MutableIcmpv6Packet::new(ipv6.payload_mut()) {
        let checksum = icmpv6::checksum(&icmp.to_immutable(), &source, &destination);
        icmp.set_checksum(checksum);
    }
    frame
}

/// A Neighbor Advertisement (RFC 4861 §4.4) with a Target Link-Layer Address option, checksum
/// zero.
fn advertisement(flags: u8, target: Ipv6Addr, mac: MacAddr) -> Vec<u8> {
    let advertisement = NeighborAdvert {
        icmpv6_type: Icmpv6Types::NeighborAdvert,
        icmpv6_code: Icmpv6Codes::NoCode,
        checksum: 0,
        flags,
        reserved: 0,
        target_addr: target,
        options: vec![link_layer_address(NdpOptionTypes::TargetLLAddr, mac)],
        payload: Vec::new(),
    };
    // pnet's `packet_size` of the struct leaves its options out.
    let len = NeighborAdvertPacket::minimum_packet_size() + ONE_UNIT_OPTION_LEN;
    let mut message = vec![0; len];
    MutableNeighborAdvertPacket::new(&mut message)
        .expect("sized for the advertisement")
        .populate(&advertisement);
    message
}

/// A Neighbor Solicitation (RFC 4861 §4.3) with one option of one 8-byte unit, checksum zero.
fn solicitation(target: Ipv6Addr, option: NdpOption) -> Vec<u8> {
    let solicitation = NeighborSolicit {
        icmpv6_type: Icmpv6Types::NeighborSolicit,
        icmpv6_code: Icmpv6Codes::NoCode,
        checksum: 0,
        reserved: 0,
        target_addr: target,
        options: vec![option],
        payload: Vec::new(),
    };
    let len = NeighborSolicitPacket::minimum_packet_size() + ONE_UNIT_OPTION_LEN;
    let mut message = vec![0; len];
    MutableNeighborSolicitPacket::new(&mut message)
        .expect("sized for the solicitation")
        .populate(&solicitation);
    message
}

/// An option of one 8-byte unit: type, length and 6 bytes, such as a link-layer address option
/// holding an Ethernet address, or a 6-byte nonce.
const ONE_UNIT_OPTION_LEN: usize = 8;

/// The Nonce option's type (RFC 3971 §5.3.2), which RFC 7527 puts in DAD probes.
const NONCE: NdpOptionType = NdpOptionType(14);

fn link_layer_address(kind: NdpOptionType, mac: MacAddr) -> NdpOption {
    NdpOption {
        option_type: kind,
        length: 1,
        data: mac.octets().to_vec(),
    }
}

/// What the speaker reads of a message's options: the first link-layer address option of the
/// kind asked for holding an Ethernet address, and the first 6-byte nonce.
struct Options {
    link_layer: Option<MacAddr>,
    nonce: Option<Nonce>,
}

impl Options {
    /// `None` (discard the message) if the options are malformed.
    ///
    /// Walked here rather than with pnet's option iterator: pnet sizes an option as
    /// `length * 8 - 2` in `u8` arithmetic, which overflows (a panic with overflow checks, a
    /// wrong size without) from 32 units up, and it takes a zero length as 2 bytes where RFC 4861
    /// §4.6 says to discard the message.
    fn parse(mut options: &[u8], link_layer_kind: NdpOptionType) -> Option<Options> {
        let mut found = Options {
            link_layer: None,
            nonce: None,
        };
        while !options.is_empty() {
            let option = NdpOptionPacket::new(options)?;
            // The length counts 8-byte units, type and length included.
            let size = usize::from(option.get_length()) * 8;
            if size == 0 {
                return None;
            }
            let rest = options.get(size..)?;
            // One unit is type, length and 6 bytes: an Ethernet address (other links' are
            // longer), or a nonce as RFC 7527 suggests and we send it.
            if option.get_length() == 1
                && let Ok(six) = <[u8; 6]>::try_from(option.payload())
            {
                let kind = option.get_option_type();
                if kind == link_layer_kind && found.link_layer.is_none() {
                    found.link_layer = Some(MacAddr::from(six));
                } else if kind == NONCE && found.nonce.is_none() {
                    found.nonce = Some(six);
                }
            }
            options = rest;
        }
        Some(found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pnet_packet::icmpv6::Icmpv6Packet;
    use proptest::prelude::*;

    const A_MAC: MacAddr = MacAddr(0x02, 0, 0, 0, 0, 0x0a);
    const B_MAC: MacAddr = MacAddr(0x02, 0, 0, 0, 0, 0x0b);
    const A_LINK_LOCAL: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0xff, 0xfe00, 0x0a);
    const B_LINK_LOCAL: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0xff, 0xfe00, 0x0b);
    const B_IP: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 1, 0x2345);

    /// `ndisc6 -1 -r1 2001:db8::1:2345 va` from 02:00:00:00:00:0a, fe80::ff:fe00:a to
    /// ff02::1:ff01:2345, captured on the peer veth: the ICMPv6 message after the IPv6 header.
    /// The Linux kernel's own solicitation is byte for byte the same.
    const NDISC6_SOLICITATION: [u8; 32] = [
        0x87, 0x00, 0x05, 0xc5, 0x00, 0x00, 0x00, 0x00, 0x20, 0x01, 0x0d, 0xb8, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x23, 0x45, 0x01, 0x01, 0x02, 0x00, 0x00, 0x00,
        0x00, 0x0a,
    ];

    /// The Linux kernel's answer to it, from 2001:db8::1:2345 to fe80::ff:fe00:a: S and O set,
    /// target link-layer address 02:00:00:00:00:0b.
    const KERNEL_ADVERTISEMENT: [u8; 32] = [
        0x88, 0x00, 0x74, 0x0f, 0x60, 0x00, 0x00, 0x00, 0x20, 0x01, 0x0d, 0xb8, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x23, 0x45, 0x02, 0x01, 0x02, 0x00, 0x00, 0x00,
        0x00, 0x0b,
    ];

    /// The kernel's answer to a unicast reachability check, from fe80::ff:fe00:a to
    /// fe80::ff:fe00:b: S only, no option.
    const KERNEL_REACHABILITY_ADVERTISEMENT: [u8; 24] = [
        0x88, 0x00, 0x3f, 0x0b, 0x40, 0x00, 0x00, 0x00, 0xfe, 0x80, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0xff, 0xfe, 0x00, 0x00, 0x0a,
    ];

    /// pnet's ICMPv6 checksum of `message` from `source` to `destination`.
    fn checksum(message: &[u8], source: Ipv6Addr, destination: Ipv6Addr) -> u16 {
        icmpv6::checksum(&Icmpv6Packet::new(message).unwrap(), &source, &destination)
    }

    fn with_zero_checksum(message: &[u8]) -> Vec<u8> {
        let mut message = message.to_vec();
        message[2..4].fill(0);
        message
    }

    #[test]
    fn parses_ndisc6_solicitation() {
        let solicitation =
            parse_neighbor_solicitation(&NDISC6_SOLICITATION, NDP_HOP_LIMIT).unwrap();
        assert_eq!(
            solicitation,
            NeighborSolicitation {
                target: B_IP,
                source_mac: Some(A_MAC),
                nonce: None,
            }
        );
        assert_eq!(
            solicitation.solicitor(A_LINK_LOCAL),
            Some(Solicitor::Node(A_LINK_LOCAL))
        );
        // From ::, a source link-layer option makes it invalid (RFC 4861 §7.1.1).
        assert_eq!(solicitation.solicitor(Ipv6Addr::UNSPECIFIED), None);
        assert_eq!(
            solicitation.solicitor(Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1)),
            None
        );
    }

    #[test]
    fn parses_kernel_advertisements() {
        assert_eq!(
            parse_neighbor_advertisement(&KERNEL_ADVERTISEMENT, NDP_HOP_LIMIT),
            Some(NeighborAdvertisement {
                target: B_IP,
                router: false,
                solicited: true,
                override_: true,
                target_mac: Some(B_MAC),
            })
        );
        assert_eq!(
            parse_neighbor_advertisement(&KERNEL_REACHABILITY_ADVERTISEMENT, NDP_HOP_LIMIT),
            Some(NeighborAdvertisement {
                target: A_LINK_LOCAL,
                router: false,
                solicited: true,
                override_: false,
                target_mac: None,
            })
        );
        assert_eq!(
            parse_neighbor_solicitation(&KERNEL_ADVERTISEMENT, NDP_HOP_LIMIT),
            None
        );
        assert_eq!(
            parse_neighbor_advertisement(&NDISC6_SOLICITATION, NDP_HOP_LIMIT),
            None
        );
    }

    /// RFC 4861 §7.1.1 and §7.1.2: a hop limit below 255 means a router forwarded the message,
    /// so it did not come from this link; it is discarded, however valid its body.
    #[test]
    fn discards_messages_whose_hop_limit_is_not_255() {
        for hop_limit in [0, 1, 64, 254] {
            assert_eq!(
                parse_neighbor_solicitation(&NDISC6_SOLICITATION, hop_limit),
                None,
                "solicitation, hop limit {hop_limit}"
            );
            assert_eq!(
                parse_neighbor_advertisement(&KERNEL_ADVERTISEMENT, hop_limit),
                None,
                "advertisement, hop limit {hop_limit}"
            );
        }
        assert!(parse_neighbor_solicitation(&NDISC6_SOLICITATION, 255).is_some());
        assert!(parse_neighbor_advertisement(&KERNEL_ADVERTISEMENT, 255).is_some());
    }

    #[test]
    fn solicited_advertisement_is_the_kernels() {
        let message = solicited_neighbor_advertisement(B_IP, B_MAC);
        assert_eq!(message, with_zero_checksum(&KERNEL_ADVERTISEMENT));
        // Flags: R (0x80) clear, S (0x40) and O (0x20) set, the rest reserved zero.
        assert_eq!(message[4..8], [0x60, 0, 0, 0]);
    }

    #[test]
    fn unsolicited_advertisement_has_override_only() {
        let message = unsolicited_neighbor_advertisement(B_IP, B_MAC);
        assert_eq!(message[4..8], [0x20, 0, 0, 0]);
        assert_eq!(
            parse_neighbor_advertisement(&message, NDP_HOP_LIMIT),
            Some(NeighborAdvertisement {
                target: B_IP,
                router: false,
                solicited: false,
                override_: true,
                target_mac: Some(B_MAC),
            })
        );
    }

    #[test]
    fn ipv6_frames_carry_hop_limit_255_and_a_valid_checksum() {
        let message = solicited_neighbor_advertisement(B_IP, B_MAC);
        let frame = ipv6_frame(B_MAC, A_MAC, B_IP, A_LINK_LOCAL, &message);
        assert_eq!(&frame[..6], &A_MAC.octets());
        assert_eq!(&frame[6..12], &B_MAC.octets());
        assert_eq!(&frame[12..14], &[0x86, 0xdd]);
        assert_eq!(frame[14] >> 4, 6);
        assert_eq!(
            u16::from_be_bytes([frame[18], frame[19]]) as usize,
            message.len()
        );
        assert_eq!((frame[20], frame[21]), (58, 255));
        assert_eq!(&frame[22..38], &B_IP.octets());
        assert_eq!(&frame[38..54], &A_LINK_LOCAL.octets());
        let icmp = &frame[54..];
        let stored = u16::from_be_bytes([icmp[2], icmp[3]]);
        assert_eq!(stored, checksum(icmp, B_IP, A_LINK_LOCAL));
        assert_ne!(stored, 0);
        assert_eq!(
            parse_neighbor_advertisement(icmp, NDP_HOP_LIMIT)
                .unwrap()
                .target,
            B_IP
        );
    }

    #[test]
    fn solicitation_is_ndisc6s() {
        let message = neighbor_solicitation(B_IP, A_MAC);
        assert_eq!(message, with_zero_checksum(&NDISC6_SOLICITATION));
        let solicitation = parse_neighbor_solicitation(&message, NDP_HOP_LIMIT).unwrap();
        assert_eq!(solicitation.source_mac, Some(A_MAC));
    }

    #[test]
    fn dad_solicitation_carries_its_nonce() {
        let nonce = [1, 2, 3, 4, 5, 6];
        let message = dad_neighbor_solicitation(B_IP, nonce);
        assert_eq!(
            message[..24],
            with_zero_checksum(&NDISC6_SOLICITATION)[..24]
        );
        // RFC 7527 §4.1: type 14, one unit, the nonce.
        assert_eq!(message[24..], [14, 1, 1, 2, 3, 4, 5, 6]);
        let solicitation = parse_neighbor_solicitation(&message, NDP_HOP_LIMIT).unwrap();
        assert_eq!(
            solicitation,
            NeighborSolicitation {
                target: B_IP,
                source_mac: None,
                nonce: Some(nonce),
            }
        );
        assert_eq!(
            solicitation.solicitor(Ipv6Addr::UNSPECIFIED),
            Some(Solicitor::Dad)
        );
    }

    #[test]
    fn checksum_matches_captured_packets() {
        let solicitation_destination = solicited_node_multicast(B_IP);
        let cases: [(&[u8], Ipv6Addr, Ipv6Addr, u16); 3] = [
            (
                &NDISC6_SOLICITATION,
                A_LINK_LOCAL,
                solicitation_destination,
                0x05c5,
            ),
            (&KERNEL_ADVERTISEMENT, B_IP, A_LINK_LOCAL, 0x740f),
            (
                &KERNEL_REACHABILITY_ADVERTISEMENT,
                A_LINK_LOCAL,
                B_LINK_LOCAL,
                0x3f0b,
            ),
        ];
        for (message, source, destination, want) in cases {
            assert_eq!(checksum(message, source, destination), want);
            // The checksum field is taken as zero, so filling it does not change the result.
            let zeroed = with_zero_checksum(message);
            assert_eq!(checksum(&zeroed, source, destination), want);
        }
        // Our own advertisement, checksummed, is exactly what the kernel sent.
        let mut ours = solicited_neighbor_advertisement(B_IP, B_MAC);
        let sum = checksum(&ours, B_IP, A_LINK_LOCAL);
        ours[2..4].copy_from_slice(&sum.to_be_bytes());
        assert_eq!(ours, KERNEL_ADVERTISEMENT);
    }

    #[test]
    fn solicited_node_group_and_mac() {
        let group = solicited_node_multicast(B_IP);
        assert_eq!(group, "ff02::1:ff01:2345".parse::<Ipv6Addr>().unwrap());
        assert_eq!(
            multicast_mac(group),
            MacAddr(0x33, 0x33, 0xff, 0x01, 0x23, 0x45)
        );
        assert_eq!(
            multicast_mac(Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1)),
            MacAddr(0x33, 0x33, 0, 0, 0, 1)
        );
        assert_eq!(
            solicited_node_multicast("fe80::aabb:ccdd:eeff".parse().unwrap()),
            "ff02::1:ffdd:eeff".parse::<Ipv6Addr>().unwrap()
        );
    }

    #[test]
    fn rejects_malformed_solicitations() {
        for len in 0..24 {
            assert_eq!(
                parse_neighbor_solicitation(&NDISC6_SOLICITATION[..len], NDP_HOP_LIMIT),
                None,
                "length {len}"
            );
        }
        let mut bad_code = NDISC6_SOLICITATION;
        bad_code[1] = 1;
        let mut multicast_target = NDISC6_SOLICITATION;
        multicast_target[8] = 0xff;
        let mut zero_length_option = NDISC6_SOLICITATION;
        zero_length_option[25] = 0;
        let mut option_past_end = NDISC6_SOLICITATION;
        option_past_end[25] = 2;
        for (name, message) in [
            ("code 1", &bad_code[..]),
            ("multicast target", &multicast_target[..]),
            ("zero-length option", &zero_length_option[..]),
            ("option past the end", &option_past_end[..]),
            ("half an option header", &NDISC6_SOLICITATION[..25]),
            ("cut option", &NDISC6_SOLICITATION[..31]),
        ] {
            assert_eq!(
                parse_neighbor_solicitation(message, NDP_HOP_LIMIT),
                None,
                "{name}"
            );
        }
    }

    #[test]
    fn finds_link_layer_option_among_others() {
        // A nonce option (type 14, RFC 3971) before the source link-layer address; then a
        // two-unit source link-layer option that cannot be Ethernet's, which is skipped.
        let mut message = NDISC6_SOLICITATION[..24].to_vec();
        message.extend_from_slice(&[14, 1, 1, 2, 3, 4, 5, 6]);
        message.extend_from_slice(&NDISC6_SOLICITATION[24..]);
        let solicitation = parse_neighbor_solicitation(&message, NDP_HOP_LIMIT).unwrap();
        assert_eq!(solicitation.source_mac, Some(A_MAC));
        assert_eq!(solicitation.nonce, Some([1, 2, 3, 4, 5, 6]));
        // A longer nonce (RFC 3971 allows it) is not one of ours: skipped.
        let mut longer = NDISC6_SOLICITATION[..24].to_vec();
        longer.extend_from_slice(&[14, 2, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14]);
        assert_eq!(
            parse_neighbor_solicitation(&longer, NDP_HOP_LIMIT)
                .unwrap()
                .nonce,
            None
        );

        let mut long = NDISC6_SOLICITATION[..24].to_vec();
        long.extend_from_slice(&[1, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(
            parse_neighbor_solicitation(&long, NDP_HOP_LIMIT)
                .unwrap()
                .source_mac,
            None
        );
    }

    #[test]
    fn options_of_32_units_and_more_are_skipped_whole() {
        // pnet's own option sizing overflows from 32 units (256 bytes) up; ours walks past.
        let mut message = NDISC6_SOLICITATION[..24].to_vec();
        message.extend_from_slice(&[14, 32]);
        message.extend_from_slice(&[0; 254]);
        message.extend_from_slice(&NDISC6_SOLICITATION[24..]);
        assert_eq!(
            parse_neighbor_solicitation(&message, NDP_HOP_LIMIT)
                .unwrap()
                .source_mac,
            Some(A_MAC)
        );
        message[25] = 34;
        assert_eq!(
            parse_neighbor_solicitation(&message, NDP_HOP_LIMIT),
            None,
            "an option past the end"
        );
    }

    proptest! {
        #[test]
        fn parsers_never_panic(message in proptest::collection::vec(any::<u8>(), 0..100)) {
            let _ = parse_neighbor_solicitation(&message, NDP_HOP_LIMIT);
            let _ = parse_neighbor_advertisement(&message, NDP_HOP_LIMIT);
        }

        // Random bytes rarely have the right type and code: keep them and vary the rest.
        #[test]
        fn options_never_panic(
            kind in 135u8..=136,
            rest in proptest::collection::vec(any::<u8>(), 0..80),
        ) {
            let mut message = vec![kind, 0, 0, 0, 0, 0, 0, 0];
            message.extend_from_slice(&rest);
            let _ = parse_neighbor_solicitation(&message, NDP_HOP_LIMIT);
            let _ = parse_neighbor_advertisement(&message, NDP_HOP_LIMIT);
        }

        #[test]
        fn builders_round_trip(target: [u8; 16], mac: [u8; 6], nonce: [u8; 6]) {
            let (target, mac) = (Ipv6Addr::from(target), MacAddr::from(mac));
            prop_assume!(!target.is_multicast());
            let message = solicited_neighbor_advertisement(target, mac);
            let solicited = parse_neighbor_advertisement(&message, NDP_HOP_LIMIT).unwrap();
            prop_assert_eq!((solicited.target, solicited.target_mac), (target, Some(mac)));
            prop_assert!(solicited.solicited && solicited.override_ && !solicited.router);
            let message = unsolicited_neighbor_advertisement(target, mac);
            let unsolicited = parse_neighbor_advertisement(&message, NDP_HOP_LIMIT).unwrap();
            prop_assert_eq!((unsolicited.target, unsolicited.target_mac), (target, Some(mac)));
            prop_assert!(!unsolicited.solicited && unsolicited.override_ && !unsolicited.router);
            let dad = parse_neighbor_solicitation(&dad_neighbor_solicitation(target, nonce), NDP_HOP_LIMIT).unwrap();
            prop_assert_eq!(dad, NeighborSolicitation { target, source_mac: None, nonce: Some(nonce) });
            let resolve = parse_neighbor_solicitation(&neighbor_solicitation(target, mac), NDP_HOP_LIMIT).unwrap();
            prop_assert_eq!(resolve, NeighborSolicitation { target, source_mac: Some(mac), nonce: None });
        }
    }
}
