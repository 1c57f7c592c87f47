//! SHA-256 on the client side: of local files (what an upload sends, what a download already has) and as
//! the server reports it.

use serde_json::Value;
use sha2::{Digest as _, Sha256};
use tokio::io::{AsyncReadExt as _, AsyncSeekExt as _};

use super::remote::CliResult;

const MIB: u64 = 1024 * 1024;

/// The SHA-256 state after the first `len` bytes of the file, read in 1 MiB pieces.
pub async fn hash_prefix(file: &mut tokio::fs::File, len: u64) -> CliResult<Sha256> {
    file.seek(std::io::SeekFrom::Start(0)).await?;
    let mut hasher = Sha256::new();
    let mut left = len;
    let mut piece = vec![0; MIB as usize];
    while left > 0 {
        let want = usize::try_from(left.min(MIB)).expect("at most 1 MiB");
        file.read_exact(&mut piece[..want]).await?;
        hasher.update(&piece[..want]);
        left -= want as u64;
    }
    Ok(hasher)
}

/// The server's `sha256Hash` (base64 of the 32 bytes, as filegate sends it, or of their 64 hex digits, as
/// Google does) as lowercase hex.
pub fn sha256_hex_of(file: &Value) -> Option<String> {
    use base64::Engine as _;
    let decoded = base64::engine::general_purpose::STANDARD.decode(file["sha256Hash"].as_str()?).ok()?;
    match decoded.len() {
        32 => Some(hex::encode(decoded)),
        64 => String::from_utf8(decoded).ok().map(|hex| hex.to_ascii_lowercase()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_spellings_of_the_digest_are_read() {
        let raw = [0xabu8; 32];
        let hex = "ab".repeat(32);
        use base64::Engine as _;
        let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
        assert_eq!(sha256_hex_of(&serde_json::json!({"sha256Hash": b64(&raw)})), Some(hex.clone()));
        assert_eq!(sha256_hex_of(&serde_json::json!({"sha256Hash": b64(hex.as_bytes())})), Some(hex));
        assert_eq!(sha256_hex_of(&serde_json::json!({})), None);
    }

    #[tokio::test]
    async fn a_prefix_hashes_like_the_same_bytes() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("f");
        let bytes: Vec<u8> = (0..3 * MIB as usize + 5).map(|i| (i % 251) as u8).collect();
        std::fs::write(&path, &bytes).unwrap();
        let mut file = tokio::fs::File::open(&path).await.unwrap();
        let got = hash_prefix(&mut file, 2 * MIB + 3).await.unwrap().finalize();
        assert_eq!(got, Sha256::digest(&bytes[..2 * MIB as usize + 3]));
    }
}
