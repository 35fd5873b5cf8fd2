-- The radiology report of a study: the text results of the lab sample whose external lab
-- number is the study's accession number, for the patient's MRN, in the order ADDENDA,
-- NARRATIVE, IMPRESSION (then by result, for several of one kind).
-- $1: accession number, $2: MRN.
SELECT
    ltd.test_lab_code,
    lr.value_as_text
FROM lab_sample AS ls
JOIN mrn AS m ON m.mrn_id = ls.mrn_id
JOIN lab_order AS lo ON lo.lab_sample_id = ls.lab_sample_id
JOIN lab_result AS lr ON lr.lab_order_id = lo.lab_order_id
JOIN lab_test_definition AS ltd ON ltd.lab_test_definition_id = lr.lab_test_definition_id
WHERE ls.external_lab_number = $1
    AND m.mrn = $2
    AND ltd.test_lab_code IN ('ADDENDA', 'NARRATIVE', 'IMPRESSION')
    AND lr.value_as_text IS NOT NULL
ORDER BY
    CASE ltd.test_lab_code WHEN 'ADDENDA' THEN 1 WHEN 'NARRATIVE' THEN 2 ELSE 3 END,
    lr.lab_result_id
