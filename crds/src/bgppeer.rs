//! `BGPPeer`: a router that nodes hold a BGP session with, close to MetalLB's (v1beta2) so
//! that its users can move.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use crate::cel::{self, DURATION};

// Each printcolumn repeats `type_`, which clippy mistakes for a duplicated attribute.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "herald.dev",
    version = "v1alpha1",
    kind = "BGPPeer",
    plural = "bgppeers",
    shortname = "bgppeer",
    category = "herald",
    derive = "PartialEq",
    doc = "A BGP router that nodes peer with, to advertise the addresses of Services.",
    printcolumn(name = "Address", type_ = "string", json_path = ".spec.peerAddress"),
    printcolumn(name = "ASN", type_ = "integer", json_path = ".spec.peerASN"),
    printcolumn(name = "My ASN", type_ = "integer", json_path = ".spec.myASN"),
    printcolumn(name = "BFD Profile", type_ = "string", json_path = ".spec.bfdProfile"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[x_kube(validation = Rule::new(
        "!has(self.ebgpMultiHop) || !self.ebgpMultiHop || self.peerASN != self.myASN"
    ).message("ebgpMultiHop is for eBGP: this peer's peerASN equals myASN (iBGP), remove ebgpMultiHop"))]
#[x_kube(validation = Rule::new(
        "!has(self.sourceAddress) || !isIP(self.sourceAddress) || !isIP(self.peerAddress) \
         || ip(self.sourceAddress).family() == ip(self.peerAddress).family()"
    ).message("sourceAddress and peerAddress must be of one address family"))]
#[x_kube(validation = Rule::new(format!(
        "!has(self.holdTime) || !has(self.keepaliveTime) \
         || !self.holdTime.matches('{DURATION}') || !self.keepaliveTime.matches('{DURATION}') \
         || duration(self.keepaliveTime) < duration(self.holdTime) \
         || (duration(self.holdTime) == duration('0s') && duration(self.keepaliveTime) == duration('0s'))"
    )).message("keepaliveTime must be lower than holdTime (RFC 4271 advises a third of it)"))]
#[x_kube(validation = Rule::new(format!(
        "has(self.holdTime) || !has(self.keepaliveTime) || !self.keepaliveTime.matches('{DURATION}') \
         || duration(self.keepaliveTime) <= duration('21845s')"
    )).message("keepaliveTime without holdTime makes the hold time three times it, at most 65535s: set holdTime, or a keepaliveTime of at most 21845s"))]
#[serde(rename_all = "camelCase")]
pub struct BGPPeerSpec {
    /// The router's address.
    #[x_kube(validation = Rule::new("isIP(self)").message("peerAddress must be an IPv4 or IPv6 address, such as 192.0.2.1"))]
    #[schemars(length(min = 2, max = 45))]
    pub peer_address: String,

    /// The router's AS number.
    #[serde(rename = "peerASN")]
    #[schemars(range(min = 1, max = 4294967295_u32))]
    pub peer_asn: u32,

    /// The nodes' AS number. Every BGPPeer of one node must have the same: a node runs one BGP
    /// instance.
    #[serde(rename = "myASN")]
    #[schemars(range(min = 1, max = 4294967295_u32))]
    pub my_asn: u32,

    /// The router's TCP port; 179 when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 65535))]
    pub peer_port: Option<u16>,

    /// The nodes' address for the session (FRR's update-source); the routing table decides
    /// when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("isIP(self)").message("sourceAddress must be an IPv4 or IPv6 address"))]
    #[schemars(length(min = 2, max = 45))]
    pub source_address: Option<String>,

    /// The BGP router ID, an IPv4 address; FRR picks one of the node's addresses when unset.
    /// Every BGPPeer of one node must agree.
    #[serde(default, rename = "routerID", skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("isIP(self) && ip(self).family() == 4").message("routerID must be an IPv4 address, such as 192.0.2.11"))]
    #[schemars(length(min = 7, max = 15))]
    pub router_id: Option<String>,

    /// The hold time to propose (RFC 4271): 0 (no keepalives) or 3s to 65535s, whole seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "hold_time_schema")]
    pub hold_time: Option<String>,

    /// The keepalive interval: below holdTime, whole seconds. A third of holdTime when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "keepalive_time_schema")]
    pub keepalive_time: Option<String>,

    /// How long to wait between connection attempts: 1s to 65535s, whole seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "connect_time_schema")]
    pub connect_time: Option<String>,

    /// The router is more than one hop away (eBGP only).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub ebgp_multi_hop: bool,

    /// The TCP MD5 password, from a Secret: never written here in plain text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_secret: Option<PasswordSecret>,

    /// The BFDProfile of the session's BFD, by name; no BFD when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub bfd_profile: Option<String>,

    /// Graceful restart (RFC 4724): the router keeps forwarding on the node's routes while
    /// the speaker or FRR restarts. Changing it resets the session.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub enable_graceful_restart: bool,

    /// Which nodes peer with this router; empty means every node.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "cel::label_selectors_schema")]
    pub node_selectors: Vec<LabelSelector>,
}

/// Where a peer's password is.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct PasswordSecret {
    /// The Secret's name.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// The Secret's namespace; Herald's own when unset (the speakers may read Secrets there
    /// only, unless given more rights).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63))]
    pub namespace: Option<String>,
    /// The key holding the password; `password` when unset (as in a basic-auth Secret).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub key: Option<String>,
}

fn hold_time_schema(g: &mut schemars::SchemaGenerator) -> schemars::Schema {
    cel::duration_schema(
        g,
        "holdTime",
        "duration(self) == duration('0s') || (duration(self) >= duration('3s') && duration(self) <= duration('65535s'))",
        "must be 0s or between 3s and 65535s",
    )
}

fn keepalive_time_schema(g: &mut schemars::SchemaGenerator) -> schemars::Schema {
    cel::duration_schema(
        g,
        "keepaliveTime",
        "duration(self) <= duration('65535s')",
        "must be at most 65535s",
    )
}

fn connect_time_schema(g: &mut schemars::SchemaGenerator) -> schemars::Schema {
    cel::duration_schema(
        g,
        "connectTime",
        "duration(self) >= duration('1s') && duration(self) <= duration('65535s')",
        "must be between 1s and 65535s",
    )
}
