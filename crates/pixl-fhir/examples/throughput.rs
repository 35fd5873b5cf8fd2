//! Views over a folder of NDJSON without de-identification, timed: the figure in
//! `docs/architecture.md` comparing this evaluator with helios-sof.
//! Usage: cargo run --release -p pixl-fhir --example throughput -- NDJSON_DIR VIEWS_DIR OUT_DIR

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, input, views, out] = &args[..] else {
        eprintln!("usage: throughput NDJSON_DIR VIEWS_DIR OUT_DIR");
        std::process::exit(2);
    };
    let views = pixl_fhir::views::load_views(std::path::Path::new(views)).expect("views");
    let start = std::time::Instant::now();
    let s = pixl_fhir::convert::convert(std::path::Path::new(input), &views, std::path::Path::new(out), None).expect("conversion");
    let secs = start.elapsed().as_secs_f64();
    let rows: Vec<u64> = s.tables.values().map(|t| t.0).collect();
    println!(
        "{} resources, {:.1} MB in {secs:.2} s: {:.0} resources/s, {:.2} MB/s; rows {rows:?}",
        s.resources,
        s.bytes as f64 / 1e6,
        s.resources as f64 / secs,
        s.bytes as f64 / 1e6 / secs
    );
}
