//! The policy directory as the compiler's source: every policy file's name and text, read
//! on each build unless it cannot have changed since the compiler last read it
//! ([`DirReader`]); [`crate::compile::Compiler`] keeps what it made of unchanged texts.

use crate::compile::{Built, CompileOptions, Compiler, Rejected, SourceFile, SourceText};
use crate::resources::loader::{content_hash, list_files, read_file};
use crate::violation::Violation;
use foldhash::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// How long before it was read a file must have last changed for its status (device, inode,
/// size, modification and change times) to vouch for its text. A write in the same tick of
/// the file system's clock as the read leaves the status as it was; any later write moves
/// the change time past the read. Generous, for file systems with one- or two-second times.
const SETTLED: Duration = Duration::from_secs(3);

/// Reads a policy directory for one compiler, build after build, skipping the files whose
/// status says they are as that compiler last read them. At 100,000 rules (31 MB in 100
/// files) reading and hashing every file was ~18 ms of a ~140 ms one-file reload (perf).
/// Like `git status`, a file changed too close to its read is read again.
#[derive(Default)]
pub struct DirReader {
    seen: HashMap<PathBuf, Seen>,
}

struct Seen {
    status: FileStatus,
    read_at: SystemTime,
    content_hash: u64,
}

#[derive(PartialEq, Eq, Clone, Copy)]
struct FileStatus {
    dev: u64,
    ino: u64,
    len: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl FileStatus {
    fn of(path: &Path) -> Option<FileStatus> {
        let m = std::fs::metadata(path).ok()?;
        Some(FileStatus {
            dev: m.dev(),
            ino: m.ino(),
            len: m.len(),
            mtime: (m.mtime(), m.mtime_nsec()),
            ctime: (m.ctime(), m.ctime_nsec()),
        })
    }

    fn changed_at(&self) -> SystemTime {
        let (secs, nanos) = self.ctime.max(self.mtime);
        let since_epoch = Duration::new(secs.max(0) as u64, nanos.clamp(0, 999_999_999) as u32);
        SystemTime::UNIX_EPOCH + since_epoch
    }
}

impl DirReader {
    /// Every policy file under `dir`, in path order, with its text, why it could not be
    /// read, or [`SourceText::Unchanged`] when `compiler` holds it as it is.
    pub fn read(&mut self, dir: &Path, compiler: &Compiler) -> Result<Vec<SourceFile>, Violation> {
        let listed = list_files(dir)?;
        let mut files = Vec::with_capacity(listed.len());
        let mut present = foldhash::HashSet::default();
        for (name, path) in listed {
            let status = FileStatus::of(&path);
            let unchanged = match (self.seen.get(&path), status) {
                (Some(seen), Some(now)) => {
                    seen.status == now
                        && now.changed_at() + SETTLED < seen.read_at
                        && compiler.holds(&name, seen.content_hash)
                }
                _ => false,
            };
            let text = if unchanged {
                SourceText::Unchanged {
                    content_hash: self.seen[&path].content_hash,
                }
            } else {
                // The status is taken before the read: a write during the read changes it,
                // and the next build reads the file again.
                let read_at = SystemTime::now();
                match (read_file(&path), status) {
                    (Ok(text), Some(status)) => {
                        self.seen.insert(
                            path.clone(),
                            Seen {
                                status,
                                read_at,
                                content_hash: content_hash(&text),
                            },
                        );
                        SourceText::Read(text)
                    }
                    (read, _) => {
                        self.seen.remove(&path);
                        read.into()
                    }
                }
            };
            present.insert(path);
            files.push(SourceFile { name, text });
        }
        self.seen.retain(|path, _| present.contains(path));
        Ok(files)
    }

    /// Forgets every file's status, so the next build reads them all (SIGHUP).
    pub fn forget(&mut self) {
        self.seen.clear();
    }
}

/// Every policy file under `dir`, in path order, with its text or why it could not be read.
pub fn read_dir(dir: &Path) -> Result<Vec<SourceFile>, Violation> {
    Ok(list_files(dir)?
        .into_iter()
        .map(|(name, path)| SourceFile {
            text: read_file(&path).into(),
            name,
        })
        .collect())
}

/// Builds `dir` once, with a compiler of its own (tests, benchmarks, tools).
pub fn build(dir: &Path, opts: &CompileOptions, generation: u64) -> Result<Built, Rejected> {
    build_with(&mut Compiler::new(opts.clone()), dir, generation)
}

/// Builds `dir` with `compiler`, which keeps what it can reuse for the next build; every
/// file is read.
pub fn build_with(compiler: &mut Compiler, dir: &Path, generation: u64) -> Result<Built, Rejected> {
    compile_files(compiler, read_dir(dir), generation)
}

/// Builds `dir` with `compiler` and `reader`, which skips the files `compiler` holds as they
/// are (the builder thread's builds).
pub fn build_reading(
    compiler: &mut Compiler,
    reader: &mut DirReader,
    dir: &Path,
    generation: u64,
) -> Result<Built, Rejected> {
    let files = reader.read(dir, compiler);
    compile_files(compiler, files, generation)
}

fn compile_files(
    compiler: &mut Compiler,
    files: Result<Vec<SourceFile>, Violation>,
    generation: u64,
) -> Result<Built, Rejected> {
    match files {
        Ok(files) => compiler.build(&files, generation),
        Err(v) => Err(Rejected {
            violations: vec![v],
            fingerprint: 0,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct TempDir(PathBuf);

    impl TempDir {
        fn new(name: &str) -> TempDir {
            let dir = std::env::temp_dir()
                .join(format!("meshgate-dir-reader-{name}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).expect("temp dir");
            TempDir(dir)
        }

        fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn compiler() -> Compiler {
        Compiler::new(CompileOptions::default())
    }

    fn kinds(files: &[SourceFile]) -> Vec<(&str, &'static str)> {
        files
            .iter()
            .map(|f| {
                let kind = match f.text {
                    SourceText::Read(_) => "read",
                    SourceText::Unreadable(_) => "unreadable",
                    SourceText::Unchanged { .. } => "unchanged",
                };
                (f.name.as_str(), kind)
            })
            .collect()
    }

    /// Makes `reader` believe it read every file long after its last change.
    fn age(reader: &mut DirReader) {
        for seen in reader.seen.values_mut() {
            seen.read_at += SETTLED * 10;
        }
    }

    #[test]
    fn a_settled_file_the_compiler_holds_is_not_read_again() {
        let dir = TempDir::new("settled");
        std::fs::write(dir.path().join("a.yaml"), "type: Mesh\nname: default\n").unwrap();
        std::fs::write(dir.path().join("b.yaml"), "type: Mesh\nname: other\n").unwrap();
        let (mut compiler, mut reader) = (compiler(), DirReader::default());
        let first = reader.read(dir.path(), &compiler).expect("listed");
        assert_eq!(kinds(&first), [("a.yaml", "read"), ("b.yaml", "read")]);
        // Not yet built: the compiler does not hold them, so they are read again.
        age(&mut reader);
        let again = reader.read(dir.path(), &compiler).expect("listed");
        assert_eq!(kinds(&again), [("a.yaml", "read"), ("b.yaml", "read")]);
        let _ = compiler.build(&again, 1);
        age(&mut reader);
        std::fs::write(dir.path().join("b.yaml"), "type: Mesh\nname: renamed\n").unwrap();
        let third = reader.read(dir.path(), &compiler).expect("listed");
        assert_eq!(kinds(&third), [("a.yaml", "unchanged"), ("b.yaml", "read")]);
        // The unchanged file counts in the fingerprint as its text would.
        let built = compiler.build(&third, 2);
        let fresh = compiler.build(&read_dir(dir.path()).expect("listed"), 3);
        let fingerprint = |r: &Result<Built, Rejected>| match r {
            Ok(b) => b.fingerprint,
            Err(r) => r.fingerprint,
        };
        assert_eq!(fingerprint(&built), fingerprint(&fresh));
    }

    #[test]
    fn a_file_rewritten_right_after_its_read_is_read_again() {
        let dir = TempDir::new("rewritten");
        let path = dir.path().join("a.yaml");
        std::fs::write(&path, "type: Mesh\nname: first\n").unwrap();
        let (mut compiler, mut reader) = (compiler(), DirReader::default());
        let files = reader.read(dir.path(), &compiler).expect("listed");
        let _ = compiler.build(&files, 1);
        // Same size, likely the same clock tick: the status may not change, the recent
        // change time is what sends it to be read.
        std::fs::write(&path, "type: Mesh\nname: secnd\n").unwrap();
        let files = reader.read(dir.path(), &compiler).expect("listed");
        assert_eq!(kinds(&files), [("a.yaml", "read")]);
        let SourceText::Read(text) = &files[0].text else {
            unreachable!()
        };
        assert!(text.contains("secnd"));
        // SIGHUP: everything is read.
        age(&mut reader);
        reader.forget();
        assert_eq!(
            kinds(&reader.read(dir.path(), &compiler).expect("listed")),
            [("a.yaml", "read")]
        );
    }
}
