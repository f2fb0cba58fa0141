//! ARP and NDP packet formats: pure parsing and building, no sockets. The wire formats are
//! `pnet_packet`'s (`EthernetPacket`, `ArpPacket`, `Ipv6Packet`, `NeighborSolicitPacket`,
//! `NeighborAdvertPacket`, its ICMPv6 checksum); this module adds what RFC 826, 5227, 4861 and
//! 4862 ask of the speaker on top: which packets to discard, and what to say.
//!
//! - [ARP](parse_arp) works on whole Ethernet frames, as an `AF_PACKET` socket bound to
//!   `ETH_P_ARP` reads and writes them.
//! - [NDP](parse_neighbor_solicitation) is read as ICMPv6 messages, as a raw ICMPv6 socket
//!   delivers them (the kernel strips the IPv6 header and checks the checksum on receipt), and
//!   sent either so or, from an address the interface does not hold, as a whole frame
//!   ([`ipv6_frame`]).
//!
//! The parsers read frames from the network, so they never panic: pnet's views check the
//! length of what they are given, and NDP options are walked here (see `ndp`).

mod arp;
mod ndp;

/// Ethernet addresses: pnet's, the type its Ethernet and ARP packets carry.
pub use pnet_base::MacAddr;

pub use arp::{
    ArpFrame, ArpRequest, Claim, FRAME_LEN as ARP_FRAME_LEN, arp_probe, arp_reply,
    gratuitous_arp_reply, gratuitous_arp_request, parse_arp, parse_arp_request,
};
pub use ndp::{
    NDP_HOP_LIMIT, NeighborAdvertisement, NeighborSolicitation, Nonce, Solicitor,
    dad_neighbor_solicitation, ipv6_frame, multicast_mac, neighbor_solicitation,
    parse_neighbor_advertisement, parse_neighbor_solicitation, solicited_neighbor_advertisement,
    solicited_node_multicast, unsolicited_neighbor_advertisement,
};
