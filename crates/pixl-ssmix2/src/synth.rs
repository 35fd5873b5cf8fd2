//! A generator of SS-MIX2 storages for tests and the benchmark (deterministic, no
//! randomness). Every patient has an ADT-00 with a kanji name whose JIS bytes collide
//! with HL7 delimiters, a PPR-01 diagnosis, and 2–4 days of care, each with an outpatient
//! visit (ADT-12), a prescription (OMP-01) and a lab order with two results and a
//! free-text comment naming the patient (OML-11).
//! Even patients' files end segments with CR, odd ones with LF. With `deviations`, the
//! first patient also gets what real storages hold: a deleted and a superseded lab file,
//! a lab report filed twice as current, a 13-digit order number, a file in another day's
//! folder, a message whose PID-3 is not the folder's, a junk file, and an order time with
//! hour 25.

use std::path::Path;

use crate::decode::encode;

/// What was written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Written {
    pub patients: usize,
    pub files: usize,
    pub bytes: u64,
}

/// Kanji names whose second JIS bytes are `|` (日 46 7C), `\` (本 4B 5C), `~` (京 35 7E),
/// `^` (剤 3A 5E) or `&` (・ 21 26).
const FAMILY: &[&str] = &["日本", "京本", "日野", "本田", "東京"];
const GIVEN: &[&str] = &["太郎", "京子", "日出男", "本子", "剤子"];

/// The number of days of care of patient `i`.
pub fn days_of(i: usize) -> usize {
    2 + i % 3
}

/// The storage id of patient `i`.
pub fn pid_of(i: usize) -> String {
    format!("{:010}", 1_000_000 + i * 7)
}

fn day_of(i: usize, k: usize) -> String {
    let day = chrono::NaiveDate::from_ymd_opt(2022, 1, 3).expect("a date") + chrono::Duration::days(((i * 5) % 300 + k * 11) as i64);
    day.format("%Y%m%d").to_string()
}

struct Writer<'a> {
    root: &'a Path,
    written: Written,
}

impl Writer<'_> {
    fn file(&mut self, pid: &str, folder: &str, data_type: &str, name: &str, segments: &[String], terminator: &str) -> std::io::Result<()> {
        let dir = self.root.join(&pid[0..3]).join(&pid[3..6]).join(pid).join(folder).join(data_type);
        std::fs::create_dir_all(&dir)?;
        let bytes = encode(&segments.join(terminator));
        self.written.files += 1;
        self.written.bytes += bytes.len() as u64;
        std::fs::write(dir.join(name), bytes)
    }
}

/// A segment with the given fields set (1-based) and the others empty.
fn seg(name: &str, fields: &[(usize, &str)]) -> String {
    let last = fields.iter().map(|(n, _)| *n).max().unwrap_or(0);
    let mut values = vec![""; last];
    for (n, value) in fields {
        values[n - 1] = value;
    }
    format!("{name}|{}", values.join("|"))
}

fn msh(message_type: &str, time: &str) -> String {
    format!(
        "MSH|^~\\&|HIS|HOSP|SSMIX2|HOSP|{time}||{message_type}|MSG{time}|P|2.5||||||~ISO IR87||ISO 2022-1994|SS-MIX2_1.20^SS-MIX2^1.2.392.200250.2.1.100.1.2.120^ISO"
    )
}

/// Writes `patients` patients under `root`.
pub fn write(root: &Path, patients: usize, deviations: bool) -> std::io::Result<Written> {
    let mut w = Writer { root, written: Written { patients, ..Written::default() } };
    for i in 0..patients {
        let pid = pid_of(i);
        let terminator = if i % 2 == 0 { "\r" } else { "\n" };
        let (family, given) = (FAMILY[i % FAMILY.len()], GIVEN[i / FAMILY.len() % GIVEN.len()]);
        let birth = format!("19{:02}0{}1{}", 30 + i % 60, 1 + i % 9, i % 10);
        let sex = if i % 2 == 0 { "F" } else { "M" };
        let pid_segment = |id: &str| {
            let id = format!("{id}^^^^PI");
            let name = format!("{family}^{given}^^^^^L^I");
            seg("PID", &[(3, &id), (5, &name), (7, &birth), (8, sex), (11, "東京都^^日本橋1-2-3"), (13, "03-1234-5678")])
        };
        let comment = format!("Repeat test advised. Called {family} {given} on 03-1234-5678~{family}{given}様に電話連絡");
        let first_day = day_of(i, 0);
        let adt00 = [msh("ADT^A08^ADT_A01", &format!("{first_day}090000")), format!("EVN||{first_day}090000"), pid_segment(&pid), "PV1||O".to_owned()];
        w.file(&pid, "-", "ADT-00", &format!("{pid}_-_ADT-00_999999999999999_{first_day}090000000_-_1"), &adt00, terminator)?;
        let ppr = [
            msh("PPR^ZD1^PPR_ZD1", &format!("{first_day}100000")),
            pid_segment(&pid),
            seg(
                "PRB",
                &[
                    (1, "AD"),
                    (2, &format!("{first_day}100000")),
                    (3, "20064316^2型糖尿病^MDCDX2"),
                    (7, &format!("{first_day}093000")),
                    (10, "E119^^I10^F^最終^JHSD0004"),
                    (13, "1"),
                    (16, &format!("{first_day}080000")),
                ],
            ),
        ];
        w.file(&pid, "-", "PPR-01", &format!("{pid}_-_PPR-01_{:015}_{first_day}100000000_-_1", i * 10 + 1), &ppr, terminator)?;
        for k in 0..days_of(i) {
            let day = day_of(i, k);
            let order = |n: usize| format!("{:015}", i * 1000 + k * 10 + n);
            let visit = [
                msh("ADT^A04^ADT_A01", &format!("{day}083000")),
                format!("EVN||{day}083000"),
                pid_segment(&pid),
                seg("PV1", &[(2, "O"), (3, "102^^^^^C"), (10, "102"), (44, &format!("{day}083000"))]),
            ];
            w.file(&pid, &day, "ADT-12", &format!("{pid}_{day}_ADT-12_{}_{day}083000000_102_1", order(1)), &visit, terminator)?;
            let start = if deviations && i == 0 && k == 0 { format!("{day}2530") } else { format!("{day}0900") };
            let prescription = [
                msh("RDE^O11^RDE_O11", &format!("{day}101000")),
                pid_segment(&pid),
                "PV1||O".to_owned(),
                seg("ORC", &[(1, "NW"), (2, &order(2)), (9, &format!("{day}101000"))]),
                seg("RXE", &[(2, "620004422^アムロジピン錠５ｍｇ^HOT9"), (3, "1"), (5, "TAB^錠^MR9P")]),
                seg("TQ1", &[(3, "1013044400000000&内服・経口・１日１回朝食後&JAMISDP01"), (6, "30^d"), (7, &start)]),
            ];
            let order_no = if deviations && i == 0 && k == 0 { format!("{:013}", 77) } else { order(2) };
            w.file(&pid, &day, "OMP-01", &format!("{pid}_{day}_OMP-01_{order_no}_{day}101000000_102_1"), &prescription, terminator)?;
            let lab = |value: &str, report: &str| {
                [
                    msh("OUL^R22^OUL_R22", &format!("{day}{report}")),
                    pid_segment(&pid),
                    "PV1||O".to_owned(),
                    seg("SPM", &[(17, &format!("{day}1100"))]),
                    seg("OBR", &[(22, &format!("{day}{report}"))]),
                    "ORC|SC".to_owned(),
                    seg("OBX", &[(2, "NM"), (3, "3D046000001920402^HbA1c^JC10"), (5, value), (6, "%^%^99XYZ"), (11, "F")]),
                    seg("OBX", &[(2, "NM"), (3, "3C015000002327101^クレアチニン^JC10"), (5, "0.9"), (6, "mg/dL^mg/dL^99XYZ"), (11, "F")]),
                    // A free-text comment under a local code, naming the patient: two lines.
                    seg("OBX", &[(2, "TX"), (3, "9Z001^検査コメント^99LAB"), (5, &comment), (11, "F")]),
                ]
            };
            w.file(&pid, &day, "OML-11", &format!("{pid}_{day}_OML-11_{}_{day}123000000_102_1", order(3)), &lab("7.2", "123000"), terminator)?;
            if deviations && i == 0 && k == 0 {
                w.file(&pid, &day, "OML-11", &format!("{pid}_{day}_OML-11_{}_{day}113000000_102_2", order(3)), &lab("7.1", "113000"), terminator)?;
                w.file(&pid, &day, "OML-11", &format!("{pid}_{day}_OML-11_{}_{day}103000000_102_0", order(4)), &lab("9.9", "103000"), terminator)?;
                // The same order's current version filed twice: the earlier copy is not read.
                w.file(&pid, &day, "OML-11", &format!("{pid}_{day}_OML-11_{}_{day}120000000_102_1", order(3)), &lab("6.9", "120000"), terminator)?;
            }
        }
        if deviations && i == 0 {
            // A visit filed under the first day's folder but named for another day.
            let (folder, named) = (day_of(i, 0), "20221224");
            let visit = [
                msh("ADT^A04^ADT_A01", &format!("{named}083000")),
                pid_segment(&pid),
                seg("PV1", &[(2, "O"), (3, "102^^^^^C"), (10, "102"), (44, &format!("{named}083000"))]),
            ];
            w.file(&pid, &folder, "ADT-12", &format!("{pid}_{named}_ADT-12_{:015}_{named}083000000_102_1", 999), &visit, terminator)?;
            // A message that names another patient in PID-3 (read, counted).
            let mismatch = [
                msh("ADT^A04^ADT_A01", &format!("{folder}150000")),
                pid_segment("9999999999"),
                seg("PV1", &[(2, "O"), (10, "102"), (44, &format!("{folder}150000"))]),
            ];
            w.file(&pid, &folder, "ADT-12", &format!("{pid}_{folder}_ADT-12_{:015}_{folder}150000000_102_1", 998), &mismatch, terminator)?;
            let junk = root.join(&pid[0..3]).join(&pid[3..6]).join(&pid).join(&folder).join("OML-11").join("notes.txt");
            std::fs::write(junk, "not a message")?;
        }
    }
    Ok(w.written)
}
