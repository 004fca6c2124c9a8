//! `jitgate request --bind-cert`: the RFC 8705 `x5t#S256` thumbprint of a
//! client certificate (unpadded base64url SHA-256 of its DER form), read
//! from a PEM file, for a request whose grant is bound to that certificate.

use base64::Engine as _;
use sha2::{Digest, Sha256};

/// Why a certificate file gives no thumbprint.
#[derive(Debug, thiserror::Error)]
pub enum BindCertError {
    /// Not PEM at all.
    #[error("--bind-cert: not a PEM file: {0}")]
    NotPem(#[from] pem::PemError),
    /// No certificate in it (no PEM block, or a key, a CSR...).
    #[error("--bind-cert: the file holds no PEM CERTIFICATE block (found {0:?})")]
    NoCertificate(Vec<String>),
    /// More than one certificate: which one the client presents is unclear.
    #[error("--bind-cert: the PEM file holds {0} certificates; give the client certificate alone")]
    Several(usize),
}

/// The `x5t#S256` of the one certificate in `pem_text`.
pub fn thumbprint(pem_text: &[u8]) -> Result<String, BindCertError> {
    let blocks = pem::parse_many(pem_text)?;
    let certs: Vec<&pem::Pem> = blocks.iter().filter(|b| b.tag() == "CERTIFICATE").collect();
    match certs.as_slice() {
        [] => Err(BindCertError::NoCertificate(
            blocks.iter().map(|b| b.tag().to_owned()).collect(),
        )),
        [cert] => Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(cert.contents()))),
        more => Err(BindCertError::Several(more.len())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pem_of(tag: &str, der: &[u8]) -> String {
        pem::encode(&pem::Pem::new(tag, der.to_vec()))
    }

    #[test]
    fn the_thumbprint_is_the_base64url_sha256_of_the_der() {
        let der = b"0\x03\x02\x01\x01".to_vec();
        let want = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(&der));
        assert_eq!(thumbprint(pem_of("CERTIFICATE", &der).as_bytes()).unwrap(), want);
        assert_eq!(want.len(), 43);
        // A key beside the certificate (a combined file) is ignored.
        let both = pem_of("PRIVATE KEY", b"k") + &pem_of("CERTIFICATE", &der);
        assert_eq!(thumbprint(both.as_bytes()).unwrap(), want);
        crate::policy::thumbprint(&want).unwrap();
    }

    #[test]
    fn files_without_exactly_one_certificate_are_refused() {
        assert!(matches!(thumbprint(b"hello"), Err(BindCertError::NoCertificate(t)) if t.is_empty()));
        let broken = "-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----\n";
        assert!(matches!(thumbprint(broken.as_bytes()), Err(BindCertError::NotPem(_))));
        let key = pem_of("PRIVATE KEY", b"k");
        assert!(matches!(thumbprint(key.as_bytes()), Err(BindCertError::NoCertificate(t)) if t == ["PRIVATE KEY"]));
        let two = pem_of("CERTIFICATE", b"a") + &pem_of("CERTIFICATE", b"b");
        assert!(matches!(thumbprint(two.as_bytes()), Err(BindCertError::Several(2))));
    }
}
