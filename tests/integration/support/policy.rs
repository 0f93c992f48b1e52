//! A temporary policy directory, written the ways editors, tools and Kubernetes write one.

use super::{backend_port, free_port, BIN};
use meshgate::testkit::fill;
use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

static UNIQUE: AtomicU64 = AtomicU64::new(0);

/// A temporary directory `ROOT` with the policy directory `ROOT/policies` in it (the gateway's
/// log and scratch files live in `ROOT`, outside the watched tree). Removed on drop.
pub struct PolicyDir {
    pub root: PathBuf,
    pub path: PathBuf,
    lports: Mutex<BTreeMap<String, u16>>,
    admin_port: u16,
    configmap_generation: AtomicU64,
}

impl PolicyDir {
    pub fn new(files: &[(&str, String)]) -> PolicyDir {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let root = std::env::temp_dir().join(format!(
            "meshgate-test-{}-{}-{}",
            std::process::id(),
            UNIQUE.fetch_add(1, Ordering::SeqCst),
            nanos
        ));
        let path = root.join("policies");
        fs::create_dir_all(&path).expect("create temp policy dir");
        let dir = PolicyDir {
            root,
            path,
            lports: Mutex::new(BTreeMap::new()),
            admin_port: free_port(),
            configmap_generation: AtomicU64::new(0),
        };
        for (rel, text) in files {
            dir.write_atomic(rel, text);
        }
        dir
    }

    /// The n-th listener port (allocated on first use).
    pub fn lport(&self, n: u32) -> u16 {
        *self
            .lports
            .lock()
            .unwrap()
            .entry(n.to_string())
            .or_insert_with(free_port)
    }

    pub fn admin_port(&self) -> u16 {
        self.admin_port
    }

    /// Fills `@LPORT:n@`, `@PORT:name@` and `@ADMIN_PORT@`.
    pub fn subst(&self, text: &str) -> String {
        fill(
            text,
            |n| self.lport(n),
            |name| {
                backend_port(name).unwrap_or_else(|| {
                    panic!("@PORT:{name}@: no backend {name:?} started on this test thread")
                })
            },
            self.admin_port,
        )
    }

    pub fn file(&self, rel: &str) -> PathBuf {
        self.path.join(rel)
    }

    /// Editor pattern "write a temp file, rename it over the target" (atomic). The temp file is
    /// written *outside* the policy tree, so the gateway never sees it.
    pub fn write_atomic(&self, rel: &str, text: &str) {
        let target = self.file(rel);
        fs::create_dir_all(target.parent().unwrap()).unwrap();
        let tmp = self.root.join(format!(
            ".tmp-{}-{}",
            UNIQUE.fetch_add(1, Ordering::SeqCst),
            rel.replace('/', "_")
        ));
        fs::write(&tmp, self.subst(text)).unwrap();
        fs::rename(&tmp, &target).unwrap();
    }

    /// Editor pattern "temp file beside the target, then rename" (vim/emacs style `.swp`, `~`).
    /// The temp name does not end in .yaml/.yml, so the gateway must ignore it.
    pub fn write_via_sibling_temp(&self, rel: &str, text: &str) {
        let target = self.file(rel);
        fs::create_dir_all(target.parent().unwrap()).unwrap();
        let tmp = target.with_file_name(format!(
            ".{}.swp",
            target.file_name().unwrap().to_string_lossy()
        ));
        fs::write(&tmp, self.subst(text)).unwrap();
        fs::rename(&tmp, &target).unwrap();
    }

    /// Editor pattern "truncate, then write" on the same inode (what `>` in a shell and many
    /// editors do): open with O_TRUNC, write the content in two parts.
    pub fn write_in_place(&self, rel: &str, text: &str) {
        let text = self.subst(text);
        let mut f = fs::OpenOptions::new()
            .write(true)
            .truncate(true)
            .create(true)
            .open(self.file(rel))
            .unwrap();
        let (a, b) = text.as_bytes().split_at(text.len() / 2);
        f.write_all(a).unwrap();
        f.flush().unwrap();
        f.write_all(b).unwrap();
        f.sync_all().unwrap();
    }

    /// Truncates a file to zero bytes (leaving it empty).
    pub fn truncate(&self, rel: &str) {
        fs::OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(self.file(rel))
            .unwrap();
    }

    /// Appends text to a file in place.
    pub fn append(&self, rel: &str, text: &str) {
        let mut f = fs::OpenOptions::new()
            .append(true)
            .open(self.file(rel))
            .unwrap();
        f.write_all(self.subst(text).as_bytes()).unwrap();
        f.sync_all().unwrap();
    }

    pub fn remove(&self, rel: &str) {
        fs::remove_file(self.file(rel)).unwrap();
    }

    /// Writes `files` the way the kubelet updates a mounted ConfigMap (AtomicWriter): the data
    /// lives in a hidden timestamped directory `..TS/`, `..data` is a symlink to it, and every key
    /// is a symlink `KEY -> ..data/KEY`. An update writes a new `..TS2/`, points a temporary
    /// symlink `..data_tmp` at it, renames `..data_tmp` over `..data` (one atomic step) and
    /// deletes the old directory. The first call creates the layout.
    pub fn write_configmap(&self, files: &[(&str, String)]) {
        let g = self.configmap_generation.fetch_add(1, Ordering::SeqCst);
        let ts = format!("..2026_01_01_00_00_00.{:09}", g + 1);
        let ts_dir = self.path.join(&ts);
        fs::create_dir_all(&ts_dir).unwrap();
        for (rel, text) in files {
            fs::write(ts_dir.join(rel), self.subst(text)).unwrap();
        }
        let data = self.path.join("..data");
        let old = fs::read_link(&data).ok();
        let tmp = self.path.join("..data_tmp");
        let _ = fs::remove_file(&tmp);
        std::os::unix::fs::symlink(&ts, &tmp).unwrap();
        fs::rename(&tmp, &data).unwrap();
        for (rel, _) in files {
            let link = self.path.join(rel);
            if fs::symlink_metadata(&link).is_err() {
                std::os::unix::fs::symlink(Path::new("..data").join(rel), &link).unwrap();
            }
        }
        if let Some(old) = old {
            let _ = fs::remove_dir_all(self.path.join(old));
        }
    }

    /// Runs `meshgate --policies DIR --check ARGS`; returns (exit code, stdout + stderr).
    pub fn check(&self, extra_args: &[&str]) -> (i32, String) {
        let out = Command::new(BIN)
            .arg("--policies")
            .arg(&self.path)
            .arg("--check")
            .args(extra_args)
            .stdin(Stdio::null())
            .output()
            .expect("run meshgate --check");
        let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.push_str(&String::from_utf8_lossy(&out.stderr));
        (out.status.code().unwrap_or(-1), text)
    }
}

impl Drop for PolicyDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.root);
    }
}
