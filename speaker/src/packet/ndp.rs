//! Neighbor Discovery for IPv6 (RFC 4861): solicitations and advertisements as ICMPv6 messages,
//! with RFC 4862's Duplicate Address Detection.

use std::net::Ipv6Addr;

use super::{Mac, Reader};

const TYPE_NEIGHBOR_SOLICITATION: u8 = 135;
const TYPE_NEIGHBOR_ADVERTISEMENT: u8 = 136;
const OPTION_SOURCE_LINK_LAYER_ADDRESS: u8 = 1;
const OPTION_TARGET_LINK_LAYER_ADDRESS: u8 = 2;
const FLAG_ROUTER: u8 = 0x80;
const FLAG_SOLICITED: u8 = 0x40;
const FLAG_OVERRIDE: u8 = 0x20;
const NEXT_HEADER_ICMPV6: u8 = 58;

/// A Neighbor Solicitation: someone asks for the link-layer address of `target`, or (from ::)
/// checks whether `target` is free.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NeighborSolicitation {
    pub target: Ipv6Addr,
    /// The Source Link-Layer Address option, if present and an Ethernet address.
    pub source_mac: Option<Mac>,
}

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
    pub target_mac: Option<Mac>,
}

/// Parses an ICMPv6 message holding a Neighbor Solicitation; `None` for anything else or when
/// RFC 4861 §7.1.1 says to discard it (bad code, short, multicast target, zero-length option).
/// The caller checks what the body cannot show: hop limit 255, and the checksum (done by the
/// kernel on raw ICMPv6 sockets).
pub fn parse_neighbor_solicitation(message: &[u8]) -> Option<NeighborSolicitation> {
    let (_, target, options) = split(message, TYPE_NEIGHBOR_SOLICITATION)?;
    Some(NeighborSolicitation {
        target,
        source_mac: link_layer_option(options, OPTION_SOURCE_LINK_LAYER_ADDRESS)?,
    })
}

/// Parses an ICMPv6 message holding a Neighbor Advertisement; `None` for anything else or when
/// RFC 4861 §7.1.2 says to discard it. The caller checks the hop limit, as for solicitations, and
/// that an advertisement sent to a multicast address has Solicited clear.
pub fn parse_neighbor_advertisement(message: &[u8]) -> Option<NeighborAdvertisement> {
    let (flags, target, options) = split(message, TYPE_NEIGHBOR_ADVERTISEMENT)?;
    Some(NeighborAdvertisement {
        target,
        router: flags & FLAG_ROUTER != 0,
        solicited: flags & FLAG_SOLICITED != 0,
        override_: flags & FLAG_OVERRIDE != 0,
        target_mac: link_layer_option(options, OPTION_TARGET_LINK_LAYER_ADDRESS)?,
    })
}

/// The answer to a solicitation for `target`, which we hold at `mac`: Solicited and Override set,
/// Router clear, with a Target Link-Layer Address option. Checksum zero: the kernel fills it.
pub fn solicited_neighbor_advertisement(target: Ipv6Addr, mac: Mac) -> Vec<u8> {
    let option = link_layer_address(OPTION_TARGET_LINK_LAYER_ADDRESS, mac);
    message(
        TYPE_NEIGHBOR_ADVERTISEMENT,
        FLAG_SOLICITED | FLAG_OVERRIDE,
        target,
        &option,
    )
}

/// An advertisement nobody asked for, sent to ff02::1 when taking `target` over, and the answer to
/// a DAD probe for it: Override set so that neighbours replace their entries, Solicited clear.
/// Checksum zero: the kernel fills it.
pub fn unsolicited_neighbor_advertisement(target: Ipv6Addr, mac: Mac) -> Vec<u8> {
    let option = link_layer_address(OPTION_TARGET_LINK_LAYER_ADDRESS, mac);
    message(TYPE_NEIGHBOR_ADVERTISEMENT, FLAG_OVERRIDE, target, &option)
}

/// A solicitation resolving `target`, sent from one of our unicast addresses (at `mac`) to
/// [`solicited_node_multicast`]`(target)`, as `ndisc6` sends it: whoever holds `target` answers.
/// A raw ICMPv6 socket cannot send from ::, so it checks an address is free with this instead of
/// a DAD probe; unlike DAD, a host still probing for `target` itself stays silent.
/// Checksum zero: the kernel fills it.
pub fn neighbor_solicitation(target: Ipv6Addr, mac: Mac) -> Vec<u8> {
    let option = link_layer_address(OPTION_SOURCE_LINK_LAYER_ADDRESS, mac);
    message(TYPE_NEIGHBOR_SOLICITATION, 0, target, &option)
}

/// A Duplicate Address Detection probe for `target` (RFC 4862 §5.4.2), to send from :: to
/// [`solicited_node_multicast`]`(target)`: no source link-layer option, as none may come from ::.
/// Checksum zero: the kernel fills it.
pub fn dad_neighbor_solicitation(target: Ipv6Addr) -> Vec<u8> {
    message(TYPE_NEIGHBOR_SOLICITATION, 0, target, &[])
}

/// The ICMPv6 checksum of `message` sent from `source` to `destination` (RFC 4443 §2.3), taking
/// the checksum field (bytes 2..4) as zero: write it there to send, compare it with them to
/// verify.
pub fn icmpv6_checksum(source: Ipv6Addr, destination: Ipv6Addr, message: &[u8]) -> u16 {
    // The pseudo-header of RFC 8200 §8.1: addresses, upper-layer length, next header.
    let length = u32::try_from(message.len()).unwrap_or(u32::MAX);
    let pseudo_header = [
        &source.octets()[..],
        &destination.octets(),
        &length.to_be_bytes(),
        &[0, 0, 0, NEXT_HEADER_ICMPV6],
    ]
    .concat();
    let (head, tail) = (
        message.get(..2).unwrap_or(message),
        message.get(4..).unwrap_or_default(),
    );
    let mut sum = sum_words(&pseudo_header) + sum_words(head) + sum_words(tail);
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
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
pub fn multicast_mac(group: Ipv6Addr) -> Mac {
    let [.., a, b, c, d] = group.octets();
    Mac([0x33, 0x33, a, b, c, d])
}

/// A whole Ethernet frame carrying the ICMPv6 `message` from `source` to `destination`, with
/// hop limit 255 and the checksum filled in: NDP sent on a packet socket, so that it can come
/// from an address the interface does not hold (an advertisement from the address it
/// advertises, as stacks such as ndisc6 expect; a DAD probe from ::).
pub fn ipv6_frame(
    source_mac: Mac,
    destination_mac: Mac,
    source: Ipv6Addr,
    destination: Ipv6Addr,
    message: &[u8],
) -> Vec<u8> {
    let mut icmp = message.to_vec();
    if icmp.len() >= 4 {
        let checksum = icmpv6_checksum(source, destination, &icmp);
        icmp[2..4].copy_from_slice(&checksum.to_be_bytes());
    }
    let length = u16::try_from(icmp.len()).unwrap_or(u16::MAX);
    [
        &destination_mac.0[..],
        &source_mac.0,
        &[0x86, 0xdd],    // EtherType IPv6
        &[0x60, 0, 0, 0], // version 6, no traffic class or flow label
        &length.to_be_bytes(),
        &[NEXT_HEADER_ICMPV6, 255], // next header, hop limit (RFC 4861: 255)
        &source.octets(),
        &destination.octets(),
        &icmp,
    ]
    .concat()
}

/// Splits a solicitation or advertisement of type `kind` into its first flags byte, target and
/// options: both share one layout (RFC 4861 §4.3, §4.4).
fn split(message: &[u8], kind: u8) -> Option<(u8, Ipv6Addr, &[u8])> {
    let mut r = Reader(message);
    if r.u8()? != kind || r.u8()? != 0 {
        return None;
    }
    r.u16()?; // checksum
    let [flags, ..] = r.take::<4>()?;
    let target = Ipv6Addr::from(r.take::<16>()?);
    if target.is_multicast() {
        return None;
    }
    Some((flags, target, r.rest()))
}

/// The Ethernet address in the first link-layer address option of type `kind`, if any;
/// `None` (discard the message) if the options are malformed.
fn link_layer_option(mut options: &[u8], kind: u8) -> Option<Option<Mac>> {
    let mut found = None;
    while !options.is_empty() {
        let [option_kind, units] = *options.first_chunk::<2>()?;
        // Lengths count 8-byte units; zero would loop forever, so RFC 4861 §4.6 says discard.
        if units == 0 {
            return None;
        }
        let (option, rest) = options.split_at_checked(usize::from(units) * 8)?;
        // One unit is type, length and a 6-byte address: Ethernet's. Other links' are longer.
        if option_kind == kind
            && found.is_none()
            && let Ok([_, _, mac @ ..]) = <[u8; 8]>::try_from(option)
        {
            found = Some(Mac(mac));
        }
        options = rest;
    }
    Some(found)
}

/// A solicitation or advertisement (RFC 4861 §4.3, §4.4), checksum zero.
fn message(kind: u8, flags: u8, target: Ipv6Addr, options: &[u8]) -> Vec<u8> {
    [
        &[kind, 0, 0, 0, flags, 0, 0, 0][..],
        &target.octets(),
        options,
    ]
    .concat()
}

/// A source or target link-layer address option holding an Ethernet address: one 8-byte unit.
fn link_layer_address(kind: u8, mac: Mac) -> [u8; 8] {
    let [a, b, c, d, e, f] = mac.0;
    [kind, 1, a, b, c, d, e, f]
}

/// Sum of big-endian 16-bit words, an odd last byte padded with zero.
fn sum_words(bytes: &[u8]) -> u64 {
    bytes
        .chunks(2)
        .map(|word| match *word {
            [a, b] => u64::from(u16::from_be_bytes([a, b])),
            [a] => u64::from(a) << 8,
            _ => 0,
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const A_MAC: Mac = Mac([0x02, 0, 0, 0, 0, 0x0a]);
    const B_MAC: Mac = Mac([0x02, 0, 0, 0, 0, 0x0b]);
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

    fn with_zero_checksum(message: &[u8]) -> Vec<u8> {
        let mut message = message.to_vec();
        message[2..4].fill(0);
        message
    }

    #[test]
    fn parses_ndisc6_solicitation() {
        let solicitation = parse_neighbor_solicitation(&NDISC6_SOLICITATION).unwrap();
        assert_eq!(
            solicitation,
            NeighborSolicitation {
                target: B_IP,
                source_mac: Some(A_MAC),
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
            parse_neighbor_advertisement(&KERNEL_ADVERTISEMENT),
            Some(NeighborAdvertisement {
                target: B_IP,
                router: false,
                solicited: true,
                override_: true,
                target_mac: Some(B_MAC),
            })
        );
        assert_eq!(
            parse_neighbor_advertisement(&KERNEL_REACHABILITY_ADVERTISEMENT),
            Some(NeighborAdvertisement {
                target: A_LINK_LOCAL,
                router: false,
                solicited: true,
                override_: false,
                target_mac: None,
            })
        );
        assert_eq!(parse_neighbor_solicitation(&KERNEL_ADVERTISEMENT), None);
        assert_eq!(parse_neighbor_advertisement(&NDISC6_SOLICITATION), None);
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
            parse_neighbor_advertisement(&message),
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
        assert_eq!(&frame[..6], &A_MAC.0);
        assert_eq!(&frame[6..12], &B_MAC.0);
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
        assert_eq!(stored, icmpv6_checksum(B_IP, A_LINK_LOCAL, icmp));
        assert_ne!(stored, 0);
        assert_eq!(parse_neighbor_advertisement(icmp).unwrap().target, B_IP);
    }

    #[test]
    fn solicitation_is_ndisc6s() {
        let message = neighbor_solicitation(B_IP, A_MAC);
        assert_eq!(message, with_zero_checksum(&NDISC6_SOLICITATION));
        let solicitation = parse_neighbor_solicitation(&message).unwrap();
        assert_eq!(solicitation.source_mac, Some(A_MAC));
    }

    #[test]
    fn dad_solicitation_round_trips() {
        let message = dad_neighbor_solicitation(B_IP);
        assert_eq!(message, with_zero_checksum(&NDISC6_SOLICITATION)[..24]);
        let solicitation = parse_neighbor_solicitation(&message).unwrap();
        assert_eq!(
            solicitation,
            NeighborSolicitation {
                target: B_IP,
                source_mac: None,
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
            assert_eq!(icmpv6_checksum(source, destination, message), want);
            // The checksum field is taken as zero, so filling it does not change the result.
            let zeroed = with_zero_checksum(message);
            assert_eq!(icmpv6_checksum(source, destination, &zeroed), want);
        }
        // Our own advertisement, checksummed, is exactly what the kernel sent.
        let mut ours = solicited_neighbor_advertisement(B_IP, B_MAC);
        let sum = icmpv6_checksum(B_IP, A_LINK_LOCAL, &ours);
        ours[2..4].copy_from_slice(&sum.to_be_bytes());
        assert_eq!(ours, KERNEL_ADVERTISEMENT);
    }

    #[test]
    fn checksum_of_short_and_odd_messages() {
        // Must not panic, and an odd byte counts as the high half of a word.
        let (a, b) = (Ipv6Addr::UNSPECIFIED, Ipv6Addr::UNSPECIFIED);
        assert_eq!(icmpv6_checksum(a, b, &[]), !(NEXT_HEADER_ICMPV6 as u16));
        assert_eq!(
            icmpv6_checksum(a, b, &[1]),
            !(NEXT_HEADER_ICMPV6 as u16 + 1 + 0x100)
        );
        assert_eq!(
            icmpv6_checksum(a, b, &[1, 2, 0xff, 0xff, 3]),
            !(NEXT_HEADER_ICMPV6 as u16 + 5 + 0x102 + 0x300)
        );
    }

    #[test]
    fn solicited_node_group_and_mac() {
        let group = solicited_node_multicast(B_IP);
        assert_eq!(group, "ff02::1:ff01:2345".parse::<Ipv6Addr>().unwrap());
        assert_eq!(
            multicast_mac(group),
            Mac([0x33, 0x33, 0xff, 0x01, 0x23, 0x45])
        );
        assert_eq!(
            multicast_mac(Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1)),
            Mac([0x33, 0x33, 0, 0, 0, 1])
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
                parse_neighbor_solicitation(&NDISC6_SOLICITATION[..len]),
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
            assert_eq!(parse_neighbor_solicitation(message), None, "{name}");
        }
    }

    #[test]
    fn finds_link_layer_option_among_others() {
        // A nonce option (type 14, RFC 3971) before the source link-layer address; then a
        // two-unit source link-layer option that cannot be Ethernet's, which is skipped.
        let mut message = NDISC6_SOLICITATION[..24].to_vec();
        message.extend_from_slice(&[14, 1, 1, 2, 3, 4, 5, 6]);
        message.extend_from_slice(&NDISC6_SOLICITATION[24..]);
        assert_eq!(
            parse_neighbor_solicitation(&message).unwrap().source_mac,
            Some(A_MAC)
        );

        let mut long = NDISC6_SOLICITATION[..24].to_vec();
        long.extend_from_slice(&[1, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(parse_neighbor_solicitation(&long).unwrap().source_mac, None);
    }

    proptest! {
        #[test]
        fn parsers_never_panic(message in proptest::collection::vec(any::<u8>(), 0..100)) {
            let _ = parse_neighbor_solicitation(&message);
            let _ = parse_neighbor_advertisement(&message);
        }

        // Random bytes rarely have the right type and code: keep them and vary the rest.
        #[test]
        fn options_never_panic(
            kind in 135u8..=136,
            rest in proptest::collection::vec(any::<u8>(), 0..80),
        ) {
            let mut message = vec![kind, 0, 0, 0, 0, 0, 0, 0];
            message.extend_from_slice(&rest);
            let _ = parse_neighbor_solicitation(&message);
            let _ = parse_neighbor_advertisement(&message);
        }

        #[test]
        fn builders_round_trip(target: [u8; 16], mac: [u8; 6]) {
            let (target, mac) = (Ipv6Addr::from(target), Mac(mac));
            prop_assume!(!target.is_multicast());
            let message = solicited_neighbor_advertisement(target, mac);
            let solicited = parse_neighbor_advertisement(&message).unwrap();
            prop_assert_eq!((solicited.target, solicited.target_mac), (target, Some(mac)));
            prop_assert!(solicited.solicited && solicited.override_ && !solicited.router);
            let message = unsolicited_neighbor_advertisement(target, mac);
            let unsolicited = parse_neighbor_advertisement(&message).unwrap();
            prop_assert_eq!((unsolicited.target, unsolicited.target_mac), (target, Some(mac)));
            prop_assert!(!unsolicited.solicited && unsolicited.override_ && !unsolicited.router);
            let dad = parse_neighbor_solicitation(&dad_neighbor_solicitation(target)).unwrap();
            prop_assert_eq!(dad, NeighborSolicitation { target, source_mac: None });
            let resolve = parse_neighbor_solicitation(&neighbor_solicitation(target, mac)).unwrap();
            prop_assert_eq!(resolve, NeighborSolicitation { target, source_mac: Some(mac) });
        }
    }
}
