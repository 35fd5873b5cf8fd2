//! `pixl import-pixl-db` against a real Postgres database laid out as PIXL's alembic
//! migrations leave it (the DDL below is written by hand from those migrations, in their
//! order): what PIXL exported is recorded as exported with PIXL's pseudonyms, is never
//! queued again by `pixl populate` (matched on project, MRN and accession number when a
//! side has no study UID), and a second import changes nothing.

use sqlx::{Connection, Executor, PgConnection, Row};

use crate::support::Env;

/// PIXL's `pixl_pipeline` schema, migration by migration.
const PIXL_DDL: &str = "
CREATE SCHEMA pixl_pipeline;
-- bcaef54e2bfe: create extract and image tables
CREATE TABLE pixl_pipeline.extract (extract_id SERIAL NOT NULL, slug VARCHAR NOT NULL, PRIMARY KEY (extract_id));
CREATE TABLE pixl_pipeline.image (
    image_id SERIAL NOT NULL,
    accession_number VARCHAR NOT NULL,
    study_date DATE NOT NULL,
    mrn VARCHAR NOT NULL,
    hashed_identifier VARCHAR,
    exported_at TIMESTAMP WITH TIME ZONE,
    extract_id INTEGER NOT NULL,
    PRIMARY KEY (image_id),
    FOREIGN KEY (extract_id) REFERENCES pixl_pipeline.extract (extract_id)
);
-- cb5ee12a6e20: replace hashed_identifier with pseudo_study_uid
ALTER TABLE pixl_pipeline.image DROP COLUMN hashed_identifier;
ALTER TABLE pixl_pipeline.image ADD COLUMN pseudo_study_uid VARCHAR;
-- 83dcb3812628: add study_uid
ALTER TABLE pixl_pipeline.image ADD COLUMN study_uid VARCHAR;
-- d947cc715eb1: add pseudo_patient_id
ALTER TABLE pixl_pipeline.image ADD COLUMN pseudo_patient_id VARCHAR;
-- f1c9a4d3e7b2: add skip_reasons
ALTER TABLE pixl_pipeline.image ADD COLUMN skip_reasons JSONB;
";

const SLUG: &str = "test-extract-uclh-omop-cdm";

#[tokio::test]
async fn pixls_exported_studies_are_never_queued_again_and_keep_their_pseudonyms() {
    let env = Env::new().await;
    let database = &env.ctx.settings.database;
    let pixl_db = format!("{}_pixl", database.name);
    let mut admin = PgConnection::connect_with(&database.connect_options_for("postgres")).await.unwrap();
    admin.execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{pixl_db}\""))).await.unwrap();
    let mut pixl = PgConnection::connect_with(&database.connect_options_for(&pixl_db)).await.unwrap();
    pixl.execute(PIXL_DDL).await.unwrap();
    pixl.execute(sqlx::AssertSqlSafe(format!(
        "INSERT INTO pixl_pipeline.extract (slug) VALUES ('{SLUG}');
         INSERT INTO pixl_pipeline.image (accession_number, study_date, mrn, pseudo_study_uid, study_uid, pseudo_patient_id, exported_at, extract_id) VALUES
           ('ACC-A', '2022-01-01', 'MRN-A', '2.25.1001', NULL, 'pseudo-patient-a', '2024-03-01T10:00:00Z', 1),
           ('ACC-B', '2022-01-02', 'MRN-B', '2.25.1002', '1.2.3.2', 'pseudo-patient-b', '2024-03-02T10:00:00Z', 1),
           ('ACC-C', '2022-01-03', 'MRN-C', '2.25.1003', NULL, NULL, NULL, 1)"
    )))
    .await
    .unwrap();
    let url = format!("postgres://{}@{}:{}/{pixl_db}", database.user, database.host, database.port);

    let summary = pixl_cli::import_pixl_db::import_pixl_db(&env.ctx.settings, &url, None).await.unwrap();
    assert_eq!(summary.schema, "pixl_pipeline");
    let project = &summary.projects[SLUG];
    assert_eq!((project.imported, project.already_known, project.not_exported, project.unusable), (2, 0, 1, 0), "{summary}");
    let again = pixl_cli::import_pixl_db::import_pixl_db(&env.ctx.settings, &url, None).await.unwrap();
    let project = &again.projects[SLUG];
    assert_eq!((project.imported, project.already_known), (0, 2), "a second import changes nothing: {again}");

    let rows =
        sqlx::query("SELECT mrn, state::text AS state, pseudo_study_uid, pseudo_patient_id FROM studies ORDER BY mrn").fetch_all(&env.ctx.pool).await.unwrap();
    let imported: Vec<(String, String, Option<String>, Option<String>)> =
        rows.iter().map(|r| (r.get("mrn"), r.get("state"), r.get("pseudo_study_uid"), r.get("pseudo_patient_id"))).collect();
    assert_eq!(
        imported,
        vec![
            ("MRN-A".into(), "exported".into(), Some("2.25.1001".into()), Some("pseudo-patient-a".into())),
            ("MRN-B".into(), "exported".into(), Some("2.25.1002".into()), Some("pseudo-patient-b".into())),
        ]
    );

    // A cohort naming all three (A now with its study UID, which PIXL never recorded) and a
    // new one: only C (not exported by PIXL) and D are queued.
    let cohort = env.export_root.path().join("cohort.csv");
    std::fs::write(
        &cohort,
        format!(
            "procedure_id,mrn,accession_number,project_name,extract_generated_timestamp,study_date,study_uid,participant_id\n\
             1,MRN-A,ACC-A,{SLUG},2025-01-01T00:00:00Z,2022-01-01,1.2.3.1,\n\
             2,MRN-B,ACC-B,{SLUG},2025-01-01T00:00:00Z,2022-01-02,1.2.3.2,\n\
             3,MRN-C,ACC-C,{SLUG},2025-01-01T00:00:00Z,2022-01-03,1.2.3.3,\n\
             4,MRN-D,ACC-D,{SLUG},2025-01-01T00:00:00Z,2022-01-04,1.2.3.4,\n"
        ),
    )
    .unwrap();
    let populated = env.populate(&cohort).await.unwrap();
    let queued: Vec<String> = sqlx::query_scalar("SELECT mrn FROM studies WHERE state = 'queued' ORDER BY mrn").fetch_all(&env.ctx.pool).await.unwrap();
    assert_eq!(queued, vec!["MRN-C".to_owned(), "MRN-D".to_owned()], "{populated}");

    // PIXL exported D too (two sites at once, say) after pixl queued it: the import leaves
    // pixl's study alone and says so.
    pixl.execute("INSERT INTO pixl_pipeline.image (accession_number, study_date, mrn, pseudo_study_uid, exported_at, extract_id) VALUES ('ACC-D', '2022-01-04', 'MRN-D', '2.25.1004', '2024-03-04T10:00:00Z', 1)")
        .await
        .unwrap();
    let third = pixl_cli::import_pixl_db::import_pixl_db(&env.ctx.settings, &url, None).await.unwrap();
    let project = &third.projects[SLUG];
    assert_eq!((project.imported, project.already_known, project.in_progress_here), (0, 2, 1), "{third}");
    assert!(third.to_string().contains("WARNING 1 studies PIXL exported are queued"), "{third}");

    // A wrong URL is reported without the password.
    let error = pixl_cli::import_pixl_db::import_pixl_db(&env.ctx.settings, "postgres://pixl:s3cret-pw@127.0.0.1:1/pixl", None).await.unwrap_err().to_string();
    assert!(error.contains("127.0.0.1:1") && !error.contains("s3cret-pw"), "{error}");

    pixl.close().await.unwrap();
    admin.execute(sqlx::AssertSqlSafe(format!("DROP DATABASE \"{pixl_db}\" WITH (FORCE)"))).await.unwrap();
    env.teardown().await;
}
