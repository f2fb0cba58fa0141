//! What Herald reads off a Service's status: the addresses it shows and its conditions. The
//! controller, the speakers and `kubectl herald` read them the same way.

use std::net::IpAddr;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;

/// The addresses in `status.loadBalancer.ingress`; entries that are not an IP are left out.
pub fn addresses(service: &Service) -> Vec<IpAddr> {
    service
        .status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|ingress| ingress.ip.as_deref()?.parse().ok())
        .collect()
}

/// The Service's condition of type `type_` (see [`crate::conditions`]), if it shows one.
pub fn condition<'a>(service: &'a Service, type_: &str) -> Option<&'a Condition> {
    service
        .status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_)
}
