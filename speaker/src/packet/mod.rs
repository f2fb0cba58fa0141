//! ARP and NDP packet formats: pure parsing and building, no sockets.
//!
//! - [ARP](parse_arp) works on whole Ethernet frames, as an `AF_PACKET` socket bound to
//!   `ETH_P_ARP` reads and writes them.
//! - [NDP](parse_neighbor_solicitation) works on ICMPv6 messages, as a raw ICMPv6 socket delivers
//!   them: the kernel strips the IPv6 header on receipt and fills the checksum on send;
//!   [`icmpv6_checksum`] is there for an `AF_PACKET` fallback that writes whole frames.
//!
//! The parsers read frames from the network, so they never panic: every read goes through
//! `Reader`, which returns `None` past the end of its input instead of indexing.
//!
//! Written by hand rather than with `smoltcp::wire`, `pnet_packet` or `etherparse`: the formats
//! are a fixed 28-byte ARP body and a 24-byte NDP header plus one option type, so each parser is a
//! few sequential reads. The crates would bring their own address types to convert from, generic
//! option machinery we would still have to check against RFC 4861's discard rules, and (pnet) a
//! proc-macro build, for no less code here.

mod arp;
mod mac;
mod ndp;

pub use arp::{
    ArpOperation, ArpPacket, ArpRequest, Claim, FRAME_LEN as ARP_FRAME_LEN, arp_probe, arp_reply,
    gratuitous_arp_reply, gratuitous_arp_request, parse_arp, parse_arp_request,
};
pub use mac::{Mac, ParseMacError};
pub use ndp::{
    NeighborAdvertisement, NeighborSolicitation, Solicitor, dad_neighbor_solicitation,
    icmpv6_checksum, ipv6_frame, multicast_mac, neighbor_solicitation,
    parse_neighbor_advertisement, parse_neighbor_solicitation, solicited_neighbor_advertisement,
    solicited_node_multicast, unsolicited_neighbor_advertisement,
};

/// Reads fixed-size fields off the front of a byte slice, `None` once it runs out.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take<const N: usize>(&mut self) -> Option<[u8; N]> {
        let (field, rest) = self.0.split_first_chunk::<N>()?;
        self.0 = rest;
        Some(*field)
    }

    fn u8(&mut self) -> Option<u8> {
        self.take::<1>().map(|[b]| b)
    }

    fn u16(&mut self) -> Option<u16> {
        self.take().map(u16::from_be_bytes)
    }

    fn mac(&mut self) -> Option<Mac> {
        self.take().map(Mac)
    }

    fn rest(self) -> &'a [u8] {
        self.0
    }
}
