//! The model used when neither `--model` nor `TOKENLENS_MODEL` names one.
//!
//! Its files are embedded in the binary, so it works from any directory and after `cargo install`
//! with no data directory to install. On first use they are written once to a cache directory,
//! `$XDG_CACHE_HOME/tokenlens/models/<name>-<sha>` (else `~/.cache/...`, else the system temp
//! directory), and loaded from there like any model directory. The directory name carries the
//! weights' sha256, so a binary with another model never reads stale files; each file is written
//! under a temporary name and renamed, so concurrent first runs and interrupted writes never leave
//! a partial file behind.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::model_dir::ModelFiles;

/// Files of one embedded model directory.
pub struct Bundle {
    /// Directory name, e.g. `minilm-rt-sentiment`.
    pub name: &'static str,
    /// sha256 of the weights (hex); names the cache directory.
    pub sha256: &'static str,
    /// (file name, contents).
    pub files: &'static [(&'static str, &'static [u8])],
}

/// Where the shipped model lives in the repository.
pub const SOURCE_DIR: &str = "fixtures/models/minilm-rt-sentiment";

/// The default sentiment model (see its model card, `fixtures/models/minilm-rt-sentiment/README.md`).
#[cfg(feature = "bundled-model")]
pub static BUNDLED: Bundle = Bundle {
    name: "minilm-rt-sentiment",
    // tests/default_model.rs checks this against the committed weights.
    sha256: "0fd62ec9d69c06d00e0980c9615a1da5d84066a8be838e0d3aed425df1af0a71",
    files: &[
        (
            "config.json",
            include_bytes!("../fixtures/models/minilm-rt-sentiment/config.json"),
        ),
        (
            "tokenizer.json",
            include_bytes!("../fixtures/models/minilm-rt-sentiment/tokenizer.json"),
        ),
        (
            "model.safetensors",
            include_bytes!("../fixtures/models/minilm-rt-sentiment/model.safetensors"),
        ),
    ],
};

/// Files of the bundled default sentiment model, written to the cache on first use.
#[cfg(feature = "bundled-model")]
pub fn files() -> Result<ModelFiles> {
    let dir = materialize(&BUNDLED, &cache_roots())?;
    let mut files = ModelFiles::from_dir(&dir)?;
    files.name = format!("{} (bundled)", BUNDLED.name);
    Ok(files)
}

/// Builds without the `bundled-model` feature (a smaller binary, e.g. for a GPU machine) have no
/// default model.
#[cfg(not(feature = "bundled-model"))]
pub fn files() -> Result<ModelFiles> {
    Err(Error::Usage(
        "this tokenlens was built without the bundled default model (cargo feature \
         `bundled-model`); pass --model DIR or set TOKENLENS_MODEL"
            .into(),
    ))
}

/// Cache roots to try, in order: `$XDG_CACHE_HOME`, `~/.cache`, the system temp directory.
pub fn cache_roots() -> Vec<PathBuf> {
    let mut roots = Vec::new();
    let set = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
    if let Some(xdg) = set("XDG_CACHE_HOME") {
        roots.push(PathBuf::from(xdg));
    }
    if let Some(home) = set("HOME") {
        roots.push(PathBuf::from(home).join(".cache"));
    }
    roots.push(std::env::temp_dir());
    roots
}

/// The bundle's files as a model directory under the first cache root that accepts them.
pub fn materialize(bundle: &Bundle, roots: &[PathBuf]) -> Result<PathBuf> {
    let short_sha = &bundle.sha256[..bundle.sha256.len().min(16)];
    let mut failures = Vec::new();
    for root in roots {
        let dir = root
            .join("tokenlens/models")
            .join(format!("{}-{short_sha}", bundle.name));
        match write_missing(bundle, &dir) {
            Ok(()) => return Ok(dir),
            Err(e) => failures.push(format!("{}: {e}", dir.display())),
        }
    }
    Err(Error::Usage(format!(
        "could not write the bundled model {} to a cache directory ({}); set XDG_CACHE_HOME to a \
         writable directory, or pass --model DIR",
        bundle.name,
        failures.join("; ")
    )))
}

/// Writes every file that is absent or has the wrong size (a size check is enough: files only
/// appear under their final name once complete).
fn write_missing(bundle: &Bundle, dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    for (name, contents) in bundle.files {
        let path = dir.join(name);
        let complete = std::fs::metadata(&path).is_ok_and(|m| m.len() == contents.len() as u64);
        if complete {
            continue;
        }
        let partial = dir.join(format!(".{name}.{}.partial", std::process::id()));
        std::fs::write(&partial, contents)?;
        if let Err(e) = std::fs::rename(&partial, &path) {
            let _ = std::fs::remove_file(&partial);
            return Err(e);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    static BUNDLE: Bundle = Bundle {
        name: "test-model",
        sha256: "0123456789abcdef0123456789abcdef",
        files: &[("config.json", b"{}"), ("model.safetensors", b"weights")],
    };

    #[test]
    fn writes_once_repairs_truncated_files_and_falls_back_to_the_next_root() {
        let tmp = tempfile::tempdir().unwrap();
        let blocked = tmp.path().join("not-a-dir");
        std::fs::write(&blocked, "a file where a directory should be").unwrap();
        let good = tmp.path().join("cache");
        let dir = materialize(&BUNDLE, &[blocked, good.clone()]).unwrap();
        assert_eq!(
            dir,
            good.join("tokenlens/models/test-model-0123456789abcdef")
        );
        assert_eq!(
            std::fs::read(dir.join("model.safetensors")).unwrap(),
            b"weights"
        );
        std::fs::write(dir.join("model.safetensors"), b"weig").unwrap();
        materialize(&BUNDLE, &[good]).unwrap();
        assert_eq!(
            std::fs::read(dir.join("model.safetensors")).unwrap(),
            b"weights"
        );
        let leftovers: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().ends_with(".partial"))
            .collect();
        assert!(leftovers.is_empty());
    }

    #[test]
    fn names_every_directory_it_tried_when_none_is_writable() {
        let tmp = tempfile::tempdir().unwrap();
        let blocked = tmp.path().join("file");
        std::fs::write(&blocked, "x").unwrap();
        let message = materialize(&BUNDLE, std::slice::from_ref(&blocked))
            .unwrap_err()
            .to_string();
        assert!(
            message.contains(&blocked.display().to_string()) && message.contains("--model"),
            "{message}"
        );
    }
}
