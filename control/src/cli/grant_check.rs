//! `jitgate grant inspect` and `jitgate grant check`: answering "why was
//! this request denied?" offline, with the same code the proxy runs.

use vectors::VectorFile;

/// Decides every case of a file in the spec's vector format with the
/// proxy's own decision code: one `(name, outcome code)` each.
pub fn check(file: &VectorFile) -> anyhow::Result<Vec<(String, &'static str)>> {
    let verifier = file.verifier()?;
    file.cases
        .iter()
        .map(|case| Ok((case.name.clone(), case.decide(&verifier)?.code())))
        .collect()
}

/// Decodes a token for people, marked as not verified.
pub fn inspect(token: &str) -> anyhow::Result<String> {
    let parts = grant::token::decode_unverified(token).map_err(|o| anyhow::anyhow!("{}: {}", o.code(), o.message()))?;
    let pretty = |json: &str| {
        serde_json::from_str::<serde_json::Value>(json)
            .ok()
            .and_then(|v| serde_json::to_string_pretty(&v).ok())
            .unwrap_or_else(|| json.to_owned())
    };
    let claims: serde_json::Value = serde_json::from_str(&parts.claims_json).unwrap_or_default();
    let when = |k: &str| {
        claims
            .get(k)
            .and_then(serde_json::Value::as_i64)
            .map(|t| format!("{k}: {t} ({} s from now)", t - now()))
    };
    let mut out = String::from("NOT VERIFIED: decoded only; the signature, issuer and times were not checked.\n\n");
    out.push_str(&format!(
        "header:\n{}\n\nclaims:\n{}\n\n",
        pretty(&parts.header_json),
        pretty(&parts.claims_json)
    ));
    for line in ["iat", "nbf", "exp"].iter().filter_map(|k| when(k)) {
        out.push_str(&line);
        out.push('\n');
    }
    out.push_str(&format!("signature: {} bytes\n", parts.signature_len));
    Ok(out)
}

fn now() -> i64 {
    crate::clock::Clock::now_s(&crate::clock::SystemClock)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_spec_vector_is_decided_as_expected() {
        let file = VectorFile::spec();
        let results = check(&file).unwrap();
        assert_eq!(results.len(), 109);
        for (case, (name, code)) in file.cases.iter().zip(results) {
            assert_eq!(case.name, name);
            assert_eq!(case.expect.as_deref(), Some(code), "{name}");
        }
    }

    #[test]
    fn inspect_marks_the_token_unverified() {
        let text = vectors::SPEC_VECTORS;
        let v: serde_json::Value = serde_json::from_str(text).unwrap();
        let token = v["cases"][0]["token"].as_str().unwrap();
        let out = inspect(token).unwrap();
        assert!(out.starts_with("NOT VERIFIED"));
        assert!(out.contains("\"sub\": \"alice@example.com\""));
        assert!(inspect("not-a-token").is_err());
    }
}
