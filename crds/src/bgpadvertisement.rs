//! `BGPAdvertisement`: which pools' addresses are advertised over BGP, to which peers, from
//! which nodes, with which attributes; close to MetalLB's (v1beta1).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::core::{Message, Rule};
use kube::{CustomResource, KubeSchema};
use schemars::{Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Serialize};

use crate::cel;

// Each printcolumn repeats `type_`, which clippy mistakes for a duplicated attribute.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[kube(
    group = "herald.dev",
    version = "v1alpha1",
    kind = "BGPAdvertisement",
    plural = "bgpadvertisements",
    shortname = "bgpadv",
    category = "herald",
    derive = "PartialEq",
    derive = "Default",
    doc = "Advertises the addresses of some pools over BGP, from some nodes to some peers.",
    printcolumn(name = "Pools", type_ = "string", json_path = ".spec.ipAddressPools"),
    printcolumn(name = "Peers", type_ = "string", json_path = ".spec.peers"),
    printcolumn(
        name = "Communities",
        type_ = "string",
        json_path = ".spec.communities"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct BGPAdvertisementSpec {
    /// Pools advertised, by name. With no names and no selectors, every pool is advertised.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(inner(length(min = 1, max = 253)))]
    pub ip_address_pools: Vec<String>,

    /// Label selectors on the pools advertised.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "cel::label_selectors_schema")]
    pub ip_address_pool_selectors: Vec<LabelSelector>,

    /// BGPPeers advertised to, by name; empty means every peer.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(inner(length(min = 1, max = 253)))]
    pub peers: Vec<String>,

    /// Label selectors on the nodes that advertise (the next hops the routers learn); empty
    /// means every node.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "cel::label_selectors_schema")]
    pub node_selectors: Vec<LabelSelector>,

    /// Rolls IPv4 addresses up into prefixes of this length (32, one route per address,
    /// when unset). The prefix must stay inside the pool.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 32))]
    pub aggregation_length: Option<u8>,

    /// Rolls IPv6 addresses up into prefixes of this length (128 when unset).
    #[serde(
        default,
        rename = "aggregationLengthV6",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(range(min = 1, max = 128))]
    pub aggregation_length_v6: Option<u8>,

    /// The LOCAL_PREF attribute, for iBGP peers: higher is preferred.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local_pref: Option<u32>,

    /// BGP communities: standard (65535:65282) or large (large:64512:1:2).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "communities_schema")]
    pub communities: Vec<String>,
}

/// The communities, each checked as `herald_core::bgp::Community` parses them.
fn communities_schema(_: &mut SchemaGenerator) -> Schema {
    let standard = "^[0-9]{1,5}:[0-9]{1,5}$";
    let large = "^large:[0-9]{1,10}:[0-9]{1,10}:[0-9]{1,10}$";
    let rule = Rule::new(format!(
        "self.matches('{standard}') \
         ? int(self.split(':')[0]) <= 65535 && int(self.split(':')[1]) <= 65535 \
         : self.matches('{large}') && int(self.split(':')[1]) <= 4294967295 \
           && int(self.split(':')[2]) <= 4294967295 && int(self.split(':')[3]) <= 4294967295"
    ))
    .message(Message::Expression(
        "'community \"' + self + '\" is neither standard (two numbers up to 65535: \
         65535:65282) nor large (\"large:\" and three numbers up to 4294967295: large:64512:1:2)'"
            .into(),
    ));
    let mut entry = json_schema!({ "type": "string", "minLength": 3, "maxLength": 40 });
    kube::core::validate(&mut entry, rule).expect("a CEL rule serializes");
    json_schema!({
        "type": "array",
        "maxItems": 64,
        "items": entry,
    })
}
