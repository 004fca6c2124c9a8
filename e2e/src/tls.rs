//! A throwaway PKI for mTLS tests, made with the `openssl` command: a CA, a
//! server certificate for `api.local`, and client certificates whose
//! SHA-256 thumbprints (of the DER form, as RFC 8705 `x5t#S256` and
//! Envoy's `connection.sha256_peer_certificate_digest` compute them) the
//! tests bind grants to.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::envoy::Envoy;

use sha2::{Digest, Sha256};

/// A certificate and its key, as PEM files.
#[derive(Debug, Clone)]
pub struct CertFiles {
    /// The certificate (PEM).
    pub cert: PathBuf,
    /// The private key (PEM).
    pub key: PathBuf,
    /// SHA-256 of the certificate's DER encoding.
    pub sha256: [u8; 32],
}

/// The CA, the server's certificate and one client certificate per name.
#[derive(Debug, Clone)]
pub struct TestPki {
    /// The CA certificate both sides trust (PEM).
    pub ca: PathBuf,
    /// The server certificate for `api.local`.
    pub server: CertFiles,
    /// Client certificates, in the order of the names given.
    pub clients: Vec<CertFiles>,
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("openssl is needed for the mTLS tests: {e}"));
    assert!(
        out.status.success(),
        "openssl {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Issues `name`'s certificate from the CA in `dir`, with `extension`
/// (an X.509 v3 extension line such as `subjectAltName=DNS:api.local`).
fn issue(dir: &Path, name: &str, extension: &str) -> CertFiles {
    let (key, csr, cert, ext, der) = (
        format!("{name}.key"),
        format!("{name}.csr"),
        format!("{name}.pem"),
        format!("{name}.ext"),
        format!("{name}.der"),
    );
    fs::write(dir.join(&ext), format!("{extension}\n")).unwrap();
    let subject = format!("/CN={name}");
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            &key,
            "-out",
            &csr,
            "-subj",
            &subject,
        ],
    );
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "1",
            "-out",
            &cert,
            "-extfile",
            &ext,
        ],
    );
    openssl(dir, &["x509", "-in", &cert, "-outform", "DER", "-out", &der]);
    let sha256 = Sha256::digest(fs::read(dir.join(&der)).unwrap()).into();
    CertFiles {
        cert: dir.join(cert),
        key: dir.join(key),
        sha256,
    }
}

impl TestPki {
    /// Makes the CA, the server certificate and a client certificate for
    /// each of `clients` in `dir`.
    pub fn generate(dir: &Path, clients: &[&str]) -> TestPki {
        fs::create_dir_all(dir).unwrap();
        openssl(
            dir,
            &[
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
                "-days",
                "1",
                "-subj",
                "/CN=jitgate test CA",
            ],
        );
        let server = issue(dir, "api.local", "subjectAltName=DNS:api.local");
        let clients = clients
            .iter()
            .map(|name| issue(dir, name, "extendedKeyUsage=clientAuth"))
            .collect();
        TestPki {
            ca: dir.join("ca.pem"),
            server,
            clients,
        }
    }

    /// Issues one more client certificate, for `name`, from this PKI's CA
    /// (in the CA's directory) carrying `uri` as its URI SAN, as a workload
    /// identity (SPIFFE) would.
    pub fn client_with_uri_san(&self, name: &str, uri: &str) -> CertFiles {
        let dir = self.ca.parent().expect("the CA is in the PKI directory");
        issue(
            dir,
            name,
            &format!("extendedKeyUsage=clientAuth\nsubjectAltName=URI:{uri}"),
        )
    }
}

/// `GET /v1/invoices/1` over TLS to `api.local` at `envoy`, trusting `ca`,
/// with `client`'s certificate or none, sending `token` as the grant:
/// (status, body). Uses curl, which the mTLS tests need anyway.
pub fn get_invoice_over_tls(envoy: &Envoy, ca: &Path, client: Option<&CertFiles>, token: &str) -> (u16, String) {
    let mut cmd = Command::new("curl");
    cmd.args(["-s", "-o", "-", "-w", "\n%{http_code}", "--cacert"])
        .arg(ca)
        .args(["--resolve", &format!("api.local:{}:127.0.0.1", envoy.port)])
        .args(["-H", &format!("x-jit-grant: {token}")]);
    if let Some(c) = client {
        cmd.arg("--cert").arg(&c.cert).arg("--key").arg(&c.key);
    }
    let out = cmd
        .arg(format!("https://api.local:{}/v1/invoices/1", envoy.port))
        .output()
        .expect("curl runs");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_owned())
}
