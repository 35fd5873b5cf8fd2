//! The floor of the SS-MIX2 benchmark (`bench/ssmix2.sh`): walk the storage, read every
//! file and decode it from ISO-2022-JP, nothing else, on THREADS threads (default 1).
//! Prints files, bytes and the decoded length (so that nothing is optimised away).
//!
//! `cargo run -p pixl-ssmix2 --example read_decode -- ROOT [THREADS]`

fn main() {
    let mut args = std::env::args().skip(1);
    let root = std::path::PathBuf::from(args.next().expect("usage: read_decode ROOT [THREADS]"));
    let threads: usize = args.next().map(|t| t.parse().expect("THREADS is a number")).unwrap_or(1).max(1);
    let mut files = Vec::new();
    let mut stack = vec![root];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("a readable folder") {
            let entry = entry.expect("an entry");
            // The listing's own file type, as the extraction's walk uses it.
            let is_dir = entry.file_type().expect("a file type").is_dir();
            if is_dir { stack.push(entry.path()) } else { files.push(entry.path()) }
        }
    }
    let chunk = files.len().div_ceil(threads).max(1);
    let totals: Vec<(u64, u64)> = std::thread::scope(|scope| {
        let handles: Vec<_> = files
            .chunks(chunk)
            .map(|part| {
                scope.spawn(move || {
                    let (mut bytes, mut decoded) = (0u64, 0u64);
                    for path in part {
                        let data = std::fs::read(path).expect("a readable file");
                        let (text, _) = pixl_ssmix2::decode::decode(&data);
                        bytes += data.len() as u64;
                        decoded += text.len() as u64;
                    }
                    (bytes, decoded)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("a reader thread")).collect()
    });
    let (bytes, decoded) = totals.iter().fold((0, 0), |(a, b), (c, d)| (a + c, b + d));
    println!("{} files, {bytes} bytes, {decoded} decoded bytes", files.len());
}
