//! Node keys, fingerprints and invite codes.
//!
//! * [`Keypair`]: the X25519 static key a node uses in its Noise handshakes (see
//!   the transport). The owner node's key is what an FI pins; the FI's key is what the
//!   owner registers for a principal at pairing.
//! * [`fingerprint`]: a short, typeable name for a public key, carried in invite codes and shown
//!   to people who compare keys.
//! * [`InviteCode`]: the code an owner gives an FI out of band,
//!   `duo1-{id}-{secret}-{fingerprint}`. The id names the invite on the owner node, the secret
//!   (128 bits) is turned into the pre-shared key of the pairing handshake ([`InviteCode::psk`]),
//!   and the fingerprint pins the owner node's key.
//!
//! All text encodings here use the RFC 4648 base32 alphabet in lower case, without padding.
//! Parsing accepts upper case too and ignores surrounding whitespace.

use std::fmt;

use data_encoding::{BASE32_NOPAD, HEXLOWER, HEXLOWER_PERMISSIVE};
use rand::RngCore;
use sha2::{Digest, Sha256};
use snow::resolvers::{CryptoResolver, DefaultResolver};
use zeroize::{Zeroize, Zeroizing};

/// Domain separation prefix of [`fingerprint`].
/// Noise protocol name of sessions between paired keys (transport version 2).
pub const SESSION_NOISE_PARAMS: &str = "Noise_XX_25519_AESGCM_SHA256";
/// Noise protocol name of pairing handshakes (transport version 2; PSK = the invite's pre-shared key).
pub const PAIRING_NOISE_PARAMS: &str = "Noise_XXpsk3_25519_AESGCM_SHA256";
/// Noise protocol name of sessions in transport version 1.
pub const SESSION_NOISE_PARAMS_V1: &str = "Noise_XX_25519_ChaChaPoly_SHA256";
/// Noise protocol name of pairing handshakes in transport version 1.
pub const PAIRING_NOISE_PARAMS_V1: &str = "Noise_XXpsk3_25519_ChaChaPoly_SHA256";

/// The Noise protocol name of transport `version` (1 or 2) for a session or, with `pair`, a pairing
/// handshake; `None` for a version this implementation does not speak. Version 2 differs from version 1 only
/// in its cipher: AES-256-GCM in place of ChaCha20-Poly1305.
pub fn noise_protocol_name(version: u32, pair: bool) -> Option<&'static str> {
    match (version, pair) {
        (1, false) => Some(SESSION_NOISE_PARAMS_V1),
        (1, true) => Some(PAIRING_NOISE_PARAMS_V1),
        (2, false) => Some(SESSION_NOISE_PARAMS),
        (2, true) => Some(PAIRING_NOISE_PARAMS),
        _ => None,
    }
}

const FINGERPRINT_DOMAIN: &[u8] = b"duo fingerprint v1";
/// Domain separation prefix of [`psk_from_secret`].
const PSK_DOMAIN: &[u8] = b"duo invite psk v1";
/// Number of hash bytes kept in a fingerprint (160 bits, 32 base32 characters).
const FINGERPRINT_BYTES: usize = 20;
/// Length in characters of a fingerprint.
pub const FINGERPRINT_LEN: usize = 32;
/// Length in characters of an invite id (40 random bits).
pub const INVITE_ID_LEN: usize = 8;
/// Length in characters of an invite secret (128 random bits).
pub const INVITE_SECRET_LEN: usize = 26;
/// Prefix (format version) of an invite code.
pub const INVITE_PREFIX: &str = "duo1";
/// First line of a key file written by [`Keypair::to_file_bytes`].
const KEY_FILE_HEADER: &str = "duo node key v1";

/// Errors about keys, key files and invite codes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// The key file could not be read as a Duo key file.
    #[error("the key file is not a valid Duo key file: {0}; restore it from a backup or create a new key")]
    KeyFile(String),
    /// The cryptographic library could not produce a key (should not happen on a supported platform).
    #[error("could not create an X25519 key: {0}")]
    KeyGeneration(String),
    /// The invite code does not start with `duo1-`.
    #[error("this is not a Duo invite code: it should start with \"duo1-\"; check that the whole code was copied")]
    InviteWrongPrefix,
    /// The invite code does not have four dash-separated parts.
    #[error("the invite code should have 4 parts separated by '-' (duo1-ID-SECRET-FINGERPRINT), found {found}; check that the whole code was copied")]
    InvitePartCount {
        /// Number of parts found.
        found: usize,
    },
    /// One part of the invite code has the wrong length.
    #[error("the {part} of the invite code should be {expected} characters long, found {found}; check that the whole code was copied")]
    InviteLength {
        /// Which part: "id", "secret" or "fingerprint".
        part: &'static str,
        /// Expected number of characters.
        expected: usize,
        /// Number of characters found.
        found: usize,
    },
    /// One part of the invite code has characters outside the base32 alphabet (a-z, 2-7).
    #[error("the {part} of the invite code has characters other than a-z and 2-7 (or an impossible last character); check for typos such as 0/o or 1/l")]
    InviteCharacters {
        /// Which part: "id", "secret" or "fingerprint".
        part: &'static str,
    },
}

/// An X25519 static key pair for the Noise handshakes of the transport.
///
/// The secret half is zeroed when the value is dropped and never printed by `Debug`.
#[derive(Clone)]
pub struct Keypair {
    /// The public key, sent in handshakes and pinned by the peer.
    pub public: [u8; 32],
    secret: Zeroizing<[u8; 32]>,
}

impl Keypair {
    /// Generates a fresh key pair with the operating system's random source (through snow's
    /// default resolver, with the parameters of the transport).
    ///
    /// # Panics
    /// Only if [`Keypair::try_generate`] fails, that is if the platform has no random source
    /// or snow's default resolver lacks X25519; neither happens on a supported platform (and
    /// `rand` panics in the first case too). Input never reaches this function.
    pub fn generate() -> Keypair {
        Self::try_generate().expect("snow's default resolver provides X25519 and an OS RNG")
    }

    /// Like [`Keypair::generate`], returning an error instead of panicking.
    ///
    /// # Errors
    /// [`KeyError::KeyGeneration`] if snow cannot provide X25519 (not expected with the default
    /// resolver).
    pub fn try_generate() -> Result<Keypair, KeyError> {
        let params: snow::params::NoiseParams = SESSION_NOISE_PARAMS
            .parse()
            .map_err(|e: snow::Error| KeyError::KeyGeneration(e.to_string()))?;
        let mut kp = snow::Builder::new(params)
            .generate_keypair()
            .map_err(|e| KeyError::KeyGeneration(e.to_string()))?;
        let result = Self::from_parts(&kp.private, &kp.public);
        kp.private.zeroize();
        result
    }

    /// Rebuilds a key pair from its secret half, deriving the public half.
    ///
    /// # Errors
    /// [`KeyError::KeyGeneration`] if snow cannot provide X25519.
    pub fn from_secret(secret: [u8; 32]) -> Result<Keypair, KeyError> {
        let secret = Zeroizing::new(secret);
        let public = derive_public(&secret)?;
        Ok(Keypair { public, secret })
    }

    fn from_parts(private: &[u8], public: &[u8]) -> Result<Keypair, KeyError> {
        let mut secret = Zeroizing::new([0u8; 32]);
        let mut public_arr = [0u8; 32];
        if private.len() != 32 || public.len() != 32 {
            return Err(KeyError::KeyGeneration("unexpected key length".into()));
        }
        secret.copy_from_slice(private);
        public_arr.copy_from_slice(public);
        Ok(Keypair {
            public: public_arr,
            secret,
        })
    }

    /// The secret half (for the Noise handshake). Do not log or send it.
    pub fn secret(&self) -> &[u8; 32] {
        &self.secret
    }

    /// The [`fingerprint`] of the public half.
    pub fn fingerprint(&self) -> String {
        fingerprint(&self.public)
    }

    /// Serializes the key pair for a key file (which must be private to its owner: mode 0600).
    ///
    /// The format is three lines of UTF-8 text, each ending in `\n`:
    /// ```text
    /// duo node key v1
    /// public: <64 lowercase hex digits>
    /// secret: <64 lowercase hex digits>
    /// ```
    /// The returned buffer is zeroed when dropped.
    pub fn to_file_bytes(&self) -> Zeroizing<Vec<u8>> {
        let mut out = Zeroizing::new(Vec::with_capacity(160));
        out.extend_from_slice(KEY_FILE_HEADER.as_bytes());
        out.extend_from_slice(b"\npublic: ");
        out.extend_from_slice(HEXLOWER.encode(&self.public).as_bytes());
        out.extend_from_slice(b"\nsecret: ");
        let secret_hex = Zeroizing::new(HEXLOWER.encode(self.secret.as_slice()));
        out.extend_from_slice(secret_hex.as_bytes());
        out.push(b'\n');
        out
    }

    /// Parses a key file written by [`Keypair::to_file_bytes`]. Line order of `public:` and
    /// `secret:` is free, `\r\n` line ends, surrounding whitespace and upper-case hex are
    /// accepted. The public key must match the one derived from the secret.
    ///
    /// # Errors
    /// [`KeyError::KeyFile`] describing what is wrong.
    pub fn from_file_bytes(bytes: &[u8]) -> Result<Keypair, KeyError> {
        let text = std::str::from_utf8(bytes)
            .map_err(|_| KeyError::KeyFile("it is not UTF-8 text".into()))?;
        let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
        if lines.next() != Some(KEY_FILE_HEADER) {
            return Err(KeyError::KeyFile(format!(
                "the first line should be \"{KEY_FILE_HEADER}\""
            )));
        }
        let mut public: Option<[u8; 32]> = None;
        let mut secret: Option<Zeroizing<[u8; 32]>> = None;
        for line in lines {
            let (name, value) = line
                .split_once(':')
                .ok_or_else(|| KeyError::KeyFile("a line has no ':'".into()))?;
            let value = value.trim();
            match name.trim() {
                "public" if public.is_none() => public = Some(*decode_hex32(value, "public")?),
                "secret" if secret.is_none() => secret = Some(decode_hex32(value, "secret")?),
                "public" | "secret" => {
                    return Err(KeyError::KeyFile(format!(
                        "the \"{}\" line appears twice",
                        name.trim()
                    )))
                }
                _ => return Err(KeyError::KeyFile("unknown line".into())),
            }
        }
        let public = public.ok_or_else(|| KeyError::KeyFile("no \"public:\" line".into()))?;
        let secret = secret.ok_or_else(|| KeyError::KeyFile("no \"secret:\" line".into()))?;
        let derived = derive_public(&secret)?;
        if derived != public {
            return Err(KeyError::KeyFile(
                "the public key does not match the secret key (the file is corrupted)".into(),
            ));
        }
        Ok(Keypair { public, secret })
    }
}

impl fmt::Debug for Keypair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keypair")
            .field("fingerprint", &self.fingerprint())
            .field("secret", &"<redacted>")
            .finish()
    }
}

fn decode_hex32(value: &str, what: &str) -> Result<Zeroizing<[u8; 32]>, KeyError> {
    let bad = || KeyError::KeyFile(format!("the {what} key is not 64 hex digits"));
    if value.len() != 64 {
        return Err(bad());
    }
    let mut out = Zeroizing::new([0u8; 32]);
    HEXLOWER_PERMISSIVE
        .decode_mut(value.as_bytes(), out.as_mut_slice())
        .map_err(|_| bad())?;
    Ok(out)
}

fn derive_public(secret: &[u8; 32]) -> Result<[u8; 32], KeyError> {
    let mut dh = DefaultResolver
        .resolve_dh(&snow::params::DHChoice::Curve25519)
        .ok_or_else(|| KeyError::KeyGeneration("X25519 is not available".into()))?;
    dh.set(secret);
    let pk = dh.pubkey();
    let mut public = [0u8; 32];
    if pk.len() != 32 {
        return Err(KeyError::KeyGeneration(
            "unexpected public key length".into(),
        ));
    }
    public.copy_from_slice(pk);
    Ok(public)
}

/// Encodes bytes as lowercase base32 without padding.
fn b32(bytes: &[u8]) -> String {
    let mut s = BASE32_NOPAD.encode(bytes);
    s.make_ascii_lowercase();
    s
}

/// The fingerprint of a public key: lowercase base32 (RFC 4648 alphabet, no padding) of the first
/// 20 bytes of `SHA-256("duo fingerprint v1" || public)`; always 32 characters.
pub fn fingerprint(public: &[u8; 32]) -> String {
    let digest = Sha256::new()
        .chain_update(FINGERPRINT_DOMAIN)
        .chain_update(public)
        .finalize();
    b32(&digest[..FINGERPRINT_BYTES])
}

/// Normalizes a fingerprint typed or pasted by a person (trims whitespace, lowercases) and checks
/// its shape: `Some(normalized)` if it is 32 base32 characters decoding to 20 bytes.
pub fn normalize_fingerprint(s: &str) -> Option<String> {
    let s = s.trim().to_ascii_lowercase();
    check_b32(&s, FINGERPRINT_LEN, "fingerprint").ok()?;
    Some(s)
}

/// Checks that `s` (already lowercase) is `len` base32 characters with a canonical encoding.
fn check_b32(s: &str, len: usize, part: &'static str) -> Result<(), KeyError> {
    if s.len() != len {
        return Err(KeyError::InviteLength {
            part,
            expected: len,
            found: s.chars().count(),
        });
    }
    let upper = Zeroizing::new(s.to_ascii_uppercase());
    let decoded = BASE32_NOPAD
        .decode(upper.as_bytes())
        .map_err(|_| KeyError::InviteCharacters { part })?;
    let _ = Zeroizing::new(decoded);
    Ok(())
}

/// The pre-shared key of a pairing handshake: `SHA-256("duo invite psk v1" || id || secret)`,
/// with `id` and `secret` in lowercase (they are lowercased here).
///
/// The owner node computes this when it creates an invite and stores only the result (never the
/// secret); the FI computes it from the invite code ([`InviteCode::psk`]).
pub fn psk_from_secret(id: &str, secret: &str) -> [u8; 32] {
    let id = id.to_ascii_lowercase();
    let secret = Zeroizing::new(secret.to_ascii_lowercase());
    Sha256::new()
        .chain_update(PSK_DOMAIN)
        .chain_update(id.as_bytes())
        .chain_update(secret.as_bytes())
        .finalize()
        .into()
}

/// An invite code, `duo1-{id}-{secret}-{fingerprint}` (all lowercase base32).
///
/// `Debug` never prints the secret; `Display` (and `to_string()`) prints the whole code, which
/// is meant to be given to the FI out of band.
#[derive(Clone, PartialEq, Eq)]
pub struct InviteCode {
    /// The invite id: 8 base32 characters (40 random bits), names the invite on the owner node.
    pub id: String,
    /// The invite secret: 26 base32 characters (128 random bits).
    pub secret: Zeroizing<String>,
    /// The [`fingerprint`] of the owner node's public key.
    pub fingerprint: String,
}

impl InviteCode {
    /// Generates a fresh invite for the owner node whose public key is `owner_public`.
    pub fn generate(owner_public: &[u8; 32]) -> InviteCode {
        let mut rng = rand::rng();
        let mut id = [0u8; 5];
        rng.fill_bytes(&mut id);
        let mut secret = Zeroizing::new([0u8; 16]);
        rng.fill_bytes(secret.as_mut_slice());
        InviteCode {
            id: b32(&id),
            secret: Zeroizing::new(b32(secret.as_slice())),
            fingerprint: fingerprint(owner_public),
        }
    }

    /// Parses an invite code: surrounding whitespace is ignored and letters may be in any case.
    ///
    /// # Errors
    /// A [`KeyError`] `Invite*` variant saying what is wrong (prefix, number of parts, length or
    /// characters of a part).
    pub fn parse(s: &str) -> Result<InviteCode, KeyError> {
        let code = Zeroizing::new(s.trim().to_ascii_lowercase());
        let parts: Vec<&str> = code.split('-').collect();
        if parts.first().copied() != Some(INVITE_PREFIX) {
            return Err(KeyError::InviteWrongPrefix);
        }
        let [_, id, secret, fp] = parts.as_slice() else {
            return Err(KeyError::InvitePartCount { found: parts.len() });
        };
        check_b32(id, INVITE_ID_LEN, "id")?;
        check_b32(secret, INVITE_SECRET_LEN, "secret")?;
        check_b32(fp, FINGERPRINT_LEN, "fingerprint")?;
        Ok(InviteCode {
            id: (*id).to_owned(),
            secret: Zeroizing::new((*secret).to_owned()),
            fingerprint: (*fp).to_owned(),
        })
    }

    /// The pre-shared key for the pairing handshake, [`psk_from_secret`] of this code.
    pub fn psk(&self) -> [u8; 32] {
        psk_from_secret(&self.id, &self.secret)
    }
}

impl fmt::Display for InviteCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{INVITE_PREFIX}-{}-{}-{}",
            self.id,
            self.secret.as_str(),
            self.fingerprint
        )
    }
}

impl fmt::Debug for InviteCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InviteCode")
            .field("id", &self.id)
            .field("secret", &"<redacted>")
            .field("fingerprint", &self.fingerprint)
            .finish()
    }
}

impl std::str::FromStr for InviteCode {
    type Err = KeyError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        InviteCode::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn generate_gives_distinct_consistent_keys() {
        let a = Keypair::generate();
        let b = Keypair::generate();
        assert_ne!(a.public, b.public);
        assert_ne!(a.secret(), b.secret());
        // The public half is the X25519 public key of the secret half.
        let again = Keypair::from_secret(*a.secret()).unwrap();
        assert_eq!(again.public, a.public);
    }

    #[test]
    fn key_file_round_trip_and_errors() {
        let kp = Keypair::generate();
        let bytes = kp.to_file_bytes();
        let text = std::str::from_utf8(&bytes).unwrap();
        assert!(text.starts_with("duo node key v1\npublic: "));
        let back = Keypair::from_file_bytes(&bytes).unwrap();
        assert_eq!(back.public, kp.public);
        assert_eq!(back.secret(), kp.secret());

        // CRLF, reordered lines and upper-case hex are accepted.
        let pub_hex = HEXLOWER.encode(&kp.public).to_uppercase();
        let sec_hex = HEXLOWER.encode(kp.secret());
        let alt = format!("duo node key v1\r\nsecret: {sec_hex}\r\npublic: {pub_hex}\r\n");
        assert_eq!(
            Keypair::from_file_bytes(alt.as_bytes()).unwrap().public,
            kp.public
        );

        // A public key that does not match the secret is refused.
        let other = Keypair::generate();
        let bad = format!(
            "duo node key v1\npublic: {}\nsecret: {sec_hex}\n",
            HEXLOWER.encode(&other.public)
        );
        assert!(matches!(
            Keypair::from_file_bytes(bad.as_bytes()),
            Err(KeyError::KeyFile(_))
        ));
        for junk in [
            &b""[..],
            b"\xff\xfe",
            b"duo node key v2\n",
            b"duo node key v1\npublic: 00\nsecret: 00\n",
            b"duo node key v1\npublic\n",
        ] {
            assert!(matches!(
                Keypair::from_file_bytes(junk),
                Err(KeyError::KeyFile(_))
            ));
        }
        let dup = format!("duo node key v1\nsecret: {sec_hex}\nsecret: {sec_hex}\n");
        assert!(Keypair::from_file_bytes(dup.as_bytes()).is_err());
    }

    #[test]
    fn debug_never_shows_secrets() {
        let kp = Keypair::generate();
        let dbg = format!("{kp:?}");
        assert!(!dbg.contains(&HEXLOWER.encode(kp.secret())));
        assert!(!dbg.contains(&format!("{:?}", kp.secret())));
        assert!(dbg.contains(&kp.fingerprint()));

        let code = InviteCode::generate(&kp.public);
        let dbg = format!("{code:?}");
        assert!(!dbg.contains(code.secret.as_str()));
        assert!(dbg.contains(&code.id));
    }

    #[test]
    fn fingerprint_is_lowercase_base32_of_domain_hash() {
        let public = [7u8; 32];
        let fp = fingerprint(&public);
        assert_eq!(fp.len(), FINGERPRINT_LEN);
        assert!(fp.chars().all(|c| matches!(c, 'a'..='z' | '2'..='7')));
        let mut h = Sha256::new();
        h.update(b"duo fingerprint v1");
        h.update(public);
        let digest = h.finalize();
        let expected = BASE32_NOPAD.encode(&digest[..20]).to_lowercase();
        assert_eq!(fp, expected);
        assert_ne!(fingerprint(&[8u8; 32]), fp);
        assert_eq!(
            normalize_fingerprint(&format!("  {} ", fp.to_uppercase())),
            Some(fp)
        );
        assert_eq!(normalize_fingerprint("abc"), None);
    }

    #[test]
    fn invite_round_trip() {
        let kp = Keypair::generate();
        let code = InviteCode::generate(&kp.public);
        assert_eq!(code.id.len(), INVITE_ID_LEN);
        assert_eq!(code.secret.len(), INVITE_SECRET_LEN);
        assert_eq!(code.fingerprint, kp.fingerprint());
        let s = code.to_string();
        assert!(s.starts_with("duo1-"));
        assert_eq!(s.len(), 5 + 8 + 1 + 26 + 1 + 32);
        let parsed = InviteCode::parse(&s).unwrap();
        assert_eq!(parsed, code);
        let shouted = format!("\n  {}  \t", s.to_uppercase());
        assert_eq!(InviteCode::parse(&shouted).unwrap(), code);
        assert_eq!(parsed.psk(), code.psk());
        assert_eq!(code.psk(), psk_from_secret(&code.id, &code.secret));
        let other = InviteCode::generate(&kp.public);
        assert_ne!(other.id, code.id);
        assert_ne!(other.psk(), code.psk());
    }

    #[test]
    fn psk_matches_definition() {
        let mut h = Sha256::new();
        h.update(b"duo invite psk v1");
        h.update(b"abcdefgh");
        h.update(b"abcdefghijklmnopqrstuvwxyz");
        let expected: [u8; 32] = h.finalize().into();
        assert_eq!(
            psk_from_secret("abcdefgh", "abcdefghijklmnopqrstuvwxyz"),
            expected
        );
        assert_eq!(
            psk_from_secret("ABCDEFGH", "ABCDEFGHIJKLMNOPQRSTUVWXYZ"),
            expected
        );
    }

    #[test]
    fn invite_parse_errors() {
        let kp = Keypair::generate();
        let good = InviteCode::generate(&kp.public).to_string();
        let parts: Vec<&str> = good.split('-').collect();
        let (id, secret, fp) = (parts[1], parts[2], parts[3]);

        assert_eq!(
            InviteCode::parse(&good.replacen("duo1", "duo2", 1)),
            Err(KeyError::InviteWrongPrefix)
        );
        assert_eq!(InviteCode::parse(""), Err(KeyError::InviteWrongPrefix));
        assert_eq!(
            InviteCode::parse(&format!("duo1-{id}-{secret}")),
            Err(KeyError::InvitePartCount { found: 3 })
        );
        assert_eq!(
            InviteCode::parse(&format!("{good}-x")),
            Err(KeyError::InvitePartCount { found: 5 })
        );
        assert_eq!(
            InviteCode::parse(&format!("duo1-{}-{secret}-{fp}", &id[..7])),
            Err(KeyError::InviteLength {
                part: "id",
                expected: 8,
                found: 7
            })
        );
        assert!(matches!(
            InviteCode::parse(&format!("duo1-{id}-{secret}a-{fp}")),
            Err(KeyError::InviteLength { part: "secret", .. })
        ));
        assert!(matches!(
            InviteCode::parse(&format!("duo1-{id}-{secret}-{}", &fp[1..])),
            Err(KeyError::InviteLength {
                part: "fingerprint",
                ..
            })
        ));
        // '0', '1', '8' are not base32 characters.
        let bad_id = format!("0{}", &id[1..]);
        assert_eq!(
            InviteCode::parse(&format!("duo1-{bad_id}-{secret}-{fp}")),
            Err(KeyError::InviteCharacters { part: "id" })
        );
        let bad_secret = format!("{}1", &secret[..25]);
        assert_eq!(
            InviteCode::parse(&format!("duo1-{id}-{bad_secret}-{fp}")),
            Err(KeyError::InviteCharacters { part: "secret" })
        );
        // A last secret character with non-zero trailing bits is not a canonical encoding.
        let noncanon = format!("{}b", &secret[..25]);
        assert_eq!(
            InviteCode::parse(&format!("duo1-{id}-{noncanon}-{fp}")),
            Err(KeyError::InviteCharacters { part: "secret" })
        );
        // Multi-byte characters never panic and are rejected.
        assert!(InviteCode::parse(&format!("duo1-ééééé-{secret}-{fp}")).is_err());
    }

    proptest! {
        #[test]
        fn parse_never_panics(s in ".{0,120}") {
            let _ = InviteCode::parse(&s);
            let _ = Keypair::from_file_bytes(s.as_bytes());
            let _ = normalize_fingerprint(&s);
        }

        #[test]
        fn parse_of_mutated_code_never_panics(idx in 0usize..72, c in any::<char>()) {
            let kp = Keypair::from_secret([3u8; 32]).unwrap();
            let code = InviteCode::generate(&kp.public).to_string();
            let mut chars: Vec<char> = code.chars().collect();
            if idx < chars.len() { chars[idx] = c; }
            let mutated: String = chars.into_iter().collect();
            if let Ok(parsed) = InviteCode::parse(&mutated) {
                prop_assert_eq!(parsed.to_string(), mutated.trim().to_ascii_lowercase());
            }
        }
    }
}
