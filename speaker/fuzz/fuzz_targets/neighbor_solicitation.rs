#![no_main]

use std::net::Ipv6Addr;

use herald_speaker_fuzz::packet::{
    dad_neighbor_solicitation, icmpv6_checksum, neighbor_solicitation, parse_neighbor_solicitation,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|message: &[u8]| {
    if let Some(solicitation) = parse_neighbor_solicitation(message) {
        for source in [Ipv6Addr::UNSPECIFIED, solicitation.target] {
            let _ = solicitation.solicitor(source);
        }
        // Asking the same question again gives a message that parses back to it.
        let again = match solicitation.source_mac {
            Some(mac) => neighbor_solicitation(solicitation.target, mac),
            None => dad_neighbor_solicitation(solicitation.target),
        };
        assert_eq!(parse_neighbor_solicitation(&again), Some(solicitation));
    }
    let _ = icmpv6_checksum(Ipv6Addr::UNSPECIFIED, Ipv6Addr::LOCALHOST, message);
});
