//! Shared by this crate's integration tests.

use std::path::PathBuf;

/// A file of PyPI pydicom's bundled test corpus (test/run.sh installs pydicom).
pub fn pydicom_file(name: &str) -> PathBuf {
    let output = std::process::Command::new("python3")
        .args(["-c", "import os, pydicom; print(os.path.join(os.path.dirname(pydicom.__file__), 'data', 'test_files'))"])
        .output()
        .expect("python3");
    assert!(output.status.success(), "pydicom is installed (test/run.sh installs it)");
    PathBuf::from(String::from_utf8(output.stdout).unwrap().trim()).join(name)
}
