//! The `jitgate` command's subcommands that run locally: checking grants
//! offline, generating keys, minting development tokens, signing in.

pub mod bind_cert;
pub mod client;
pub mod duration;
pub mod grant_check;
pub mod login;

use std::fmt::Write as _;

use base64::Engine;

/// `jitgate keys generate`: a new kid and 256-bit secret, printed in the
/// forms the control TOML and the filter JSON take.
pub fn generate_key(kid: Option<String>) -> anyhow::Result<String> {
    let mut secret = [0u8; 32];
    getrandom::getrandom(&mut secret).map_err(|e| anyhow::anyhow!("no OS randomness: {e}"))?;
    let secret = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret);
    let kid = kid.unwrap_or_else(|| {
        let now = crate::clock::SystemClock;
        let days = crate::clock::Clock::now_s(&now) / 86_400;
        format!("k{days}")
    });
    grant::SigningKey::from_base64url(&kid, &secret)?;
    let mut out = String::new();
    writeln!(out, "kid:    {kid}")?;
    writeln!(out, "secret: {secret}")?;
    writeln!(out)?;
    writeln!(
        out,
        "# control (jitgate.toml); set active = true once every proxy has the key"
    )?;
    writeln!(
        out,
        "[[keys]]\nkid = \"{kid}\"\nsecret = {{ env = \"JITGATE_KEY_{}\" }}",
        kid.to_uppercase().replace(['-', '.'], "_")
    )?;
    writeln!(out)?;
    writeln!(out, "# filter plugin configuration (JSON), under \"keys\"")?;
    writeln!(out, "\"{kid}\": \"{secret}\"")?;
    Ok(out)
}

/// `jitgate audit keygen`: a new Ed25519 key pair for signing audit
/// checkpoints, in the note formats `[audit] signing_key` and
/// `jitgate audit verify --public-key` take.
pub fn audit_keygen(name: &str) -> anyhow::Result<String> {
    let mut seed = [0u8; 32];
    getrandom::getrandom(&mut seed).map_err(|e| anyhow::anyhow!("no OS randomness: {e}"))?;
    let signer = crate::audit::checkpoint::CheckpointSigner::generate(name, seed)?;
    let mut out = String::new();
    writeln!(out, "# private key: for the service only, never in the database")?;
    writeln!(out, "# [audit] signing_key = {{ file = \"/etc/jitgate/audit.key\" }}")?;
    writeln!(out, "{}", signer.private_text())?;
    writeln!(out)?;
    writeln!(
        out,
        "# public key: for auditors and witnesses (jitgate audit verify --public-key)"
    )?;
    writeln!(out, "{}", signer.verifier().text())?;
    Ok(out)
}
