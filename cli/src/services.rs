//! `kubectl herald services`: every LoadBalancer Service with its addresses, the pool they
//! come from, the node and interfaces that answer for them, and what is wrong when something
//! is: read from the conditions Herald writes on the Service, nothing else.

use std::net::IpAddr;

use herald_core::addresses::PoolAddresses;
use herald_crds::allocated::FromPool;
use herald_crds::announced::Answering;
use herald_crds::{IPAddressPool, conditions, reasons, service_status};
use k8s_openapi::api::core::v1::Service;
use kube::ResourceExt;
use serde::Serialize;

use crate::table;

/// One Service as the table shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceView {
    pub namespace: String,
    pub name: String,
    pub addresses: Vec<IpAddr>,
    /// The pool holding its addresses, if one does.
    pub pool: Option<String>,
    /// The node answering for its addresses, and on which interfaces.
    pub node: Option<String>,
    pub interfaces: Vec<String>,
    /// `Announced`, or the reason of the condition that says what is wrong.
    pub state: String,
    /// The message of that condition.
    pub message: String,
}

/// How urgent a Service's state is, most urgent first: no address, then not announced (or a
/// conflict), then waiting for its first report, then fine.
pub fn urgency(view: &ServiceView) -> u8 {
    match view.state.as_str() {
        reasons::ANNOUNCED => 3,
        "Pending" => 2,
        _ if view.addresses.is_empty() => 0,
        _ => 1,
    }
}

/// The LoadBalancer Services among `services`, by namespace and name.
pub fn views(services: &[Service], pools: &[IPAddressPool]) -> Vec<ServiceView> {
    let pools: Vec<(String, PoolAddresses)> = pools
        .iter()
        .filter_map(|p| {
            let addresses = PoolAddresses::parse(&p.spec.addresses, p.spec.avoid_buggy_ips).ok()?;
            Some((p.name_any(), addresses))
        })
        .collect();
    let mut views: Vec<ServiceView> = services
        .iter()
        .filter(|s| s.spec.as_ref().and_then(|s| s.type_.as_deref()) == Some("LoadBalancer"))
        .map(|service| view(service, &pools))
        .collect();
    views.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    views
}

fn view(service: &Service, pools: &[(String, PoolAddresses)]) -> ServiceView {
    let addresses = service_status::addresses(service);
    let allocated = service_status::condition(service, conditions::ALLOCATED);
    // The pool the controller names; else (no condition yet, or written by another tool) the
    // first pool holding the address.
    let pool = allocated
        .filter(|c| c.status == "True")
        .and_then(|c| FromPool::parse(&c.message))
        .map(|from| from.pool)
        .or_else(|| {
            let ip = addresses.first()?;
            pools
                .iter()
                .find(|(_, addresses)| addresses.contains(*ip))
                .map(|(name, _)| name.clone())
        });
    let announced = service_status::condition(service, conditions::ANNOUNCED);
    let answering = announced
        .filter(|c| c.status == "True")
        .and_then(|c| Answering::parse(&c.message));
    let (state, message) = match (allocated, announced) {
        (Some(c), _) if c.status != "True" => (c.reason.clone(), c.message.clone()),
        (_, Some(c)) => (c.reason.clone(), c.message.clone()),
        (None, None) => (
            "Pending".to_owned(),
            "Herald has not written a condition yet: is its controller running, and is this \
             Service of its loadBalancerClass?"
                .to_owned(),
        ),
        (Some(_), None) => (
            "Pending".to_owned(),
            "allocated; no speaker has reported on it yet".to_owned(),
        ),
    };
    ServiceView {
        namespace: service.namespace().unwrap_or_default(),
        name: service.name_any(),
        addresses,
        pool,
        node: answering.as_ref().map(|a| a.node.clone()),
        interfaces: answering.map(|a| a.interfaces).unwrap_or_default(),
        state,
        message,
    }
}

/// The table; `wide` adds the condition's message.
pub fn render(views: &[ServiceView], all_namespaces: bool, wide: bool) -> String {
    let mut headers = vec!["NAME", "ADDRESSES", "POOL", "NODE", "INTERFACES", "STATE"];
    if all_namespaces {
        headers.insert(0, "NAMESPACE");
    }
    if wide {
        headers.push("MESSAGE");
    }
    let or_dash = |s: String| if s.is_empty() { "-".to_owned() } else { s };
    let rows: Vec<Vec<String>> = views
        .iter()
        .map(|v| {
            let mut row = vec![
                v.name.clone(),
                or_dash(join(&v.addresses)),
                or_dash(v.pool.clone().unwrap_or_default()),
                or_dash(v.node.clone().unwrap_or_default()),
                or_dash(v.interfaces.join(",")),
                v.state.clone(),
            ];
            if all_namespaces {
                row.insert(0, v.namespace.clone());
            }
            if wide {
                row.push(v.message.clone());
            }
            row
        })
        .collect();
    table::render(&headers, &rows)
}

pub fn join(ips: &[IpAddr]) -> String {
    ips.iter()
        .map(|ip| ip.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn service(name: &str, ips: &[&str], conditions: Value) -> Service {
        let ingress: Vec<Value> = ips.iter().map(|ip| json!({"ip": ip})).collect();
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "web"},
            "spec": {"type": "LoadBalancer"},
            "status": {"loadBalancer": {"ingress": ingress}, "conditions": conditions},
        }))
        .unwrap()
    }

    fn condition(type_: &str, status: bool, reason: &str, message: &str) -> Value {
        json!({"type": type_, "status": if status {"True"} else {"False"}, "reason": reason,
               "message": message, "lastTransitionTime": "2026-11-28T00:00:00Z"})
    }

    #[test]
    fn each_service_shows_its_pool_its_answering_node_or_what_is_wrong() {
        let pool: IPAddressPool = serde_json::from_value(json!({
            "metadata": {"name": "lan"}, "spec": {"addresses": ["192.0.2.0/28"]}}))
        .unwrap();
        let answering = Answering {
            node: "node-b".into(),
            ips: vec!["192.0.2.5".parse().unwrap()],
            interfaces: vec!["eth0".into()],
        };
        let services = vec![
            service(
                "dns",
                &["192.0.2.5"],
                json!([
                    condition(
                        conditions::ALLOCATED,
                        true,
                        reasons::ALLOCATED,
                        "from pool \"lan\""
                    ),
                    condition(
                        conditions::ANNOUNCED,
                        true,
                        reasons::ANNOUNCED,
                        &answering.message("the first choice")
                    ),
                ]),
            ),
            service(
                "api",
                &[],
                json!([condition(
                    conditions::ALLOCATED,
                    false,
                    reasons::POOL_EXHAUSTED,
                    "pool \"lan\" has no free IPv4 address"
                )]),
            ),
            service(
                "local",
                &["192.0.2.6"],
                json!([
                    condition(
                        conditions::ALLOCATED,
                        true,
                        reasons::ALLOCATED,
                        "from pool \"lan\""
                    ),
                    condition(
                        conditions::ANNOUNCED,
                        false,
                        reasons::NO_READY_ENDPOINT,
                        "no ready endpoint"
                    ),
                ]),
            ),
            serde_json::from_value(json!({"metadata": {"name": "plain", "namespace": "web"},
                                          "spec": {"type": "ClusterIP"}}))
            .unwrap(),
        ];
        let views = views(&services, &[pool]);
        assert_eq!(
            render(&views, false, true),
            "NAME   ADDRESSES  POOL  NODE    INTERFACES  STATE            MESSAGE\n\
             api    -          -     -       -           PoolExhausted    pool \"lan\" has no free IPv4 address\n\
             dns    192.0.2.5  lan   node-b  eth0        Announced        node node-b answers for 192.0.2.5 on eth0: the first choice\n\
             local  192.0.2.6  lan   -       -           NoReadyEndpoint  no ready endpoint\n"
        );
        let mut by_urgency = views.clone();
        by_urgency.sort_by_key(urgency);
        let order: Vec<&str> = by_urgency.iter().map(|v| v.name.as_str()).collect();
        assert_eq!(order, ["api", "local", "dns"]);
    }
}
