//! The git commit the binaries are built from, for the release report: `PIXL_GIT_HASH`
//! when set (the Docker build passes it), else `git rev-parse HEAD`, else `unknown`.

use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let output = Command::new("git").args(args).output().ok().filter(|o| o.status.success())?;
    Some(String::from_utf8_lossy(&output.stdout).trim().to_owned()).filter(|s| !s.is_empty())
}

fn main() {
    println!("cargo:rerun-if-env-changed=PIXL_GIT_HASH");
    let hash = std::env::var("PIXL_GIT_HASH").ok().filter(|h| !h.trim().is_empty()).or_else(|| git(&["rev-parse", "HEAD"]));
    if let Some(dir) = git(&["rev-parse", "--absolute-git-dir"]) {
        // A new commit moves HEAD's ref; a checkout moves HEAD.
        println!("cargo:rerun-if-changed={dir}/HEAD");
        if let Some(reference) = git(&["symbolic-ref", "-q", "HEAD"]) {
            println!("cargo:rerun-if-changed={dir}/{reference}");
        }
    }
    println!("cargo:rustc-env=PIXL_GIT_HASH={}", hash.unwrap_or_else(|| "unknown".to_owned()));
}
