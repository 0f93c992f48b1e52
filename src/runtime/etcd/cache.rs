//! `--policy-cache DIR`: the last applied etcd revision as a policy directory, so a gateway
//! restarted while etcd is down starts with what it served.
//!
//! Layout: `DIR/rev-<N>/…` holds revision N's files; `DIR/current` is a symlink to the
//! latest. A new revision is written beside the old one and `current` is swapped with one
//! `rename(2)`, so a crash at any point leaves a complete revision behind `current`.

use crate::compile::SourceFile;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

const CURRENT: &str = "current";

/// Writes revision `revision`'s readable files and makes it the current one.
pub fn store(dir: &Path, revision: i64, files: &[SourceFile]) -> io::Result<()> {
    fs::create_dir_all(dir)?;
    let name = format!("rev-{revision}");
    let target = dir.join(&name);
    let staging = dir.join(format!(".{name}.tmp"));
    let _ = fs::remove_dir_all(&staging);
    fs::create_dir_all(&staging)?;
    for file in files {
        let Ok(text) = file.text.as_text() else {
            continue;
        };
        let path = staging.join(&file.name);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent)?;
        }
        fs::write(&path, text)?;
    }
    let _ = fs::remove_dir_all(&target);
    fs::rename(&staging, &target)?;
    let link = dir.join(format!(".{CURRENT}.tmp"));
    let _ = fs::remove_file(&link);
    std::os::unix::fs::symlink(&name, &link)?;
    fs::rename(&link, dir.join(CURRENT))?;
    // Older revisions are no longer needed once `current` points past them.
    for entry in fs::read_dir(dir)?.flatten() {
        let n = entry.file_name();
        let n = n.to_string_lossy();
        if n.starts_with("rev-") && n != name {
            let _ = fs::remove_dir_all(entry.path());
        }
    }
    Ok(())
}

/// The cached revision and its directory, if a complete one is there.
pub fn latest(dir: &Path) -> Option<(i64, PathBuf)> {
    let link = fs::read_link(dir.join(CURRENT)).ok()?;
    let revision = link.to_str()?.strip_prefix("rev-")?.parse().ok()?;
    let path = dir.join(link);
    path.is_dir().then_some((revision, path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_latest_revision_replaces_the_previous_one() {
        let dir = std::env::temp_dir().join(format!("meshgate-cache-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let file = |name: &str, text: &str| SourceFile {
            name: name.to_string(),
            text: crate::compile::SourceText::Read(text.to_string()),
        };
        store(
            &dir,
            5,
            &[file("a.yaml", "one"), file("routes/b.yaml", "two")],
        )
        .unwrap();
        store(&dir, 9, &[file("a.yaml", "three")]).unwrap();
        let (revision, path) = latest(&dir).unwrap();
        assert_eq!(revision, 9);
        assert_eq!(fs::read_to_string(path.join("a.yaml")).unwrap(), "three");
        assert!(!path.join("routes/b.yaml").exists());
        assert!(!dir.join("rev-5").exists());
        let _ = fs::remove_dir_all(&dir);
    }
}
