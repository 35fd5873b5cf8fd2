//! The embedded word lists (`data/*.txt`, built into `fst` sets by `build.rs`; sources and
//! licences in `data/SOURCES.md`). Every list holds lowercase words.

use std::sync::LazyLock;

use fst::Set;

macro_rules! list {
    ($name:literal) => {
        Set::new(include_bytes!(concat!(env!("OUT_DIR"), "/", $name, ".fst")).as_slice()).expect("build.rs writes valid sets")
    };
}

pub(crate) struct Lexicon {
    english: Set<&'static [u8]>,
    medical: Set<&'static [u8]>,
    eponyms: Set<&'static [u8]>,
    first_names: Set<&'static [u8]>,
    surnames: Set<&'static [u8]>,
    places: Set<&'static [u8]>,
}

pub(crate) static LEXICON: LazyLock<Lexicon> = LazyLock::new(|| Lexicon {
    english: list!("english"),
    medical: list!("medical"),
    eponyms: list!("eponyms"),
    first_names: list!("first_names"),
    surnames: list!("surnames"),
    places: list!("places"),
});

impl Lexicon {
    pub fn english(&self, word: &str) -> bool {
        self.english.contains(word)
    }
    pub fn medical(&self, word: &str) -> bool {
        self.medical.contains(word)
    }
    pub fn eponym(&self, word: &str) -> bool {
        self.eponyms.contains(word)
    }
    pub fn first_name(&self, word: &str) -> bool {
        self.first_names.contains(word)
    }
    pub fn surname(&self, word: &str) -> bool {
        self.surnames.contains(word)
    }
    pub fn place(&self, word: &str) -> bool {
        self.places.contains(word)
    }
}

/// Every word of a list, in order, for surrogates (built on first use).
fn words(set: &Set<&'static [u8]>) -> Vec<String> {
    use fst::Streamer;
    let mut out = Vec::with_capacity(set.len());
    let mut stream = set.stream();
    while let Some(word) = stream.next() {
        out.push(String::from_utf8_lossy(word).into_owned());
    }
    out
}

pub(crate) static FIRST_NAMES: LazyLock<Vec<String>> = LazyLock::new(|| words(&LEXICON.first_names));
pub(crate) static SURNAMES: LazyLock<Vec<String>> = LazyLock::new(|| words(&LEXICON.surnames));
