//! `IPAddressPool`: the addresses Herald may hand out, and to which Services.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector};
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use crate::cel;

// Each printcolumn repeats `type_`, which clippy mistakes for a duplicated attribute.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "herald.dev",
    version = "v1alpha1",
    kind = "IPAddressPool",
    plural = "ipaddresspools",
    shortname = "ippool",
    category = "herald",
    status = "IPAddressPoolStatus",
    derive = "PartialEq",
    doc = "A pool of addresses that Herald hands out to Services of type LoadBalancer.",
    printcolumn(name = "Addresses", type_ = "string", json_path = ".spec.addresses"),
    printcolumn(
        name = "Auto Assign",
        type_ = "boolean",
        json_path = ".spec.autoAssign"
    ),
    printcolumn(
        name = "V4 Assigned",
        type_ = "integer",
        json_path = ".status.assignedIPv4"
    ),
    printcolumn(
        name = "V4 Available",
        type_ = "integer",
        json_path = ".status.availableIPv4"
    ),
    printcolumn(
        name = "V6 Assigned",
        type_ = "integer",
        json_path = ".status.assignedIPv6"
    ),
    printcolumn(
        name = "V6 Available",
        type_ = "integer",
        json_path = ".status.availableIPv6"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = r#".status.conditions[?(@.type=="Ready")].status"#
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct IPAddressPoolSpec {
    /// CIDRs (192.0.2.0/24), inclusive ranges (192.0.2.10-192.0.2.20) or single addresses;
    /// IPv4 and IPv6 may mix.
    #[schemars(schema_with = "cel::addresses_schema")]
    pub addresses: Vec<String>,

    /// Whether Services that name no pool and no address may get an address from this pool.
    #[serde(default = "default_true")]
    pub auto_assign: bool,

    /// Never hand out IPv4 addresses ending in .0 or .255, which some old clients mistake
    /// for broadcast addresses.
    #[serde(default, rename = "avoidBuggyIPs")]
    pub avoid_buggy_ips: bool,

    /// Restricts the pool to some Services and sets its priority among pools.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_allocation: Option<ServiceAllocation>,
}

fn default_true() -> bool {
    true
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ServiceAllocation {
    /// Lower numbers are preferred; a pool without a priority comes after every pool with one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<i32>,

    /// Namespaces whose Services may use the pool.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(inner(length(min = 1, max = 63)))]
    pub namespaces: Vec<String>,

    /// Label selectors on namespaces whose Services may use the pool.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "cel::label_selectors_schema")]
    pub namespace_selectors: Vec<LabelSelector>,

    /// Label selectors on the Services that may use the pool.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "cel::label_selectors_schema")]
    pub service_selectors: Vec<LabelSelector>,
}

/// Written by herald-controller. Counts saturate at the largest value the field can hold.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct IPAddressPoolStatus {
    #[serde(
        rename = "assignedIPv4",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub assigned_ipv4: Option<i64>,
    #[serde(
        rename = "availableIPv4",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub available_ipv4: Option<i64>,
    #[serde(
        rename = "assignedIPv6",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub assigned_ipv6: Option<i64>,
    #[serde(
        rename = "availableIPv6",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub available_ipv6: Option<i64>,
    /// `Ready`, `Conflicting` (overlaps another pool, which it names) and `Invalid`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = kube::core::ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,
}
