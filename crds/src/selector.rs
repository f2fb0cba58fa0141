//! Kubernetes label selectors, as the API carries them, read into `herald_core`'s.

use herald_core::selector::{LabelSelector, Requirement, SelectorError};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector as KubeLabelSelector;

/// Converts a label selector, refusing operators and values that Kubernetes refuses (the
/// API server does not check them in custom resources).
pub fn label_selector(selector: &KubeLabelSelector) -> Result<LabelSelector, SelectorError> {
    let match_expressions = selector
        .match_expressions
        .iter()
        .flatten()
        .map(|r| Requirement::parse(&r.key, &r.operator, r.values.as_deref().unwrap_or_default()))
        .collect::<Result<_, _>>()?;
    Ok(LabelSelector {
        match_labels: selector
            .match_labels
            .clone()
            .unwrap_or_default()
            .into_iter()
            .collect(),
        match_expressions,
    })
}
