//! Scores the engine on a synthetic corpus and prints the misses (a development aid:
//! `cargo run -p pixl-text --example try -- SEED COUNT`).
fn main() {
    let args: Vec<u64> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    let case = if args.get(2) == Some(&1) { pixl_text::synth::Case::Upper } else { pixl_text::synth::Case::Mixed };
    let (notes, _) = pixl_text::synth::corpus_in(args.first().copied().unwrap_or(1), args.get(1).copied().unwrap_or(500) as usize, case);
    let mut total = pixl_text::eval::Score::default();
    for note in &notes {
        let d = pixl_text::detect(&note.text);
        let (score, misses) = pixl_text::eval::score(&note.text, &note.spans, &d.spans);
        total.add(&score);
        for m in misses {
            let (a, b) = (note.text.floor_char_boundary(m.start.saturating_sub(30)), note.text.ceil_char_boundary((m.end + 30).min(note.text.len())));
            println!("{}\t{:?}\t{}\t{:?}", m.kind, m.category, &note.text[m.start..m.end], note.text[a..b].replace('\n', " "));
        }
    }
    eprintln!(
        "entity recall {:.4} token recall {:.4} precision {:.4} retention {:.4}",
        total.entity_recall(),
        total.token_recall(),
        total.token_precision(),
        total.retention()
    );
    for (c, (x, y)) in &total.entities {
        eprintln!("  {c}: {x}/{y}");
    }
}
