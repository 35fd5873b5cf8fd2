-- The value of one observation type (height, weight, GCS) nearest the study time, within
-- 24 hours either side, for the patient's MRN.
-- $1: MRN, $2: observation type name, $3: study time.
SELECT vo.value_as_real
FROM mrn AS m
JOIN hospital_visit AS hv ON hv.mrn_id = m.mrn_id
JOIN visit_observation AS vo ON vo.hospital_visit_id = hv.hospital_visit_id
JOIN visit_observation_type AS vot ON vot.visit_observation_type_id = vo.visit_observation_type_id
WHERE m.mrn = $1
    AND vot.name = $2
    AND vo.value_as_real IS NOT NULL
    AND vo.observation_datetime >= $3 - INTERVAL '24 hours'
    AND vo.observation_datetime <= $3 + INTERVAL '24 hours'
ORDER BY abs(extract(epoch FROM vo.observation_datetime - $3)), vo.visit_observation_id
LIMIT 1
