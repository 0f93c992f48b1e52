//! `meshgate publish --policies DIR --to etcd://…/PREFIX`: a directory rolled out to every
//! gateway of a fleet at once, as one etcd transaction.
//!
//! The directory is checked first (the same build as `--check`); nothing is written unless
//! it is valid. Then one transaction puts every file whose content differs and deletes the
//! policy keys under the prefix that no longer have a file (other keys are left alone).
//! Gateways watching the prefix see one revision with the whole change.

use super::read::{is_policy_key, range};
use super::{EtcdAccess, EtcdTarget};
use crate::compile::SourceFile;
use etcd_client::{Txn, TxnOp};
use std::collections::BTreeMap;

/// What a publish did.
#[derive(Debug, PartialEq, Eq)]
pub struct Published {
    pub revision: i64,
    pub written: usize,
    pub deleted: usize,
    pub unchanged: usize,
}

/// Writes `files` (a checked directory's) under `target.prefix` in one transaction.
pub async fn publish(
    files: &[SourceFile],
    target: &EtcdTarget,
    access: &EtcdAccess,
) -> Result<Published, String> {
    let mut wanted: BTreeMap<String, &str> = BTreeMap::new();
    for f in files {
        let text = f.text.as_text().map_err(|e| format!("{}: {e}", f.name))?;
        wanted.insert(format!("{}{}", target.prefix, f.name), text);
    }
    let mut client = access.connect(target).await?;
    let current = range(&mut client, target).await?;
    let mut ops = Vec::new();
    let mut unchanged = 0;
    let mut present: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    for kv in current.kvs() {
        let key = String::from_utf8_lossy(kv.key()).into_owned();
        present.insert(key, kv.value().to_vec());
    }
    for (key, text) in &wanted {
        match present.get(key) {
            Some(v) if v.as_slice() == text.as_bytes() => unchanged += 1,
            _ => ops.push(TxnOp::put(key.as_str(), *text, None)),
        }
    }
    let written = ops.len();
    let mut deleted = 0;
    for key in present.keys() {
        let name = &key[target.prefix.len().min(key.len())..];
        if is_policy_key(name) && !wanted.contains_key(key) {
            ops.push(TxnOp::delete(key.as_str(), None));
            deleted += 1;
        }
    }
    if ops.is_empty() {
        return Ok(Published {
            revision: current.header().map_or(0, |h| h.revision()),
            written,
            deleted,
            unchanged,
        });
    }
    let count = ops.len();
    let response = client
        .txn(Txn::new().and_then(ops))
        .await
        .map_err(|e| {
            let e = e.to_string();
            if e.contains("too many operations") {
                format!(
                    "{}: {count} changes in one transaction are more than etcd allows ({e}); raise etcd's --max-txn-ops (128 by default)",
                    target.url()
                )
            } else {
                format!("{}: transaction: {e}", target.url())
            }
        })?;
    Ok(Published {
        revision: response.header().map_or(0, |h| h.revision()),
        written,
        deleted,
        unchanged,
    })
}
