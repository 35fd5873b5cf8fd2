//! Builds the word lists of `data/` into `fst` sets in `OUT_DIR`, embedded by `lexicon.rs`.

use std::{env, fs, path::Path};

const LISTS: [&str; 6] = ["english", "medical", "eponyms", "first_names", "surnames", "places"];

fn main() {
    let out = env::var("OUT_DIR").expect("cargo sets OUT_DIR");
    for list in LISTS {
        let source = format!("data/{list}.txt");
        println!("cargo::rerun-if-changed={source}");
        let text = fs::read_to_string(&source).unwrap_or_else(|e| panic!("{source}: {e}"));
        let mut words: Vec<&str> = text.lines().map(str::trim).filter(|w| !w.is_empty()).collect();
        words.sort_unstable();
        words.dedup();
        let set = fst::Set::from_iter(words).unwrap_or_else(|e| panic!("{source}: {e}"));
        fs::write(Path::new(&out).join(format!("{list}.fst")), set.as_fst().as_bytes()).expect("OUT_DIR is writable");
    }
}
