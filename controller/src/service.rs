//! What a Kubernetes Service asks of allocation: whether it is Herald's at all, and the
//! addresses, pool, families and sharing it wants, read from its spec and annotations.

use std::collections::BTreeSet;
use std::net::IpAddr;

use herald_core::addresses::IpFamily;
use herald_core::allocation::{Backend, FamilyPolicy, Protocol, Service, ServiceKey, Sharing};
use herald_core::selector::Labels;
use herald_core::text::quote;
use herald_crds::annotations::{ADDRESS_POOL, ALLOW_SHARED_IP, LOAD_BALANCER_IPS, PREFIXES};
use herald_crds::{reasons, service_status};
use k8s_openapi::api::core::v1::Service as KubeService;

/// Why a Service's request cannot be read; the message names the field and the value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    #[error(
        "annotations {first} ({}) and {second} ({}) disagree: keep one",
        quote(.first_value),
        quote(.second_value)
    )]
    ConflictingAnnotations {
        first: String,
        first_value: String,
        second: String,
        second_value: String,
    },
    #[error("annotation {annotation}: {} is not an IP address", quote(.value))]
    BadAddress { annotation: String, value: String },
    #[error(
        "annotation {annotation} asks for two {family} addresses ({}): ask for at most one per family",
        quote(.value)
    )]
    TwoOfOneFamily {
        annotation: String,
        family: IpFamily,
        value: String,
    },
    #[error(
        "spec.loadBalancerIP {} and annotation {annotation} are both set: use only the annotation",
        quote(.spec)
    )]
    BothSpecAndAnnotation { spec: String, annotation: String },
    #[error("spec.loadBalancerIP: {} is not an IP address", quote(.0))]
    BadSpecAddress(String),
    #[error("annotation {annotation} is empty: name a pool or remove the annotation")]
    EmptyPool { annotation: String },
}

impl RequestError {
    pub fn reason(&self) -> &'static str {
        reasons::INVALID_REQUEST
    }
}

/// Whether Herald handles this Service: type LoadBalancer, and a `loadBalancerClass` that is
/// unset, or equal to `class` when the controller was given one.
pub fn is_ours(service: &KubeService, class: Option<&str>) -> bool {
    let Some(spec) = &service.spec else {
        return false;
    };
    spec.type_.as_deref() == Some("LoadBalancer")
        && spec.load_balancer_class.as_deref() == class
        && service.metadata.deletion_timestamp.is_none()
}

pub fn key(service: &KubeService) -> ServiceKey {
    ServiceKey::new(
        service.metadata.namespace.clone().unwrap_or_default(),
        service.metadata.name.clone().unwrap_or_default(),
    )
}

/// Reads what the Service asks of allocation. A malformed part is left out of the request
/// and reported as the error (the first, if several), so that the Service can still keep the
/// addresses it holds while the user fixes it.
pub fn request(
    service: &KubeService,
    namespace_labels: &Labels,
) -> (Service, Option<RequestError>) {
    let mut errors = Vec::new();
    let spec = service.spec.clone().unwrap_or_default();
    let annotated = annotation(service, LOAD_BALANCER_IPS, &mut errors);
    let mut requested = match &annotated {
        Some((name, value)) => parse_addresses(name, value).unwrap_or_else(|e| {
            errors.push(e);
            Vec::new()
        }),
        None => Vec::new(),
    };
    if let Some(spec_ip) = spec.load_balancer_ip.as_deref().filter(|s| !s.is_empty()) {
        match (&annotated, spec_ip.parse()) {
            (Some((name, _)), _) => errors.push(RequestError::BothSpecAndAnnotation {
                spec: spec_ip.to_owned(),
                annotation: name.clone(),
            }),
            (None, Ok(ip)) => requested.push(ip),
            (None, Err(_)) => errors.push(RequestError::BadSpecAddress(spec_ip.to_owned())),
        }
    }
    let pool = match annotation(service, ADDRESS_POOL, &mut errors) {
        Some((name, value)) if value.trim().is_empty() => {
            errors.push(RequestError::EmptyPool { annotation: name });
            None
        }
        Some((_, value)) => Some(value.trim().to_owned()),
        None => None,
    };
    let sharing = annotation(service, ALLOW_SHARED_IP, &mut errors)
        .filter(|(_, value)| !value.is_empty())
        .map(|(_, key)| Sharing {
            key,
            ports: spec
                .ports
                .iter()
                .flatten()
                .map(|p| (protocol(p.protocol.as_deref()), p.port as u16))
                .collect::<BTreeSet<_>>(),
            backend: if spec.external_traffic_policy.as_deref() == Some("Local") {
                Backend::Local(
                    spec.selector
                        .clone()
                        .unwrap_or_default()
                        .into_iter()
                        .collect(),
                )
            } else {
                Backend::Cluster
            },
        });
    let request = Service {
        key: key(service),
        labels: service
            .metadata
            .labels
            .clone()
            .unwrap_or_default()
            .into_iter()
            .collect(),
        namespace_labels: namespace_labels.clone(),
        families: family_policy(
            spec.ip_families.as_deref().unwrap_or_default(),
            spec.ip_family_policy.as_deref(),
        ),
        requested,
        pool,
        sharing,
        current: service_status::addresses(service),
    };
    (request, errors.into_iter().next())
}

/// Where a Service's request is written: the annotation (or `spec.loadBalancerIP`) asking for
/// addresses, the annotation naming a pool, and the one giving a sharing key; as
/// [`request`] reads them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Sources {
    pub addresses: Option<String>,
    pub pool: Option<String>,
    pub sharing: Option<String>,
}

pub fn sources(service: &KubeService) -> Sources {
    // The request's own reading reports malformed values; here only the names matter.
    let mut ignored = Vec::new();
    let mut name = |suffix| annotation(service, suffix, &mut ignored).map(|(name, _)| name);
    let spec_ip = service
        .spec
        .as_ref()
        .and_then(|s| s.load_balancer_ip.as_deref())
        .is_some_and(|ip| !ip.is_empty());
    Sources {
        addresses: name(LOAD_BALANCER_IPS)
            .or_else(|| spec_ip.then(|| "spec.loadBalancerIP".to_owned())),
        pool: name(ADDRESS_POOL),
        sharing: name(ALLOW_SHARED_IP),
    }
}

/// The value of an annotation under any of the prefixes; if several are set they must agree
/// (else the first, Herald's own before MetalLB's, counts and the disagreement is an error).
fn annotation(
    service: &KubeService,
    suffix: &str,
    errors: &mut Vec<RequestError>,
) -> Option<(String, String)> {
    let annotations = service.metadata.annotations.as_ref();
    let mut found: Option<(String, String)> = None;
    for prefix in PREFIXES {
        let name = format!("{prefix}{suffix}");
        let Some(value) = annotations.and_then(|a| a.get(&name)) else {
            continue;
        };
        match &found {
            Some((first, first_value)) if first_value.trim() != value.trim() => {
                errors.push(RequestError::ConflictingAnnotations {
                    first: first.clone(),
                    first_value: first_value.clone(),
                    second: name,
                    second_value: value.clone(),
                });
            }
            Some(_) => {}
            None => found = Some((name, value.clone())),
        }
    }
    found
}

fn parse_addresses(annotation: &str, value: &str) -> Result<Vec<IpAddr>, RequestError> {
    let mut addresses: Vec<IpAddr> = Vec::new();
    for part in value.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let ip: IpAddr = part.parse().map_err(|_| RequestError::BadAddress {
            annotation: annotation.to_owned(),
            value: part.to_owned(),
        })?;
        if addresses
            .iter()
            .any(|a| IpFamily::of(*a) == IpFamily::of(ip))
        {
            return Err(RequestError::TwoOfOneFamily {
                annotation: annotation.to_owned(),
                family: IpFamily::of(ip),
                value: value.to_owned(),
            });
        }
        addresses.push(ip);
    }
    Ok(addresses)
}

fn protocol(name: Option<&str>) -> Protocol {
    match name {
        Some("UDP") => Protocol::Udp,
        Some("SCTP") => Protocol::Sctp,
        _ => Protocol::Tcp,
    }
}

/// `spec.ipFamilies` (set by the API server on create) and `spec.ipFamilyPolicy`.
fn family_policy(families: &[String], policy: Option<&str>) -> FamilyPolicy {
    let primary = match families.first().map(String::as_str) {
        Some("IPv6") => IpFamily::V6,
        _ => IpFamily::V4,
    };
    match policy {
        Some("RequireDualStack") => FamilyPolicy::RequireDual,
        Some("PreferDualStack") => FamilyPolicy::PreferDual(primary),
        _ => FamilyPolicy::Single(primary),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn svc(value: serde_json::Value) -> KubeService {
        serde_json::from_value(value).unwrap()
    }

    fn lb(annotations: serde_json::Value, spec: serde_json::Value) -> KubeService {
        let mut spec_full =
            json!({"type": "LoadBalancer", "ports": [{"port": 80, "protocol": "TCP"}]});
        spec_full
            .as_object_mut()
            .unwrap()
            .extend(spec.as_object().unwrap().clone());
        svc(json!({
            "metadata": {"name": "web", "namespace": "shop", "annotations": annotations},
            "spec": spec_full,
        }))
    }

    #[test]
    fn only_load_balancers_of_our_class_are_ours() {
        let plain = lb(json!({}), json!({}));
        assert!(is_ours(&plain, None));
        assert!(!is_ours(&plain, Some("herald")));
        let classed = lb(json!({}), json!({"loadBalancerClass": "herald"}));
        assert!(!is_ours(&classed, None));
        assert!(is_ours(&classed, Some("herald")));
        let cluster_ip = svc(json!({"metadata": {"name": "a"}, "spec": {"type": "ClusterIP"}}));
        assert!(!is_ours(&cluster_ip, None));
    }

    #[test]
    fn reads_every_annotation_form() {
        for prefix in PREFIXES {
            let service = lb(
                json!({
                    format!("{prefix}loadBalancerIPs"): "192.0.2.10, 2001:db8::10",
                    format!("{prefix}address-pool"): "lan",
                    format!("{prefix}allow-shared-ip"): "web",
                }),
                json!({"ipFamilyPolicy": "RequireDualStack", "ipFamilies": ["IPv4", "IPv6"]}),
            );
            let (request, error) = request(&service, &Labels::new());
            assert_eq!(error, None);
            assert_eq!(
                request.requested,
                vec![
                    "192.0.2.10".parse::<IpAddr>().unwrap(),
                    "2001:db8::10".parse().unwrap()
                ]
            );
            assert_eq!(request.pool.as_deref(), Some("lan"));
            assert_eq!(request.families, FamilyPolicy::RequireDual);
            let sharing = request.sharing.unwrap();
            assert_eq!(sharing.key, "web");
            assert_eq!(sharing.ports, BTreeSet::from([(Protocol::Tcp, 80)]));
            assert_eq!(sharing.backend, Backend::Cluster);
        }
    }

    #[test]
    fn spec_load_balancer_ip_is_honoured_but_not_with_the_annotation() {
        let spec_only = lb(json!({}), json!({"loadBalancerIP": "192.0.2.7"}));
        assert_eq!(
            request(&spec_only, &Labels::new()).0.requested,
            vec!["192.0.2.7".parse::<IpAddr>().unwrap()]
        );
        let both = lb(
            json!({"metallb.io/loadBalancerIPs": "192.0.2.8"}),
            json!({"loadBalancerIP": "192.0.2.7"}),
        );
        let err = request(&both, &Labels::new()).1.unwrap();
        assert_eq!(
            err.to_string(),
            "spec.loadBalancerIP \"192.0.2.7\" and annotation metallb.io/loadBalancerIPs are both set: use only the annotation"
        );
    }

    #[test]
    fn sources_name_where_each_part_of_the_request_is_written() {
        let service = lb(
            json!({"metallb.universe.tf/address-pool": "lan", "herald.dev/allow-shared-ip": "k"}),
            json!({"loadBalancerIP": "192.0.2.7"}),
        );
        assert_eq!(
            sources(&service),
            Sources {
                addresses: Some("spec.loadBalancerIP".into()),
                pool: Some("metallb.universe.tf/address-pool".into()),
                sharing: Some("herald.dev/allow-shared-ip".into()),
            }
        );
        let annotated = lb(
            json!({"metallb.io/loadBalancerIPs": "192.0.2.8"}),
            json!({}),
        );
        assert_eq!(
            sources(&annotated).addresses.as_deref(),
            Some("metallb.io/loadBalancerIPs")
        );
    }

    #[test]
    fn malformed_annotations_say_what_is_wrong() {
        let cases = [
            (
                json!({"herald.dev/loadBalancerIPs": "192.0.2.300"}),
                "annotation herald.dev/loadBalancerIPs: \"192.0.2.300\" is not an IP address",
            ),
            (
                json!({"herald.dev/loadBalancerIPs": "192.0.2.1,192.0.2.2"}),
                "asks for two IPv4 addresses",
            ),
            (
                json!({"herald.dev/address-pool": "a", "metallb.io/address-pool": "b"}),
                "annotations herald.dev/address-pool (\"a\") and metallb.io/address-pool (\"b\") disagree",
            ),
            (json!({"herald.dev/address-pool": " "}), "is empty"),
        ];
        for (annotations, expected) in cases {
            let err = request(&lb(annotations.clone(), json!({})), &Labels::new())
                .1
                .unwrap();
            assert!(err.to_string().contains(expected), "{annotations}: {err}");
        }
    }

    #[test]
    fn local_traffic_policy_shares_only_with_the_same_pods() {
        let service = lb(
            json!({"herald.dev/allow-shared-ip": "k"}),
            json!({"externalTrafficPolicy": "Local", "selector": {"app": "web"}}),
        );
        let sharing = request(&service, &Labels::new()).0.sharing.unwrap();
        assert_eq!(
            sharing.backend,
            Backend::Local(Labels::from([("app".to_string(), "web".to_string())]))
        );
    }

    #[test]
    fn families_follow_the_policy() {
        assert_eq!(family_policy(&[], None), FamilyPolicy::Single(IpFamily::V4));
        assert_eq!(
            family_policy(&["IPv6".into()], Some("SingleStack")),
            FamilyPolicy::Single(IpFamily::V6)
        );
        assert_eq!(
            family_policy(&["IPv6".into(), "IPv4".into()], Some("PreferDualStack")),
            FamilyPolicy::PreferDual(IpFamily::V6)
        );
    }
}
