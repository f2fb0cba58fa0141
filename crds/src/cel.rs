//! The schema of `IPAddressPool.spec.addresses`, with the CEL rules that the API server runs on
//! each entry at admission.
//!
//! They accept exactly what `herald_core::addresses::AddressRange::parse` accepts, and say what
//! is wrong in the words that parser uses. Each rule passes entries that an earlier rule
//! refuses, so that a bad entry gets one precise message and no rule fails to evaluate.

use kube::core::{Message, Rule};
use schemars::{Schema, SchemaGenerator, json_schema};

/// The entry is a CIDR, an `a-b` range of two addresses, or a single address.
const WELL_FORMED: &str = "(self.contains('-') \
    ? (size(self.split('-')) == 2 && isIP(self.split('-')[0].trim()) && isIP(self.split('-')[1].trim())) \
    : (self.contains('/') ? isCIDR(self) : isIP(self)))";
const FIRST: &str = "self.split('-')[0].trim()";
const LAST: &str = "self.split('-')[1].trim()";

/// `#[schemars(schema_with)]` for `spec.addresses`.
pub fn addresses_schema(_: &mut SchemaGenerator) -> Schema {
    let mut entry = json_schema!({ "type": "string", "minLength": 1, "maxLength": 100 });
    for rule in [
        well_formed(),
        cidr_has_no_host_bits(),
        range_is_one_family(),
        range_is_ascending(),
    ] {
        kube::core::validate(&mut entry, rule).expect("a CEL rule serializes");
    }
    json_schema!({
        "description": "CIDRs (192.0.2.0/24), inclusive ranges (192.0.2.10-192.0.2.20) or single \
                        addresses; IPv4 and IPv6 may mix.",
        "type": "array",
        "minItems": 1,
        "maxItems": 256,
        "items": entry,
    })
}

fn rule(passes: String, problem: &str) -> Rule {
    Rule::new(passes).message(Message::Expression(format!(
        "'address entry \"' + self + '\" {problem}'"
    )))
}

fn well_formed() -> Rule {
    rule(
        WELL_FORMED.to_owned(),
        "is not a CIDR (192.0.2.0/24), a range (192.0.2.10-192.0.2.20) or a single address",
    )
}

fn cidr_has_no_host_bits() -> Rule {
    Rule::new(format!(
        "!{WELL_FORMED} || self.contains('-') || !self.contains('/') \
         || cidr(self).masked() == cidr(self)"
    ))
    .message(Message::Expression(
        "'address entry \"' + self + '\" has host bits set: write \"' \
         + string(cidr(self).masked()) + '\"'"
            .to_owned(),
    ))
}

fn range_is_one_family() -> Rule {
    rule(
        format!(
            "!{WELL_FORMED} || !self.contains('-') \
             || ip({FIRST}).family() == ip({LAST}).family()"
        ),
        "mixes IPv4 and IPv6: a range has both ends in one family",
    )
}

fn range_is_ascending() -> Rule {
    rule(
        format!(
            "!{WELL_FORMED} || !self.contains('-') \
             || ip({FIRST}).family() != ip({LAST}).family() \
             || {} <= {}",
            sort_key(FIRST),
            sort_key(LAST)
        ),
        "is reversed: its first address is above its last",
    )
}

/// A CEL expression that turns the address `ip` (a CEL string expression) into a fixed-width
/// string whose order is the addresses' numeric order: CEL cannot compare IPs, but it compares
/// strings. IPv4 octets are padded to three digits; IPv6, in canonical form, is expanded to 32
/// hex digits.
fn sort_key(ip: &str) -> String {
    let v4 = "c.split('.').map(o, '000'.substring(size(o)) + o).join('')";
    let hex = |s: &str| format!("{s}.split(':').map(g, '0000'.substring(size(g)) + g).join('')");
    let hex_or_empty = |s: &str| format!("({s} == '' ? '' : {})", hex(s));
    let groups = |s: &str| format!("({s} == '' ? 0 : size({s}.split(':')))");
    let v6 = format!(
        "(!c.contains('::') ? {whole} : cel.bind(h, c.split('::')[0], cel.bind(t, c.split('::')[1], \
         {head} + '{zeros}'.substring(0, 4 * (8 - {head_groups} - {tail_groups})) + {tail})))",
        whole = hex("c"),
        head = hex_or_empty("h"),
        tail = hex_or_empty("t"),
        head_groups = groups("h"),
        tail_groups = groups("t"),
        zeros = "0".repeat(32),
    );
    format!("cel.bind(c, string(ip({ip})), ip({ip}).family() == 4 ? {v4} : {v6})")
}
