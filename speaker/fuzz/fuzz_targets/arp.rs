#![no_main]

use std::collections::BTreeSet;

use herald_speaker_fuzz::packet::{MacAddr, arp_reply, parse_arp, parse_arp_request};
use libfuzzer_sys::fuzz_target;
use pnet_packet::arp::ArpOperations;

fuzz_target!(|frame: &[u8]| {
    let packet = parse_arp(frame);
    let request = parse_arp_request(frame);
    assert_eq!(
        request.is_some(),
        packet.is_some_and(|p| p.operation == ArpOperations::Request)
    );
    if let Some(packet) = packet {
        let _ = packet.claim(packet.target_ip, &BTreeSet::from([packet.target_mac]));
    }
    if let Some(request) = request {
        // Answering what we parsed gives a frame that parses back to that answer.
        let reply = parse_arp(&arp_reply(
            MacAddr(0x02, 0, 0, 0, 0, 0x01),
            request.target_ip,
            request.sender_mac,
            request.sender_ip,
        ))
        .expect("our reply parses");
        assert_eq!(reply.operation, ArpOperations::Reply);
        assert_eq!(
            (reply.target_mac, reply.target_ip),
            (request.sender_mac, request.sender_ip)
        );
    }
});
