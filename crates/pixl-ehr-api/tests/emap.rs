//! The EMAP source against a real Postgres database holding the star tables (created from
//! `tests/fixtures/emap_star.sql`): demographics, the report's sections in order, the
//! observation nearest the study time within 24 hours, a patient or report the EHR lacks,
//! read-only connections, and errors that hold no value.

use chrono::{NaiveDate, TimeZone, Utc};
use pixl_core::config::DatabaseSettings;
use pixl_ehr_api::{EhrError, EmapSettings, EmapSource, ObservationTypes, age_at};
use sqlx::{Connection, Executor, PgConnection};

const FIXTURE: &str = include_str!("fixtures/emap_star.sql");

/// A fresh database `pixl_test_emap_<n>` with the star tables and one patient; dropped by
/// `drop_database` (test/run.sh drops any left by an interrupted run).
async fn emap_database() -> DatabaseSettings {
    let suffix = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() ^ u128::from(std::process::id());
    let settings = DatabaseSettings {
        host: "127.0.0.1".to_owned(),
        port: 5432,
        user: "postgres".to_owned(),
        password: String::new().into(),
        name: format!("pixl_test_emap_{:x}", suffix as u64),
    };
    let mut admin = PgConnection::connect_with(&settings.connect_options_for("postgres")).await.expect("Postgres on 127.0.0.1:5432");
    admin.execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{}\"", settings.name))).await.unwrap();
    let mut db = PgConnection::connect_with(&settings.connect_options()).await.unwrap();
    sqlx::raw_sql(FIXTURE).execute(&mut db).await.unwrap();
    let rows = "
        SET search_path TO star;
        INSERT INTO mrn (mrn, nhs_number) VALUES ('40012345', '9434765919'), ('40099999', NULL), ('40055555', NULL);
        INSERT INTO core_demographic (mrn_id, firstname, middlename, lastname, date_of_birth, sex, ethnicity, home_postcode)
            VALUES (1, 'Agnieszka', 'Maria', 'Kowalczyk', '1931-03-04', 'F', 'White - Polish', 'NW1 2BU'),
                   (3, 'Thomas', NULL, 'Hardy', '1980-06-02', 'M', NULL, NULL);
        INSERT INTO lab_sample (mrn_id, external_lab_number) VALUES (1, 'RRV1234567'), (1, 'RRV7654321'), (3, 'RRV5555555');
        INSERT INTO lab_order (lab_sample_id) VALUES (1), (2), (3);
        INSERT INTO lab_test_definition (test_lab_code) VALUES ('IMPRESSION'), ('NARRATIVE'), ('ADDENDA'), ('TEXT');
        INSERT INTO lab_result (lab_order_id, lab_test_definition_id, value_as_text) VALUES
            (1, 1, 'Impression: no acute abnormality.'),
            (1, 2, 'CT head for Agnieszka Kowalczyk: normal.'),
            (1, 3, 'Addendum: reviewed by Dr Okafor.'),
            (1, 4, 'Not a section of the report.'),
            (2, 2, '   '),
            (3, 2, 'The nodule is hardly visible today.');
        INSERT INTO hospital_visit (mrn_id) VALUES (1);
        INSERT INTO visit_observation_type (name) VALUES ('HEIGHT'), ('WEIGHT/SCALE'), ('R GLASGOW COMA SCALE SCORE');
        INSERT INTO visit_observation (hospital_visit_id, visit_observation_type_id, observation_datetime, value_as_real) VALUES
            (1, 1, '2024-05-01 10:00+00', 1.61),
            (1, 1, '2024-05-01 23:00+00', 1.62),
            (1, 2, '2024-05-03 13:00+00', 55.0),
            (1, 3, '2024-05-02 09:00+00', 14),
            (1, 3, '2024-05-01 13:00+00', 15);
    ";
    sqlx::raw_sql(rows).execute(&mut db).await.unwrap();
    settings
}

async fn drop_database(settings: &DatabaseSettings) {
    let mut admin = PgConnection::connect_with(&settings.connect_options_for("postgres")).await.unwrap();
    admin.execute(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", settings.name))).await.unwrap();
}

fn emap(database: &DatabaseSettings) -> EmapSettings {
    EmapSettings { database: database.clone(), schema: "star".to_owned(), observation_types: ObservationTypes::default() }
}

#[tokio::test]
async fn a_study_gets_its_patients_fields_report_and_nearest_observations() {
    let database = emap_database().await;
    let source = EmapSource::connect(&emap(&database)).await.unwrap();
    let study_time = Utc.with_ymd_and_hms(2024, 5, 1, 20, 0, 0).unwrap();
    let record = source.record("40012345", "RRV1234567", study_time).await.unwrap();

    let patient = record.demographics.clone().expect("the patient is in the EHR");
    assert_eq!(patient.last_name.as_deref(), Some("Kowalczyk"));
    assert_eq!(patient.date_of_birth, NaiveDate::from_ymd_opt(1931, 3, 4));
    assert_eq!((patient.sex.as_deref(), patient.ethnicity.as_deref()), (Some("F"), Some("White - Polish")));
    assert_eq!(
        record.report.as_deref(),
        Some("Addendum: reviewed by Dr Okafor.\n\nCT head for Agnieszka Kowalczyk: normal.\n\nImpression: no acute abnormality."),
        "ADDENDA, NARRATIVE, IMPRESSION, and nothing else"
    );
    // Height: 23:00 (3 h away) rather than 10:00 (10 h); GCS: 13:00 the day before (7 h)
    // rather than 09:00 the next day (13 h); weight: 41 h away, outside the window.
    assert_eq!((record.height, record.gcs, record.weight), (Some(1.62), Some(15.0), None));
    assert!(!format!("{record:?}").contains("Kowalczyk"), "Debug shows no value: {record:?}");

    // Probes for the report's de-identification.
    let probes = patient.probes("RRV1234567");
    assert_eq!(probes.first_names, ["Agnieszka", "Maria"]);
    assert_eq!(probes.surnames, ["Kowalczyk"]);
    assert_eq!(probes.identifiers, ["40012345", "RRV1234567", "9434765919"]);
    assert_eq!(probes.dates_of_birth, ["1931-03-04"]);
    assert_eq!(probes.postcodes, ["NW1 2BU"]);
    // The engine with those probes leaves nothing of the patient in the report, and the
    // second check agrees.
    let report = record.report.unwrap();
    let masked = pixl_text::mask_asterisks(&report, &pixl_text::detect_with(&report, Some(&pixl_text::Probes::new(&probes))).spans);
    assert!(!masked.contains("Kowalczyk") && !masked.contains("Agnieszka") && !masked.contains("Okafor"), "{masked}");
    assert!(pixl_text::check::check(&masked, Some(&probes)).is_empty());

    drop_database(&database).await;
}

#[tokio::test]
async fn what_the_ehr_lacks_is_none_and_connections_are_read_only() {
    let database = emap_database().await;
    let source = EmapSource::connect(&emap(&database)).await.unwrap();
    let at = Utc.with_ymd_and_hms(2024, 5, 1, 20, 0, 0).unwrap();
    assert_eq!(source.record("nobody", "RRV1234567", at).await.unwrap().demographics, None);
    // A patient with an MRN row and no demographics; a study whose only section is blank.
    let bare = source.record("40099999", "RRV0000000", at).await.unwrap();
    assert!(bare.demographics.is_some() && bare.report.is_none());
    assert_eq!(source.report("RRV7654321", "40012345").await.unwrap(), None);
    assert_eq!(source.report("RRV1234567", "40099999").await.unwrap(), None, "another patient's accession number gives nothing");

    // Read-only: a write through the same settings fails (the role should be read-only too).
    let options = database.connect_options().options([("search_path", "star"), ("default_transaction_read_only", "on")]);
    let mut connection = PgConnection::connect_with(&options).await.unwrap();
    assert!(connection.execute("DELETE FROM mrn").await.is_err());
    drop_database(&database).await;
}

#[tokio::test]
async fn errors_name_the_query_and_never_a_value() {
    let database = emap_database().await;
    let bad_schema = EmapSource::connect(&EmapSettings { schema: "star; DROP TABLE mrn".to_owned(), ..emap(&database) }).await.unwrap_err();
    assert!(matches!(bad_schema, EhrError::Schema(_)), "{bad_schema}");
    // A schema without the tables: the query fails, and its message quotes no MRN.
    let empty = EmapSource::connect(&EmapSettings { schema: "public".to_owned(), ..emap(&database) }).await.unwrap();
    let error = empty.demographics("40012345").await.unwrap_err();
    // 42P01: undefined table.
    assert_eq!(error.to_string(), "the EHR query demographics failed (database: the server refused a statement (SQLSTATE 42P01))");
    assert!(!error.is_transient());
    let unreachable = EmapSource::connect(&EmapSettings { database: DatabaseSettings { port: 1, ..database.clone() }, ..emap(&database) }).await.unwrap_err();
    assert!(unreachable.to_string().starts_with("cannot connect to the EHR database at 127.0.0.1:1"), "{unreachable}");
    assert!(unreachable.is_transient());
    drop_database(&database).await;
}

#[test]
fn age_at_the_study_is_capped_at_90() {
    let on = NaiveDate::from_ymd_opt(2024, 5, 1).unwrap();
    assert_eq!(age_at(NaiveDate::from_ymd_opt(1960, 5, 1).unwrap(), on), Some(64));
    assert_eq!(age_at(NaiveDate::from_ymd_opt(1960, 5, 2).unwrap(), on), Some(63));
    assert_eq!(age_at(NaiveDate::from_ymd_opt(1931, 3, 4).unwrap(), on), Some(90));
    assert_eq!(age_at(NaiveDate::from_ymd_opt(1920, 1, 1).unwrap(), on), Some(90));
    assert_eq!(age_at(NaiveDate::from_ymd_opt(2025, 1, 1).unwrap(), on), None, "born after the study");
}

/// age, sex, height, gcs, report_text, report_spans of `ehr_anon`.
type AnonRow = (Option<i32>, Option<String>, Option<f64>, Option<f64>, Option<String>, sqlx::types::Json<serde_json::Value>);

/// A study row in pixl's database (a fresh, migrated one per test).
async fn study(pool: &sqlx::PgPool, mrn: &str, accession: &str, date: &str) -> i64 {
    let extract: i64 = sqlx::query_scalar("INSERT INTO extracts (project_slug, extract_datetime) VALUES ('p', now()) ON CONFLICT (project_slug, extract_datetime) DO UPDATE SET project_slug = 'p' RETURNING id")
        .fetch_one(pool)
        .await
        .unwrap();
    sqlx::query_scalar("INSERT INTO studies (extract_id, project_slug, mrn, accession_number, study_date) VALUES ($1, 'p', $2, $3, $4::date) RETURNING id")
        .bind(extract)
        .bind(mrn)
        .bind(accession)
        .bind(date)
        .fetch_one(pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_study_is_stored_de_identified_flagged_when_doubted_and_again_the_same() {
    use pixl_ehr_api::{Outcome, process_study};
    let ctx = pixl_core::testing::TestContext::new().await;
    let database = emap_database().await;
    let source = EmapSource::connect(&emap(&database)).await.unwrap();
    let clean = study(&ctx.pool, "40012345", "RRV1234567", "2024-05-01").await;
    let doubted = study(&ctx.pool, "40055555", "RRV5555555", "2024-05-01").await;
    let unknown = study(&ctx.pool, "nobody", "RRV0000000", "2024-05-01").await;

    for _ in 0..2 {
        assert_eq!(process_study(&ctx.pool, &source, clean).await.unwrap(), Outcome::Done);
        // "hardly" is a word the engine keeps, one edit from the patient's surname Hardy:
        // the second check doubts it, and the report is withheld.
        assert_eq!(process_study(&ctx.pool, &source, doubted).await.unwrap(), Outcome::Flagged(1));
        assert_eq!(process_study(&ctx.pool, &source, unknown).await.unwrap(), Outcome::NoRecord);
    }
    let (age, sex, height, gcs, report, spans): AnonRow =
        sqlx::query_as("SELECT age, sex, height, gcs, report_text, report_spans FROM ehr_anon WHERE study_id = $1")
            .bind(clean)
            .fetch_one(&ctx.pool)
            .await
            .unwrap();
    // Observations nearest the study date's midday: height at 10:00 (2 h) rather than 23:00.
    assert_eq!((age, sex.as_deref(), height, gcs), (Some(90), Some("F"), Some(1.61), Some(15.0)));
    let report = report.unwrap();
    assert!(report.contains("[NAME]") && !report.contains("Kowalczyk") && !report.contains("Okafor"), "{report}");
    // "Agnieszka Kowalczyk" (one span: the probe of the whole name) and "Okafor".
    assert_eq!(spans.0, serde_json::json!({"NAME": 2}));
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM ehr_anon").fetch_one(&ctx.pool).await.unwrap();
    assert_eq!(rows, 2, "one row per study with a record, however often it ran");
    let flags: Vec<(String, i32, i32)> =
        sqlx::query_as("SELECT reason, span_start, span_end FROM report_flags WHERE study_id = $1").bind(doubted).fetch_all(&ctx.pool).await.unwrap();
    assert_eq!(flags, [("name variant".to_owned(), 14, 20)], "the place in the de-identified text, not the value");
    let states: Vec<(i64, String)> = sqlx::query_as("SELECT id, ehr_state::text FROM studies ORDER BY id").fetch_all(&ctx.pool).await.unwrap();
    assert_eq!(states, [(clean, "done".to_owned()), (doubted, "flagged".to_owned()), (unknown, "no_record".to_owned())]);
    drop_database(&database).await;
    ctx.teardown().await;
}

#[test]
fn settings_come_from_emap_variables_with_the_samples_defaults() {
    let vars = [("EMAP_DB_HOST", "emap.hospital.internal"), ("EMAP_DB_PORT", "6543"), ("EMAP_DB_PASSWORD", "s3cret"), ("EMAP_OBSERVATION_GCS", "GCS TOTAL")];
    let env = pixl_core::config::Env::new(|name: &str| vars.iter().find(|(n, _)| *n == name).map(|(_, v)| (*v).to_owned()));
    let settings = EmapSettings::from_env(&env).unwrap();
    assert_eq!((settings.database.host.as_str(), settings.database.port, settings.database.name.as_str()), ("emap.hospital.internal", 6543, "emap"));
    assert_eq!(
        (settings.schema.as_str(), settings.observation_types.gcs.as_str(), settings.observation_types.height.as_str()),
        ("star", "GCS TOTAL", "HEIGHT")
    );
    assert!(!format!("{settings:?}").contains("s3cret"), "the password is redacted");
    let bad = [("EMAP_DB_PORT", "none")];
    let env = pixl_core::config::Env::new(|name: &str| bad.iter().find(|(n, _)| *n == name).map(|(_, v)| (*v).to_owned()));
    assert!(EmapSettings::from_env(&env).unwrap_err().to_string().contains("EMAP_DB_PORT"));
}
