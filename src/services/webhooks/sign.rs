//! Signing as the Standard Webhooks specification says (<https://www.standardwebhooks.com>), so that its
//! libraries verify filegate's deliveries as they are: the secret is `whsec_` and base64 of random bytes;
//! `webhook-signature` is `v1,` and base64 of HMAC-SHA256(key, `{webhook-id}.{webhook-timestamp}.{body}`),
//! one such signature per live secret, separated by spaces (a rotated secret signs beside its successor).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit as _, Mac as _};
use rand::RngCore as _;
use sha2::Sha256;

/// The prefix of every signing secret.
const PREFIX: &str = "whsec_";
/// Random bytes in a secret (the specification asks for 24 to 64).
const SECRET_BYTES: usize = 32;

/// A new signing secret.
pub fn new_secret() -> String {
    let mut key = [0u8; SECRET_BYTES];
    rand::thread_rng().fill_bytes(&mut key);
    format!("{PREFIX}{}", STANDARD.encode(key))
}

/// The `webhook-signature` header: one `v1,…` per secret.
pub fn signature(secrets: &[&str], id: &str, timestamp: i64, body: &[u8]) -> String {
    secrets.iter().map(|secret| format!("v1,{}", sign_one(secret, id, timestamp, body))).collect::<Vec<_>>().join(" ")
}

fn sign_one(secret: &str, id: &str, timestamp: i64, body: &[u8]) -> String {
    // Secrets are filegate's own (`new_secret`): a stored one that does not decode is signed with its bytes
    // as they are rather than not at all, and no receiver will accept it (which says something is wrong).
    let encoded = secret.strip_prefix(PREFIX).unwrap_or(secret);
    let key = STANDARD.decode(encoded).unwrap_or_else(|_| encoded.as_bytes().to_vec());
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).expect("HMAC takes a key of any length");
    mac.update(format!("{id}.{timestamp}.").as_bytes());
    mac.update(body);
    STANDARD.encode(mac.finalize().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_match_the_specification_s_example() {
        // The example of the Standard Webhooks specification (and of its libraries' tests).
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let body = br#"{"test": 2432232314}"#;
        assert_eq!(
            signature(&[secret], "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }

    #[test]
    fn every_live_secret_signs_and_new_secrets_differ() {
        let (a, b) = (new_secret(), new_secret());
        assert!(a.starts_with("whsec_") && a != b);
        assert_eq!(STANDARD.decode(&a[6..]).unwrap().len(), SECRET_BYTES);
        let both = signature(&[&a, &b], "msg_1", 1, b"{}");
        let parts: Vec<&str> = both.split(' ').collect();
        assert_eq!(parts, [signature(&[&a], "msg_1", 1, b"{}"), signature(&[&b], "msg_1", 1, b"{}")]);
    }
}
