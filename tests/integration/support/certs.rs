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

/// A private CA and the leaves it signs (etcd's mutual TLS needs a chain, not self-signed
/// leaves). Files live in `dir`.
pub struct TestCa {
    pub cert: PathBuf,
    key: PathBuf,
    dir: PathBuf,
}

/// A leaf signed by a [`TestCa`]: certificate and key paths.
pub struct Leaf {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// `openssl ARGS…` must succeed.
fn openssl<S: AsRef<std::ffi::OsStr>>(args: &[S]) {
    let status = Command::new("openssl")
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .expect("openssl must be installed (scripts/setup.sh)");
    assert!(status.success(), "openssl {:?} failed", args[0].as_ref());
}

const P256: [&str; 4] = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"];

impl TestCa {
    pub fn new(dir: &Path) -> TestCa {
        let cert = dir.join("ca.crt");
        let key = dir.join("ca.key");
        let mut args: Vec<std::ffi::OsString> = ["req", "-x509", "-nodes", "-days", "2"]
            .iter()
            .chain(&P256)
            .map(Into::into)
            .collect();
        for a in [
            "-subj",
            "/CN=meshgate test CA",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
            "-keyout",
        ] {
            args.push(a.into());
        }
        args.extend([key.clone().into(), "-out".into(), cert.clone().into()]);
        openssl(&args);
        TestCa {
            cert,
            key,
            dir: dir.to_path_buf(),
        }
    }

    /// A leaf named `cn`, valid for `san` (e.g. `IP:127.0.0.1`), usable by a server and a
    /// client alike.
    pub fn leaf(&self, cn: &str, san: &str) -> Leaf {
        let file = |ext: &str| self.dir.join(format!("{cn}.{ext}"));
        let (key, csr, cert, ext) = (file("key"), file("csr"), file("crt"), file("ext"));
        std::fs::write(
            &ext,
            format!(
                "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n\
                 extendedKeyUsage=serverAuth,clientAuth\nsubjectAltName={san}\n"
            ),
        )
        .unwrap();
        let mut req: Vec<std::ffi::OsString> = ["req", "-new", "-nodes"]
            .iter()
            .chain(&P256)
            .map(Into::into)
            .collect();
        req.extend([
            "-subj".into(),
            format!("/CN={cn}").into(),
            "-keyout".into(),
            key.clone().into(),
            "-out".into(),
            csr.clone().into(),
        ]);
        openssl(&req);
        let sign: Vec<std::ffi::OsString> = vec![
            "x509".into(),
            "-req".into(),
            "-days".into(),
            "2".into(),
            "-in".into(),
            csr.into(),
            "-CA".into(),
            self.cert.clone().into(),
            "-CAkey".into(),
            self.key.clone().into(),
            "-CAcreateserial".into(),
            "-extfile".into(),
            ext.into(),
            "-out".into(),
            cert.clone().into(),
        ];
        openssl(&sign);
        Leaf { cert, key }
    }
}
