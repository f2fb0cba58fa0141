//! MetalLB's configuration as `kubectl herald migrate metallb` reads it: the `metallb.io`
//! custom resources (0.13 and later) and the `config` ConfigMap of the releases before.
//! Only the fields a migration needs are read; the rest of each object is ignored.

use herald_crds::ServiceAllocation;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
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
    pub labels: std::collections::BTreeMap<String, String>,
    pub spec: T,
}

/// The `config` key of MetalLB's ConfigMap before 0.13 (`metallb-system/config`).
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "kebab-case")]
pub struct LegacyConfig {
    #[serde(default)]
    pub address_pools: Vec<LegacyPool>,
    #[serde(default)]
    pub peers: Vec<serde_yaml::Value>,
    #[serde(default)]
    pub bgp_communities: serde_yaml::Mapping,
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
    #[serde(default)]
    pub bgp_advertisements: Vec<serde_yaml::Value>,
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
