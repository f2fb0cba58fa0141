//! `BGPSessionState`: one node's session with one BGPPeer, as FRR reports it, where users look
//! without exec. Named `<node>-<peer>`, written by that node's speaker when the state changes.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

// Each printcolumn repeats `type_`, which clippy mistakes for a duplicated attribute.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[kube(
    group = "herald.dev",
    version = "v1alpha1",
    kind = "BGPSessionState",
    plural = "bgpsessionstates",
    shortname = "bgpsession",
    category = "herald",
    status = "BGPSessionStateStatus",
    derive = "PartialEq",
    derive = "Default",
    doc = "The state of one node's BGP session with one BGPPeer, written by that node's speaker.",
    printcolumn(name = "Node", type_ = "string", json_path = ".status.node"),
    printcolumn(name = "Peer", type_ = "string", json_path = ".status.peer"),
    printcolumn(name = "BGP", type_ = "string", json_path = ".status.bgpState"),
    printcolumn(name = "BFD", type_ = "string", json_path = ".status.bfdState"),
    printcolumn(
        name = "Prefixes",
        type_ = "integer",
        json_path = ".status.prefixesAdvertised"
    ),
    printcolumn(
        name = "Reason",
        type_ = "string",
        json_path = ".status.reason",
        priority = 1
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
pub struct BGPSessionStateSpec {}

/// What the node's FRR says of the session.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct BGPSessionStateStatus {
    /// The node holding the session.
    #[serde(default)]
    pub node: String,
    /// The BGPPeer's name.
    #[serde(default)]
    pub peer: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer_address: Option<String>,
    /// FRR's BGP state: Idle, Connect, Active, OpenSent, OpenConfirm or Established.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bgp_state: Option<String>,
    /// FRR's BFD state (Up, Down, Init, AdminDown); unset without a BFD profile.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bfd_state: Option<String>,
    /// How many prefixes the node advertises to the peer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefixes_advertised: Option<i64>,
    /// Why the session is not established, in words a person can act on (a missing password
    /// Secret, the last error the router sent, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// When `bgpState` last changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<Time>,
}
