//! A synthetic EMAP database for `pixl demo`, the end-to-end tests and the benchmark: the
//! star tables of `crates/pixl-ehr-api/tests/fixtures/emap_star.sql`, with one generated patient per study
//! whose radiology report names them (names, MRN, NHS number, dates, phone number) and
//! the clinicians involved. The patient of the first study also appears in the report
//! under a misspelt surname that is an English word ("Walked" for Walker): the engine
//! keeps ordinary words, so it misses it, and the second check (edit distance 1 of the
//! patient's names) flags the report for review.
//!
//! Everything here is made up; the generator is seeded, so a run is repeatable.

use std::fmt;

use chrono::{Datelike, NaiveDate};
use pixl_core::config::DatabaseSettings;
use sqlx::{Connection, Executor, PgConnection};

/// The star tables (the test fixture).
pub const STAR_SCHEMA: &str = include_str!("../../pixl-ehr-api/tests/fixtures/emap_star.sql");

/// One study's patient, as the generated EHR holds them. Its `Debug` shows no value.
#[derive(Clone, PartialEq, Eq)]
pub struct Patient {
    pub mrn: String,
    pub accession_number: String,
    pub study_date: NaiveDate,
    pub nhs_number: String,
    pub first_name: String,
    pub last_name: String,
    pub date_of_birth: NaiveDate,
    pub sex: &'static str,
    pub ethnicity: &'static str,
    pub postcode: String,
    pub phone: String,
    /// The report's NARRATIVE and IMPRESSION sections.
    pub narrative: String,
    pub impression: String,
}

impl fmt::Debug for Patient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Patient").finish_non_exhaustive()
    }
}

impl Patient {
    /// Every identifier of the patient as it may be written: what must not leave.
    pub fn identifiers(&self) -> Vec<String> {
        let nhs = &self.nhs_number;
        let dob = self.date_of_birth;
        vec![
            self.first_name.clone(),
            self.last_name.clone(),
            self.mrn.clone(),
            self.accession_number.clone(),
            nhs.clone(),
            format!("{} {} {}", &nhs[..3], &nhs[3..6], &nhs[6..]),
            dob.format("%d/%m/%Y").to_string(),
            dob.format("%Y-%m-%d").to_string(),
            dob.format("%-d %B %Y").to_string(),
            self.phone.clone(),
            self.phone.replace(' ', ""),
            self.postcode.clone(),
        ]
    }
}

const FIRST_NAMES: [(&str, &str); 12] = [
    ("Agnieszka", "F"),
    ("Oluwaseun", "M"),
    ("Margaret", "F"),
    ("Rajesh", "M"),
    ("Siobhan", "F"),
    ("Tomasz", "M"),
    ("Priyanka", "F"),
    ("Gareth", "M"),
    ("Ngozi", "F"),
    ("Dmitri", "M"),
    ("Eleanor", "F"),
    ("Hamish", "M"),
];
const SURNAMES: [&str; 12] =
    ["Kowalczyk", "Adebayo", "Pemberton", "Raghunathan", "Fitzgerald", "Wisniewski", "Chaudhary", "Llewellyn", "Okonkwo", "Volkov", "Ashworth", "Macintyre"];
const CLINICIANS: [&str; 8] = ["Okafor", "Lindqvist", "Brennan", "Subramaniam", "Haddad", "Castellano", "Thistlewood", "Nakamura"];
const ETHNICITIES: [&str; 5] = ["White - British", "Asian - Indian", "Black - African", "White - Polish", "Mixed - Other"];
const POSTCODE_AREAS: [&str; 8] = ["NW1", "WC1E", "N7", "E8", "SE15", "W2", "EC1V", "N19"];
const FINDINGS: [&str; 6] = [
    "No acute intracranial abnormality. Ventricles are of normal size.",
    "Small left pleural effusion. No focal consolidation.",
    "Degenerative change at L4/5 with mild canal narrowing.",
    "Stable 4 mm nodule in the right upper lobe, unchanged for 3/12.",
    "Fracture of the distal radius with dorsal angulation.",
    "Normal appearances of the liver, spleen and kidneys.",
];

/// splitmix64: a seeded generator for repeatable data.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// A valid NHS number (modulus 11 check digit) from `rng`.
fn nhs_number(rng: &mut Rng) -> String {
    loop {
        let digits: Vec<u32> = (0..9).map(|i| if i == 0 { 4 + rng.below(5) as u32 } else { rng.below(10) as u32 }).collect();
        let sum: u32 = digits.iter().enumerate().map(|(i, d)| d * (10 - i as u32)).sum();
        let check = 11 - sum % 11;
        let check = match check {
            11 => 0,
            10 => continue,
            c => c,
        };
        return digits.iter().chain(std::iter::once(&check)).map(|d| char::from_digit(*d, 10).expect("a digit")).collect();
    }
}

/// One patient per study (`(mrn, accession number, study date)`), seeded; studies of one
/// MRN share the patient.
pub fn patients(studies: &[(String, String, NaiveDate)], seed: u64) -> Vec<Patient> {
    let mut rng = Rng(seed);
    let mut out: Vec<Patient> = Vec::with_capacity(studies.len());
    for (index, (mrn, accession, study_date)) in studies.iter().enumerate() {
        let earlier = out.iter().find(|p| &p.mrn == mrn).cloned();
        let (first, sex, last, date_of_birth, nhs, phone, postcode, ethnicity) = match earlier {
            Some(p) => (p.first_name, p.sex, p.last_name, p.date_of_birth, p.nhs_number, p.phone, p.postcode, p.ethnicity),
            None => {
                let (first, sex) = FIRST_NAMES[(index + rng.below(3)) % FIRST_NAMES.len()];
                let last = if index == 0 { "Walker" } else { SURNAMES[(index * 5 + rng.below(4)) % SURNAMES.len()] };
                let years = 30 + rng.below(55) as i32;
                let date_of_birth =
                    NaiveDate::from_ymd_opt(study_date.year() - years, 1 + rng.below(12) as u32, 1 + rng.below(28) as u32).expect("a valid date");
                let nhs = nhs_number(&mut rng);
                let phone = format!("07700 900{:03}", rng.below(1000));
                let postcode = format!(
                    "{} {}{}{}",
                    POSTCODE_AREAS[rng.below(POSTCODE_AREAS.len())],
                    1 + rng.below(9),
                    ['A', 'B', 'D', 'E', 'F', 'G', 'H', 'J'][rng.below(8)],
                    ['L', 'N', 'P', 'Q', 'R', 'S', 'T', 'U'][rng.below(8)]
                );
                (first.to_owned(), sex, last.to_owned(), date_of_birth, nhs, phone, postcode, ETHNICITIES[rng.below(ETHNICITIES.len())])
            }
        };
        let referrer = CLINICIANS[rng.below(CLINICIANS.len())];
        let reporter = CLINICIANS[rng.below(CLINICIANS.len())];
        let finding = FINDINGS[rng.below(FINDINGS.len())];
        let previous = *study_date - chrono::Duration::days(30 + rng.below(300) as i64);
        let title = if sex == "F" { "Mrs" } else { "Mr" };
        let mut narrative = format!(
            "Clinical details: {first} {last}, MRN {mrn}, NHS number {} {} {}, DOB {}. Referred by Dr {referrer} on {}. \
             Contact telephone {phone}; lives at {postcode}.\nComparison: previous study of {}.\nFindings: {finding}",
            &nhs[..3],
            &nhs[3..6],
            &nhs[6..],
            date_of_birth.format("%d/%m/%Y"),
            study_date.format("%-d %B %Y"),
            previous.format("%d/%m/%Y"),
        );
        if index == 0 {
            // The engine's miss: the surname misspelt as an ordinary English word.
            narrative.push_str(" History obtained from the patient's sister, Sarah Walked.");
        }
        let impression = format!("{finding} Discussed with {title} {last}. Reported by Dr {reporter}, consultant radiologist.");
        out.push(Patient {
            mrn: mrn.clone(),
            accession_number: accession.clone(),
            study_date: *study_date,
            nhs_number: nhs,
            first_name: first,
            last_name: last,
            date_of_birth,
            sex,
            ethnicity,
            postcode,
            phone,
            narrative,
            impression,
        });
    }
    out
}

/// Creates the database `settings.name` afresh (dropping one of that name) with the star
/// tables and `patients`: their demographics, reports and observations (height, weight
/// and GCS on the study day).
pub async fn create_database(settings: &DatabaseSettings, patients: &[Patient]) -> Result<(), sqlx::Error> {
    let mut admin = PgConnection::connect_with(&settings.connect_options_for("postgres")).await?;
    let name = settings.name.replace('"', "");
    admin.execute(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))).await?;
    admin.execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\""))).await?;
    admin.close().await?;
    let mut db = PgConnection::connect_with(&settings.connect_options()).await?;
    sqlx::raw_sql(STAR_SCHEMA).execute(&mut db).await?;
    sqlx::raw_sql(
        "SET search_path TO star;
         INSERT INTO lab_test_definition (test_lab_code) VALUES ('ADDENDA'), ('NARRATIVE'), ('IMPRESSION');
         INSERT INTO visit_observation_type (name) VALUES ('HEIGHT'), ('WEIGHT/SCALE'), ('R GLASGOW COMA SCALE SCORE');",
    )
    .execute(&mut db)
    .await?;
    let mut tx = db.begin().await?;
    let mut mrn_ids = std::collections::HashMap::new();
    for (index, p) in patients.iter().enumerate() {
        if let Some(&mrn_id) = mrn_ids.get(&p.mrn) {
            add_study(&mut tx, mrn_id, index, p).await?;
            continue;
        }
        let mrn_id: i64 = sqlx::query_scalar("INSERT INTO star.mrn (mrn, nhs_number) VALUES ($1, $2) RETURNING mrn_id")
            .bind(&p.mrn)
            .bind(&p.nhs_number)
            .fetch_one(&mut *tx)
            .await?;
        mrn_ids.insert(p.mrn.clone(), mrn_id);
        sqlx::query(
            "INSERT INTO star.core_demographic (mrn_id, firstname, lastname, date_of_birth, sex, ethnicity, home_postcode) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(mrn_id)
        .bind(&p.first_name)
        .bind(&p.last_name)
        .bind(p.date_of_birth)
        .bind(p.sex)
        .bind(p.ethnicity)
        .bind(&p.postcode)
        .execute(&mut *tx)
        .await?;
        add_study(&mut tx, mrn_id, index, p).await?;
    }
    tx.commit().await?;
    db.close().await?;
    Ok(())
}

/// The study's report and the observations of its day.
async fn add_study(tx: &mut PgConnection, mrn_id: i64, index: usize, p: &Patient) -> Result<(), sqlx::Error> {
    let sample: i64 = sqlx::query_scalar("INSERT INTO star.lab_sample (mrn_id, external_lab_number) VALUES ($1, $2) RETURNING lab_sample_id")
        .bind(mrn_id)
        .bind(&p.accession_number)
        .fetch_one(&mut *tx)
        .await?;
    let order: i64 =
        sqlx::query_scalar("INSERT INTO star.lab_order (lab_sample_id) VALUES ($1) RETURNING lab_order_id").bind(sample).fetch_one(&mut *tx).await?;
    sqlx::query("INSERT INTO star.lab_result (lab_order_id, lab_test_definition_id, value_as_text) VALUES ($1, 2, $2), ($1, 3, $3)")
        .bind(order)
        .bind(&p.narrative)
        .bind(&p.impression)
        .execute(&mut *tx)
        .await?;
    let visit: i64 =
        sqlx::query_scalar("INSERT INTO star.hospital_visit (mrn_id) VALUES ($1) RETURNING hospital_visit_id").bind(mrn_id).fetch_one(&mut *tx).await?;
    let at = p.study_date.and_hms_opt(9, 30, 0).expect("a valid time").and_utc();
    let height = 1.5 + (index % 40) as f64 / 100.0;
    let weight = 50.0 + (index % 50) as f64;
    let gcs = 13.0 + (index % 3) as f64;
    sqlx::query(
        "INSERT INTO star.visit_observation (hospital_visit_id, visit_observation_type_id, observation_datetime, value_as_real)
         VALUES ($1, 1, $2, $3), ($1, 2, $2, $4), ($1, 3, $2, $5)",
    )
    .bind(visit)
    .bind(at)
    .bind(height)
    .bind(weight)
    .bind(gcs)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// Drops the database (tests, the benchmark).
pub async fn drop_database(settings: &DatabaseSettings) -> Result<(), sqlx::Error> {
    let mut admin = PgConnection::connect_with(&settings.connect_options_for("postgres")).await?;
    admin.execute(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", settings.name.replace('"', "")))).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nhs_numbers_pass_the_modulus_11_check_and_reports_name_their_patient() {
        let studies: Vec<(String, String, NaiveDate)> =
            (0..20).map(|i| (format!("4001{i:04}"), format!("ACC{i:05}"), NaiveDate::from_ymd_opt(2024, 3, 1 + i).unwrap())).collect();
        let patients = patients(&studies, 7);
        assert_eq!(patients, super::patients(&studies, 7), "seeded");
        for p in &patients {
            let digits: Vec<u32> = p.nhs_number.chars().map(|c| c.to_digit(10).unwrap()).collect();
            let sum: u32 = digits[..9].iter().enumerate().map(|(i, d)| d * (10 - i as u32)).sum();
            assert_eq!((11 - sum % 11) % 11, digits[9]);
            for identifier in [&p.first_name, &p.last_name, &p.mrn, &p.phone, &p.postcode] {
                assert!(p.narrative.contains(identifier.as_str()) || p.impression.contains(identifier.as_str()));
            }
        }
        assert!(patients[0].narrative.contains("Walked"));
    }
}
