//! `L2Advertisement`: which pools are announced in layer 2, from which nodes, on which
//! interfaces.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use crate::cel;

// Each printcolumn repeats `type_`, which clippy mistakes for a duplicated attribute.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[kube(
    group = "herald.dev",
    version = "v1alpha1",
    kind = "L2Advertisement",
    plural = "l2advertisements",
    shortname = "l2adv",
    category = "herald",
    derive = "PartialEq",
    derive = "Default",
    doc = "Announces the addresses of some pools with ARP and NDP from some nodes.",
    printcolumn(name = "Pools", type_ = "string", json_path = ".spec.ipAddressPools"),
    printcolumn(name = "Interfaces", type_ = "string", json_path = ".spec.interfaces"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct L2AdvertisementSpec {
    /// Pools announced, by name. With no names and no selectors, every pool is announced.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(inner(length(min = 1, max = 253)))]
    pub ip_address_pools: Vec<String>,

    /// Label selectors on the pools announced.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "cel::label_selectors_schema")]
    pub ip_address_pool_selectors: Vec<LabelSelector>,

    /// Label selectors on the nodes that may announce; empty means every node.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "cel::label_selectors_schema")]
    pub node_selectors: Vec<LabelSelector>,

    /// Interfaces to answer on; empty means every suitable interface.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(inner(length(min = 1, max = 15), regex(pattern = r"^[^/\s:]+$")))]
    pub interfaces: Vec<String>,
}
