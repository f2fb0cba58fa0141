//! The speakers' gossip key: the Secret that the speakers mount, created by the controller with
//! a random key when it is missing, as MetalLB's controller creates its memberlist Secret.
//!
//! Not rendered by the chart: `helm template` (and GitOps tools that run it) would draw a new
//! key on every render, a rotation without its overlap that splits the speakers, and the
//! committed `deploy/herald.yaml` would hold the same key for every cluster. An existing Secret
//! (one's own key, or a rotation under way) is never read nor changed: the controller may
//! only create Secrets.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::Client;
use kube::api::{Api, ObjectMeta, PostParams};
use ring::rand::{SecureRandom, SystemRandom};

/// The Secret's entry that the speakers sign with (see the speaker's `gossip_auth`).
pub const PRIMARY: &str = "primary";
/// Bytes of a new key: 256 random bits.
pub const KEY_LEN: usize = 32;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "not allowed to create the Secret {namespace}/{name} that holds the speakers' gossip \
         key: {message}. Grant create on secrets in {namespace} to the controller's \
         ServiceAccount, or create the Secret yourself (README: \"The gossip key\"); the \
         speakers do not start without it"
    )]
    Forbidden {
        namespace: String,
        name: String,
        message: String,
    },
    #[error("creating the Secret {namespace}/{name} that holds the speakers' gossip key: {source}")]
    Api {
        namespace: String,
        name: String,
        source: kube::Error,
    },
    #[error("no random bytes for the speakers' gossip key from the operating system")]
    Random,
}

/// Whether the Secret had to be created.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    Created,
    Existed,
}

/// Creates the Secret `namespace`/`name` with a random key unless it exists.
pub async fn ensure(client: &Client, namespace: &str, name: &str) -> Result<Outcome, Error> {
    let mut key = [0; KEY_LEN];
    SystemRandom::new()
        .fill(&mut key)
        .map_err(|_| Error::Random)?;
    let created = Api::<Secret>::namespaced(client.clone(), namespace)
        .create(&PostParams::default(), &secret(namespace, name, &key))
        .await;
    match created {
        Ok(_) => Ok(Outcome::Created),
        Err(kube::Error::Api(status)) if status.code == 409 => Ok(Outcome::Existed),
        Err(source) => match herald_runtime::forbidden(&source) {
            Some(message) => Err(Error::Forbidden {
                namespace: namespace.to_owned(),
                name: name.to_owned(),
                message: message.to_owned(),
            }),
            None => Err(Error::Api {
                namespace: namespace.to_owned(),
                name: name.to_owned(),
                source,
            }),
        },
    }
}

/// The Secret holding `key` as its only, primary, key.
fn secret(namespace: &str, name: &str, key: &[u8]) -> Secret {
    Secret {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            namespace: Some(namespace.to_owned()),
            labels: Some(BTreeMap::from([
                ("app.kubernetes.io/name".to_owned(), "herald".to_owned()),
                (
                    "app.kubernetes.io/component".to_owned(),
                    "speaker".to_owned(),
                ),
            ])),
            ..ObjectMeta::default()
        },
        type_: Some("Opaque".to_owned()),
        data: Some(BTreeMap::from([(
            PRIMARY.to_owned(),
            ByteString(key.to_vec()),
        )])),
        ..Secret::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_secret_holds_the_key_as_its_primary_entry() {
        let secret = secret("herald-system", "herald-gossip-key", &[7; KEY_LEN]);
        assert_eq!(secret.metadata.name.as_deref(), Some("herald-gossip-key"));
        assert_eq!(secret.metadata.namespace.as_deref(), Some("herald-system"));
        let data = secret.data.unwrap();
        assert_eq!(data.len(), 1);
        assert_eq!(data[PRIMARY].0, vec![7; KEY_LEN]);
    }
}
