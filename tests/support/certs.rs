//! Test certificates: self-signed leaves made by the openssl CLI, and the inline datasource
//! text MeshGateway TLS listeners hold them in.

use super::free_port;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A self-signed certificate for `host` (with `*.host` too), made by the openssl CLI.
/// Returns (cert PEM path, "cert + key" bundle text as Kuma datasources hold it).
pub fn make_cert(dir: &Path, host: &str, kind: &str) -> (PathBuf, String) {
    let key = dir.join(format!("{host}-{kind}.key"));
    let crt = dir.join(format!("{host}-{kind}.crt"));
    let key_args: Vec<&str> = match kind {
        "rsa" => vec!["-newkey", "rsa:2048"],
        _ => vec!["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"],
    };
    let status = Command::new("openssl")
        .args(["req", "-x509", "-nodes", "-days", "2"])
        .args(&key_args)
        .args(["-subj", &format!("/CN={host}")])
        .args([
            "-addext",
            &format!("subjectAltName=DNS:{host},DNS:*.{host}"),
        ])
        // A leaf, not a CA: rustls (webpki) refuses a CA certificate as the server's own.
        .args(["-addext", "basicConstraints=critical,CA:FALSE"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&crt)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .expect("openssl must be installed (scripts/setup.sh)");
    assert!(status.success(), "openssl req failed");
    let bundle = format!(
        "{}{}",
        std::fs::read_to_string(&key).unwrap(),
        std::fs::read_to_string(&crt).unwrap()
    );
    (crt, bundle)
}

pub fn inline_string(bundle: &str) -> String {
    // YAML literal block, indented for `- inlineString: |` at 8 spaces.
    let body: String = bundle.lines().map(|l| format!("          {l}\n")).collect();
    format!("inlineString: |\n{body}")
}

/// A scratch directory for certificates, removed when the test ends.
pub struct TempDir(PathBuf);

impl std::ops::Deref for TempDir {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub fn tempdir(tag: &str) -> TempDir {
    let d = std::env::temp_dir().join(format!(
        "meshgate-{tag}-{}-{}",
        std::process::id(),
        free_port()
    ));
    std::fs::create_dir_all(&d).unwrap();
    TempDir(d)
}
