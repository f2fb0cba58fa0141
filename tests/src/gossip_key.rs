//! Gossip keys for the speakers that tests start: a folder laid out as kubelet mounts the Secret
//! `herald-gossip-key` (`..data` links to a dated folder, each key is a link into `..data`), and
//! changed as kubelet changes it (the new folder swapped in by one rename), so that a rotation
//! in a test is what a speaker sees in a cluster.

use std::io::Read;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

/// A new random key, as the controller makes one.
pub fn random_key() -> Vec<u8> {
    let mut key = vec![0; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut random| random.read_exact(&mut key))
        .expect("reading /dev/urandom");
    key
}

/// Makes `dir` hold exactly `entries` (file name, key), as kubelet projects a Secret.
pub fn project(dir: &Path, entries: &[(&str, &[u8])]) {
    swap_in(dir, entries)
        .unwrap_or_else(|e| panic!("laying out gossip keys in {}: {e}", dir.display()));
}

fn swap_in(dir: &Path, entries: &[(&str, &[u8])]) -> std::io::Result<()> {
    static VERSION: AtomicU64 = AtomicU64::new(0);
    std::fs::create_dir_all(dir)?;
    let dated = format!(
        "..{}_{}",
        std::process::id(),
        VERSION.fetch_add(1, Ordering::Relaxed)
    );
    std::fs::create_dir(dir.join(&dated))?;
    for (name, key) in entries {
        std::fs::write(dir.join(&dated).join(name), key)?;
    }
    // The swap: readers see the old keys or the new, never a mix.
    let _ = std::fs::remove_file(dir.join("..data_tmp"));
    std::os::unix::fs::symlink(&dated, dir.join("..data_tmp"))?;
    std::fs::rename(dir.join("..data_tmp"), dir.join("..data"))?;
    for (name, _) in entries {
        let link = dir.join(name);
        if link.symlink_metadata().is_err() {
            std::os::unix::fs::symlink(Path::new("..data").join(name), &link)?;
        }
    }
    // Then kubelet removes the links of keys gone, and the old versions.
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let name = path
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        let gone = !name.starts_with('.') && entries.iter().all(|(n, _)| *n != name.as_str());
        let old_version = name.starts_with("..") && name != "..data" && name != dated;
        if gone {
            std::fs::remove_file(&path)?;
        } else if old_version {
            std::fs::remove_dir_all(&path)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_projected_folder_holds_exactly_the_latest_keys() {
        let dir = tempfile::tempdir().unwrap();
        project(dir.path(), &[("primary", b"one"), ("next", b"two")]);
        project(dir.path(), &[("primary", b"two"), ("previous", b"one")]);
        let mut names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| !n.starts_with('.'))
            .collect();
        names.sort();
        assert_eq!(names, ["previous", "primary"]);
        assert_eq!(std::fs::read(dir.path().join("primary")).unwrap(), b"two");
        assert_eq!(std::fs::read(dir.path().join("previous")).unwrap(), b"one");
        let versions = std::fs::read_dir(dir.path())
            .unwrap()
            .filter(|e| {
                let name = e.as_ref().unwrap().file_name();
                let name = name.to_string_lossy();
                name.starts_with("..") && name != "..data"
            })
            .count();
        assert_eq!(versions, 1);
    }
}
