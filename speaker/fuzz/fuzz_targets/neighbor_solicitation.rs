#![no_main]

use std::net::Ipv6Addr;

use herald_speaker_fuzz::packet::{
    MacAddr, NDP_HOP_LIMIT, dad_neighbor_solicitation, ipv6_frame, neighbor_solicitation,
    parse_neighbor_solicitation,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|message: &[u8]| {
    let solicitation = parse_neighbor_solicitation(message, NDP_HOP_LIMIT);
    // Forwarded by a router (hop limit below 255): never taken, however valid.
    assert_eq!(parse_neighbor_solicitation(message, 64), None);
    if let Some(solicitation) = solicitation {
        for source in [Ipv6Addr::UNSPECIFIED, solicitation.target] {
            let _ = solicitation.solicitor(source);
        }
        // Asking the same question again gives a message that parses back to it.
        let again = match (solicitation.source_mac, solicitation.nonce) {
            (Some(mac), None) => Some(neighbor_solicitation(solicitation.target, mac)),
            (None, Some(nonce)) => Some(dad_neighbor_solicitation(solicitation.target, nonce)),
            _ => None,
        };
        if let Some(again) = again {
            assert_eq!(
                parse_neighbor_solicitation(&again, NDP_HOP_LIMIT),
                Some(solicitation)
            );
        }
    }
    // Framing a message of any content and length (below 64 KiB) never panics.
    let _ = ipv6_frame(
        MacAddr::zero(),
        MacAddr::broadcast(),
        Ipv6Addr::UNSPECIFIED,
        Ipv6Addr::LOCALHOST,
        message,
    );
});
