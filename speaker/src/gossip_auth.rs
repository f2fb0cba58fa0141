//! Authenticated gossip: the speakers' datagrams are signed with a cluster key, so that a host
//! on the LAN without it can neither forge nor replay membership.
//!
//! A sealed datagram:
//!
//! ```text
//! | version 1 | key id: 8 | sent at: 8 | to: 18 | foca's payload | HMAC-SHA256: 32 |
//! ```
//!
//! - key id: the first 8 bytes of the key's SHA-256, so that the receiver picks the key (and
//!   says which one it lacks) without trying each.
//! - sent at: the sender's clock, milliseconds since the epoch, big-endian.
//! - to: the receiver's gossip address (IPv6 or IPv4-mapped, then the port): a datagram
//!   replayed to another speaker says so.
//! - the tag covers everything before it.
//!
//! Replays: a datagram is accepted only within [`WINDOW`] of the receiver's clock, and only
//! once (the receiver remembers what it accepted within the window). A per-sender counter
//! would need no clocks, but a receiver that restarted (or a sender it never met) would take
//! any old datagram as new; a date bounds every datagram's life whatever either side forgot.
//! The cost is that nodes' clocks must agree within the window, which the heartbeat Leases
//! already need (to a few seconds).
//!
//! Keys: a folder (the Secret `herald-gossip-key` mounted), a file per key. The file
//! `primary` signs; every file is accepted. See [`Keys::read_dir`].

use std::collections::BTreeSet;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ring::{digest, hmac};

/// The key that signs; the others are only accepted.
pub const PRIMARY: &str = "primary";
/// Shortest key accepted: 128 bits, if random.
pub const MIN_KEY_LEN: usize = 16;
/// How far a datagram's date may be from the receiver's clock.
pub const WINDOW: Duration = Duration::from_secs(30);
/// Datagrams remembered at most for replay checks: about five times what a speaker receives
/// in a window (SWIM's load per speaker is about 100 datagrams a second whatever the cluster's
/// size), about 1 MiB at most.
pub const REMEMBERED: usize = 16_384;

const VERSION: u8 = 1;
const KEY_ID_LEN: usize = 8;
const TAG_LEN: usize = 32;
const HEADER_LEN: usize = 1 + KEY_ID_LEN + 8 + 18;
/// Bytes a sealed datagram has beyond its payload.
pub const OVERHEAD: usize = HEADER_LEN + TAG_LEN;

/// Names a key without revealing it.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct KeyId([u8; KEY_ID_LEN]);

impl KeyId {
    /// The first 8 bytes of `key`'s SHA-256.
    pub fn of(key: &[u8]) -> KeyId {
        let digest = digest::digest(&digest::SHA256, key);
        let mut id = [0; KEY_ID_LEN];
        id.copy_from_slice(&digest.as_ref()[..KEY_ID_LEN]);
        KeyId(id)
    }
}

/// Lowercase hex, as `sha256sum KEY | cut -c1-16` prints it.
impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

struct Key {
    id: KeyId,
    hmac: hmac::Key,
}

/// The keys a speaker accepts, and the one it signs with.
pub struct Keys {
    signing: KeyId,
    /// The signing key included.
    accepted: Vec<Key>,
}

/// What is wrong with the keys' folder.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error(
        "cannot read the gossip keys in {dir}: {source}; mount the Secret herald-gossip-key \
         there (the chart and deploy/ do), or pass --gossip-key-dir"
    )]
    Read {
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "no gossip key {PRIMARY:?} in {dir} (found: {found:?}): the Secret herald-gossip-key \
         needs an entry {PRIMARY:?}, the key the speakers sign with"
    )]
    NoPrimary { dir: PathBuf, found: Vec<String> },
    #[error(
        "gossip key {name:?} in {dir} has {len} bytes, fewer than {MIN_KEY_LEN}: use a random \
         key, e.g. `openssl rand -base64 32`"
    )]
    TooShort {
        dir: PathBuf,
        name: String,
        len: usize,
    },
}

impl Keys {
    /// The keys of `dir`: every file whose name does not start with a dot (a mounted Secret
    /// also holds kubelet's `..data` links), its whole content the key.
    pub fn read_dir(dir: &Path) -> Result<Keys, KeyError> {
        let read_error = |source| KeyError::Read {
            dir: dir.to_owned(),
            source,
        };
        let mut entries = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(read_error)? {
            let path = entry.map_err(read_error)?.path();
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            // is_file follows the links a mounted Secret is made of.
            if name.starts_with('.') || !path.is_file() {
                continue;
            }
            entries.push((name, std::fs::read(&path).map_err(read_error)?));
        }
        Keys::from_entries(dir, entries)
    }

    /// The keys from (file name, content) pairs read from `dir`.
    pub fn from_entries(dir: &Path, entries: Vec<(String, Vec<u8>)>) -> Result<Keys, KeyError> {
        let mut accepted: Vec<Key> = Vec::new();
        let mut signing = None;
        for (name, key) in &entries {
            if key.len() < MIN_KEY_LEN {
                return Err(KeyError::TooShort {
                    dir: dir.to_owned(),
                    name: name.clone(),
                    len: key.len(),
                });
            }
            let id = KeyId::of(key);
            if name == PRIMARY {
                signing = Some(id);
            }
            if accepted.iter().all(|k| k.id != id) {
                accepted.push(Key {
                    id,
                    hmac: hmac::Key::new(hmac::HMAC_SHA256, key),
                });
            }
        }
        let signing = signing.ok_or_else(|| KeyError::NoPrimary {
            dir: dir.to_owned(),
            found: entries.into_iter().map(|(name, _)| name).collect(),
        })?;
        accepted.sort_by_key(|k| k.id);
        Ok(Keys { signing, accepted })
    }

    pub fn signing(&self) -> KeyId {
        self.signing
    }

    /// Every key accepted, the signing one included, in a stable order.
    pub fn accepted(&self) -> impl Iterator<Item = KeyId> + '_ {
        self.accepted.iter().map(|k| k.id)
    }

    fn key(&self, id: KeyId) -> Option<&Key> {
        self.accepted.iter().find(|k| k.id == id)
    }

    /// `payload` sealed for the speaker at `to`, dated `now_ms` (milliseconds since the epoch).
    pub fn seal(&self, payload: &[u8], to: SocketAddr, now_ms: u64) -> Vec<u8> {
        let key = self.key(self.signing).expect("the signing key is accepted");
        let mut packet = Vec::with_capacity(payload.len() + OVERHEAD);
        packet.push(VERSION);
        packet.extend_from_slice(&key.id.0);
        packet.extend_from_slice(&now_ms.to_be_bytes());
        packet.extend_from_slice(&address_bytes(to));
        packet.extend_from_slice(payload);
        let tag = hmac::sign(&key.hmac, &packet);
        packet.extend_from_slice(tag.as_ref());
        packet
    }

    /// The payload of `packet` if it is authentic, meant for `me`, dated within [`WINDOW`] of
    /// `now_ms`, and not seen before.
    pub fn open<'p>(
        &self,
        packet: &'p [u8],
        me: SocketAddr,
        now_ms: u64,
        replays: &mut ReplayGuard,
    ) -> Result<&'p [u8], Rejected> {
        if packet.len() < OVERHEAD || packet[0] != VERSION {
            return Err(Rejected::Malformed);
        }
        let (signed, tag) = packet.split_at(packet.len() - TAG_LEN);
        let (header, payload) = signed.split_at(HEADER_LEN);
        let id = KeyId(header[1..1 + KEY_ID_LEN].try_into().expect("8 bytes"));
        let key = self.key(id).ok_or(Rejected::UnknownKey(id))?;
        hmac::verify(&key.hmac, signed, tag).map_err(|_| Rejected::BadMac)?;
        // Authentic from here on: the sender holds a key.
        let sent_at = u64::from_be_bytes(header[9..17].try_into().expect("8 bytes"));
        let to: [u8; 18] = header[17..HEADER_LEN].try_into().expect("18 bytes");
        if to != address_bytes(me) {
            return Err(Rejected::Misdirected {
                to: address_from_bytes(to),
            });
        }
        let tag: [u8; TAG_LEN] = tag.try_into().expect("32 bytes");
        replays.admit(sent_at, tag, now_ms)?;
        Ok(payload)
    }
}

/// Two key sets are the same when they accept and sign with the same keys.
impl PartialEq for Keys {
    fn eq(&self, other: &Keys) -> bool {
        self.signing == other.signing && self.accepted().eq(other.accepted())
    }
}

/// An address as 16 bytes of IPv6 (IPv4 mapped) and the port, big-endian: one form per address.
fn address_bytes(addr: SocketAddr) -> [u8; 18] {
    let ip = match addr {
        SocketAddr::V4(v4) => v4.ip().to_ipv6_mapped(),
        SocketAddr::V6(v6) => *v6.ip(),
    };
    let mut bytes = [0; 18];
    bytes[..16].copy_from_slice(&ip.octets());
    bytes[16..].copy_from_slice(&addr.port().to_be_bytes());
    bytes
}

fn address_from_bytes(bytes: [u8; 18]) -> SocketAddr {
    let ip: [u8; 16] = bytes[..16].try_into().expect("16 bytes");
    let ip = std::net::Ipv6Addr::from(ip);
    let port = u16::from_be_bytes([bytes[16], bytes[17]]);
    SocketAddr::new(ip.to_canonical(), port)
}

/// Why a datagram was dropped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejected {
    #[error("not a sealed Herald gossip datagram (another program, or another version)")]
    Malformed,
    #[error(
        "signed with gossip key {0}, which this speaker does not have: the speakers' keys \
         differ (a rotation step taken before every speaker had the new key?) or the sender \
         is not a speaker of this cluster"
    )]
    UnknownKey(KeyId),
    #[error("its signature does not match: forged or altered")]
    BadMac,
    #[error("addressed to {to}, not to this speaker: replayed from another speaker's traffic")]
    Misdirected { to: SocketAddr },
    #[error(
        "dated {skew_ms} ms from this node's clock, beyond the {window:?} allowed: an old \
         datagram replayed, or the nodes' clocks differ (synchronise them, e.g. with NTP)",
        window = WINDOW
    )]
    OutsideWindow { skew_ms: i64 },
    #[error("received before: a replay")]
    Replayed,
}

impl Rejected {
    /// The `reason` label of the dropped-datagrams metric.
    pub fn reason(&self) -> &'static str {
        match self {
            Rejected::Malformed => "malformed",
            Rejected::UnknownKey(_) => "unknown_key",
            Rejected::BadMac => "bad_mac",
            Rejected::Misdirected { .. } => "misdirected",
            Rejected::OutsideWindow { .. } => "outside_window",
            Rejected::Replayed => "replayed",
        }
    }
}

/// The datagrams accepted within the window, to accept each only once.
pub struct ReplayGuard {
    window_ms: u64,
    capacity: usize,
    /// (date, tag) of each datagram accepted and not yet forgotten.
    seen: BTreeSet<(u64, [u8; TAG_LEN])>,
    /// Datagrams dated at or before this are refused: ones as old may have been forgotten.
    /// Also holds if this node's clock steps back.
    floor: u64,
}

impl ReplayGuard {
    pub fn new(window: Duration, capacity: usize) -> ReplayGuard {
        ReplayGuard {
            window_ms: u64::try_from(window.as_millis()).unwrap_or(u64::MAX),
            capacity,
            seen: BTreeSet::new(),
            floor: 0,
        }
    }

    fn admit(&mut self, sent_at: u64, tag: [u8; TAG_LEN], now_ms: u64) -> Result<(), Rejected> {
        if sent_at.abs_diff(now_ms) > self.window_ms || sent_at <= self.floor {
            return Err(Rejected::OutsideWindow {
                skew_ms: (i128::from(sent_at) - i128::from(now_ms))
                    .clamp(i64::MIN.into(), i64::MAX.into()) as i64,
            });
        }
        if !self.seen.insert((sent_at, tag)) {
            return Err(Rejected::Replayed);
        }
        // Forget what the window refuses anyway, and the oldest beyond capacity.
        let oldest = now_ms.saturating_sub(self.window_ms);
        while let Some(&(date, _)) = self.seen.first()
            && (date < oldest || self.seen.len() > self.capacity)
        {
            self.floor = self.floor.max(date);
            self.seen.pop_first();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_800_000_000_000;
    const OLD: &[u8] = b"the old key, 32 bytes long......";
    const NEW: &[u8] = b"the new key, 32 bytes long......";

    fn me() -> SocketAddr {
        "192.0.2.11:7946".parse().unwrap()
    }

    fn keys(entries: &[(&str, &[u8])]) -> Keys {
        Keys::from_entries(
            Path::new("/keys"),
            entries
                .iter()
                .map(|(name, key)| (name.to_string(), key.to_vec()))
                .collect(),
        )
        .unwrap()
    }

    fn guard() -> ReplayGuard {
        ReplayGuard::new(WINDOW, REMEMBERED)
    }

    #[test]
    fn a_sealed_datagram_opens_once_with_its_payload() {
        let keys = keys(&[(PRIMARY, OLD)]);
        let packet = keys.seal(b"ping", me(), NOW);
        assert_eq!(packet.len(), 4 + OVERHEAD);
        let mut replays = guard();
        assert_eq!(
            keys.open(&packet, me(), NOW + 5, &mut replays),
            Ok(&b"ping"[..])
        );
        // The same datagram again, a second later: a replay.
        assert_eq!(
            keys.open(&packet, me(), NOW + 1_000, &mut replays),
            Err(Rejected::Replayed)
        );
        // A new datagram with the same payload is not.
        let again = keys.seal(b"ping", me(), NOW + 1);
        assert!(keys.open(&again, me(), NOW + 1_000, &mut replays).is_ok());
    }

    #[test]
    fn a_datagram_signed_with_another_key_is_refused_and_names_it() {
        let ours = keys(&[(PRIMARY, OLD)]);
        let theirs = keys(&[(PRIMARY, NEW)]);
        let packet = theirs.seal(b"ping", me(), NOW);
        assert_eq!(
            ours.open(&packet, me(), NOW, &mut guard()),
            Err(Rejected::UnknownKey(theirs.signing()))
        );
        // The same key id with a forged tag (the id is no secret).
        let mut forged = ours.seal(b"ping", me(), NOW);
        let tag_start = forged.len() - TAG_LEN;
        forged[tag_start..].copy_from_slice(&[0; TAG_LEN]);
        assert_eq!(
            ours.open(&forged, me(), NOW, &mut guard()),
            Err(Rejected::BadMac)
        );
    }

    #[test]
    fn any_altered_byte_is_refused() {
        let keys = keys(&[(PRIMARY, OLD)]);
        let packet = keys.seal(b"suspect node-b", me(), NOW);
        for i in 1 + KEY_ID_LEN..packet.len() {
            let mut altered = packet.clone();
            altered[i] ^= 0x01;
            assert_eq!(
                keys.open(&altered, me(), NOW, &mut guard()),
                Err(Rejected::BadMac),
                "byte {i} altered"
            );
        }
        let mut shortened = packet.clone();
        shortened.remove(HEADER_LEN);
        assert_eq!(
            keys.open(&shortened, me(), NOW, &mut guard()),
            Err(Rejected::BadMac)
        );
        assert_eq!(
            keys.open(&packet[..OVERHEAD - 1], me(), NOW, &mut guard()),
            Err(Rejected::Malformed)
        );
        let mut other_version = packet.clone();
        other_version[0] = 2;
        assert_eq!(
            keys.open(&other_version, me(), NOW, &mut guard()),
            Err(Rejected::Malformed)
        );
    }

    #[test]
    fn a_datagram_for_another_speaker_is_refused() {
        let keys = keys(&[(PRIMARY, OLD)]);
        let other: SocketAddr = "192.0.2.12:7946".parse().unwrap();
        let packet = keys.seal(b"ping", other, NOW);
        assert_eq!(
            keys.open(&packet, me(), NOW, &mut guard()),
            Err(Rejected::Misdirected { to: other })
        );
        // IPv6 speakers too.
        let v6: SocketAddr = "[2001:db8::11]:7946".parse().unwrap();
        let packet = keys.seal(b"ping", v6, NOW);
        assert!(keys.open(&packet, v6, NOW, &mut guard()).is_ok());
        assert_eq!(
            keys.open(&packet, me(), NOW, &mut guard()),
            Err(Rejected::Misdirected { to: v6 })
        );
    }

    #[test]
    fn a_datagram_dated_outside_the_window_is_refused() {
        let keys = keys(&[(PRIMARY, OLD)]);
        let window = WINDOW.as_millis() as u64;
        for (sent_at, accepted) in [
            (NOW - window, true),
            (NOW - window - 1, false),
            (NOW + window, true),
            (NOW + window + 1, false),
            (0, false),
        ] {
            let packet = keys.seal(b"ping", me(), sent_at);
            let opened = keys.open(&packet, me(), NOW, &mut guard());
            assert_eq!(opened.is_ok(), accepted, "sent at {sent_at}: {opened:?}");
            if !accepted {
                assert!(matches!(opened, Err(Rejected::OutsideWindow { .. })));
            }
        }
    }

    /// A replay is refused however late it comes: within the window it was remembered, after
    /// it the window refuses it, also when this node's clock steps back.
    #[test]
    fn a_replay_is_refused_after_the_window_moved_on_and_the_clock_stepped_back() {
        let keys = keys(&[(PRIMARY, OLD)]);
        let window = WINDOW.as_millis() as u64;
        let mut replays = guard();
        let packet = keys.seal(b"ping", me(), NOW);
        keys.open(&packet, me(), NOW, &mut replays).unwrap();
        // Much later, another datagram makes the guard forget the first.
        let later = NOW + 2 * window;
        let fresh = keys.seal(b"ping", me(), later);
        keys.open(&fresh, me(), later, &mut replays).unwrap();
        assert!(replays.seen.len() == 1);
        // This node's clock steps back to when the first was sent: still refused.
        assert!(matches!(
            keys.open(&packet, me(), NOW, &mut replays),
            Err(Rejected::OutsideWindow { .. })
        ));
    }

    #[test]
    fn the_guard_remembers_at_most_its_capacity_and_refuses_what_it_forgot() {
        let keys = keys(&[(PRIMARY, OLD)]);
        let mut replays = ReplayGuard::new(WINDOW, 3);
        let packets: Vec<Vec<u8>> = (0..5).map(|i| keys.seal(b"x", me(), NOW + i)).collect();
        for packet in &packets {
            keys.open(packet, me(), NOW + 10, &mut replays).unwrap();
        }
        assert_eq!(replays.seen.len(), 3);
        for packet in &packets {
            assert!(keys.open(packet, me(), NOW + 10, &mut replays).is_err());
        }
    }

    /// Rotation: every speaker first accepts the new key, then signs with it, then drops the
    /// old one; at each step a speaker one step behind or ahead still understands the others.
    #[test]
    fn during_a_rotation_each_step_understands_the_next() {
        let steps = [
            keys(&[(PRIMARY, OLD)]),
            keys(&[(PRIMARY, OLD), ("next", NEW)]),
            keys(&[(PRIMARY, NEW), ("previous", OLD)]),
            keys(&[(PRIMARY, NEW)]),
        ];
        for pair in steps.windows(2) {
            let [before, after] = pair else {
                unreachable!()
            };
            for (sender, receiver) in [(before, after), (after, before)] {
                let packet = sender.seal(b"ping", me(), NOW);
                assert!(
                    receiver.open(&packet, me(), NOW, &mut guard()).is_ok(),
                    "a speaker signing with {} refused by one accepting {:?}",
                    sender.signing(),
                    receiver.accepted().collect::<Vec<_>>()
                );
            }
        }
        // Skipping a step does not work: that is why there are three.
        let packet = steps[2].seal(b"ping", me(), NOW);
        assert!(steps[0].open(&packet, me(), NOW, &mut guard()).is_err());
    }

    #[test]
    fn the_primary_file_signs_and_every_file_is_accepted() {
        let keys = keys(&[("next", NEW), (PRIMARY, OLD), ("same", OLD)]);
        assert_eq!(keys.signing(), KeyId::of(OLD));
        let mut accepted: Vec<KeyId> = vec![KeyId::of(OLD), KeyId::of(NEW)];
        accepted.sort();
        assert_eq!(keys.accepted().collect::<Vec<_>>(), accepted);
    }

    #[test]
    fn a_key_set_without_primary_or_with_a_short_key_is_refused_with_its_name() {
        let entries = |list: &[(&str, &[u8])]| -> Vec<(String, Vec<u8>)> {
            list.iter()
                .map(|(n, k)| (n.to_string(), k.to_vec()))
                .collect()
        };
        let dir = Path::new("/etc/herald/gossip-key");
        let error = Keys::from_entries(dir, entries(&[("next", NEW)]))
            .err()
            .unwrap();
        let message = error.to_string();
        assert!(
            message.contains("\"primary\"")
                && message.contains("[\"next\"]")
                && message.contains("/etc/herald/gossip-key"),
            "{message}"
        );
        let error = Keys::from_entries(dir, entries(&[(PRIMARY, OLD), ("next", b"secret")]))
            .err()
            .unwrap();
        assert!(
            error.to_string().contains("\"next\"") && error.to_string().contains("6 bytes"),
            "{error}"
        );
    }

    /// The folder as kubelet mounts a Secret: `..data` links to a dated folder, and each key
    /// is a link into `..data`.
    #[test]
    fn keys_are_read_from_a_mounted_secret() {
        let dir = tempfile::tempdir().unwrap();
        let dated = dir.path().join("..2026_01_01_00_00_00.000000001");
        std::fs::create_dir(&dated).unwrap();
        std::fs::write(dated.join(PRIMARY), OLD).unwrap();
        std::fs::write(dated.join("next"), NEW).unwrap();
        std::os::unix::fs::symlink(&dated, dir.path().join("..data")).unwrap();
        for name in [PRIMARY, "next"] {
            std::os::unix::fs::symlink(Path::new("..data").join(name), dir.path().join(name))
                .unwrap();
        }
        let keys = Keys::read_dir(dir.path()).unwrap();
        assert_eq!(keys.signing(), KeyId::of(OLD));
        assert_eq!(keys.accepted().count(), 2);

        let missing = dir.path().join("absent");
        let error = Keys::read_dir(&missing).err().unwrap();
        assert!(
            error.to_string().contains(&missing.display().to_string()),
            "{error}"
        );
    }

    #[test]
    fn a_key_id_is_what_sha256sum_prints_first() {
        // printf %s 'the old key, 32 bytes long......' | sha256sum | cut -c1-16
        assert_eq!(KeyId::of(OLD).to_string(), "4ef19a6313171797");
    }
}
