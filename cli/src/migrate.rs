//! MetalLB's configuration as Herald objects, decided without the API: what maps to what, what
//! does not, and whether the result is safe.
//!
//! Safe means: no address would be held by two pools, no object overwrites a different one
//! of the same name, and no address a Service shows today could go to another Service. The
//! last is checked with the controller's own index ([`herald_controller::index::Index`]): the
//! migrated pools and every Service, as they are now, go through the decisions the controller
//! makes on start, so what this module predicts is what the controller will do.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::IpAddr;

use herald_controller::index::Index;
use herald_controller::service;
use herald_controller::status::join;
use herald_core::addresses::PoolAddresses;
use herald_core::allocation::ServiceKey;
use herald_core::selector::Labels;
use herald_crds::{
    BFDProfile, BGPAdvertisement, BGPAdvertisementSpec, BGPPeer, BGPPeerSpec, IPAddressPool,
    IPAddressPoolSpec, L2Advertisement, L2AdvertisementSpec, PasswordSecret, ServiceAllocation,
    service_status,
};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};

use crate::metallb::{self, Configuration, LegacyPool, Object};

/// The label every object written by a migration carries, naming where it came from.
pub const MIGRATED_FROM: &str = "herald.dev/migrated-from";

/// The result of a migration: the objects to apply and a line per object read.
#[derive(Clone, Debug, Default)]
pub struct Migration {
    pub pools: Vec<IPAddressPool>,
    pub advertisements: Vec<L2Advertisement>,
    pub bgp_peers: Vec<BGPPeer>,
    pub bgp_advertisements: Vec<BGPAdvertisement>,
    pub bfd_profiles: Vec<BFDProfile>,
    pub rows: Vec<Row>,
}

/// One object read, and what became of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Row {
    /// `Kind namespace/name` of MetalLB's object (or of a Service).
    pub source: String,
    /// `Kind name` of Herald's object, or `-` when nothing is written for it.
    pub result: String,
    pub outcome: Outcome,
    pub note: String,
}

impl Row {
    /// A MetalLB object that became `result`, with nothing to add.
    fn converted(source: String, result: String) -> Row {
        Row {
            source,
            result,
            outcome: Outcome::Converted,
            note: String::new(),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Outcome {
    Converted,
    /// Written already, identical: applying again changes nothing.
    Unchanged,
    NotConverted,
    /// A Service's address moves or goes: converted, but worth a look before applying.
    Warning,
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Outcome::Converted => "converted",
            Outcome::Unchanged => "unchanged",
            Outcome::NotConverted => "not converted",
            Outcome::Warning => "warning",
        })
    }
}

/// Why a migration is refused: each would hand out an address twice or lose configuration.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error(
        "{first} and {second} both hold {range}: an address in two pools could be handed out by \
         either; make the pools disjoint first"
    )]
    Overlap {
        first: String,
        second: String,
        range: String,
    },
    #[error(
        "{kind} {name:?} exists in namespaces {namespaces:?}; Herald's {kind}s are cluster-scoped: \
         rename all but one first"
    )]
    SameName {
        kind: &'static str,
        name: String,
        namespaces: Vec<String>,
    },
    #[error(
        "Herald already has a different {kind} {name:?}: delete or rename it, or the MetalLB \
         object, first"
    )]
    Exists { kind: &'static str, name: String },
    #[error("{object}: address entry {entry:?}: {why}")]
    BadAddress {
        object: String,
        entry: String,
        why: String,
    },
    #[error(
        "BGPPeer {peer} has its password in plain text: Herald reads passwords only from Secrets. \
         Put it in one (kubectl create secret generic {name}-password -n NAMESPACE \
         --from-literal=password=...) and give the BGPPeer `passwordSecret: {{name: \
         {name}-password}}` instead of `password` (MetalLB reads it there too), then migrate again"
    )]
    PlainPassword { peer: String, name: String },
    #[error(
        "{entry} ({address}) has its password in plain text: Herald reads passwords only from \
         Secrets. Put it in one (kubectl create secret generic {secret} -n {namespace} \
         --from-literal=password=...), then migrate again: BGPPeer {peer} will read it there"
    )]
    LegacyPlainPassword {
        entry: String,
        address: String,
        secret: String,
        namespace: String,
        peer: String,
    },
    #[error(
        "Service {holder} shows {ip}, which Herald would hand out to other Services: it is in \
         pool {pool:?} but the Service is not Herald's ({why})"
    )]
    HeldElsewhere {
        ip: IpAddr,
        holder: ServiceKey,
        pool: String,
        why: String,
    },
}

/// What is in the cluster besides MetalLB's configuration.
#[derive(Clone, Debug, Default)]
pub struct Cluster {
    pub pools: Vec<IPAddressPool>,
    pub advertisements: Vec<L2Advertisement>,
    pub bgp_peers: Vec<BGPPeer>,
    pub bgp_advertisements: Vec<BGPAdvertisement>,
    pub bfd_profiles: Vec<BFDProfile>,
    pub services: Vec<Service>,
    pub namespaces: BTreeMap<String, Labels>,
    /// The controller's `--load-balancer-class`, if it is given one.
    pub class: Option<String>,
    /// Herald's namespace, where the speakers read the BGP peers' password Secrets.
    pub herald_namespace: String,
    /// The names of the Secrets there.
    pub secrets: BTreeSet<String>,
}

/// Converts `config`; refuses (with every reason) when the result is not safe in `cluster`.
pub fn migrate(config: &Configuration, cluster: &Cluster) -> Result<Migration, Vec<Refusal>> {
    let mut migration = Migration::default();
    let mut refusals = Vec::new();
    convert_resources(config, &mut migration, &mut refusals);
    convert_bgp(config, &mut migration, &mut refusals);
    if let Some((namespace, name, legacy)) = &config.legacy {
        let legacy_source = LegacySource { namespace, name };
        convert_legacy(&legacy_source, legacy, &mut migration);
        convert_legacy_bgp(
            &legacy_source,
            legacy,
            cluster,
            &mut migration,
            &mut refusals,
        );
    }
    refusals.extend(same_names(&migration));
    refusals.extend(existing_objects(&mut migration, cluster));
    refusals.extend(overlaps(&migration.pools, &cluster.pools));
    if refusals.is_empty() {
        let (rows, held) = addresses(&migration, cluster);
        migration.rows.extend(rows);
        refusals.extend(held);
    }
    if refusals.is_empty() {
        Ok(migration)
    } else {
        Err(refusals)
    }
}

fn convert_resources(
    config: &Configuration,
    migration: &mut Migration,
    refusals: &mut Vec<Refusal>,
) {
    for pool in &config.pools {
        let source = format!("IPAddressPool {}/{}", pool.namespace, pool.name);
        refusals.extend(bad_addresses(&source, &pool.spec.addresses));
        let spec = IPAddressPoolSpec {
            addresses: pool.spec.addresses.clone(),
            auto_assign: pool.spec.auto_assign.unwrap_or(true),
            avoid_buggy_ips: pool.spec.avoid_buggy_ips,
            service_allocation: pool.spec.service_allocation.clone().map(service_allocation),
        };
        migration
            .pools
            .push(herald_pool(pool, &source, spec, &pool.labels));
        migration.rows.push(Row::converted(
            source,
            format!("IPAddressPool {}", pool.name),
        ));
    }
    for advertisement in &config.l2_advertisements {
        let source = format!(
            "L2Advertisement {}/{}",
            advertisement.namespace, advertisement.name
        );
        let metallb::L2AdvertisementSpec {
            ip_address_pools,
            ip_address_pool_selectors,
            node_selectors,
            interfaces,
        } = advertisement.spec.clone();
        let spec = L2AdvertisementSpec {
            ip_address_pools,
            ip_address_pool_selectors,
            node_selectors,
            interfaces,
        };
        migration.advertisements.push(L2Advertisement {
            metadata: metadata(&advertisement.name, &source, &advertisement.labels),
            spec,
        });
        migration.rows.push(Row::converted(
            source,
            format!("L2Advertisement {}", advertisement.name),
        ));
    }
}

/// MetalLB's BGPPeers, BGPAdvertisements and BFDProfiles, field for field; Community names
/// are resolved to their values. A peer Herald cannot follow (a VRF, BGP unnumbered, a dynamic
/// ASN) is listed, not converted; a password in plain text refuses the migration.
fn convert_bgp(config: &Configuration, migration: &mut Migration, refusals: &mut Vec<Refusal>) {
    for peer in &config.bgp_peers {
        let source = format!("BGPPeer {}/{}", peer.namespace, peer.name);
        let spec = &peer.spec;
        let unsupported: Vec<String> = [
            spec.vrf
                .as_deref()
                .filter(|v| !v.is_empty())
                .map(|v| format!("vrf {v:?}")),
            spec.interface
                .as_deref()
                .filter(|i| !i.is_empty())
                .map(|i| format!("interface {i:?} (BGP unnumbered)")),
            spec.dynamic_asn
                .as_deref()
                .filter(|a| !a.is_empty())
                .map(|a| format!("dynamicASN {a:?}")),
        ]
        .into_iter()
        .flatten()
        .collect();
        if !unsupported.is_empty() {
            migration.rows.push(Row {
                source,
                result: "-".into(),
                outcome: Outcome::NotConverted,
                note: format!(
                    "Herald has no {}: this router gets no routes from Herald",
                    unsupported.join(", ")
                ),
            });
            continue;
        }
        if spec.password.as_deref().is_some_and(|p| !p.is_empty()) {
            refusals.push(Refusal::PlainPassword {
                peer: format!("{}/{}", peer.namespace, peer.name),
                name: peer.name.clone(),
            });
            continue;
        }
        let mut notes = Vec::new();
        let password_secret = spec.password_secret.as_ref().map(|secret| {
            notes.push(format!(
                "copy Secret {}/{} into Herald's namespace: the speakers read passwords there",
                secret.namespace.as_deref().unwrap_or(&peer.namespace),
                secret.name
            ));
            PasswordSecret {
                name: secret.name.clone(),
                namespace: None,
                key: None,
            }
        });
        notes.extend(single_family(spec));
        migration.bgp_peers.push(BGPPeer {
            metadata: metadata(&peer.name, &source, &peer.labels),
            spec: peer_spec(spec, password_secret),
        });
        migration.rows.push(Row {
            source,
            result: format!("BGPPeer {}", peer.name),
            outcome: if spec.password_secret.is_some() {
                Outcome::Warning
            } else {
                Outcome::Converted
            },
            note: notes.join("; "),
        });
    }
    let aliases: BTreeMap<&str, &str> = config
        .communities
        .iter()
        .flat_map(|c| &c.spec.communities)
        .map(|alias| (alias.name.as_str(), alias.value.as_str()))
        .collect();
    for advertisement in &config.bgp_advertisements {
        let source = format!(
            "BGPAdvertisement {}/{}",
            advertisement.namespace, advertisement.name
        );
        let spec = match advertisement_spec(&advertisement.spec, &aliases) {
            Ok(spec) => spec,
            Err(unknown) => {
                migration.rows.push(Row {
                    source,
                    result: "-".into(),
                    outcome: Outcome::NotConverted,
                    note: format!(
                        "communities {unknown:?} name no Community entry: add them to a \
                         Community, or write their values"
                    ),
                });
                continue;
            }
        };
        migration.bgp_advertisements.push(BGPAdvertisement {
            metadata: metadata(&advertisement.name, &source, &advertisement.labels),
            spec,
        });
        migration.rows.push(Row::converted(
            source,
            format!("BGPAdvertisement {}", advertisement.name),
        ));
    }
    for profile in &config.bfd_profiles {
        let source = format!("BFDProfile {}/{}", profile.namespace, profile.name);
        migration.bfd_profiles.push(BFDProfile {
            metadata: metadata(&profile.name, &source, &profile.labels),
            spec: profile.spec.clone(),
        });
        migration.rows.push(Row::converted(
            source,
            format!("BFDProfile {}", profile.name),
        ));
    }
    for community in &config.communities {
        migration.rows.push(Row {
            source: format!("Community {}/{}", community.namespace, community.name),
            result: "-".into(),
            outcome: Outcome::Converted,
            note: "its values are written into the BGPAdvertisements that name them".into(),
        });
    }
}

/// MetalLB's peer as Herald's, but for its password, which each source handles its own way.
fn peer_spec(spec: &metallb::BgpPeerSpec, password_secret: Option<PasswordSecret>) -> BGPPeerSpec {
    BGPPeerSpec {
        peer_address: spec.peer_address.clone(),
        peer_asn: spec.peer_asn,
        my_asn: spec.my_asn,
        peer_port: spec.peer_port,
        source_address: spec.source_address.clone(),
        router_id: spec.router_id.clone(),
        hold_time: spec.hold_time.clone(),
        keepalive_time: spec.keepalive_time.clone(),
        connect_time: spec.connect_time.clone(),
        ebgp_multi_hop: spec.ebgp_multi_hop,
        password_secret,
        bfd_profile: spec.bfd_profile.clone(),
        enable_graceful_restart: spec.enable_graceful_restart,
        node_selectors: spec.node_selectors.clone(),
    }
}

/// What differs for a peer that MetalLB gave both families over one session.
fn single_family(spec: &metallb::BgpPeerSpec) -> Option<String> {
    (!spec.disable_mp)
        .then(|| "routes go to a peer of their own family only (MetalLB's disableMP: true)".into())
}

/// MetalLB's advertisement as Herald's, community names resolved through `aliases`; the
/// names that resolve to nothing, if any.
fn advertisement_spec(
    spec: &metallb::BgpAdvertisementSpec,
    aliases: &BTreeMap<&str, &str>,
) -> Result<BGPAdvertisementSpec, Vec<String>> {
    let mut communities = Vec::new();
    let mut unknown = Vec::new();
    for community in &spec.communities {
        match aliases.get(community.as_str()) {
            Some(value) => communities.push((*value).to_owned()),
            None if community.contains(':') => communities.push(community.clone()),
            None => unknown.push(community.clone()),
        }
    }
    if !unknown.is_empty() {
        return Err(unknown);
    }
    Ok(BGPAdvertisementSpec {
        ip_address_pools: spec.ip_address_pools.clone(),
        ip_address_pool_selectors: spec.ip_address_pool_selectors.clone(),
        peers: spec.peers.clone(),
        node_selectors: spec.node_selectors.clone(),
        aggregation_length: spec.aggregation_length,
        aggregation_length_v6: spec.aggregation_length_v6,
        // MetalLB sends no LOCAL_PREF for 0; Herald would send 0.
        local_pref: spec.local_pref.filter(|p| *p != 0),
        communities,
    })
}

/// MetalLB's priority 0 is "no priority" (its pools without one come last); Herald's is
/// unset for that.
fn service_allocation(allocation: ServiceAllocation) -> ServiceAllocation {
    ServiceAllocation {
        priority: allocation.priority.filter(|p| *p != 0),
        ..allocation
    }
}

/// The legacy ConfigMap, and how its rows name a part of it.
struct LegacySource<'a> {
    namespace: &'a str,
    name: &'a str,
}

impl LegacySource<'_> {
    /// `ConfigMap namespace/name part`, such as `... peers[0]`.
    fn of(&self, part: &str) -> String {
        format!("ConfigMap {}/{} {part}", self.namespace, self.name)
    }
}

/// The ConfigMap of MetalLB before 0.13: each pool becomes an IPAddressPool; a layer-2 pool
/// also gets an L2Advertisement of its own, from every node on every suitable interface, as
/// MetalLB announced it. A `bgp` pool's advertisements are [`convert_legacy_bgp`]'s.
fn convert_legacy(
    legacy_source: &LegacySource,
    legacy: &metallb::LegacyConfig,
    migration: &mut Migration,
) {
    let source_of = |pool: &LegacyPool| legacy_source.of(&format!("address-pools[{}]", pool.name));
    for pool in &legacy.address_pools {
        let source = source_of(pool);
        let spec = IPAddressPoolSpec {
            addresses: pool.addresses.clone(),
            auto_assign: pool.auto_assign.unwrap_or(true),
            avoid_buggy_ips: pool.avoid_buggy_ips,
            service_allocation: None,
        };
        let object = Object {
            namespace: legacy_source.namespace.to_owned(),
            name: pool.name.clone(),
            labels: BTreeMap::new(),
            spec: (),
        };
        migration
            .pools
            .push(herald_pool(&object, &source, spec, &BTreeMap::new()));
        let (outcome, note, result) = match pool.protocol.as_str() {
            "layer2" => {
                migration.advertisements.push(L2Advertisement {
                    metadata: metadata(&pool.name, &source, &BTreeMap::new()),
                    spec: L2AdvertisementSpec {
                        ip_address_pools: vec![pool.name.clone()],
                        ..L2AdvertisementSpec::default()
                    },
                });
                (
                    Outcome::Converted,
                    String::new(),
                    format!("IPAddressPool {0}, L2Advertisement {0}", pool.name),
                )
            }
            "bgp" if pool.bgp_advertisements.is_empty() => (
                Outcome::Converted,
                String::new(),
                format!("IPAddressPool {0}, BGPAdvertisement {0}", pool.name),
            ),
            "bgp" => (
                Outcome::Converted,
                String::new(),
                format!("IPAddressPool {}", pool.name),
            ),
            other => (
                Outcome::NotConverted,
                format!(
                    "protocol {other:?} is neither layer2 nor bgp: the pool keeps its \
                     addresses, but nothing announces them"
                ),
                format!("IPAddressPool {}", pool.name),
            ),
        };
        migration.rows.push(Row {
            source,
            result,
            outcome,
            note,
        });
    }
}

/// The ConfigMap's BGP, each part first written as MetalLB 0.13's objects and then converted
/// as those are: a `bgp` pool's advertisements (one with MetalLB's defaults when it lists
/// none) named after the pool, the BFD profiles under their names, the peers named after
/// their addresses ([`legacy_peer_names`]). A plain-text password refuses the migration until
/// a Secret holds it in Herald's namespace.
fn convert_legacy_bgp(
    legacy_source: &LegacySource,
    legacy: &metallb::LegacyConfig,
    cluster: &Cluster,
    migration: &mut Migration,
    refusals: &mut Vec<Refusal>,
) {
    let no_labels = BTreeMap::new();
    let aliases: BTreeMap<&str, &str> = legacy
        .bgp_communities
        .iter()
        .map(|(name, value)| (name.as_str(), value.as_str()))
        .collect();
    let default_advertisement = [metallb::LegacyBgpAdvertisement::default()];
    for pool in legacy.address_pools.iter().filter(|p| p.protocol == "bgp") {
        let listed = !pool.bgp_advertisements.is_empty();
        let advertisements = if listed {
            &pool.bgp_advertisements[..]
        } else {
            &default_advertisement[..]
        };
        let pool_source = legacy_source.of(&format!("address-pools[{}]", pool.name));
        for (i, advertisement) in advertisements.iter().enumerate() {
            let source = if listed {
                format!("{pool_source} bgp-advertisements[{i}]")
            } else {
                pool_source.clone()
            };
            let name = numbered(&pool.name, i);
            match advertisement_spec(&advertisement.to_resource(&pool.name), &aliases) {
                Ok(spec) => {
                    migration.bgp_advertisements.push(BGPAdvertisement {
                        metadata: metadata(&name, &source, &no_labels),
                        spec,
                    });
                    if listed {
                        migration
                            .rows
                            .push(Row::converted(source, format!("BGPAdvertisement {name}")));
                    }
                }
                Err(unknown) => migration.rows.push(Row {
                    source,
                    result: "-".into(),
                    outcome: Outcome::NotConverted,
                    note: format!(
                        "communities {unknown:?} name no bgp-communities entry: add them there, \
                         or write their values"
                    ),
                }),
            }
        }
    }
    for profile in &legacy.bfd_profiles {
        let source = legacy_source.of(&format!("bfd-profiles[{}]", profile.name));
        migration.bfd_profiles.push(BFDProfile {
            metadata: metadata(&profile.name, &source, &no_labels),
            spec: profile.to_resource(),
        });
        migration.rows.push(Row::converted(
            source,
            format!("BFDProfile {}", profile.name),
        ));
    }
    let names = legacy_peer_names(&legacy.peers);
    for (i, (peer, name)) in legacy.peers.iter().zip(names).enumerate() {
        let source = legacy_source.of(&format!("peers[{i}]"));
        if let Err(e) = peer.peer_address.parse::<IpAddr>() {
            refusals.push(Refusal::BadAddress {
                object: source,
                entry: peer.peer_address.clone(),
                why: format!("peer-address: {e}"),
            });
            continue;
        }
        let spec = peer.to_resource();
        let mut notes = Vec::new();
        let mut password_secret = None;
        if spec.password.is_some() {
            let secret = format!("{name}-password");
            if !cluster.secrets.contains(&secret) {
                refusals.push(Refusal::LegacyPlainPassword {
                    entry: source,
                    address: peer.peer_address.clone(),
                    secret,
                    namespace: cluster.herald_namespace.clone(),
                    peer: name,
                });
                continue;
            }
            notes.push(format!(
                "password from Secret {}/{secret} (the ConfigMap's plain text is not copied)",
                cluster.herald_namespace
            ));
            password_secret = Some(PasswordSecret {
                name: secret,
                namespace: None,
                key: None,
            });
        }
        notes.extend(single_family(&spec));
        migration.bgp_peers.push(BGPPeer {
            metadata: metadata(&name, &source, &no_labels),
            spec: peer_spec(&spec, password_secret),
        });
        migration.rows.push(Row {
            source,
            result: format!("BGPPeer {name}"),
            outcome: Outcome::Converted,
            note: notes.join("; "),
        });
    }
    if !legacy.bgp_communities.is_empty() {
        migration.rows.push(Row {
            source: legacy_source.of("bgp-communities"),
            result: "-".into(),
            outcome: Outcome::Converted,
            note: "its values are written into the BGPAdvertisements that name them".into(),
        });
    }
}

/// The legacy peers have no names: each is named after its address (`peer-198-51-100-1`,
/// `peer-2001-db8--1`), so that a name says which router it is and stays when peers are
/// reordered; a second peer on one address (another rack's ASN) is `peer-198-51-100-1-2`.
fn legacy_peer_names(peers: &[metallb::LegacyPeer]) -> Vec<String> {
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    peers
        .iter()
        .map(|peer| {
            let address = peer
                .peer_address
                .parse::<IpAddr>()
                .map(|ip| ip.to_string())
                .unwrap_or_else(|_| peer.peer_address.to_lowercase());
            // `2001:db8::` would end in dashes, which names may not.
            let base = format!("peer-{}", address.replace(['.', ':'], "-"))
                .trim_end_matches('-')
                .to_owned();
            let count = seen.entry(base.clone()).or_default();
            *count += 1;
            numbered(&base, *count - 1)
        })
        .collect()
}

/// `name` for the first of several objects from one source, `name-2`, `name-3` for the next.
fn numbered(name: &str, index: usize) -> String {
    match index {
        0 => name.to_owned(),
        i => format!("{name}-{}", i + 1),
    }
}

fn herald_pool<T>(
    object: &Object<T>,
    source: &str,
    spec: IPAddressPoolSpec,
    labels: &BTreeMap<String, String>,
) -> IPAddressPool {
    IPAddressPool {
        metadata: metadata(&object.name, source, labels),
        spec,
        status: None,
    }
}

/// The object's labels (pool and advertisement selectors match on them), plus where it came
/// from.
fn metadata(name: &str, source: &str, labels: &BTreeMap<String, String>) -> ObjectMeta {
    let mut labels = labels.clone();
    labels.insert(MIGRATED_FROM.into(), "metallb".into());
    ObjectMeta {
        name: Some(name.to_owned()),
        labels: Some(labels),
        annotations: Some(BTreeMap::from([(
            MIGRATED_FROM.to_owned(),
            source.to_owned(),
        )])),
        ..ObjectMeta::default()
    }
}

fn bad_addresses(source: &str, entries: &[String]) -> Vec<Refusal> {
    entries
        .iter()
        .filter_map(|entry| {
            herald_core::addresses::AddressRange::parse(entry)
                .err()
                .map(|e| Refusal::BadAddress {
                    object: source.to_owned(),
                    entry: entry.clone(),
                    why: e.to_string(),
                })
        })
        .collect()
}

/// Two MetalLB objects of one kind and name in different namespaces would become one.
fn same_names(migration: &Migration) -> Vec<Refusal> {
    let mut seen: BTreeMap<(&'static str, String), Vec<String>> = BTreeMap::new();
    for (kind, metadata, _) in migration.objects() {
        seen.entry((kind, name_of(metadata)))
            .or_default()
            .push(source_namespace(metadata));
    }
    seen.into_iter()
        .filter(|(_, namespaces)| namespaces.len() > 1)
        .map(|((kind, name), namespaces)| Refusal::SameName {
            kind,
            name,
            namespaces,
        })
        .collect()
}

fn name_of(metadata: &ObjectMeta) -> String {
    metadata.name.clone().unwrap_or_default()
}

/// The namespace of the MetalLB object an object was made from, from its annotation
/// (`Kind namespace/name…`).
fn source_namespace(metadata: &ObjectMeta) -> String {
    metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(MIGRATED_FROM))
        .and_then(|source| source.split_once(' '))
        .and_then(|(_, rest)| rest.split_once('/'))
        .map(|(namespace, _)| namespace.to_owned())
        .unwrap_or_default()
}

/// Objects Herald already has under the same name: identical ones are left as they are (a
/// second run changes nothing), different ones refuse the migration.
fn existing_objects(migration: &mut Migration, cluster: &Cluster) -> Vec<Refusal> {
    let existing: BTreeMap<(&'static str, String), serde_json::Value> = cluster
        .objects()
        .map(|(kind, metadata, spec)| ((kind, name_of(metadata)), spec))
        .collect();
    let mut refusals = Vec::new();
    let mut unchanged = BTreeSet::new();
    for (kind, metadata, spec) in migration.objects() {
        let name = name_of(metadata);
        match existing.get(&(kind, name.clone())) {
            Some(theirs) if *theirs == spec => {
                unchanged.insert(format!("{kind} {name}"));
            }
            Some(_) => refusals.push(Refusal::Exists { kind, name }),
            None => {}
        }
    }
    for row in &mut migration.rows {
        if matches!(row.outcome, Outcome::Converted | Outcome::Warning)
            && row.result.split(", ").all(|r| unchanged.contains(r))
        {
            row.outcome = Outcome::Unchanged;
        }
    }
    refusals
}

impl Migration {
    /// Every object to write: its kind, metadata and spec.
    fn objects(&self) -> impl Iterator<Item = (&'static str, &ObjectMeta, serde_json::Value)> {
        objects(
            &self.pools,
            &self.advertisements,
            &self.bgp_peers,
            &self.bgp_advertisements,
            &self.bfd_profiles,
        )
    }
}

impl Cluster {
    /// Herald's objects of the kinds a migration writes.
    fn objects(&self) -> impl Iterator<Item = (&'static str, &ObjectMeta, serde_json::Value)> {
        objects(
            &self.pools,
            &self.advertisements,
            &self.bgp_peers,
            &self.bgp_advertisements,
            &self.bfd_profiles,
        )
    }
}

/// Objects of every kind a migration writes, with their specs as JSON so that they compare
/// alike.
fn objects<'a>(
    pools: &'a [IPAddressPool],
    advertisements: &'a [L2Advertisement],
    bgp_peers: &'a [BGPPeer],
    bgp_advertisements: &'a [BGPAdvertisement],
    bfd_profiles: &'a [BFDProfile],
) -> impl Iterator<Item = (&'static str, &'a ObjectMeta, serde_json::Value)> {
    fn each<'a, T>(
        kind: &'static str,
        objects: &'a [T],
        parts: fn(&'a T) -> (&'a ObjectMeta, serde_json::Value),
    ) -> impl Iterator<Item = (&'static str, &'a ObjectMeta, serde_json::Value)> {
        objects.iter().map(move |o| {
            let (metadata, spec) = parts(o);
            (kind, metadata, spec)
        })
    }
    each("IPAddressPool", pools, |o| (&o.metadata, to_json(&o.spec)))
        .chain(each("L2Advertisement", advertisements, |o| {
            (&o.metadata, to_json(&o.spec))
        }))
        .chain(each("BGPPeer", bgp_peers, |o| {
            (&o.metadata, to_json(&o.spec))
        }))
        .chain(each("BGPAdvertisement", bgp_advertisements, |o| {
            (&o.metadata, to_json(&o.spec))
        }))
        .chain(each("BFDProfile", bfd_profiles, |o| {
            (&o.metadata, to_json(&o.spec))
        }))
}

fn to_json<T: serde::Serialize>(spec: &T) -> serde_json::Value {
    serde_json::to_value(spec).unwrap_or_default()
}

/// Pools of the migration that share addresses with each other or with Herald's other pools.
fn overlaps(migrated: &[IPAddressPool], existing: &[IPAddressPool]) -> Vec<Refusal> {
    let parsed = |pool: &IPAddressPool| {
        PoolAddresses::parse(&pool.spec.addresses, false)
            .ok()
            .map(|addresses| (name_of(&pool.metadata), addresses))
    };
    let migrated_names: BTreeSet<String> = migrated.iter().map(|p| name_of(&p.metadata)).collect();
    let mut all: Vec<(String, PoolAddresses)> = migrated.iter().filter_map(parsed).collect();
    all.extend(
        existing
            .iter()
            .filter(|p| !migrated_names.contains(&name_of(&p.metadata)))
            .filter_map(parsed),
    );
    let mut refusals = Vec::new();
    for (i, (first, a)) in all.iter().enumerate() {
        for (second, b) in &all[i + 1..] {
            let shared = a
                .ranges()
                .iter()
                .find_map(|x| b.ranges().iter().find_map(|y| x.intersection(y)));
            if let Some(range) = shared {
                refusals.push(Refusal::Overlap {
                    first: format!("pool {first:?}"),
                    second: format!("pool {second:?}"),
                    range: range.to_string(),
                });
            }
        }
    }
    refusals
}

/// What Herald's controller would do with every Service's address under the migrated pools:
/// a row per Service whose address moves or goes, and a refusal per address that a Service
/// Herald does not serve shows but Herald could hand out.
fn addresses(migration: &Migration, cluster: &Cluster) -> (Vec<Row>, Vec<Refusal>) {
    let mut index = Index::new(cluster.class.clone());
    let migrated: BTreeSet<String> = migration
        .pools
        .iter()
        .map(|p| name_of(&p.metadata))
        .collect();
    let pools: Vec<&IPAddressPool> = migration
        .pools
        .iter()
        .chain(
            cluster
                .pools
                .iter()
                .filter(|p| !migrated.contains(&name_of(&p.metadata))),
        )
        .collect();
    for pool in &pools {
        index.apply_pool(pool);
    }
    for (name, labels) in &cluster.namespaces {
        index.apply_namespace(name, labels.clone());
    }
    for service in &cluster.services {
        index.apply_service(service);
    }
    index.claim_statuses();
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    let mut rows = Vec::new();
    let mut refusals = Vec::new();
    for object in &cluster.services {
        let key = service::key(object);
        let shown = service_status::addresses(object);
        if shown.is_empty() {
            continue;
        }
        if !service::is_ours(object, cluster.class.as_deref()) {
            for ip in &shown {
                if let Some(pool) = pools.iter().find(|p| {
                    PoolAddresses::parse(&p.spec.addresses, p.spec.avoid_buggy_ips)
                        .is_ok_and(|a| a.contains(*ip))
                }) {
                    refusals.push(Refusal::HeldElsewhere {
                        ip: *ip,
                        holder: key.clone(),
                        pool: name_of(&pool.metadata),
                        why: not_ours_because(object, cluster.class.as_deref()),
                    });
                }
            }
            continue;
        }
        index.decide(&key, &now);
        let kept = index
            .assignment(&key)
            .map(|a| a.ips.clone())
            .unwrap_or_default();
        let mut shown_sorted = shown.clone();
        shown_sorted.sort();
        let mut kept_sorted = kept.clone();
        kept_sorted.sort();
        if shown_sorted != kept_sorted {
            rows.push(Row {
                source: format!("Service {key}"),
                result: "-".into(),
                outcome: Outcome::Warning,
                note: format!(
                    "shows {} but Herald would give it {}: check its pool and annotations",
                    join(&shown),
                    if kept.is_empty() {
                        "none".to_owned()
                    } else {
                        join(&kept)
                    }
                ),
            });
        }
    }
    (rows, refusals)
}

fn not_ours_because(service: &Service, class: Option<&str>) -> String {
    let spec = service.spec.clone().unwrap_or_default();
    match (spec.type_.as_deref(), spec.load_balancer_class.as_deref()) {
        (Some("LoadBalancer"), Some(other)) if Some(other) != class => {
            format!("its loadBalancerClass is {other:?}")
        }
        (Some("LoadBalancer"), None) => format!(
            "it has no loadBalancerClass and the controller serves only {:?}",
            class.unwrap_or_default()
        ),
        (kind, _) => format!("its type is {}", kind.unwrap_or("ClusterIP")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pool(namespace: &str, name: &str, addresses: &[&str]) -> Object<metallb::PoolSpec> {
        Object {
            namespace: namespace.into(),
            name: name.into(),
            labels: BTreeMap::new(),
            spec: metallb::PoolSpec {
                addresses: addresses.iter().map(|a| a.to_string()).collect(),
                ..metallb::PoolSpec::default()
            },
        }
    }

    fn service(name: &str, ips: &[&str], extra_spec: serde_json::Value) -> Service {
        let mut spec = json!({"type": "LoadBalancer", "ports": [{"port": 80, "protocol": "TCP"}]});
        spec.as_object_mut()
            .unwrap()
            .extend(extra_spec.as_object().unwrap().clone());
        let ingress: Vec<_> = ips.iter().map(|ip| json!({"ip": ip})).collect();
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "default", "creationTimestamp": "2026-01-01T00:00:00Z"},
            "spec": spec,
            "status": {"loadBalancer": {"ingress": ingress}},
        }))
        .unwrap()
    }

    fn outcomes(migration: &Migration) -> Vec<(String, String, Outcome)> {
        migration
            .rows
            .iter()
            .map(|r| (r.source.clone(), r.result.clone(), r.outcome))
            .collect()
    }

    /// Every row of a migration that writes something finds Herald's object as it would write
    /// it.
    fn assert_all_unchanged(rows: &[Row]) {
        assert!(
            rows.iter()
                .filter(|r| r.result != "-")
                .all(|r| r.outcome == Outcome::Unchanged),
            "{rows:?}"
        );
    }

    #[test]
    fn pools_and_advertisements_map_field_for_field() {
        let mut lan = pool("metallb-system", "lan", &["192.0.2.0/28", "2001:db8::/120"]);
        lan.labels.insert("zone".into(), "a".into());
        lan.spec.auto_assign = Some(false);
        lan.spec.avoid_buggy_ips = true;
        lan.spec.service_allocation = Some(ServiceAllocation {
            priority: Some(0),
            namespaces: vec!["web".into()],
            ..ServiceAllocation::default()
        });
        let config = Configuration {
            pools: vec![lan],
            l2_advertisements: vec![Object {
                namespace: "metallb-system".into(),
                name: "lan".into(),
                labels: BTreeMap::new(),
                spec: metallb::L2AdvertisementSpec {
                    ip_address_pools: vec!["lan".into()],
                    interfaces: vec!["eth1".into()],
                    ..metallb::L2AdvertisementSpec::default()
                },
            }],
            ..Configuration::default()
        };
        let migration = migrate(&config, &Cluster::default()).unwrap();
        let spec = &migration.pools[0].spec;
        assert_eq!(spec.addresses, ["192.0.2.0/28", "2001:db8::/120"]);
        assert!(!spec.auto_assign && spec.avoid_buggy_ips);
        let allocation = spec.service_allocation.as_ref().unwrap();
        // MetalLB's priority 0 is no priority.
        assert_eq!(allocation.priority, None);
        assert_eq!(allocation.namespaces, ["web"]);
        let labels = migration.pools[0].metadata.labels.as_ref().unwrap();
        assert_eq!(labels["zone"], "a");
        assert_eq!(labels[MIGRATED_FROM], "metallb");
        assert_eq!(migration.advertisements[0].spec.interfaces, ["eth1"]);
        assert_eq!(
            outcomes(&migration),
            [
                (
                    "IPAddressPool metallb-system/lan".into(),
                    "IPAddressPool lan".into(),
                    Outcome::Converted
                ),
                (
                    "L2Advertisement metallb-system/lan".into(),
                    "L2Advertisement lan".into(),
                    Outcome::Converted
                ),
            ]
        );
    }

    fn object<T>(name: &str, spec: T) -> Object<T> {
        Object {
            namespace: "metallb-system".into(),
            name: name.into(),
            labels: BTreeMap::new(),
            spec,
        }
    }

    fn peer(yaml: &str) -> metallb::BgpPeerSpec {
        serde_yaml::from_str(yaml).unwrap()
    }

    /// What MetalLB users write for BGP: a peer per rack with a password Secret and BFD, a
    /// profile, an advertisement with a named and a literal community.
    fn bgp_config() -> Configuration {
        Configuration {
            bgp_peers: vec![object(
                "tor-a",
                peer(
                    "myASN: 64512\npeerASN: 64500\npeerAddress: 192.0.2.1\nholdTime: 9s\n\
                     keepaliveTime: 3s\nrouterID: 192.0.2.11\nbfdProfile: fast\n\
                     passwordSecret: {name: tor-a, namespace: metallb-system}\n\
                     enableGracefulRestart: true\n\
                     nodeSelectors: [{matchLabels: {rack: a}}]\n",
                ),
            )],
            bgp_advertisements: vec![object(
                "routed",
                serde_yaml::from_str(
                    "ipAddressPools: [routed]\nlocalPref: 150\naggregationLength: 32\n\
                     communities: [no-advertise, '64512:100', 'large:64512:1:2']\npeers: [tor-a]\n",
                )
                .unwrap(),
            )],
            bfd_profiles: vec![object(
                "fast",
                serde_yaml::from_str(
                    "receiveInterval: 100\ntransmitInterval: 100\ndetectMultiplier: 3\n",
                )
                .unwrap(),
            )],
            communities: vec![object(
                "names",
                serde_yaml::from_str("communities: [{name: no-advertise, value: '65535:65282'}]\n")
                    .unwrap(),
            )],
            ..Configuration::default()
        }
    }

    #[test]
    fn bgp_objects_map_field_for_field_with_community_names_resolved() {
        let migration = migrate(&bgp_config(), &Cluster::default()).unwrap();
        let peer = &migration.bgp_peers[0].spec;
        assert_eq!(
            (peer.my_asn, peer.peer_asn, peer.peer_address.as_str()),
            (64512, 64500, "192.0.2.1")
        );
        assert_eq!(peer.hold_time.as_deref(), Some("9s"));
        assert_eq!(peer.keepalive_time.as_deref(), Some("3s"));
        assert_eq!(peer.router_id.as_deref(), Some("192.0.2.11"));
        assert_eq!(peer.bfd_profile.as_deref(), Some("fast"));
        assert!(peer.enable_graceful_restart);
        assert_eq!(peer.node_selectors.len(), 1);
        // Herald's speakers read the Secret in their own namespace, under key `password`.
        let secret = peer.password_secret.as_ref().unwrap();
        assert_eq!(
            (secret.name.as_str(), secret.namespace.as_ref()),
            ("tor-a", None)
        );
        let advertisement = &migration.bgp_advertisements[0].spec;
        assert_eq!(
            advertisement.communities,
            ["65535:65282", "64512:100", "large:64512:1:2"]
        );
        assert_eq!(advertisement.local_pref, Some(150));
        assert_eq!(advertisement.aggregation_length, Some(32));
        assert_eq!(advertisement.peers, ["tor-a"]);
        assert_eq!(migration.bfd_profiles[0].spec.detect_multiplier, Some(3));
        let row = |source: &str| {
            migration
                .rows
                .iter()
                .find(|r| r.source == source)
                .unwrap_or_else(|| panic!("no row for {source}: {:?}", migration.rows))
                .clone()
        };
        let peer_row = row("BGPPeer metallb-system/tor-a");
        assert_eq!(peer_row.outcome, Outcome::Warning);
        assert!(
            peer_row
                .note
                .contains("copy Secret metallb-system/tor-a into Herald's namespace"),
            "{}",
            peer_row.note
        );
        assert_eq!(
            row("BFDProfile metallb-system/fast").outcome,
            Outcome::Converted
        );
        assert_eq!(
            row("Community metallb-system/names").outcome,
            Outcome::Converted
        );

        // A second run finds them all as written.
        let cluster = Cluster {
            bgp_peers: migration.bgp_peers.clone(),
            bgp_advertisements: migration.bgp_advertisements.clone(),
            bfd_profiles: migration.bfd_profiles.clone(),
            ..Cluster::default()
        };
        let again = migrate(&bgp_config(), &cluster).unwrap();
        assert_all_unchanged(&again.rows);
    }

    #[test]
    fn bgp_herald_cannot_follow_is_listed_and_a_plain_password_refuses() {
        let mut config = bgp_config();
        config.bgp_peers.push(object(
            "in-vrf",
            peer("myASN: 64512\npeerASN: 64501\npeerAddress: 198.51.100.1\nvrf: red\n"),
        ));
        config.bgp_advertisements[0].spec.communities = vec!["no-such-name".into()];
        let migration = migrate(&config, &Cluster::default()).unwrap();
        let not_converted: Vec<(&str, &str)> = migration
            .rows
            .iter()
            .filter(|r| r.outcome == Outcome::NotConverted)
            .map(|r| (r.source.as_str(), r.note.as_str()))
            .collect();
        assert_eq!(not_converted.len(), 2, "{not_converted:?}");
        assert!(
            not_converted[0].1.contains("vrf \"red\""),
            "{not_converted:?}"
        );
        assert!(
            not_converted[1].1.contains("\"no-such-name\""),
            "{not_converted:?}"
        );
        assert_eq!(migration.bgp_peers.len(), 1);
        assert!(migration.bgp_advertisements.is_empty());

        config.bgp_peers[0].spec.password = Some("secret".into());
        let refusals = migrate(&config, &Cluster::default()).unwrap_err();
        assert_eq!(
            refusals,
            [Refusal::PlainPassword {
                peer: "metallb-system/tor-a".into(),
                name: "tor-a".into()
            }]
        );
        assert!(
            refusals[0]
                .to_string()
                .contains("kubectl create secret generic tor-a-password")
        );
    }

    /// MetalLB 0.12's `config` with BGP, every field its peers, BFD profiles and advertisements
    /// have: two peers on one router address (a rack each), one on IPv6; a `bgp` pool without
    /// advertisements, one with three (the last names a community nobody defined).
    const LEGACY_BGP: &str = "\
peers:
- peer-address: 198.51.100.1
  peer-asn: 64501
  my-asn: 64500
  peer-port: 1179
  source-address: 198.51.100.10
  hold-time: 9s
  keepalive-time: 3s
  router-id: 192.0.2.11
  bfd-profile: fast
  ebgp-multihop: true
  node-selectors:
  - match-labels: {rack: a}
    match-expressions:
    - {key: kubernetes.io/arch, operator: In, values: [amd64, arm64]}
- peer-address: 2001:db8::1
  peer-asn: 64502
  my-asn: 64500
- peer-address: 198.51.100.1
  peer-asn: 64501
  my-asn: 64600
  node-selectors:
  - match-labels: {rack: b}
  - {}
bgp-communities:
  no-advertise: 65535:65282
bfd-profiles:
- name: fast
  receive-interval: 100
  transmit-interval: 150
  detect-multiplier: 4
  echo-interval: 60
  echo-mode: true
  passive-mode: true
  minimum-ttl: 250
address-pools:
- name: routed
  protocol: bgp
  addresses: [203.0.113.0/28]
- name: tagged
  protocol: bgp
  addresses: [198.51.100.64/26, 2001:db8:1::/120]
  bgp-advertisements:
  - aggregation-length: 28
    aggregation-length-v6: 124
    localpref: 150
    communities: [no-advertise, 64500:100]
  - aggregation-length: 32
    localpref: 0
  - communities: [no-such-name]
";

    /// Each object's name and spec, as the API server would get them.
    fn names_and_specs<T: serde::Serialize>(objects: &[T]) -> Vec<(String, serde_json::Value)> {
        objects
            .iter()
            .map(|o| {
                let o = to_json(o);
                (
                    o["metadata"]["name"].as_str().unwrap().to_owned(),
                    o["spec"].clone(),
                )
            })
            .collect()
    }

    fn legacy_config(text: &str) -> Configuration {
        Configuration {
            legacy: Some((
                "metallb-system".into(),
                "config".into(),
                metallb::parse_legacy(text).unwrap(),
            )),
            ..Configuration::default()
        }
    }

    #[test]
    fn a_legacy_configmaps_bgp_maps_field_for_field() {
        let migration = migrate(&legacy_config(LEGACY_BGP), &Cluster::default()).unwrap();
        assert_eq!(
            names_and_specs(&migration.bgp_peers),
            [
                (
                    "peer-198-51-100-1".into(),
                    json!({"peerAddress": "198.51.100.1", "peerASN": 64501, "myASN": 64500,
                           "peerPort": 1179, "sourceAddress": "198.51.100.10", "holdTime": "9s",
                           "keepaliveTime": "3s", "routerID": "192.0.2.11", "bfdProfile": "fast",
                           "ebgpMultiHop": true,
                           "nodeSelectors": [{"matchLabels": {"rack": "a"}, "matchExpressions": [
                               {"key": "kubernetes.io/arch", "operator": "In",
                                "values": ["amd64", "arm64"]}]}]})
                ),
                (
                    "peer-2001-db8--1".into(),
                    json!({"peerAddress": "2001:db8::1", "peerASN": 64502, "myASN": 64500})
                ),
                // The second peer on one address is numbered; a selector `{}` selects every
                // node, so the peer is on every node.
                (
                    "peer-198-51-100-1-2".into(),
                    json!({"peerAddress": "198.51.100.1", "peerASN": 64501, "myASN": 64600})
                ),
            ]
        );
        assert_eq!(
            names_and_specs(&migration.bfd_profiles),
            [(
                "fast".into(),
                json!({"receiveInterval": 100, "transmitInterval": 150, "detectMultiplier": 4,
                       "echoInterval": 60, "echoMode": true, "passiveMode": true,
                       "minimumTtl": 250})
            )]
        );
        assert_eq!(
            names_and_specs(&migration.bgp_advertisements),
            [
                // No bgp-advertisements: MetalLB's one default, to every peer.
                ("routed".into(), json!({"ipAddressPools": ["routed"]})),
                (
                    "tagged".into(),
                    json!({"ipAddressPools": ["tagged"], "aggregationLength": 28,
                           "aggregationLengthV6": 124, "localPref": 150,
                           "communities": ["65535:65282", "64500:100"]})
                ),
                // MetalLB's localpref 0 sends no LOCAL_PREF: unset.
                (
                    "tagged-2".into(),
                    json!({"ipAddressPools": ["tagged"], "aggregationLength": 32})
                ),
            ]
        );
        let source = |what: &str| format!("ConfigMap metallb-system/config {what}");
        assert_eq!(
            outcomes(&migration),
            [
                (
                    source("address-pools[routed]"),
                    "IPAddressPool routed, BGPAdvertisement routed".into(),
                    Outcome::Converted
                ),
                (
                    source("address-pools[tagged]"),
                    "IPAddressPool tagged".into(),
                    Outcome::Converted
                ),
                (
                    source("address-pools[tagged] bgp-advertisements[0]"),
                    "BGPAdvertisement tagged".into(),
                    Outcome::Converted
                ),
                (
                    source("address-pools[tagged] bgp-advertisements[1]"),
                    "BGPAdvertisement tagged-2".into(),
                    Outcome::Converted
                ),
                (
                    source("address-pools[tagged] bgp-advertisements[2]"),
                    "-".into(),
                    Outcome::NotConverted
                ),
                (
                    source("bfd-profiles[fast]"),
                    "BFDProfile fast".into(),
                    Outcome::Converted
                ),
                (
                    source("peers[0]"),
                    "BGPPeer peer-198-51-100-1".into(),
                    Outcome::Converted
                ),
                (
                    source("peers[1]"),
                    "BGPPeer peer-2001-db8--1".into(),
                    Outcome::Converted
                ),
                (
                    source("peers[2]"),
                    "BGPPeer peer-198-51-100-1-2".into(),
                    Outcome::Converted
                ),
                (source("bgp-communities"), "-".into(), Outcome::Converted),
            ]
        );
        let note = |source: &str| {
            migration
                .rows
                .iter()
                .find(|r| r.source.ends_with(source))
                .unwrap()
                .note
                .clone()
        };
        assert!(
            note("bgp-advertisements[2]").contains("[\"no-such-name\"]"),
            "{}",
            note("bgp-advertisements[2]")
        );
        assert!(
            note("peers[0]").contains("disableMP"),
            "{}",
            note("peers[0]")
        );

        // A second run finds them all as written.
        let cluster = Cluster {
            pools: migration.pools.clone(),
            bgp_peers: migration.bgp_peers.clone(),
            bgp_advertisements: migration.bgp_advertisements.clone(),
            bfd_profiles: migration.bfd_profiles.clone(),
            ..Cluster::default()
        };
        let again = migrate(&legacy_config(LEGACY_BGP), &cluster).unwrap();
        assert_all_unchanged(&again.rows);
    }

    #[test]
    fn a_legacy_plain_password_refuses_until_its_secret_is_in_heralds_namespace() {
        let text = "peers:\n- {peer-address: 198.51.100.1, peer-asn: 64501, my-asn: 64500, \
                    password: hunter2}\n";
        let cluster = Cluster {
            herald_namespace: "herald-system".into(),
            ..Cluster::default()
        };
        let refusals = migrate(&legacy_config(text), &cluster).unwrap_err();
        assert_eq!(
            refusals.iter().map(|r| r.to_string()).collect::<Vec<_>>(),
            [
                "ConfigMap metallb-system/config peers[0] (198.51.100.1) has its password in plain \
              text: Herald reads passwords only from Secrets. Put it in one (kubectl create \
              secret generic peer-198-51-100-1-password -n herald-system \
              --from-literal=password=...), then migrate again: BGPPeer peer-198-51-100-1 will \
              read it there"
            ]
        );

        let cluster = Cluster {
            secrets: BTreeSet::from(["peer-198-51-100-1-password".to_owned()]),
            ..cluster
        };
        let migration = migrate(&legacy_config(text), &cluster).unwrap();
        let secret = migration.bgp_peers[0]
            .spec
            .password_secret
            .as_ref()
            .unwrap();
        assert_eq!(
            (secret.name.as_str(), secret.namespace.as_ref()),
            ("peer-198-51-100-1-password", None)
        );
        // The plain text goes nowhere.
        assert!(
            !to_json(&migration.bgp_peers[0])
                .to_string()
                .contains("hunter2")
        );
        assert_eq!(migration.rows[0].outcome, Outcome::Converted);
        assert!(
            migration.rows[0]
                .note
                .contains("password from Secret herald-system/peer-198-51-100-1-password"),
            "{}",
            migration.rows[0].note
        );
    }

    #[test]
    fn a_legacy_peer_whose_address_is_not_one_refuses() {
        let text = "peers:\n- {peer-address: tor-a.example, peer-asn: 64501, my-asn: 64500}\n";
        let refusals = migrate(&legacy_config(text), &Cluster::default()).unwrap_err();
        assert_eq!(
            refusals.iter().map(|r| r.to_string()).collect::<Vec<_>>(),
            [
                "ConfigMap metallb-system/config peers[0]: address entry \"tor-a.example\": \
              peer-address: invalid IP address syntax"
            ]
        );
    }

    #[test]
    fn a_legacy_configmap_gives_a_pool_per_address_pool_and_an_advertisement_per_layer2_one() {
        let legacy = metallb::parse_legacy(
            "peers:\n- peer-address: 198.51.100.1\n  peer-asn: 64501\n  my-asn: 64500\n\
             address-pools:\n- name: default\n  protocol: layer2\n  addresses: [192.0.2.10-192.0.2.20]\n  auto-assign: false\n\
             - name: routed\n  protocol: bgp\n  addresses: [203.0.113.0/28]\n",
        )
        .unwrap();
        let config = Configuration {
            legacy: Some(("metallb-system".into(), "config".into(), legacy)),
            ..Configuration::default()
        };
        let migration = migrate(&config, &Cluster::default()).unwrap();
        let names: Vec<_> = migration
            .pools
            .iter()
            .map(|p| name_of(&p.metadata))
            .collect();
        assert_eq!(names, ["default", "routed"]);
        assert!(!migration.pools[0].spec.auto_assign);
        assert_eq!(migration.advertisements.len(), 1);
        assert_eq!(
            migration.advertisements[0].spec.ip_address_pools,
            ["default"]
        );
        assert_eq!(
            migration.rows[0].result,
            "IPAddressPool default, L2Advertisement default"
        );
        assert!(
            migration
                .rows
                .iter()
                .all(|r| r.outcome == Outcome::Converted),
            "{:?}",
            migration.rows
        );
    }

    #[test]
    fn overlapping_pools_and_namesakes_are_refused_with_every_reason() {
        let config = Configuration {
            pools: vec![
                pool("metallb-system", "a", &["192.0.2.0/28"]),
                pool("metallb-system", "b", &["192.0.2.8-192.0.2.30"]),
                pool("other", "a", &["203.0.113.0/28"]),
            ],
            ..Configuration::default()
        };
        let existing: IPAddressPool = serde_json::from_value(json!({
            "metadata": {"name": "herald"}, "spec": {"addresses": ["203.0.113.15/32"]}}))
        .unwrap();
        let cluster = Cluster {
            pools: vec![existing],
            ..Cluster::default()
        };
        let refusals = migrate(&config, &cluster).unwrap_err();
        let text: Vec<String> = refusals.iter().map(|r| r.to_string()).collect();
        assert!(
            text.iter()
                .any(|t| t.starts_with("IPAddressPool \"a\" exists in namespaces")),
            "{text:?}"
        );
        assert!(
            text.iter()
                .any(|t| t.contains("pool \"a\" and pool \"b\" both hold 192.0.2.8-192.0.2.15")),
            "{text:?}"
        );
        assert!(
            text.iter()
                .any(|t| t.contains("pool \"herald\"") && t.contains("203.0.113.15")),
            "{text:?}"
        );
    }

    #[test]
    fn a_second_run_finds_its_objects_unchanged_and_a_different_namesake_refuses() {
        let config = Configuration {
            pools: vec![pool("metallb-system", "lan", &["192.0.2.0/28"])],
            ..Configuration::default()
        };
        let first = migrate(&config, &Cluster::default()).unwrap();
        let cluster = Cluster {
            pools: first.pools.clone(),
            ..Cluster::default()
        };
        let again = migrate(&config, &cluster).unwrap();
        assert_eq!(again.rows[0].outcome, Outcome::Unchanged);
        let mut changed = first.pools[0].clone();
        changed.spec.addresses = vec!["198.51.100.0/28".into()];
        let cluster = Cluster {
            pools: vec![changed],
            ..Cluster::default()
        };
        assert_eq!(
            migrate(&config, &cluster).unwrap_err(),
            [Refusal::Exists {
                kind: "IPAddressPool",
                name: "lan".into()
            }]
        );
    }

    #[test]
    fn services_keep_their_addresses_and_one_that_would_move_is_a_warning() {
        let config = Configuration {
            pools: vec![pool("metallb-system", "lan", &["192.0.2.0/28"])],
            ..Configuration::default()
        };
        let cluster = Cluster {
            services: vec![
                // Addresses MetalLB gave, not the lowest free ones: kept.
                service("web", &["192.0.2.9"], json!({})),
                service("dns", &["192.0.2.3"], json!({})),
                // Outside every pool: Herald would give it another.
                service("old", &["198.51.100.7"], json!({})),
            ],
            ..Cluster::default()
        };
        let migration = migrate(&config, &cluster).unwrap();
        let warnings: Vec<&Row> = migration
            .rows
            .iter()
            .filter(|r| r.outcome == Outcome::Warning)
            .collect();
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert_eq!(warnings[0].source, "Service default/old");
        assert!(
            warnings[0]
                .note
                .starts_with("shows 198.51.100.7 but Herald would give it 192.0.2.0"),
            "{}",
            warnings[0].note
        );
    }

    #[test]
    fn an_address_a_service_of_another_class_shows_is_refused() {
        let config = Configuration {
            pools: vec![pool("metallb-system", "lan", &["192.0.2.0/28"])],
            ..Configuration::default()
        };
        let cluster = Cluster {
            services: vec![service(
                "vip",
                &["192.0.2.4"],
                json!({"loadBalancerClass": "kube-vip.io/kube-vip-class"}),
            )],
            ..Cluster::default()
        };
        let refusals = migrate(&config, &cluster).unwrap_err();
        assert_eq!(refusals.len(), 1);
        assert_eq!(
            refusals[0].to_string(),
            "Service default/vip shows 192.0.2.4, which Herald would hand out to other Services: \
             it is in pool \"lan\" but the Service is not Herald's (its loadBalancerClass is \
             \"kube-vip.io/kube-vip-class\")"
        );
    }
}
