#![no_main]

use herald_speaker_fuzz::packet::{
    parse_neighbor_advertisement, solicited_neighbor_advertisement,
    unsolicited_neighbor_advertisement,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|message: &[u8]| {
    if let Some(advertisement) = parse_neighbor_advertisement(message)
        && let Some(mac) = advertisement.target_mac
    {
        for built in [
            solicited_neighbor_advertisement(advertisement.target, mac),
            unsolicited_neighbor_advertisement(advertisement.target, mac),
        ] {
            let parsed = parse_neighbor_advertisement(&built).expect("our advertisement parses");
            assert_eq!(
                (parsed.target, parsed.target_mac),
                (advertisement.target, Some(mac))
            );
        }
    }
});
