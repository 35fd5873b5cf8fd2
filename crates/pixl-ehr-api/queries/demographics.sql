-- The patient's identifiers and demographics, by MRN: the probes of the report's
-- de-identification and the ehr_anon fields (sex, ethnicity; age from date_of_birth).
-- $1: MRN.
SELECT
    m.mrn,
    m.nhs_number,
    d.firstname,
    d.middlename,
    d.lastname,
    d.date_of_birth,
    d.sex,
    d.ethnicity,
    d.home_postcode
FROM mrn AS m
LEFT JOIN core_demographic AS d ON d.mrn_id = m.mrn_id
WHERE m.mrn = $1
LIMIT 1
