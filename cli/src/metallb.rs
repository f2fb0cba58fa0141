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
    /// Objects of kinds Herald does not convert yet (BGPPeer, BGPAdvertisement, BFDProfile,
    /// Community): (kind, namespace, name).
    pub unconverted: Vec<(String, String, String)>,
    /// The legacy ConfigMap, when there is one: (namespace, name, its parsed `config`).
    pub legacy: Option<(String, String, LegacyConfig)>,
}
