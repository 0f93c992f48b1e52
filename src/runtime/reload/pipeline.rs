//! The policy directory as the compiler's source: every policy file's name and text, read
//! fresh on each build ([`crate::compile::Compiler`] keeps what it made of unchanged texts).

use crate::compile::{Built, CompileOptions, Compiler, Rejected, SourceFile};
use crate::resources::loader::{list_files, read_file};
use crate::violation::Violation;
use std::path::Path;

/// Every policy file under `dir`, in path order, with its text or why it could not be read.
pub fn read_dir(dir: &Path) -> Result<Vec<SourceFile>, Violation> {
    Ok(list_files(dir)?
        .into_iter()
        .map(|(name, path)| SourceFile {
            text: read_file(&path),
            name,
        })
        .collect())
}

/// Builds `dir` once, with a compiler of its own (tests, benchmarks, tools).
pub fn build(dir: &Path, opts: &CompileOptions, generation: u64) -> Result<Built, Rejected> {
    build_with(&mut Compiler::new(opts.clone()), dir, generation)
}

/// Builds `dir` with `compiler`, which keeps what it can reuse for the next build.
pub fn build_with(compiler: &mut Compiler, dir: &Path, generation: u64) -> Result<Built, Rejected> {
    match read_dir(dir) {
        Ok(files) => compiler.build(&files, generation),
        Err(v) => Err(Rejected {
            violations: vec![v],
            fingerprint: 0,
        }),
    }
}

/// Returns the memory a rebuild freed (the parsed YAML of every policy file) to the OS.
/// mimalloc keeps freed pages for reuse otherwise, and a 10,000-route directory parses into
/// far more memory than its compiled snapshot keeps.
pub fn release_freed_memory() {
    // SAFETY: mi_collect only walks mimalloc's own heaps; `force` also frees abandoned pages.
    unsafe { libmimalloc_sys::mi_collect(true) }
}
