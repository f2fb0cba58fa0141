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

/// `#[schemars(schema_with)]` for `spec.addresses`. The limits on entries and their length
/// bound what the rules may cost the API server.
pub fn addresses_schema(_: &mut SchemaGenerator) -> Schema {
    let mut entry = json_schema!({ "type": "string", "minLength": 1, "maxLength": 90 });
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
        "maxItems": 128,
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
    rule(
        format!(
            "!{WELL_FORMED} || self.contains('-') || !self.contains('/') \
             || cidr(self).masked() == cidr(self)"
        ),
        "has host bits set: write the network address (192.0.2.0/24, not 192.0.2.1/24)",
    )
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
/// strings. IPv4 octets are padded to three digits, IPv6 groups to four hex digits, with `::`
/// expanded. The API server's CRD environment has neither `cel.bind` nor an affordable
/// `join()`, so the expression spells each group out; it is long, but its cost stays within
/// the API server's budget for 128 entries.
fn sort_key(ip: &str) -> String {
    let s = format!("{ip}.lowerAscii()");
    let pad = |group: &str, width: usize| {
        format!("'{}'.substring(size({group})) + {group}", "0".repeat(width))
    };
    let v4: Vec<String> = (0..4)
        .map(|i| pad(&format!("{s}.split('.')[{i}]"), 3))
        .collect();
    let head = format!("{s}.split('::')[0]");
    let tail = format!("{s}.split('::')[1]");
    let groups = |part: &str| format!("({part} == '' ? 0 : size({part}.split(':')))");
    let (head_groups, tail_groups) = (groups(&head), groups(&tail));
    // Group i of the address: as written, or from the head or tail around `::`, or a zero.
    let group = |i: usize| {
        format!(
            "(!{s}.contains('::') ? {s}.split(':')[{i}] \
             : ({i} < {head_groups} ? {head}.split(':')[{i}] \
             : ({i} >= 8 - {tail_groups} ? {tail}.split(':')[{i} - 8 + {tail_groups}] : '0')))"
        )
    };
    let v6: Vec<String> = (0..8).map(|i| pad(&group(i), 4)).collect();
    format!(
        "(ip({ip}).family() == 4 ? {} : {})",
        v4.join(" + "),
        v6.join(" + ")
    )
}

/// `#[schemars(schema_with)]` for a list of label selectors. Kubernetes checks selectors in
/// its own objects but not in custom resources: these rules make the API server refuse an
/// unknown operator, `In`/`NotIn` without values and `Exists`/`DoesNotExist` with values, so
/// that a typo never reaches the controller or the speaker. The limits bound what the rules
/// may cost the API server.
pub fn label_selectors_schema(_: &mut SchemaGenerator) -> Schema {
    let mut expression = json_schema!({
        "type": "object",
        "required": ["key", "operator"],
        "properties": {
            "key": { "type": "string", "minLength": 1, "maxLength": 317 },
            "operator": {
                "type": "string",
                "enum": ["In", "NotIn", "Exists", "DoesNotExist"],
            },
            "values": {
                "type": "array",
                "maxItems": 256,
                "items": { "type": "string", "maxLength": 63 },
            },
        },
    });
    for rule in [
        Rule::new(
            "!(self.operator in ['In', 'NotIn']) || (has(self.values) && size(self.values) > 0)",
        )
        .message("In and NotIn need at least one value"),
        Rule::new(
            "!(self.operator in ['Exists', 'DoesNotExist']) || !has(self.values) \
             || size(self.values) == 0",
        )
        .message("Exists and DoesNotExist take no values"),
    ] {
        kube::core::validate(&mut expression, rule).expect("a CEL rule serializes");
    }
    json_schema!({
        "type": "array",
        "maxItems": 32,
        "items": {
            "description": "A label selector: every matchLabels pair and every matchExpressions \
                            requirement must hold; an empty selector matches everything.",
            "type": "object",
            "x-kubernetes-map-type": "atomic",
            "properties": {
                "matchLabels": {
                    "type": "object",
                    "additionalProperties": { "type": "string" },
                },
                "matchExpressions": {
                    "type": "array",
                    "maxItems": 32,
                    "items": expression,
                },
            },
        },
    })
}

/// A Go duration as the API writes them (`90s`, `1m30s`, `300ms`), which CEL's `duration()`
/// parses; checked first so that a malformed one gets a message rather than an evaluation error.
pub const DURATION: &str = "^([0-9]+([.][0-9]+)?(ns|us|ms|s|m|h))+$";

/// `#[schemars(schema_with)]` for a duration field `field` in whole seconds whose value must
/// pass `range` (a CEL expression on `self`), explained by `range_message`.
pub fn duration_schema(
    _: &mut SchemaGenerator,
    field: &str,
    range: &str,
    range_message: &str,
) -> Schema {
    let mut schema = json_schema!({
        "description": format!("A duration such as 90s or 1m30s, in whole seconds ({field})."),
        "type": "string",
        "maxLength": 32,
    });
    for rule in [
        Rule::new(format!("self.matches('{DURATION}')")).message(Message::Message(format!(
            "{field} must be a duration such as 90s or 1m30s"
        ))),
        Rule::new(format!(
            "!self.matches('{DURATION}') || duration(self).getMilliseconds() % 1000 == 0"
        ))
        .message(Message::Message(format!(
            "{field} must be a whole number of seconds"
        ))),
        Rule::new(format!("!self.matches('{DURATION}') || ({range})"))
            .message(Message::Message(format!("{field} {range_message}"))),
    ] {
        kube::core::validate(&mut schema, rule).expect("a CEL rule serializes");
    }
    schema
}
