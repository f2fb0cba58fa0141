#![no_main]

use herald_speaker_fuzz::packet::{
    NDP_HOP_LIMIT, parse_neighbor_advertisement, solicited_neighbor_advertisement,
    unsolicited_neighbor_advertisement,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|message: &[u8]| {
    let advertisement = parse_neighbor_advertisement(message, NDP_HOP_LIMIT);
    // Forwarded by a router (hop limit below 255): never taken, however valid.
    assert_eq!(parse_neighbor_advertisement(message, 64), None);
    if let Some(advertisement) = advertisement
        && let Some(mac) = advertisement.target_mac
    {
        for built in [
            solicited_neighbor_advertisement(advertisement.target, mac),
            unsolicited_neighbor_advertisement(advertisement.target, mac),
        ] {
            let parsed = parse_neighbor_advertisement(&built, NDP_HOP_LIMIT)
                .expect("our advertisement parses");
            assert_eq!(
                (parsed.target, parsed.target_mac),
                (advertisement.target, Some(mac))
            );
        }
    }
});
