-- The pixl schema: extracts, studies with their state machine, and the outbox of messages
-- waiting to be published.

CREATE TYPE study_state AS ENUM ('queued', 'retrieving', 'retrieved', 'anonymised', 'exported', 'failed');

-- One row per (project, extract datetime): the same project can have many extracts.
CREATE TABLE extracts (
    id bigserial PRIMARY KEY,
    project_slug text NOT NULL,
    extract_datetime timestamptz NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT extracts_identity UNIQUE (project_slug, extract_datetime)
);

-- One row per study (or series selection) of a project. Identifiable: mrn, accession_number,
-- study_uid, series_uids, study_date, participant_id never leave this database.
CREATE TABLE studies (
    id bigserial PRIMARY KEY,
    extract_id bigint NOT NULL REFERENCES extracts (id),
    project_slug text NOT NULL,
    mrn text NOT NULL,
    accession_number text,
    study_uid text,
    -- Empty: the whole study. Otherwise only these series are retrieved.
    series_uids text[] NOT NULL DEFAULT '{}',
    study_date date,
    procedure_occurrence_id bigint,
    participant_id text,
    pseudo_patient_id text,
    pseudo_study_uid text,
    state study_state NOT NULL DEFAULT 'queued',
    -- Why the study failed; written by pixl code, never holds an identifier.
    failure_reason text,
    attempts integer NOT NULL DEFAULT 0,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    exported_at timestamptz,
    -- A study appears once per project, whatever extract or populate run named it.
    CONSTRAINT studies_identity UNIQUE NULLS NOT DISTINCT (project_slug, mrn, accession_number, study_uid),
    CONSTRAINT studies_has_identifier CHECK (accession_number IS NOT NULL OR study_uid IS NOT NULL),
    CONSTRAINT studies_exported_at CHECK ((state = 'exported') = (exported_at IS NOT NULL))
);

CREATE INDEX studies_project_state ON studies (project_slug, state);
CREATE INDEX studies_extract ON studies (extract_id);
CREATE UNIQUE INDEX studies_pseudo_study_uid ON studies (project_slug, pseudo_study_uid)
    WHERE pseudo_study_uid IS NOT NULL;

-- Messages written in the same transaction as the state they announce, published after
-- commit by the relay and deleted once the broker confirmed them. No foreign key to
-- studies: rows live for seconds, the relay joins studies anyway, and the key's trigger
-- doubled the cost of queueing a large cohort.
CREATE TABLE outbox (
    id bigserial PRIMARY KEY,
    study_id bigint NOT NULL,
    kind text NOT NULL CHECK (kind IN ('imaging', 'anonymise', 'export')),
    queue text NOT NULL,
    priority smallint NOT NULL DEFAULT 0 CHECK (priority BETWEEN 0 AND 5),
    created_at timestamptz NOT NULL DEFAULT now()
);
