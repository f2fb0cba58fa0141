#![no_main]

use herald_speaker_fuzz::packet::Mac;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    // Whatever parses is written back the same, up to case.
    if let Ok(mac) = text.parse::<Mac>() {
        assert_eq!(mac.to_string(), text.to_ascii_lowercase());
    }
});
