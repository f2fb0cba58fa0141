//! Reading IPAddressPools into allocation's [`Pool`].

use herald_core::addresses::PoolAddresses;
use herald_core::allocation::{Pool, PoolAllocation};
use herald_core::selector::LabelSelector;
use herald_crds::{IPAddressPool, label_selector};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector as KubeLabelSelector;

/// Why a pool cannot be read, and what of it could be.
#[derive(Debug, Clone, PartialEq)]
pub struct Invalid {
    /// Every problem, each naming its field.
    pub problems: Vec<String>,
    /// Its addresses, when they at least are valid: enough to keep what the pool handed out.
    pub addresses: Option<PoolAddresses>,
}

/// Reads a pool; the error lists every problem, each naming its field.
pub fn read(pool: &IPAddressPool) -> Result<Pool, Invalid> {
    let name = pool.metadata.name.clone().unwrap_or_default();
    let spec = &pool.spec;
    let mut problems = Vec::new();
    let addresses = PoolAddresses::parse(&spec.addresses, spec.avoid_buggy_ips)
        .map_err(|errors| {
            problems.extend(errors.iter().map(|e| format!("spec.addresses: {e}")));
        })
        .ok();
    let allocation = spec.service_allocation.as_ref().map(|a| PoolAllocation {
        priority: a.priority,
        namespaces: a.namespaces.iter().cloned().collect(),
        namespace_selectors: selectors(
            &a.namespace_selectors,
            "spec.serviceAllocation.namespaceSelectors",
            &mut problems,
        ),
        service_selectors: selectors(
            &a.service_selectors,
            "spec.serviceAllocation.serviceSelectors",
            &mut problems,
        ),
    });
    match addresses {
        Some(addresses) if problems.is_empty() => Ok(Pool {
            name,
            addresses,
            auto_assign: spec.auto_assign,
            allocation,
            hands_out: true,
        }),
        addresses => Err(Invalid {
            problems,
            addresses,
        }),
    }
}

fn selectors(
    list: &[KubeLabelSelector],
    field: &str,
    problems: &mut Vec<String>,
) -> Vec<LabelSelector> {
    list.iter()
        .enumerate()
        .filter_map(|(i, s)| {
            label_selector(s)
                .map_err(|e| problems.push(format!("{field}[{i}]: {e}")))
                .ok()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pool(spec: serde_json::Value) -> IPAddressPool {
        serde_json::from_value(json!({
            "apiVersion": "herald.dev/v1alpha1", "kind": "IPAddressPool",
            "metadata": {"name": "lan"}, "spec": spec,
        }))
        .unwrap()
    }

    #[test]
    fn reads_a_pool_with_its_allocation_rules() {
        let read = read(&pool(json!({
            "addresses": ["192.0.2.0/28"],
            "serviceAllocation": {"priority": 5, "namespaces": ["a"],
                "serviceSelectors": [{"matchExpressions": [{"key": "tier", "operator": "In", "values": ["web"]}]}]}
        })))
        .unwrap();
        let allocation = read.allocation.unwrap();
        assert_eq!(allocation.priority, Some(5));
        assert_eq!(allocation.service_selectors.len(), 1);
        assert!(read.auto_assign);
    }

    #[test]
    fn lists_every_problem_with_its_field() {
        let problems = read(&pool(json!({
            "addresses": ["192.0.2.0/28", "192.0.2.9-192.0.2.1"],
            "serviceAllocation": {"namespaceSelectors": [{"matchExpressions": [{"key": "env", "operator": "Equals", "values": ["x"]}]}]}
        })))
        .unwrap_err()
        .problems;
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(
            problems[0]
                .starts_with("spec.addresses: address entry \"192.0.2.9-192.0.2.1\" is reversed")
        );
        assert!(problems[1].starts_with(
            "spec.serviceAllocation.namespaceSelectors[0]: matchExpressions on key \"env\""
        ));
    }
}
