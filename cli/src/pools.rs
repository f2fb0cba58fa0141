//! `kubectl herald pools`: each pool's use per family, as its status counts it, its state, and
//! the Services holding its addresses.

use herald_crds::{IPAddressPool, conditions};
use kube::ResourceExt;
use serde::Serialize;

use crate::services::{ServiceView, join};

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PoolView {
    pub name: String,
    pub addresses: Vec<String>,
    /// (family, assigned, available) for each family the pool has.
    pub usage: Vec<Usage>,
    /// `Ready`, or the first condition that is wrong (`Conflicting`, `Invalid`), with its
    /// message.
    pub state: String,
    pub message: String,
    /// `namespace/name (addresses)` of each Service holding its addresses.
    pub services: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Usage {
    pub family: &'static str,
    pub assigned: i64,
    pub available: i64,
}

pub fn views(pools: &[IPAddressPool], services: &[ServiceView]) -> Vec<PoolView> {
    let mut views: Vec<PoolView> = pools.iter().map(|p| view(p, services)).collect();
    views.sort_by(|a, b| a.name.cmp(&b.name));
    views
}

fn view(pool: &IPAddressPool, services: &[ServiceView]) -> PoolView {
    let name = pool.name_any();
    let status = pool.status.clone().unwrap_or_default();
    let has = |v6: bool| pool.spec.addresses.iter().any(|a| a.contains(':') == v6);
    let mut usage = Vec::new();
    if has(false) {
        usage.push(Usage {
            family: "IPv4",
            assigned: status.assigned_ipv4.unwrap_or(0),
            available: status.available_ipv4.unwrap_or(0),
        });
    }
    if has(true) {
        usage.push(Usage {
            family: "IPv6",
            assigned: status.assigned_ipv6.unwrap_or(0),
            available: status.available_ipv6.unwrap_or(0),
        });
    }
    let wrong = status.conditions.iter().find(|c| {
        (c.type_ == conditions::POOL_READY && c.status != "True")
            || (c.type_ != conditions::POOL_READY && c.status == "True")
    });
    let (state, message) = match (wrong, status.conditions.is_empty()) {
        (Some(c), _) => (c.type_.clone(), c.message.clone()),
        (None, true) => (
            "Pending".to_owned(),
            "the controller has not reported on this pool yet".to_owned(),
        ),
        (None, false) => ("Ready".to_owned(), String::new()),
    };
    PoolView {
        addresses: pool.spec.addresses.clone(),
        usage,
        state,
        message,
        services: services
            .iter()
            .filter(|s| s.pool.as_deref() == Some(name.as_str()))
            .map(|s| format!("{}/{} ({})", s.namespace, s.name, join(&s.addresses)))
            .collect(),
        name,
    }
}

const BAR: usize = 20;

/// A block per pool: its addresses and state, a bar per family, its Services.
pub fn render(views: &[PoolView]) -> String {
    let mut out = String::new();
    for view in views {
        out.push_str(&format!(
            "{}  {}  {}",
            view.name,
            view.addresses.join(","),
            view.state
        ));
        if !view.message.is_empty() {
            out.push_str(&format!(": {}", view.message));
        }
        out.push('\n');
        for usage in &view.usage {
            let (assigned, total) = (
                usage.assigned.max(0) as u128,
                usage.assigned.max(0).saturating_add(usage.available.max(0)) as u128,
            );
            // Rounded up, so that one address in use shows.
            let filled = if total == 0 {
                0
            } else {
                (assigned * BAR as u128).div_ceil(total) as usize
            };
            out.push_str(&format!(
                "  {}  [{}{}]  {} of {} assigned\n",
                usage.family,
                "#".repeat(filled),
                "-".repeat(BAR - filled),
                assigned,
                total
            ));
        }
        if view.services.is_empty() {
            out.push_str("  no Service holds its addresses\n");
        } else {
            out.push_str(&format!("  Services: {}\n", view.services.join(", ")));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn each_pool_shows_a_bar_per_family_its_state_and_its_services() {
        let lan: IPAddressPool = serde_json::from_value(json!({
            "metadata": {"name": "lan"},
            "spec": {"addresses": ["192.0.2.0/28", "2001:db8::/124"]},
            "status": {"assignedIPv4": 4, "availableIPv4": 12, "assignedIPv6": 0, "availableIPv6": 16,
                       "conditions": [
                {"type": "Ready", "status": "True", "reason": "Valid", "message": "", "lastTransitionTime": "2026-11-28T00:00:00Z"},
                {"type": "Conflicting", "status": "False", "reason": "NoOverlap", "message": "", "lastTransitionTime": "2026-11-28T00:00:00Z"}]},
        }))
        .unwrap();
        let dmz: IPAddressPool = serde_json::from_value(json!({
            "metadata": {"name": "dmz"},
            "spec": {"addresses": ["198.51.100.0/30"]},
            "status": {"assignedIPv4": 1, "availableIPv4": 3, "conditions": [
                {"type": "Ready", "status": "True", "reason": "Valid", "message": "", "lastTransitionTime": "2026-11-28T00:00:00Z"},
                {"type": "Conflicting", "status": "True", "reason": "Overlap", "message": "overlaps pool \"edge\" (198.51.100.2-198.51.100.3)", "lastTransitionTime": "2026-11-28T00:00:00Z"}]},
        }))
        .unwrap();
        let web = ServiceView {
            namespace: "shop".into(),
            name: "web".into(),
            addresses: vec!["192.0.2.9".parse().unwrap()],
            pool: Some("lan".into()),
            node: None,
            interfaces: Vec::new(),
            state: "Announced".into(),
            message: String::new(),
        };
        assert_eq!(
            render(&views(&[lan, dmz], &[web])),
            "dmz  198.51.100.0/30  Conflicting: overlaps pool \"edge\" (198.51.100.2-198.51.100.3)\n\
             \x20 IPv4  [#####---------------]  1 of 4 assigned\n\
             \x20 no Service holds its addresses\n\
             lan  192.0.2.0/28,2001:db8::/124  Ready\n\
             \x20 IPv4  [#####---------------]  4 of 16 assigned\n\
             \x20 IPv6  [--------------------]  0 of 16 assigned\n\
             \x20 Services: shop/web (192.0.2.9)\n"
        );
    }
}
