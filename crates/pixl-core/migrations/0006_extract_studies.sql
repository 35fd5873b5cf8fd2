-- Which studies each extract names, with the extract's own procedure id: a study is one
-- row of `studies` per project whatever extract first named it, and a later extract that
-- names it again (with its own procedure ids) links it in its image linker, as PIXL joins
-- every exported image of the project to the extract's procedures.
CREATE TABLE extract_studies (
    extract_id bigint NOT NULL REFERENCES extracts (id),
    study_id bigint NOT NULL REFERENCES studies (id),
    procedure_occurrence_id bigint
);
CREATE UNIQUE INDEX extract_studies_identity ON extract_studies (extract_id, study_id, procedure_occurrence_id) NULLS NOT DISTINCT;

-- The project option `studies_per_accession: one` (PIXL's way): the other original studies
-- found for the MRN and accession number, de-identified into this study's pseudonymous
-- study.
ALTER TABLE studies ADD COLUMN merged_study_uids text[] NOT NULL DEFAULT '{}';
