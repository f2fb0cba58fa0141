//! `kubectl herald status`: the cluster on one screen: pools, advertisements, a speaker per
//! node (alive as its heartbeat Lease says, and how many addresses it answers for), and the
//! Services in trouble, most urgent first.

use std::collections::BTreeMap;

use herald_crds::L2Advertisement;
use herald_crds::label_selector;
use herald_speaker::heartbeat;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector as KubeLabelSelector;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use serde::Serialize;

use crate::pools::PoolView;
use crate::services::{ServiceView, join, urgency};
use crate::table;

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    pub pools: Vec<PoolView>,
    pub advertisements: Vec<AdvertisementView>,
    pub speakers: Vec<SpeakerView>,
    /// Services not announced (or not allocated), most urgent first.
    pub trouble: Vec<ServiceView>,
    pub services: usize,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AdvertisementView {
    pub name: String,
    /// Pool names, or `selector` when pools are chosen by label, or `every pool`.
    pub pools: String,
    pub interfaces: String,
    pub nodes: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SpeakerView {
    pub node: String,
    /// `live` (its heartbeat Lease is fresh), `stale` (it expired: the speaker is down, cut off
    /// or stopped), or `none` (no speaker has run on the node).
    pub speaker: &'static str,
    /// Addresses it answers for, as the Services' `Announced` conditions say.
    pub addresses: usize,
}

pub fn status(
    pools: Vec<PoolView>,
    advertisements: &[L2Advertisement],
    nodes: &[Node],
    leases: &[Lease],
    services: &[ServiceView],
    now: Timestamp,
) -> Status {
    let heartbeats: BTreeMap<String, bool> = leases
        .iter()
        .filter_map(|lease| heartbeat::read(lease, now))
        .collect();
    let mut answered: BTreeMap<&str, std::collections::BTreeSet<std::net::IpAddr>> =
        BTreeMap::new();
    for service in services {
        if let Some(node) = &service.node {
            answered
                .entry(node)
                .or_default()
                .extend(service.addresses.iter().copied());
        }
    }
    let mut speakers: Vec<SpeakerView> = nodes
        .iter()
        .map(|node| {
            let name = node.name_any();
            SpeakerView {
                speaker: match heartbeats.get(&name) {
                    Some(true) => "live",
                    Some(false) => "stale",
                    None => "none",
                },
                addresses: answered.get(name.as_str()).map_or(0, |ips| ips.len()),
                node: name,
            }
        })
        .collect();
    speakers.sort_by(|a, b| a.node.cmp(&b.node));
    let mut trouble: Vec<ServiceView> = services
        .iter()
        .filter(|s| urgency(s) < 3)
        .cloned()
        .collect();
    trouble.sort_by_key(urgency);
    let mut advertisements: Vec<AdvertisementView> =
        advertisements.iter().map(advertisement).collect();
    advertisements.sort_by(|a, b| a.name.cmp(&b.name));
    Status {
        pools,
        advertisements,
        speakers,
        trouble,
        services: services.len(),
    }
}

fn advertisement(advertisement: &L2Advertisement) -> AdvertisementView {
    let spec = &advertisement.spec;
    let pools = match (
        spec.ip_address_pools.is_empty(),
        spec.ip_address_pool_selectors.is_empty(),
    ) {
        (true, true) => "every pool".to_owned(),
        (false, true) => spec.ip_address_pools.join(","),
        (true, false) => selectors(&spec.ip_address_pool_selectors),
        (false, false) => format!(
            "{} or {}",
            spec.ip_address_pools.join(","),
            selectors(&spec.ip_address_pool_selectors)
        ),
    };
    AdvertisementView {
        name: advertisement.name_any(),
        pools,
        interfaces: if spec.interfaces.is_empty() {
            "every suitable".to_owned()
        } else {
            spec.interfaces.join(",")
        },
        nodes: if spec.node_selectors.is_empty() {
            "every node".to_owned()
        } else {
            selectors(&spec.node_selectors)
        },
    }
}

/// Label selectors as kubectl writes them, any of them matching.
fn selectors(selectors: &[KubeLabelSelector]) -> String {
    selectors
        .iter()
        .map(|selector| match label_selector(selector) {
            Ok(selector) => selector.to_string(),
            Err(e) => format!("invalid ({e})"),
        })
        .collect::<Vec<_>>()
        .join(" or ")
}

pub fn render(status: &Status) -> String {
    let or_dash = |s: String| if s.is_empty() { "-".to_owned() } else { s };
    let mut out = String::from("POOLS\n");
    let pools: Vec<Vec<String>> = status
        .pools
        .iter()
        .map(|p| {
            let family = |name: &str| {
                p.usage
                    .iter()
                    .find(|u| u.family == name)
                    .map_or("-".to_owned(), |u| {
                        format!("{}/{}", u.assigned, u.assigned.saturating_add(u.available))
                    })
            };
            vec![
                p.name.clone(),
                family("IPv4"),
                family("IPv6"),
                p.state.clone(),
            ]
        })
        .collect();
    out.push_str(&table::render(&["NAME", "IPV4", "IPV6", "STATE"], &pools));
    out.push_str("\nADVERTISEMENTS\n");
    let advertisements: Vec<Vec<String>> = status
        .advertisements
        .iter()
        .map(|a| {
            vec![
                a.name.clone(),
                a.pools.clone(),
                a.interfaces.clone(),
                a.nodes.clone(),
            ]
        })
        .collect();
    out.push_str(&table::render(
        &["NAME", "POOLS", "INTERFACES", "NODES"],
        &advertisements,
    ));
    out.push_str("\nSPEAKERS\n");
    let speakers: Vec<Vec<String>> = status
        .speakers
        .iter()
        .map(|s| {
            vec![
                s.node.clone(),
                s.speaker.to_owned(),
                s.addresses.to_string(),
            ]
        })
        .collect();
    out.push_str(&table::render(
        &["NODE", "SPEAKER", "ANSWERS FOR"],
        &speakers,
    ));
    out.push_str(&format!(
        "\nSERVICES IN TROUBLE ({} of {})\n",
        status.trouble.len(),
        status.services
    ));
    let trouble: Vec<Vec<String>> = status
        .trouble
        .iter()
        .map(|s| {
            vec![
                s.namespace.clone(),
                s.name.clone(),
                or_dash(join(&s.addresses)),
                s.state.clone(),
                s.message.clone(),
            ]
        })
        .collect();
    if !trouble.is_empty() {
        out.push_str(&table::render(
            &["NAMESPACE", "NAME", "ADDRESSES", "STATE", "MESSAGE"],
            &trouble,
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn view(name: &str, ips: &[&str], node: Option<&str>, state: &str) -> ServiceView {
        ServiceView {
            namespace: "shop".into(),
            name: name.into(),
            addresses: ips.iter().map(|ip| ip.parse().unwrap()).collect(),
            pool: Some("lan".into()),
            node: node.map(str::to_owned),
            interfaces: Vec::new(),
            state: state.into(),
            message: format!("{state} message"),
        }
    }

    #[test]
    fn speakers_per_node_with_what_they_answer_for_and_trouble_most_urgent_first() {
        let now: Timestamp = "2026-11-28T12:00:00Z".parse().unwrap();
        let lease = |node: &str, renewed: &str| -> Lease {
            serde_json::from_value(json!({
                "metadata": {"name": format!("herald-speaker-{node}")},
                "spec": {"holderIdentity": node, "leaseDurationSeconds": 3, "renewTime": renewed}}))
            .unwrap()
        };
        let node = |name: &str| -> Node {
            serde_json::from_value(json!({"metadata": {"name": name}})).unwrap()
        };
        let advertisement: L2Advertisement = serde_json::from_value(json!({
            "metadata": {"name": "lan"}, "spec": {"ipAddressPools": ["lan"], "interfaces": ["eth1"]}}))
        .unwrap();
        let services = [
            view("web", &["192.0.2.1", "2001:db8::1"], Some("a"), "Announced"),
            view("dns", &["192.0.2.2"], Some("a"), "Announced"),
            view("local", &["192.0.2.3"], None, "NoReadyEndpoint"),
            view("late", &[], None, "PoolExhausted"),
            view("new", &["192.0.2.4"], None, "Pending"),
        ];
        let status = status(
            Vec::new(),
            &[advertisement],
            &[node("a"), node("b"), node("c")],
            &[
                lease("a", "2026-11-28T11:59:59.000000Z"),
                lease("b", "2026-11-28T11:59:50.000000Z"),
            ],
            &services,
            now,
        );
        assert_eq!(
            render(&status),
            "POOLS\nNAME  IPV4  IPV6  STATE\n\
             \nADVERTISEMENTS\nNAME  POOLS  INTERFACES  NODES\nlan   lan    eth1        every node\n\
             \nSPEAKERS\nNODE  SPEAKER  ANSWERS FOR\na     live     3\nb     stale    0\nc     none     0\n\
             \nSERVICES IN TROUBLE (3 of 5)\n\
             NAMESPACE  NAME   ADDRESSES  STATE            MESSAGE\n\
             shop       late   -          PoolExhausted    PoolExhausted message\n\
             shop       local  192.0.2.3  NoReadyEndpoint  NoReadyEndpoint message\n\
             shop       new    192.0.2.4  Pending          Pending message\n"
        );
    }
}
