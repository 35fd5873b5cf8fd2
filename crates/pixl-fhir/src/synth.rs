//! A seeded generator of Synthea-like FHIR R4 NDJSON (one file per resource type), for
//! tests, the benchmark and trying the conversion without a server. Every patient has a
//! name, an MRN and an NHS number, a phone, an address and a birth date, and their notes
//! and report conclusions mention them: what de-identification must remove.

use std::io::Write;
use std::path::Path;

use pixl_text::synth::Rng;
use serde_json::{Value, json};

const GIVEN: &[&str] = &[
    "Olivia", "Amelia", "Isla", "Ava", "Mia", "Ivy", "Lily", "Oliver", "George", "Arthur", "Noah", "Muhammad", "Leo", "Harry", "Oscar", "Archie", "Henry",
    "Theodore", "Freddie", "Jack",
];
const FAMILY: &[&str] = &[
    "Whitcombe",
    "Featherstone",
    "Abernethy",
    "Pemberton",
    "Ravensworth",
    "Ashdown",
    "Blakemore",
    "Carrington",
    "Dunmore",
    "Elsworth",
    "Fairbairn",
    "Gillingham",
    "Hollingsworth",
    "Kettleby",
    "Lockwood",
];
const STREETS: &[&str] = &["Acacia Avenue", "Larkspur Lane", "Wisteria Walk", "Juniper Close", "Foxglove Road"];
const POSTCODES: &[&str] = &["NW1 2BU", "SE15 4QT", "EC1A 1BB", "W1T 4JG", "N7 9QH"];
const CONDITIONS: &[(&str, &str)] =
    &[("44054006", "Diabetes mellitus type 2"), ("38341003", "Hypertension"), ("195967001", "Asthma"), ("40055000", "Chronic sinusitis")];
const LABS: &[(&str, &str, &str, f64)] = &[
    ("8302-2", "Body height", "cm", 170.0),
    ("29463-7", "Body weight", "kg", 75.0),
    ("2339-0", "Glucose", "mg/dL", 95.0),
    ("718-7", "Hemoglobin", "g/dL", 14.0),
];

/// What the generator put in, for tests to look for.
#[derive(Debug, Default)]
pub struct Written {
    /// Names, identifiers, phones, street lines, postcodes, birth dates, ids.
    pub identifiers: Vec<String>,
    /// Dates and instants of the input (unshifted).
    pub dates: Vec<String>,
    pub resources: u64,
    pub bytes: u64,
}

/// An NHS number with a valid mod-11 check digit.
fn nhs_number(rng: &mut Rng) -> String {
    loop {
        let digits: Vec<u64> = (0..9).map(|_| rng.below(10) as u64).collect();
        let sum: u64 = digits.iter().enumerate().map(|(i, d)| d * (10 - i as u64)).sum();
        let check = 11 - (sum % 11);
        let check = if check == 11 { 0 } else { check };
        if check == 10 {
            continue;
        }
        return digits.iter().map(|d| d.to_string()).collect::<String>() + &check.to_string();
    }
}

fn date(rng: &mut Rng, from_year: i32, years: u64) -> chrono::NaiveDate {
    chrono::NaiveDate::from_ymd_opt(from_year, 1, 1).unwrap() + chrono::Duration::days(rng.below(years as usize * 365) as i64)
}

/// Writes `patients` patients and their records under `dir` (`Patient.ndjson`,
/// `Encounter.ndjson`, ...).
pub fn write(dir: &Path, patients: u64, seed: u64) -> std::io::Result<Written> {
    std::fs::create_dir_all(dir)?;
    let types = [
        "Patient",
        "Encounter",
        "Condition",
        "Observation",
        "MedicationRequest",
        "Procedure",
        "DiagnosticReport",
        "ImagingStudy",
        "AllergyIntolerance",
        "Immunization",
        "Organization",
    ];
    let mut files: std::collections::BTreeMap<&str, std::io::BufWriter<std::fs::File>> = types
        .iter()
        .map(|t| Ok((*t, std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(dir.join(format!("{t}.ndjson")))?))))
        .collect::<std::io::Result<_>>()?;
    let mut rng = Rng::new(seed);
    let mut written = Written::default();
    let emit =
        |files: &mut std::collections::BTreeMap<&str, std::io::BufWriter<std::fs::File>>, written: &mut Written, resource: Value| -> std::io::Result<()> {
            let ty = resource["resourceType"].as_str().unwrap().to_owned();
            let line = serde_json::to_vec(&resource).expect("JSON");
            written.bytes += line.len() as u64 + 1;
            written.resources += 1;
            let file = files.get_mut(ty.as_str()).expect("known type");
            file.write_all(&line)?;
            file.write_all(b"\n")
        };
    emit(
        &mut files,
        &mut written,
        json!({"resourceType": "Organization", "id": "org-1", "name": "Example Hospital", "telecom": [{"system": "phone", "value": "020 7946 0000"}]}),
    )?;
    for p in 0..patients {
        let id = format!("pat-{seed}-{p}");
        let given = rng.pick(GIVEN).to_string();
        let family = rng.pick(FAMILY).to_string();
        let mrn = format!("MRN{:08}", rng.below(100_000_000));
        let nhs = nhs_number(&mut rng);
        let phone = format!("07700 9{:05}", rng.below(100_000));
        let street = format!("{} {}", 1 + rng.below(200), rng.pick(STREETS));
        let postcode = rng.pick(POSTCODES).to_string();
        let birth = date(&mut rng, 1925, 90);
        let birth_text = birth.format("%Y-%m-%d").to_string();
        written.identifiers.extend([
            id.clone(),
            given.clone(),
            family.clone(),
            mrn.clone(),
            nhs.clone(),
            phone.clone(),
            street.clone(),
            postcode.clone(),
            birth_text.clone(),
        ]);
        emit(
            &mut files,
            &mut written,
            json!({
                "resourceType": "Patient", "id": id,
                "meta": {"profile": ["http://hl7.org/fhir/us/core/StructureDefinition/us-core-patient"]},
                "text": {"status": "generated", "div": format!("<div xmlns=\"http://www.w3.org/1999/xhtml\">{given} {family}</div>")},
                "extension": [{"url": "http://hl7.org/fhir/StructureDefinition/patient-mothersMaidenName", "valueString": format!("{} {}", rng.pick(GIVEN), family)}],
                "identifier": [{"system": "https://fhir.nhs.uk/Id/nhs-number", "value": nhs}, {"system": "urn:oid:hospital-mrn", "type": {"text": "MRN"}, "value": mrn}],
                "name": [{"use": "official", "family": family, "given": [given], "prefix": ["Ms"]}],
                "telecom": [{"system": "phone", "value": phone, "use": "mobile"}],
                "gender": if rng.below(2) == 0 { "female" } else { "male" },
                "birthDate": birth_text,
                "address": [{"line": [street], "city": "London", "postalCode": postcode, "country": "GB"}],
                "maritalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-MaritalStatus", "code": "M"}]},
                "communication": [{"language": {"coding": [{"system": "urn:ietf:bcp:47", "code": "en-GB"}]}}],
                "generalPractitioner": [{"reference": "Organization/org-1", "display": "Example Hospital"}]
            }),
        )?;
        let subject = json!({"reference": format!("Patient/{id}"), "display": format!("{given} {family}")});
        for e in 0..(2 + rng.below(3)) {
            let encounter_id = format!("enc-{seed}-{p}-{e}");
            let start = date(&mut rng, 2015, 8).and_hms_opt(9 + rng.below(8) as u32, 0, 0).unwrap();
            let start_text = start.format("%Y-%m-%dT%H:%M:%S+00:00").to_string();
            let end_text = (start + chrono::Duration::minutes(30)).format("%Y-%m-%dT%H:%M:%S+00:00").to_string();
            written.dates.extend([start_text.clone(), end_text.clone()]);
            written.identifiers.push(encounter_id.clone());
            emit(
                &mut files,
                &mut written,
                json!({
                    "resourceType": "Encounter", "id": encounter_id, "status": "finished",
                    "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
                    "type": [{"coding": [{"system": "http://snomed.info/sct", "code": "185349003", "display": "Encounter for check up"}]}],
                    "subject": subject, "period": {"start": start_text, "end": end_text},
                    "serviceProvider": {"reference": "Organization/org-1"}
                }),
            )?;
            let encounter = json!({"reference": format!("Encounter/{encounter_id}")});
            let day = start.format("%Y-%m-%d").to_string();
            let (code, display) = CONDITIONS[rng.below(CONDITIONS.len())];
            emit(
                &mut files,
                &mut written,
                json!({
                    "resourceType": "Condition", "id": format!("cond-{seed}-{p}-{e}"),
                    "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}]},
                    "verificationStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-ver-status", "code": "confirmed"}]},
                    "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-category", "code": "encounter-diagnosis"}]}],
                    "code": {"coding": [{"system": "http://snomed.info/sct", "code": code, "display": display}], "text": display},
                    "subject": subject, "encounter": encounter, "onsetDateTime": start_text, "recordedDate": start_text,
                    "note": [{"text": format!("Seen by Dr Featherstone. {given} {family} (MRN {mrn}) reports symptoms since {day}; call {phone}.")}]
                }),
            )?;
            for (l, (loinc, name, unit, mean)) in LABS.iter().enumerate() {
                let value = ((mean * (0.8 + rng.below(40) as f64 / 100.0)) * 10.0).round() / 10.0;
                emit(
                    &mut files,
                    &mut written,
                    json!({
                        "resourceType": "Observation", "id": format!("obs-{seed}-{p}-{e}-{l}"), "status": "final",
                        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs"}]}],
                        "code": {"coding": [{"system": "http://loinc.org", "code": loinc, "display": name}], "text": name},
                        "subject": subject, "encounter": encounter, "effectiveDateTime": start_text, "issued": format!("{}.000+00:00", &start_text[..19]),
                        "valueQuantity": {"value": value, "unit": unit, "system": "http://unitsofmeasure.org", "code": unit}
                    }),
                )?;
            }
            emit(
                &mut files,
                &mut written,
                json!({
                    "resourceType": "Observation", "id": format!("bp-{seed}-{p}-{e}"), "status": "final",
                    "code": {"coding": [{"system": "http://loinc.org", "code": "85354-9", "display": "Blood pressure panel"}]},
                    "subject": subject, "encounter": encounter, "effectiveDateTime": start_text,
                    "component": [
                        {"code": {"coding": [{"system": "http://loinc.org", "code": "8480-6", "display": "Systolic"}]}, "valueQuantity": {"value": 110 + rng.below(40), "unit": "mm[Hg]"}},
                        {"code": {"coding": [{"system": "http://loinc.org", "code": "8462-4", "display": "Diastolic"}]}, "valueQuantity": {"value": 70 + rng.below(20), "unit": "mm[Hg]"}}
                    ]
                }),
            )?;
            emit(
                &mut files,
                &mut written,
                json!({
                    "resourceType": "MedicationRequest", "id": format!("med-{seed}-{p}-{e}"), "status": "active", "intent": "order",
                    "medicationCodeableConcept": {"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "860975", "display": "Metformin 500 MG"}]},
                    "subject": subject, "encounter": encounter, "authoredOn": start_text, "requester": {"reference": "Organization/org-1"},
                    "dosageInstruction": [{"text": format!("One tablet twice daily; {given} to phone {phone} if unwell")}]
                }),
            )?;
            if e == 0 {
                emit(
                    &mut files,
                    &mut written,
                    json!({
                        "resourceType": "Procedure", "id": format!("proc-{seed}-{p}"), "status": "completed",
                        "code": {"coding": [{"system": "http://snomed.info/sct", "code": "71651007", "display": "Mammography"}]},
                        "subject": subject, "encounter": encounter, "performedPeriod": {"start": start_text, "end": end_text}
                    }),
                )?;
                emit(
                    &mut files,
                    &mut written,
                    json!({
                        "resourceType": "DiagnosticReport", "id": format!("rep-{seed}-{p}"), "status": "final",
                        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0074", "code": "RAD"}]}],
                        "code": {"coding": [{"system": "http://loinc.org", "code": "24606-6", "display": "MG Breast Screening"}]},
                        "subject": subject, "encounter": encounter, "effectiveDateTime": start_text, "issued": format!("{}.000+00:00", &start_text[..19]),
                        "conclusion": format!("{given} {family}, NHS {nhs}, born {}: no suspicious findings. Reported by Dr Ravensworth on {day}.", birth.format("%d/%m/%Y")),
                        "presentedForm": [{"contentType": "text/plain", "data": "UmVwb3J0IGZvciB0aGUgcGF0aWVudA==", "url": "https://pacs.example/report/1"}]
                    }),
                )?;
                emit(
                    &mut files,
                    &mut written,
                    json!({
                        "resourceType": "ImagingStudy", "id": format!("img-{seed}-{p}"), "status": "available",
                        "identifier": [{"system": "urn:dicom:uid", "value": format!("urn:oid:1.2.826.0.1.3680043.10.{seed}.{p}")}],
                        "subject": subject, "encounter": encounter, "started": start_text, "numberOfSeries": 1, "numberOfInstances": 4,
                        "series": [{"uid": format!("1.2.826.0.1.3680043.10.{seed}.{p}.1"), "modality": {"system": "http://dicom.nema.org/resources/ontology/DCM", "code": "MG"}}],
                        "description": format!("Screening mammogram for {given} {family}")
                    }),
                )?;
                emit(
                    &mut files,
                    &mut written,
                    json!({
                        "resourceType": "AllergyIntolerance", "id": format!("alg-{seed}-{p}"),
                        "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical", "code": "active"}]},
                        "type": "allergy", "category": ["medication"], "criticality": "high",
                        "code": {"coding": [{"system": "http://snomed.info/sct", "code": "91936005", "display": "Allergy to penicillin"}]},
                        "patient": subject, "recordedDate": start_text
                    }),
                )?;
                emit(
                    &mut files,
                    &mut written,
                    json!({
                        "resourceType": "Immunization", "id": format!("imm-{seed}-{p}"), "status": "completed",
                        "vaccineCode": {"coding": [{"system": "http://hl7.org/fhir/sid/cvx", "code": "140", "display": "Influenza"}]},
                        "patient": subject, "encounter": encounter, "occurrenceDateTime": start_text, "primarySource": true
                    }),
                )?;
            }
        }
    }
    for (_, mut file) in files {
        file.flush()?;
    }
    Ok(written)
}
