//! `pixl dc ARGS...`: `docker compose` with pixl's project name and compose file, from
//! anywhere inside the checkout.

use std::path::{Path, PathBuf};

/// Finds the directory holding `docker-compose.yml`: `$PIXL_ROOT` if set, else the nearest
/// ancestor of `start` that has one.
pub fn find_root(start: &Path, pixl_root: Option<PathBuf>) -> Option<PathBuf> {
    if let Some(root) = pixl_root {
        return root.join("docker-compose.yml").is_file().then_some(root);
    }
    start.ancestors().find(|dir| dir.join("docker-compose.yml").is_file()).map(Path::to_path_buf)
}

/// The full `docker compose` argument list.
pub fn compose_args(root: &Path, env_name: &str, args: &[String]) -> Vec<String> {
    let mut full = vec![
        "compose".to_owned(),
        "--project-name".to_owned(),
        format!("pixl_{env_name}"),
        "--project-directory".to_owned(),
        root.display().to_string(),
        "--file".to_owned(),
        root.join("docker-compose.yml").display().to_string(),
    ];
    full.extend(args.iter().cloned());
    full
}

/// PIXL's habits: `up` gets `--wait --build --remove-orphans` (those not given already);
/// `down --volumes` (or `-v`) in `ENV=prod` asks `confirm` first and, if refused, runs
/// without removing volumes.
pub fn with_pixl_habits(args: &[String], env_name: &str, confirm: impl FnOnce() -> bool) -> Vec<String> {
    let mut args = args.to_vec();
    if args.iter().any(|a| a == "up") {
        for flag in ["--wait", "--build", "--remove-orphans"] {
            if !args.iter().any(|a| a == flag) {
                args.push(flag.to_owned());
            }
        }
    }
    let removes_volumes = |a: &String| a == "--volumes" || a == "-v";
    if args.iter().any(|a| a == "down") && env_name == "prod" && args.iter().any(removes_volumes) && !confirm() {
        args.retain(|a| !removes_volumes(a));
    }
    args
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(args: &[&str]) -> Vec<String> {
        args.iter().map(|a| a.to_string()).collect()
    }

    #[test]
    fn pixl_habits() {
        assert_eq!(with_pixl_habits(&strings(&["up", "-d"]), "dev", || unreachable!()), strings(&["up", "-d", "--wait", "--build", "--remove-orphans"]));
        assert_eq!(with_pixl_habits(&strings(&["up", "--build"]), "dev", || unreachable!()), strings(&["up", "--build", "--wait", "--remove-orphans"]));
        // Only production asks.
        assert_eq!(with_pixl_habits(&strings(&["down", "--volumes"]), "dev", || unreachable!()), strings(&["down", "--volumes"]));
        assert_eq!(with_pixl_habits(&strings(&["down", "--volumes"]), "prod", || false), strings(&["down"]));
        assert_eq!(with_pixl_habits(&strings(&["down", "-v"]), "prod", || true), strings(&["down", "-v"]));
        assert_eq!(with_pixl_habits(&strings(&["ps"]), "prod", || unreachable!()), strings(&["ps"]));
    }

    #[test]
    fn finds_the_compose_file_upwards() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("docker-compose.yml"), "services: {}\n").unwrap();
        let nested = dir.path().join("a/b");
        std::fs::create_dir_all(&nested).unwrap();
        assert_eq!(find_root(&nested, None).as_deref(), Some(dir.path()));
        assert_eq!(find_root(&nested, Some(nested.clone())), None);
        let args = compose_args(dir.path(), "test", &["up".to_owned(), "-d".to_owned()]);
        assert_eq!(args[..3], ["compose", "--project-name", "pixl_test"]);
        assert_eq!(args[args.len() - 2..], ["up", "-d"]);
    }
}
