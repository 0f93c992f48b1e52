//! The prefix at one etcd revision, as the compiler's source files.

use super::EtcdTarget;
use crate::compile::SourceFile;
use etcd_client::{Client, GetOptions, GetResponse};

/// Values larger than this are refused, as a directory's files are (etcd's own default
/// request limit is 1.5 MiB).
const MAX_VALUE_BYTES: usize = 8 * 1024 * 1024;

/// Every policy key under the prefix, read at one revision.
pub struct Revision {
    pub revision: i64,
    pub files: Vec<SourceFile>,
}

/// Whether the key name (below the prefix) is a policy file, by the directory's rules: a
/// `.yaml`/`.yml` name; names whose last part starts with `.` are skipped as a directory
/// skips hidden files.
pub fn is_policy_key(name: &str) -> bool {
    let last = name.rsplit('/').next().unwrap_or(name);
    (name.ends_with(".yaml") || name.ends_with(".yml")) && !last.starts_with('.')
}

/// Why `name` cannot be a file name (it must also be written into `--policy-cache` and be a
/// path `publish` could have made): empty, `.` or `..` parts, or a leading `/`.
fn name_problem(name: &str) -> Option<&'static str> {
    if name.split('/').any(|part| part.is_empty()) {
        return Some("key name has an empty path part (`//` or a leading `/` after the prefix)");
    }
    if name.split('/').any(|part| part == "." || part == "..") {
        return Some("key name has a `.` or `..` path part");
    }
    None
}

/// One key's value as a policy file's text, or why it is not usable.
fn text_of(name: &str, value: &[u8]) -> Result<String, String> {
    if let Some(problem) = name_problem(name) {
        return Err(problem.to_string());
    }
    if value.len() > MAX_VALUE_BYTES {
        return Err(format!(
            "value is {} bytes, more than the {MAX_VALUE_BYTES} allowed",
            value.len()
        ));
    }
    String::from_utf8(value.to_vec()).map_err(|_| "value is not UTF-8".to_string())
}

/// Every key under `target.prefix`, in one range request (one revision).
pub async fn range(client: &mut Client, target: &EtcdTarget) -> Result<GetResponse, String> {
    client
        .get(
            target.prefix.as_str(),
            Some(GetOptions::new().with_prefix()),
        )
        .await
        .map_err(|e| format!("{}: reading the prefix: {e}", target.url()))
}

/// Reads every policy key under `target.prefix` at one revision.
pub async fn read_all(client: &mut Client, target: &EtcdTarget) -> Result<Revision, String> {
    let response = range(client, target).await?;
    let revision = response.header().map_or(0, |h| h.revision());
    let mut files: Vec<SourceFile> = Vec::new();
    for kv in response.kvs() {
        let Some(name) = kv.key().strip_prefix(target.prefix.as_bytes()) else {
            continue;
        };
        let name = String::from_utf8_lossy(name).into_owned();
        if !is_policy_key(&name) {
            continue;
        }
        let text = text_of(&name, kv.value()).into();
        files.push(SourceFile { name, text });
    }
    files.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(Revision { revision, files })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_keys_follow_the_directory_rules() {
        assert!(is_policy_key("routes/a.yaml"));
        assert!(is_policy_key("gw.yml"));
        assert!(!is_policy_key("routes/README"));
        assert!(!is_policy_key("routes/.a.yaml.swp.yaml"));
    }

    #[test]
    fn names_that_cannot_be_files_are_refused() {
        assert!(text_of("../x.yaml", b"a: b").is_err());
        assert!(text_of("a//x.yaml", b"a: b").is_err());
        assert!(text_of("/x.yaml", b"a: b").is_err());
        assert!(text_of("x.yaml", &[0xff, 0xfe]).is_err());
        assert_eq!(text_of("a/x.yaml", b"a: b").unwrap(), "a: b");
    }
}
