-- ehr-api (issue 14): per study, the de-identified EHR row and the second check's flags.
-- No raw EHR value is stored: ehr-api reads the EHR source, de-identifies and checks in
-- memory, and writes only what is below.

-- NULL: the study is not handled by ehr-api (yet). `flagged`: the report is withheld until
-- a person releases or redacts it. `no_record`: the EHR has no such patient.
CREATE TYPE ehr_state AS ENUM ('done', 'flagged', 'no_record', 'failed');
ALTER TABLE studies ADD COLUMN ehr_state ehr_state;
-- Why ehr-api failed the study; written by pixl code, never holds an identifier.
ALTER TABLE studies ADD COLUMN ehr_failure_reason text;

CREATE TABLE ehr_anon (
    study_id bigint PRIMARY KEY REFERENCES studies (id),
    -- Whole years at the study date, 90 and over as 90.
    age integer,
    sex text,
    ethnicity text,
    height double precision,
    weight double precision,
    gcs double precision,
    -- De-identified (pixl-text, the patient's probes, [CATEGORY] tags).
    report_text text,
    -- Spans removed from the report per category: {"NAME": 3, "DATE": 2}.
    report_spans jsonb NOT NULL DEFAULT '{}',
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- What the second check doubts in a de-identified report: the reason and where (offsets
-- in the de-identified text, in characters), never the value.
CREATE TABLE report_flags (
    id bigserial PRIMARY KEY,
    study_id bigint NOT NULL REFERENCES studies (id),
    reason text NOT NULL,
    span_start integer NOT NULL,
    span_end integer NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX report_flags_study ON report_flags (study_id);
