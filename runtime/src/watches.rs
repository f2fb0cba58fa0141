//! One way to follow a watch into an index, for both binaries. A watch lists, then streams
//! changes, and lists again whenever it has to restart: objects that a relist does not show
//! were deleted while it was away, and the index must forget them. [`Watch`] keeps that
//! bookkeeping; the index only says how to apply, delete and retain.

use std::collections::BTreeSet;

use kube::Resource;
use kube::runtime::watcher::Event;

/// An object by namespace (empty for cluster-scoped objects) and name.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectKey {
    pub namespace: String,
    pub name: String,
}

impl ObjectKey {
    pub fn of<K: Resource>(object: &K) -> Self {
        ObjectKey {
            namespace: object.meta().namespace.clone().unwrap_or_default(),
            name: object.meta().name.clone().unwrap_or_default(),
        }
    }
}

/// An index fed by a watch of `K`.
pub trait Index<K> {
    /// What a change asks the caller to look at again (for the controller, the Services to
    /// decide again); nothing for an index that is read whole on every pass.
    type Touched;

    fn apply(&mut self, object: &K) -> Vec<Self::Touched>;

    fn delete(&mut self, object: &K) -> Vec<Self::Touched>;

    /// A relist is complete: objects not in `present` were deleted while the watch was away.
    fn retain(&mut self, present: &BTreeSet<ObjectKey>) -> Vec<Self::Touched>;
}

/// Where one watch is: listing (with what it has shown so far), and whether it has listed
/// once, so that nothing is decided on a partial view.
#[derive(Debug, Default)]
pub struct Watch {
    relisting: Option<BTreeSet<ObjectKey>>,
    synced: bool,
}

impl Watch {
    /// Applies one event of the watch to `index`.
    pub fn handle<K: Resource, I: Index<K>>(
        &mut self,
        index: &mut I,
        event: Event<K>,
    ) -> Vec<I::Touched> {
        match event {
            Event::Init => {
                self.relisting = Some(BTreeSet::new());
                Vec::new()
            }
            Event::InitApply(object) => {
                if let Some(seen) = &mut self.relisting {
                    seen.insert(ObjectKey::of(&object));
                }
                index.apply(&object)
            }
            Event::InitDone => {
                self.synced = true;
                let seen = self.relisting.take().unwrap_or_default();
                index.retain(&seen)
            }
            Event::Apply(object) => index.apply(&object),
            Event::Delete(object) => index.delete(&object),
        }
    }

    /// Whether the watch has listed once.
    pub fn synced(&self) -> bool {
        self.synced
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ConfigMap;
    use std::collections::BTreeMap;

    #[derive(Default)]
    struct Names(BTreeMap<ObjectKey, String>);

    impl Index<ConfigMap> for Names {
        type Touched = ObjectKey;

        fn apply(&mut self, object: &ConfigMap) -> Vec<ObjectKey> {
            let key = ObjectKey::of(object);
            self.0.insert(key.clone(), String::new());
            vec![key]
        }

        fn delete(&mut self, object: &ConfigMap) -> Vec<ObjectKey> {
            let key = ObjectKey::of(object);
            self.0.remove(&key);
            vec![key]
        }

        fn retain(&mut self, present: &BTreeSet<ObjectKey>) -> Vec<ObjectKey> {
            let gone: Vec<ObjectKey> = self
                .0
                .keys()
                .filter(|k| !present.contains(*k))
                .cloned()
                .collect();
            self.0.retain(|k, _| present.contains(k));
            gone
        }
    }

    fn map(name: &str) -> ConfigMap {
        serde_json::from_value(serde_json::json!({"metadata": {"name": name, "namespace": "a"}}))
            .unwrap()
    }

    #[test]
    fn a_relist_forgets_what_it_no_longer_shows_and_marks_the_watch_synced() {
        let mut watch = Watch::default();
        let mut names = Names::default();
        for event in [
            Event::Init,
            Event::InitApply(map("x")),
            Event::InitApply(map("y")),
        ] {
            watch.handle(&mut names, event);
        }
        assert!(!watch.synced());
        watch.handle(&mut names, Event::InitDone);
        assert!(watch.synced());
        // The watch restarts; "x" was deleted while it was away.
        watch.handle(&mut names, Event::Init);
        watch.handle(&mut names, Event::InitApply(map("y")));
        let gone = watch.handle(&mut names, Event::InitDone);
        assert_eq!(gone, [ObjectKey::of(&map("x"))]);
        assert_eq!(names.0.len(), 1);
    }
}
