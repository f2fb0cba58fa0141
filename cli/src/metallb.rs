//! MetalLB's configuration as `kubectl herald migrate metallb` reads it: the `metallb.io`
//! custom resources (0.13 and later) and the `config` ConfigMap of the releases before.
//! Only the fields a migration needs are read; the rest of each object is ignored.

use std::collections::BTreeMap;

use herald_crds::ServiceAllocation;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};
use serde::Deserialize;

/// `IPAddressPool.metallb.io` spec (v1beta1).
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PoolSpec {
    #[serde(default)]
    pub addresses: Vec<String>,
    /// Unset means true, as in MetalLB.
    pub auto_assign: Option<bool>,
    #[serde(default, rename = "avoidBuggyIPs")]
    pub avoid_buggy_ips: bool,
    /// Field for field Herald's own `serviceAllocation`; MetalLB's priority 0 means "none".
    pub service_allocation: Option<ServiceAllocation>,
}

/// `L2Advertisement.metallb.io` spec (v1beta1).
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct L2AdvertisementSpec {
    #[serde(default)]
    pub ip_address_pools: Vec<String>,
    #[serde(default)]
    pub ip_address_pool_selectors: Vec<LabelSelector>,
    #[serde(default)]
    pub node_selectors: Vec<LabelSelector>,
    #[serde(default)]
    pub interfaces: Vec<String>,
}

/// `BGPPeer.metallb.io` spec (v1beta2).
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct BgpPeerSpec {
    #[serde(rename = "myASN")]
    pub my_asn: u32,
    /// 0 when `dynamicASN` is set.
    #[serde(default, rename = "peerASN")]
    pub peer_asn: u32,
    #[serde(default, rename = "dynamicASN")]
    pub dynamic_asn: Option<String>,
    #[serde(default)]
    pub peer_address: String,
    pub source_address: Option<String>,
    pub peer_port: Option<u16>,
    pub hold_time: Option<String>,
    pub keepalive_time: Option<String>,
    pub connect_time: Option<String>,
    #[serde(rename = "routerID")]
    pub router_id: Option<String>,
    #[serde(default)]
    pub node_selectors: Vec<LabelSelector>,
    /// In plain text in the object: Herald takes passwords only from Secrets.
    pub password: Option<String>,
    pub password_secret: Option<SecretReference>,
    pub bfd_profile: Option<String>,
    #[serde(default)]
    pub enable_graceful_restart: bool,
    #[serde(default)]
    pub ebgp_multi_hop: bool,
    pub vrf: Option<String>,
    /// BGP unnumbered: no `peerAddress`, a session over this interface.
    pub interface: Option<String>,
    /// MetalLB's default (false) sends IPv6 prefixes over an IPv4 session and back.
    #[serde(default, rename = "disableMP")]
    pub disable_mp: bool,
}

/// A Secret by name and namespace, as MetalLB's `passwordSecret` names it (its key is always
/// `password`).
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
pub struct SecretReference {
    pub name: String,
    pub namespace: Option<String>,
}

/// `BGPAdvertisement.metallb.io` spec (v1beta1).
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct BgpAdvertisementSpec {
    pub aggregation_length: Option<u8>,
    #[serde(rename = "aggregationLengthV6")]
    pub aggregation_length_v6: Option<u8>,
    pub local_pref: Option<u32>,
    /// `65535:65282`, `large:1:2:3`, or the name of an entry of a Community object.
    #[serde(default)]
    pub communities: Vec<String>,
    #[serde(default)]
    pub ip_address_pools: Vec<String>,
    #[serde(default)]
    pub ip_address_pool_selectors: Vec<LabelSelector>,
    #[serde(default)]
    pub node_selectors: Vec<LabelSelector>,
    #[serde(default)]
    pub peers: Vec<String>,
}

/// `BFDProfile.metallb.io` spec (v1beta1): field for field Herald's.
pub type BfdProfileSpec = herald_crds::BFDProfileSpec;

/// `Community.metallb.io` spec (v1beta1): names for community values.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
pub struct CommunitySpec {
    #[serde(default)]
    pub communities: Vec<CommunityAlias>,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
pub struct CommunityAlias {
    pub name: String,
    pub value: String,
}

/// One MetalLB object: where it is and what it says.
#[derive(Clone, Debug, PartialEq)]
pub struct Object<T> {
    pub namespace: String,
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub spec: T,
}

/// The `config` key of MetalLB's ConfigMap before 0.13 (`metallb-system/config`), as MetalLB
/// 0.12 reads it (`internal/config/config.go`).
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "kebab-case")]
pub struct LegacyConfig {
    #[serde(default)]
    pub address_pools: Vec<LegacyPool>,
    #[serde(default)]
    pub peers: Vec<LegacyPeer>,
    /// Names for community values, which advertisements may use instead of the values.
    #[serde(default)]
    pub bgp_communities: BTreeMap<String, String>,
    #[serde(default)]
    pub bfd_profiles: Vec<LegacyBfdProfile>,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "kebab-case")]
pub struct LegacyPool {
    pub name: String,
    /// `layer2` or `bgp`.
    pub protocol: String,
    #[serde(default)]
    pub addresses: Vec<String>,
    pub auto_assign: Option<bool>,
    #[serde(default)]
    pub avoid_buggy_ips: bool,
    /// None in a `bgp` pool means one advertisement with MetalLB's defaults.
    #[serde(default)]
    pub bgp_advertisements: Vec<LegacyBgpAdvertisement>,
}

/// An entry of the legacy `peers`. MetalLB reads an empty string or a 0 as unset.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "kebab-case")]
pub struct LegacyPeer {
    #[serde(default)]
    pub peer_address: String,
    #[serde(default)]
    pub peer_asn: u32,
    #[serde(default)]
    pub my_asn: u32,
    pub peer_port: Option<u16>,
    pub source_address: Option<String>,
    pub hold_time: Option<String>,
    pub keepalive_time: Option<String>,
    pub router_id: Option<String>,
    /// In plain text in the ConfigMap: Herald takes passwords only from Secrets.
    pub password: Option<String>,
    pub bfd_profile: Option<String>,
    #[serde(default, rename = "ebgp-multihop")]
    pub ebgp_multi_hop: bool,
    /// The peer is on the nodes that match any of them; none, or an empty one, is every node.
    #[serde(default)]
    pub node_selectors: Vec<LegacyNodeSelector>,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "kebab-case")]
pub struct LegacyNodeSelector {
    #[serde(default)]
    pub match_labels: BTreeMap<String, String>,
    #[serde(default)]
    pub match_expressions: Vec<LabelSelectorRequirement>,
}

/// An entry of a legacy `bgp` pool's `bgp-advertisements`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "kebab-case")]
pub struct LegacyBgpAdvertisement {
    pub aggregation_length: Option<u8>,
    pub aggregation_length_v6: Option<u8>,
    #[serde(rename = "localpref")]
    pub local_pref: Option<u32>,
    /// `65535:65282`, or a name from `bgp-communities`.
    #[serde(default)]
    pub communities: Vec<String>,
}

/// An entry of the legacy `bfd-profiles`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "kebab-case")]
pub struct LegacyBfdProfile {
    pub name: String,
    pub receive_interval: Option<u32>,
    pub transmit_interval: Option<u32>,
    pub detect_multiplier: Option<u32>,
    pub echo_interval: Option<u32>,
    #[serde(default)]
    pub echo_mode: bool,
    #[serde(default)]
    pub passive_mode: bool,
    pub minimum_ttl: Option<u32>,
}

impl LegacyPeer {
    /// The peer as MetalLB 0.13 and later write it (its own `configmaptocrs` did the same), so
    /// that one conversion serves both; the password stays in plain text, for the caller.
    pub fn to_resource(&self) -> BgpPeerSpec {
        let set = |value: &Option<String>| value.clone().filter(|v| !v.is_empty());
        let every_node = self
            .node_selectors
            .iter()
            .any(|s| s.match_labels.is_empty() && s.match_expressions.is_empty());
        let node_selectors = if every_node {
            Vec::new()
        } else {
            self.node_selectors
                .iter()
                .map(|s| LabelSelector {
                    match_labels: Some(s.match_labels.clone()).filter(|l| !l.is_empty()),
                    match_expressions: Some(s.match_expressions.clone()).filter(|e| !e.is_empty()),
                })
                .collect()
        };
        BgpPeerSpec {
            my_asn: self.my_asn,
            peer_asn: self.peer_asn,
            peer_address: self.peer_address.clone(),
            source_address: set(&self.source_address),
            peer_port: self.peer_port.filter(|p| *p != 0),
            hold_time: set(&self.hold_time),
            keepalive_time: set(&self.keepalive_time),
            router_id: set(&self.router_id),
            node_selectors,
            password: set(&self.password),
            bfd_profile: set(&self.bfd_profile),
            ebgp_multi_hop: self.ebgp_multi_hop,
            ..BgpPeerSpec::default()
        }
    }
}

impl LegacyBgpAdvertisement {
    /// The advertisement of `pool` as MetalLB 0.13 and later write it: to every peer, from
    /// every node.
    pub fn to_resource(&self, pool: &str) -> BgpAdvertisementSpec {
        BgpAdvertisementSpec {
            aggregation_length: self.aggregation_length,
            aggregation_length_v6: self.aggregation_length_v6,
            local_pref: self.local_pref,
            communities: self.communities.clone(),
            ip_address_pools: vec![pool.to_owned()],
            ..BgpAdvertisementSpec::default()
        }
    }
}

impl LegacyBfdProfile {
    pub fn to_resource(&self) -> BfdProfileSpec {
        BfdProfileSpec {
            receive_interval: self.receive_interval,
            transmit_interval: self.transmit_interval,
            detect_multiplier: self.detect_multiplier,
            echo_interval: self.echo_interval,
            echo_mode: self.echo_mode.then_some(true),
            passive_mode: self.passive_mode.then_some(true),
            minimum_ttl: self.minimum_ttl,
        }
    }
}

/// Parses the ConfigMap's `config` key.
pub fn parse_legacy(text: &str) -> Result<LegacyConfig, serde_yaml::Error> {
    serde_yaml::from_str(text)
}

/// Everything MetalLB is configured with, as found in the cluster.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Configuration {
    pub pools: Vec<Object<PoolSpec>>,
    pub l2_advertisements: Vec<Object<L2AdvertisementSpec>>,
    pub bgp_peers: Vec<Object<BgpPeerSpec>>,
    pub bgp_advertisements: Vec<Object<BgpAdvertisementSpec>>,
    pub bfd_profiles: Vec<Object<BfdProfileSpec>>,
    pub communities: Vec<Object<CommunitySpec>>,
    /// The legacy ConfigMap, when there is one: (namespace, name, its parsed `config`).
    pub legacy: Option<(String, String, LegacyConfig)>,
}
