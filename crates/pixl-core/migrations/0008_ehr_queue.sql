-- ehr-api's queue, its parquet source and the review of flagged reports (issue 14).

-- `ehr` messages go through the outbox like the others.
ALTER TABLE outbox DROP CONSTRAINT outbox_kind_check;
ALTER TABLE outbox ADD CONSTRAINT outbox_kind_check CHECK (kind IN ('imaging', 'anonymise', 'export', 'ehr'));

-- Whether populate queued the study for ehr-api (its project does not say `ehr: none`).
ALTER TABLE studies ADD COLUMN ehr_wanted boolean NOT NULL DEFAULT false;

-- The raw report of a study whose project reads reports from the extract's
-- private/RADIOLOGY_REPORTS.parquet (`ehr: reports-parquet`). Identifiable: kept only
-- until ehr-api has de-identified it, then deleted in the same transaction that stores
-- the de-identified row (retention: until processed).
CREATE TABLE ehr_source_reports (
    study_id bigint PRIMARY KEY REFERENCES studies (id),
    report_text text NOT NULL
);

-- Every decision a person made about a flagged report: who, when, what, why.
CREATE TABLE report_reviews (
    id bigserial PRIMARY KEY,
    study_id bigint NOT NULL REFERENCES studies (id),
    action text NOT NULL CHECK (action IN ('release', 'redact')),
    -- Written by the reviewer (`--reason`); for `redact`, pixl's own text.
    reason text NOT NULL,
    operator text NOT NULL,
    at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX report_reviews_study ON report_reviews (study_id);

-- A flag stays on record once reviewed; this names the review that cleared it.
ALTER TABLE report_flags ADD COLUMN cleared_by bigint REFERENCES report_reviews (id);
