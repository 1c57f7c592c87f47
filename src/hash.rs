//! SHA-256 that survives a restart.
//!
//! Uploads and imports hash bytes while they stream through and never read a file back. Between two
//! requests (or after a crash, or on another node) the running state is kept in the metadata store:
//! RustCrypto's `sha2` serializes its internal state (chaining value, block count and the partial block),
//! so continuing a hash costs nothing but the new bytes.

use sha2::digest::common::hazmat::{SerializableState, SerializedState};
use sha2::{Digest, Sha256};

/// The layout of a stored state: `sha2` 0.11's serialization.
const STATE_VERSION: u8 = 1;
/// Its length, which `sha2` fixes per algorithm.
const STATE_LEN: usize = <<Sha256 as SerializableState>::SerializedStateSize as sha2::digest::typenum::Unsigned>::USIZE;

/// A SHA-256 computation that can be saved and resumed.
#[derive(Clone, Default)]
pub struct ResumableSha256(Sha256);

impl ResumableSha256 {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn update(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    /// The digest of everything fed so far; the state itself stays usable.
    pub fn digest(&self) -> [u8; 32] {
        self.0.clone().finalize().into()
    }

    /// The state as bytes for the metadata store: a format version ([`STATE_VERSION`]), then `sha2`
    /// 0.11's own serialization. A state outlives the process that wrote it (an upload resumed after an
    /// upgrade, on another node), so a future change of `sha2`'s layout gets a new version, and the old
    /// one stays readable.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(1 + STATE_LEN);
        bytes.push(STATE_VERSION);
        bytes.extend_from_slice(&self.0.serialize());
        bytes
    }

    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        let serialized = match bytes {
            [STATE_VERSION, rest @ ..] if rest.len() == STATE_LEN => rest,
            // Written before the version byte (filegate 0.1, with the same `sha2` layout).
            legacy if legacy.len() == STATE_LEN => legacy,
            _ => return None,
        };
        let state = SerializedState::<Sha256>::try_from(serialized).ok()?;
        Sha256::deserialize(&state).ok().map(Self)
    }
}

impl std::fmt::Debug for ResumableSha256 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ResumableSha256(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_resumed_hash_equals_a_hash_in_one_pass() {
        let data: Vec<u8> = (0..10_000u32).map(|i| (i * 31 % 251) as u8).collect();
        let expected: [u8; 32] = Sha256::digest(&data).into();
        for split in [0, 1, 63, 64, 65, 4_095, 9_999, 10_000] {
            let mut first = ResumableSha256::new();
            first.update(&data[..split]);
            let mut resumed = ResumableSha256::from_bytes(&first.to_bytes()).unwrap();
            resumed.update(&data[split..]);
            assert_eq!(resumed.digest(), expected, "split at {split}");
        }
    }

    #[test]
    fn garbage_state_is_refused() {
        assert!(ResumableSha256::from_bytes(b"not a state").is_none());
    }

    #[test]
    fn states_carry_their_version_and_unversioned_ones_still_read() {
        let mut hasher = ResumableSha256::new();
        hasher.update(b"some bytes");
        let stored = hasher.to_bytes();
        assert_eq!((stored[0], stored.len()), (STATE_VERSION, 1 + STATE_LEN));
        let legacy = hasher.0.serialize().to_vec();
        assert_eq!(ResumableSha256::from_bytes(&legacy).unwrap().digest(), hasher.digest(), "written before versions");
        let mut future = stored.clone();
        future[0] = 2;
        assert!(ResumableSha256::from_bytes(&future).is_none(), "a layout this build does not know");
    }

    #[test]
    fn the_empty_digest_is_the_known_constant() {
        assert_eq!(
            hex::encode(ResumableSha256::new().digest()),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
