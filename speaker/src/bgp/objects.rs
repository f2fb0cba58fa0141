//! What a speaker knows of the cluster's BGP objects, fed by watch events: BGPPeers,
//! BGPAdvertisements and BFDProfiles read into [`herald_core::bgp`]'s types, and the password
//! Secrets of Herald's namespace. Synchronous and free of API calls, like [`crate::world`].
//!
//! Bad input loses nothing and crashes nothing: an object whose spec cannot be read (a value
//! stored before the CRD refused it) keeps working as its last valid spec said, or is left out
//! when none was seen, and [`BgpObjects::invalid`] says why for an Event.

use std::collections::{BTreeMap, BTreeSet};
use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr};

use herald_core::bgp::{Advertisement, BfdProfile, Community, Peer, SecretKeyRef};
use herald_core::selector::LabelSelector;
use herald_crds::{BFDProfile, BGPAdvertisement, BGPPeer, label_selector};
use herald_runtime::watches::{Index, ObjectKey};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector as KubeLabelSelector;
use k8s_openapi::jiff::SignedDuration;
use kube::ResourceExt;

use super::render::{Passwords, password_problem};

/// The key of a password Secret when the BGPPeer names none, as in a basic-auth Secret.
pub const DEFAULT_PASSWORD_KEY: &str = "password";

/// An object whose spec cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Invalid {
    pub kind: &'static str,
    pub name: String,
    pub uid: String,
    /// What is wrong, and what the speakers do meanwhile.
    pub problem: String,
}

#[derive(Debug, Default)]
pub struct BgpObjects {
    /// The speaker's namespace: the only one whose Secrets it may read.
    namespace: String,
    peers: BTreeMap<String, Peer>,
    advertisements: BTreeMap<String, Advertisement>,
    profiles: BTreeMap<String, BfdProfile>,
    /// Secret data by Secret name, in the speaker's namespace.
    secrets: BTreeMap<String, BTreeMap<String, Vec<u8>>>,
    /// By (kind, name).
    invalid: BTreeMap<(&'static str, String), Invalid>,
}

impl BgpObjects {
    pub fn new(namespace: impl Into<String>) -> Self {
        BgpObjects {
            namespace: namespace.into(),
            ..BgpObjects::default()
        }
    }

    pub fn peers(&self) -> Vec<Peer> {
        self.peers.values().cloned().collect()
    }

    pub fn advertisements(&self) -> Vec<Advertisement> {
        self.advertisements.values().cloned().collect()
    }

    pub fn profiles(&self) -> Vec<BfdProfile> {
        self.profiles.values().cloned().collect()
    }

    /// Objects whose spec cannot be read, sorted.
    pub fn invalid(&self) -> impl Iterator<Item = &Invalid> {
        self.invalid.values()
    }

    /// The passwords of the peers that have one and whose Secret gives one FRR can take, by
    /// peer name; and for the others, why not, in words for their session state.
    pub fn passwords(&self) -> (Passwords, BTreeMap<String, String>) {
        let mut passwords = Passwords::new();
        let mut problems = BTreeMap::new();
        for peer in self.peers.values() {
            let Some(secret) = &peer.password else {
                continue;
            };
            match self.password(secret) {
                Ok(password) => {
                    passwords.insert(peer.name.clone(), password);
                }
                Err(problem) => {
                    problems.insert(
                        peer.name.clone(),
                        format!("BGPPeer {:?} is not configured: {problem}", peer.name),
                    );
                }
            }
        }
        (passwords, problems)
    }

    fn password(&self, secret: &SecretKeyRef) -> Result<String, String> {
        let SecretKeyRef {
            namespace,
            name,
            key,
        } = secret;
        if *namespace != self.namespace {
            return Err(format!(
                "its password Secret is in namespace {namespace:?}, and the speakers read \
                 Secrets in {:?} only: move the Secret there, or give the speakers a Role to \
                 read it",
                self.namespace
            ));
        }
        let data = self.secrets.get(name).ok_or_else(|| {
            format!(
                "its password Secret {namespace}/{name} does not exist: create it with the \
                 password under the key {key:?}"
            )
        })?;
        let bytes = data.get(key).ok_or_else(|| {
            format!(
                "its password Secret {namespace}/{name} has no key {key:?}: add the password \
                 under that key, or name the key in passwordSecret.key"
            )
        })?;
        let password = std::str::from_utf8(bytes)
            .map_err(|_| {
                format!("the password in Secret {namespace}/{name} key {key:?} is not UTF-8 text")
            })?
            .to_owned();
        match password_problem(&password) {
            Some(problem) => Err(format!(
                "{problem} (Secret {namespace}/{name}, key {key:?}): FRR cannot use it"
            )),
            None => Ok(password),
        }
    }

    pub fn apply_peer(&mut self, object: &BGPPeer) -> Result<(), String> {
        let name = object.name_any();
        let read = peer(object, &self.namespace);
        let uid = object.metadata.uid.clone().unwrap_or_default();
        keep_valid(
            &mut self.peers,
            &mut self.invalid,
            "BGPPeer",
            name,
            uid,
            read,
        )
    }

    pub fn apply_advertisement(&mut self, object: &BGPAdvertisement) -> Result<(), String> {
        let name = object.name_any();
        let read = advertisement(object);
        let uid = object.metadata.uid.clone().unwrap_or_default();
        keep_valid(
            &mut self.advertisements,
            &mut self.invalid,
            "BGPAdvertisement",
            name,
            uid,
            read,
        )
    }

    pub fn apply_profile(&mut self, object: &BFDProfile) {
        let name = object.name_any();
        self.profiles.insert(name.clone(), profile(object));
    }

    pub fn apply_secret(&mut self, secret: &Secret) {
        let data = secret
            .data
            .iter()
            .flatten()
            .map(|(key, value)| (key.clone(), value.0.clone()))
            .collect();
        self.secrets.insert(secret.name_any(), data);
    }
}

/// Keeps `read` under `name` if valid; otherwise keeps what was there and records why.
fn keep_valid<T>(
    known: &mut BTreeMap<String, T>,
    invalid: &mut BTreeMap<(&'static str, String), Invalid>,
    kind: &'static str,
    name: String,
    uid: String,
    read: Result<T, String>,
) -> Result<(), String> {
    match read {
        Ok(value) => {
            known.insert(name.clone(), value);
            invalid.remove(&(kind, name));
            Ok(())
        }
        Err(problem) => {
            let effect = if known.contains_key(&name) {
                "it keeps working as its last valid spec said until it is fixed"
            } else {
                "it is left out until it is fixed"
            };
            let problem = format!("{problem}; {effect}");
            invalid.insert(
                (kind, name.clone()),
                Invalid {
                    kind,
                    name: name.clone(),
                    uid,
                    problem: problem.clone(),
                },
            );
            Err(format!("{kind} {name:?}: {problem}"))
        }
    }
}

fn selectors(list: &[KubeLabelSelector], field: &str) -> Result<Vec<LabelSelector>, String> {
    list.iter()
        .enumerate()
        .map(|(i, s)| label_selector(s).map_err(|e| format!("{field}[{i}]: {e}")))
        .collect()
}

/// A duration field in whole seconds (`90s`, `1m30s`); `0s` is allowed (a hold time of 0).
fn seconds(value: &Option<String>, field: &str) -> Result<Option<u32>, String> {
    let Some(value) = value else {
        return Ok(None);
    };
    let invalid = |why: &str| format!("{field} {value:?} {why}");
    let parsed: SignedDuration = value
        .trim()
        .parse()
        .map_err(|_| invalid("is not a duration such as 90s or 3m"))?;
    if parsed.is_negative() {
        return Err(invalid("is negative"));
    }
    if parsed.subsec_nanos() != 0 {
        return Err(invalid("is not a whole number of seconds"));
    }
    u32::try_from(parsed.as_secs())
        .map(Some)
        .map_err(|_| invalid("is too long"))
}

fn address<T: std::str::FromStr>(value: &str, field: &str) -> Result<T, String> {
    value
        .parse()
        .map_err(|_| format!("{field} {value:?} is not an IP address"))
}

/// A BGPPeer as the decision takes it; a password Secret without a namespace is in
/// `namespace`, the speaker's.
pub fn peer(object: &BGPPeer, namespace: &str) -> Result<Peer, String> {
    let spec = &object.spec;
    let peer_address: IpAddr = address(&spec.peer_address, "spec.peerAddress")?;
    let source_address = spec
        .source_address
        .as_deref()
        .map(|a| address::<IpAddr>(a, "spec.sourceAddress"))
        .transpose()?;
    let router_id = spec
        .router_id
        .as_deref()
        .map(|a| address::<Ipv4Addr>(a, "spec.routerID"))
        .transpose()?;
    Ok(Peer {
        port: spec.peer_port,
        source_address,
        router_id,
        hold_time: seconds(&spec.hold_time, "spec.holdTime")?,
        keepalive_time: seconds(&spec.keepalive_time, "spec.keepaliveTime")?,
        connect_time: seconds(&spec.connect_time, "spec.connectTime")?,
        ebgp_multihop: spec.ebgp_multi_hop,
        password: spec.password_secret.as_ref().map(|s| SecretKeyRef {
            namespace: s.namespace.clone().unwrap_or_else(|| namespace.to_owned()),
            name: s.name.clone(),
            key: s
                .key
                .clone()
                .unwrap_or_else(|| DEFAULT_PASSWORD_KEY.to_owned()),
        }),
        bfd_profile: spec.bfd_profile.clone(),
        graceful_restart: spec.enable_graceful_restart,
        node_selectors: selectors(&spec.node_selectors, "spec.nodeSelectors")?,
        ..Peer::new(object.name_any(), peer_address, spec.peer_asn, spec.my_asn)
    })
}

pub fn advertisement(object: &BGPAdvertisement) -> Result<Advertisement, String> {
    let spec = &object.spec;
    let defaults = Advertisement::default();
    let communities = spec
        .communities
        .iter()
        .enumerate()
        .map(|(i, c)| {
            c.parse::<Community>()
                .map_err(|e| format!("spec.communities[{i}]: {e}"))
        })
        .collect::<Result<BTreeSet<_>, _>>()?;
    Ok(Advertisement {
        name: object.name_any(),
        pools: spec.ip_address_pools.iter().cloned().collect(),
        pool_selectors: selectors(
            &spec.ip_address_pool_selectors,
            "spec.ipAddressPoolSelectors",
        )?,
        peers: spec.peers.iter().cloned().collect(),
        node_selectors: selectors(&spec.node_selectors, "spec.nodeSelectors")?,
        aggregation_length: spec
            .aggregation_length
            .unwrap_or(defaults.aggregation_length),
        aggregation_length_v6: spec
            .aggregation_length_v6
            .unwrap_or(defaults.aggregation_length_v6),
        local_pref: spec.local_pref,
        communities,
    })
}

pub fn profile(object: &BFDProfile) -> BfdProfile {
    let spec = &object.spec;
    BfdProfile {
        name: object.name_any(),
        receive_interval: spec.receive_interval,
        transmit_interval: spec.transmit_interval,
        detect_multiplier: spec.detect_multiplier,
        echo_interval: spec.echo_interval,
        echo_mode: spec.echo_mode.unwrap_or(false),
        passive_mode: spec.passive_mode.unwrap_or(false),
        minimum_ttl: spec.minimum_ttl,
    }
}

// The watches feed the objects through these; the speaker reads them whole on every pass.

fn named(present: &BTreeSet<ObjectKey>, name: &str) -> bool {
    present.iter().any(|k| k.name == name)
}

impl Index<BGPPeer> for BgpObjects {
    type Touched = Infallible;

    fn apply(&mut self, object: &BGPPeer) -> Vec<Infallible> {
        if let Err(problem) = self.apply_peer(object) {
            tracing::warn!(%problem, "BGPPeer is invalid");
        }
        Vec::new()
    }

    fn delete(&mut self, object: &BGPPeer) -> Vec<Infallible> {
        let name = object.name_any();
        self.peers.remove(&name);
        self.invalid.remove(&("BGPPeer", name));
        Vec::new()
    }

    fn retain(&mut self, present: &BTreeSet<ObjectKey>) -> Vec<Infallible> {
        self.peers.retain(|name, _| named(present, name));
        self.invalid
            .retain(|(kind, name), _| *kind != "BGPPeer" || named(present, name));
        Vec::new()
    }
}

impl Index<BGPAdvertisement> for BgpObjects {
    type Touched = Infallible;

    fn apply(&mut self, object: &BGPAdvertisement) -> Vec<Infallible> {
        if let Err(problem) = self.apply_advertisement(object) {
            tracing::warn!(%problem, "BGPAdvertisement is invalid");
        }
        Vec::new()
    }

    fn delete(&mut self, object: &BGPAdvertisement) -> Vec<Infallible> {
        let name = object.name_any();
        self.advertisements.remove(&name);
        self.invalid.remove(&("BGPAdvertisement", name));
        Vec::new()
    }

    fn retain(&mut self, present: &BTreeSet<ObjectKey>) -> Vec<Infallible> {
        self.advertisements.retain(|name, _| named(present, name));
        self.invalid
            .retain(|(kind, name), _| *kind != "BGPAdvertisement" || named(present, name));
        Vec::new()
    }
}

impl Index<BFDProfile> for BgpObjects {
    type Touched = Infallible;

    fn apply(&mut self, object: &BFDProfile) -> Vec<Infallible> {
        self.apply_profile(object);
        Vec::new()
    }

    fn delete(&mut self, object: &BFDProfile) -> Vec<Infallible> {
        self.profiles.remove(&object.name_any());
        Vec::new()
    }

    fn retain(&mut self, present: &BTreeSet<ObjectKey>) -> Vec<Infallible> {
        self.profiles.retain(|name, _| named(present, name));
        Vec::new()
    }
}

impl Index<Secret> for BgpObjects {
    type Touched = Infallible;

    fn apply(&mut self, secret: &Secret) -> Vec<Infallible> {
        self.apply_secret(secret);
        Vec::new()
    }

    fn delete(&mut self, secret: &Secret) -> Vec<Infallible> {
        self.secrets.remove(&secret.name_any());
        Vec::new()
    }

    fn retain(&mut self, present: &BTreeSet<ObjectKey>) -> Vec<Infallible> {
        self.secrets.retain(|name, _| named(present, name));
        Vec::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn from<T: serde::de::DeserializeOwned>(value: serde_json::Value) -> T {
        serde_json::from_value(value).unwrap()
    }

    fn bgp_peer(spec: serde_json::Value) -> BGPPeer {
        from(
            json!({"apiVersion": "herald.dev/v1alpha1", "kind": "BGPPeer",
            "metadata": {"name": "tor", "uid": "u1"}, "spec": spec}),
        )
    }

    fn secret(name: &str, data: serde_json::Value) -> Secret {
        from(json!({"metadata": {"name": name, "namespace": "herald-system"}, "data": data}))
    }

    #[test]
    fn a_peer_reads_with_durations_in_seconds_and_its_secret_in_heralds_namespace() {
        let peer = peer(
            &bgp_peer(
                json!({"peerAddress": "192.0.2.1", "peerASN": 64500, "myASN": 64512,
                "holdTime": "1m30s", "keepaliveTime": "30s", "routerID": "192.0.2.11",
                "passwordSecret": {"name": "tor-password"}, "bfdProfile": "fast",
                "nodeSelectors": [{"matchLabels": {"rack": "a"}}]}),
            ),
            "herald-system",
        )
        .unwrap();
        assert_eq!(peer.name, "tor");
        assert_eq!(peer.address, "192.0.2.1".parse::<IpAddr>().unwrap());
        assert_eq!((peer.asn, peer.my_asn), (64500, 64512));
        assert_eq!(peer.timers(), Some((30, 90)));
        assert_eq!(peer.router_id, Some(Ipv4Addr::new(192, 0, 2, 11)));
        assert_eq!(
            peer.password,
            Some(SecretKeyRef {
                namespace: "herald-system".into(),
                name: "tor-password".into(),
                key: "password".into(),
            })
        );
        assert_eq!(peer.bfd_profile.as_deref(), Some("fast"));
        assert_eq!(peer.node_selectors.len(), 1);
    }

    #[test]
    fn a_hold_time_of_zero_is_kept_and_fractions_of_seconds_are_refused() {
        let zero = peer(
            &bgp_peer(json!({"peerAddress": "192.0.2.1", "peerASN": 1, "myASN": 2,
                "holdTime": "0s", "keepaliveTime": "0s"})),
            "ns",
        )
        .unwrap();
        assert_eq!(zero.timers(), Some((0, 0)));
        let problem = peer(
            &bgp_peer(json!({"peerAddress": "192.0.2.1", "peerASN": 1, "myASN": 2,
                "holdTime": "9.5s"})),
            "ns",
        )
        .unwrap_err();
        assert_eq!(
            problem,
            "spec.holdTime \"9.5s\" is not a whole number of seconds"
        );
    }

    #[test]
    fn an_invalid_peer_keeps_its_last_valid_spec_and_says_why() {
        let mut objects = BgpObjects::new("herald-system");
        let good = bgp_peer(json!({"peerAddress": "192.0.2.1", "peerASN": 1, "myASN": 2}));
        objects.apply_peer(&good).unwrap();
        let bad = bgp_peer(json!({"peerAddress": "192.0.2.1", "peerASN": 1, "myASN": 2,
            "nodeSelectors": [{"matchExpressions": [{"key": "rack", "operator": "Near"}]}]}));
        let problem = objects.apply_peer(&bad).unwrap_err();
        assert!(problem.contains("spec.nodeSelectors[0]"), "{problem}");
        assert_eq!(objects.peers().len(), 1);
        let invalid: Vec<&Invalid> = objects.invalid().collect();
        assert_eq!(invalid.len(), 1);
        assert!(
            invalid[0]
                .problem
                .ends_with("it keeps working as its last valid spec said until it is fixed"),
            "{}",
            invalid[0].problem
        );
        objects.apply_peer(&good).unwrap();
        assert_eq!(objects.invalid().count(), 0);
    }

    #[test]
    fn a_missing_or_unusable_password_is_a_reason_not_a_crash() {
        let mut objects = BgpObjects::new("herald-system");
        let with_secret = |name: &str, secret: serde_json::Value| -> BGPPeer {
            from(
                json!({"apiVersion": "herald.dev/v1alpha1", "kind": "BGPPeer",
                "metadata": {"name": name},
                "spec": {"peerAddress": "192.0.2.1", "peerASN": 1, "myASN": 2,
                         "passwordSecret": secret}}),
            )
        };
        objects
            .apply_peer(&with_secret("missing", json!({"name": "nowhere"})))
            .unwrap();
        objects
            .apply_peer(&with_secret(
                "elsewhere",
                json!({"name": "pw", "namespace": "kube-system"}),
            ))
            .unwrap();
        objects
            .apply_peer(&with_secret(
                "no-key",
                json!({"name": "pw", "key": "secret"}),
            ))
            .unwrap();
        objects
            .apply_peer(&with_secret("spaces", json!({"name": "spaces"})))
            .unwrap();
        objects
            .apply_peer(&with_secret("good", json!({"name": "pw"})))
            .unwrap();
        // "right" and "a b", base64.
        objects.apply_secret(&secret("pw", json!({"password": "cmlnaHQ="})));
        objects.apply_secret(&secret("spaces", json!({"password": "YSBi"})));
        let (passwords, problems) = objects.passwords();
        assert_eq!(
            passwords,
            Passwords::from([("good".to_string(), "right".to_string())])
        );
        assert!(
            problems["missing"].contains("Secret herald-system/nowhere does not exist: create it"),
            "{}",
            problems["missing"]
        );
        assert!(
            problems["elsewhere"].contains("read Secrets in \"herald-system\" only"),
            "{}",
            problems["elsewhere"]
        );
        assert!(
            problems["no-key"].contains("has no key \"secret\""),
            "{}",
            problems["no-key"]
        );
        assert!(
            problems["spaces"].contains("spaces") && !problems["spaces"].contains("a b"),
            "{}",
            problems["spaces"]
        );
    }

    #[test]
    fn an_advertisement_reads_its_communities_and_aggregation() {
        let object: BGPAdvertisement = from(
            json!({"apiVersion": "herald.dev/v1alpha1", "kind": "BGPAdvertisement",
            "metadata": {"name": "tor"}, "spec": {"ipAddressPools": ["lan"], "peers": ["tor"],
            "aggregationLength": 24, "localPref": 100,
            "communities": ["65535:65282", "large:1:2:3"]}}),
        );
        let read = advertisement(&object).unwrap();
        assert_eq!(read.aggregation_length, 24);
        assert_eq!(read.aggregation_length_v6, 128);
        assert_eq!(read.local_pref, Some(100));
        assert_eq!(
            read.communities,
            BTreeSet::from([Community::Standard(65535, 65282), Community::Large(1, 2, 3)])
        );
    }
}
