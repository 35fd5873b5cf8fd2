//! The floor of the SS-MIX2 benchmark (`bench/ssmix2.sh`): walk the storage, read every
//! file and decode it from ISO-2022-JP, nothing else. Prints files, bytes and a checksum
//! of the decoded lengths (so that nothing is optimised away).
//!
//! `cargo run -p pixl-ssmix2 --example read_decode -- ROOT`

fn main() {
    let root = std::path::PathBuf::from(std::env::args().nth(1).expect("usage: read_decode ROOT"));
    let (mut files, mut bytes, mut chars) = (0u64, 0u64, 0u64);
    let mut stack = vec![root];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("a readable folder") {
            let path = entry.expect("an entry").path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let data = std::fs::read(&path).expect("a readable file");
                let (text, _) = pixl_ssmix2::decode::decode(&data);
                files += 1;
                bytes += data.len() as u64;
                chars += text.len() as u64;
            }
        }
    }
    println!("{files} files, {bytes} bytes, {chars} decoded bytes");
}
