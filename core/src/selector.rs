//! Label selectors, as Kubernetes evaluates them, for pools' `serviceAllocation` and
//! L2Advertisements' node and pool selectors.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

pub type Labels = BTreeMap<String, String>;

/// One `matchExpressions` entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Requirement {
    In(String, BTreeSet<String>),
    NotIn(String, BTreeSet<String>),
    Exists(String),
    DoesNotExist(String),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectorError {
    #[error(
        "matchExpressions on key {key:?} has operator {operator:?}: use In, NotIn, Exists or DoesNotExist"
    )]
    UnknownOperator { key: String, operator: String },
    #[error("matchExpressions on key {key:?} with operator {operator} needs at least one value")]
    MissingValues { key: String, operator: String },
    #[error("matchExpressions on key {key:?} with operator {operator} takes no values")]
    UnexpectedValues { key: String, operator: String },
}

impl Requirement {
    /// Builds a requirement from its API form, refusing what Kubernetes refuses.
    pub fn parse(key: &str, operator: &str, values: &[String]) -> Result<Self, SelectorError> {
        let key = key.to_owned();
        let set: BTreeSet<String> = values.iter().cloned().collect();
        let needs_values = |set: BTreeSet<String>| {
            if set.is_empty() {
                Err(SelectorError::MissingValues {
                    key: key.clone(),
                    operator: operator.to_owned(),
                })
            } else {
                Ok(set)
            }
        };
        let no_values = || {
            if values.is_empty() {
                Ok(())
            } else {
                Err(SelectorError::UnexpectedValues {
                    key: key.clone(),
                    operator: operator.to_owned(),
                })
            }
        };
        match operator {
            "In" => Ok(Requirement::In(key.clone(), needs_values(set)?)),
            "NotIn" => Ok(Requirement::NotIn(key.clone(), needs_values(set)?)),
            "Exists" => no_values().map(|()| Requirement::Exists(key.clone())),
            "DoesNotExist" => no_values().map(|()| Requirement::DoesNotExist(key.clone())),
            _ => Err(SelectorError::UnknownOperator {
                key: key.clone(),
                operator: operator.to_owned(),
            }),
        }
    }

    fn matches(&self, labels: &Labels) -> bool {
        match self {
            Requirement::In(key, values) => labels.get(key).is_some_and(|v| values.contains(v)),
            Requirement::NotIn(key, values) => labels.get(key).is_none_or(|v| !values.contains(v)),
            Requirement::Exists(key) => labels.contains_key(key),
            Requirement::DoesNotExist(key) => !labels.contains_key(key),
        }
    }
}

/// `matchLabels` and `matchExpressions`, ANDed. An empty selector matches everything.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LabelSelector {
    pub match_labels: Labels,
    pub match_expressions: Vec<Requirement>,
}

impl LabelSelector {
    pub fn matches(&self, labels: &Labels) -> bool {
        self.match_labels
            .iter()
            .all(|(k, v)| labels.get(k) == Some(v))
            && self.match_expressions.iter().all(|r| r.matches(labels))
    }
}

/// kubectl's selector syntax: `zone=a,tier in (edge,web),!spare`; `everything` when empty.
impl fmt::Display for LabelSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let join = |values: &BTreeSet<String>| values.iter().cloned().collect::<Vec<_>>().join(",");
        let terms: Vec<String> = self
            .match_labels
            .iter()
            .map(|(key, value)| format!("{key}={value}"))
            .chain(self.match_expressions.iter().map(|r| match r {
                Requirement::In(key, values) => format!("{key} in ({})", join(values)),
                Requirement::NotIn(key, values) => format!("{key} notin ({})", join(values)),
                Requirement::Exists(key) => key.clone(),
                Requirement::DoesNotExist(key) => format!("!{key}"),
            }))
            .collect();
        if terms.is_empty() {
            f.write_str("everything")
        } else {
            f.write_str(&terms.join(","))
        }
    }
}

/// Whether any of `selectors` matches; an empty list matches everything.
pub fn any_matches(selectors: &[LabelSelector], labels: &Labels) -> bool {
    selectors.is_empty() || selectors.iter().any(|s| s.matches(labels))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn values(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn requirements_match_like_kubernetes() {
        let team_a = labels(&[("team", "a")]);
        let none = labels(&[]);
        let in_a = Requirement::parse("team", "In", &values(&["a", "b"])).unwrap();
        assert!(in_a.matches(&team_a) && !in_a.matches(&none));
        let not_in_a = Requirement::parse("team", "NotIn", &values(&["a"])).unwrap();
        assert!(!not_in_a.matches(&team_a) && not_in_a.matches(&none));
        let exists = Requirement::parse("team", "Exists", &[]).unwrap();
        assert!(exists.matches(&team_a) && !exists.matches(&none));
        let absent = Requirement::parse("team", "DoesNotExist", &[]).unwrap();
        assert!(!absent.matches(&team_a) && absent.matches(&none));
    }

    #[test]
    fn bad_requirements_are_refused_with_the_key() {
        let err = Requirement::parse("team", "Equals", &values(&["a"])).unwrap_err();
        assert!(err.to_string().contains("\"team\"") && err.to_string().contains("Equals"));
        assert!(matches!(
            Requirement::parse("team", "In", &[]),
            Err(SelectorError::MissingValues { .. })
        ));
        assert!(matches!(
            Requirement::parse("team", "Exists", &values(&["a"])),
            Err(SelectorError::UnexpectedValues { .. })
        ));
    }

    #[test]
    fn selectors_and_their_terms_and_lists_or() {
        let selector = LabelSelector {
            match_labels: labels(&[("team", "a")]),
            match_expressions: vec![Requirement::parse("tier", "Exists", &[]).unwrap()],
        };
        assert!(selector.matches(&labels(&[("team", "a"), ("tier", "web")])));
        assert!(!selector.matches(&labels(&[("team", "a")])));
        assert!(LabelSelector::default().matches(&labels(&[])));
        assert!(any_matches(&[], &labels(&[])));
        let other = LabelSelector {
            match_labels: labels(&[("team", "b")]),
            ..LabelSelector::default()
        };
        assert!(any_matches(&[selector, other], &labels(&[("team", "b")])));
    }

    #[test]
    fn a_selector_reads_as_kubectl_writes_it() {
        let selector = LabelSelector {
            match_labels: Labels::from([("zone".into(), "a".into())]),
            match_expressions: vec![
                Requirement::parse("tier", "In", &["web".into(), "edge".into()]).unwrap(),
                Requirement::parse("spare", "DoesNotExist", &[]).unwrap(),
                Requirement::parse("gpu", "Exists", &[]).unwrap(),
                Requirement::parse("rack", "NotIn", &["r1".into()]).unwrap(),
            ],
        };
        assert_eq!(
            selector.to_string(),
            "zone=a,tier in (edge,web),!spare,gpu,rack notin (r1)"
        );
        assert_eq!(LabelSelector::default().to_string(), "everything");
    }
}
