//! Test support shared by the integration tests of every pixl crate that needs more than
//! `pixl_core::testing`: the real DICOM corpus and the leak check of de-identified output
//! ([`dicom`]), and the paths of the workspace's binaries ([`bin_path`]).
//!
//! It links no service crate, so any crate's tests can use it without a dependency cycle;
//! tests that run several services together live in `pixl-system-tests`.

pub mod dicom;

use std::path::{Path, PathBuf};

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A binary of the workspace, built beside the test executable by `cargo test
/// --workspace` (test executables live in `target/<profile>/deps/`).
pub fn bin_path(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test executable's path");
    let profile_dir = exe.parent().and_then(Path::parent).expect("target/<profile>/deps/<test>");
    let path = profile_dir.join(name);
    assert!(path.is_file(), "{} is not built: run the tests with `cargo test --workspace`", path.display());
    path
}
