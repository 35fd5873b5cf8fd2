-- The value of each observation type (height, weight, GCS) nearest the study time, within
-- 24 hours either side, for the patient's MRN: one row per type that has one.
-- $1: MRN, $2: observation type names, $3: study time.
SELECT DISTINCT ON (vot.name)
    vot.name,
    vo.value_as_real
FROM mrn AS m
JOIN hospital_visit AS hv ON hv.mrn_id = m.mrn_id
JOIN visit_observation AS vo ON vo.hospital_visit_id = hv.hospital_visit_id
JOIN visit_observation_type AS vot ON vot.visit_observation_type_id = vo.visit_observation_type_id
WHERE m.mrn = $1
    AND vot.name = ANY($2)
    AND vo.value_as_real IS NOT NULL
    AND vo.observation_datetime >= $3 - INTERVAL '24 hours'
    AND vo.observation_datetime <= $3 + INTERVAL '24 hours'
ORDER BY vot.name, abs(extract(epoch FROM vo.observation_datetime - $3)), vo.visit_observation_id
