//! The committed CRD manifests are what the Rust types generate.

#[test]
fn committed_crds_match_the_types() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/crds");
    for (name, generated) in herald_crds::manifests() {
        let committed = std::fs::read_to_string(dir.join(&name)).unwrap_or_default();
        assert!(
            committed == generated,
            "deploy/crds/{name} is not what the types in crds/src generate: \
             run `cargo run -p herald-crds --bin crdgen` and commit the result"
        );
    }
}
