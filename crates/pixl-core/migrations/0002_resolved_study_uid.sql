-- The StudyInstanceUID that retrieval found, kept apart from the cohort's own `study_uid`:
-- the cohort identity (the unique key) must stay as the cohort gave it, or re-populating a
-- cohort that named a study by accession number only would insert it again.
ALTER TABLE studies ADD COLUMN resolved_study_uid text;
