//! De-identification of FHIR resources (JSON), before any table is written.
//!
//! The strict default: resource ids and every reference → keyed pseudonyms; dates and
//! instants shifted by the patient's offset (the DICOM side's, when the project links the
//! two through the MRN); birth dates reduced to the year; ages of 90 and over capped;
//! names, telecom, addresses, identifiers, contacts, photos, narrative, attachment data and
//! links, reference displays and unknown extensions removed; free text (`note.text`,
//! `valueString`, `conclusion`, `description`, `comment`, string `text`) through pixl-text
//! with the patient's own names and identifiers as probes. A project's policy (YAML beside
//! its config) can relax a few of these: [`FhirPolicy`].

use std::collections::{BTreeMap, HashMap};
use std::sync::LazyLock;

use serde::Deserialize;
use serde_json::{Map, Value};

/// What a project keeps, shifts and removes. Every field has the strict default.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FhirPolicy {
    /// `year` (default): birth dates become their year (and 90 years ago or more becomes
    /// the year 90 years before today); `shift`: shifted like every other date.
    pub birth_date: BirthDatePolicy,
    /// Keep the outward part of a UK postcode (the first three characters) or the first
    /// three digits of a ZIP code, with the country, in place of each address.
    pub keep_postcode_prefix: bool,
    /// When set, a Patient's identifier of this system is taken as the MRN: the patient's
    /// pseudonym and date shift are then exactly those of the imaging side (the research
    /// team can link FHIR and DICOM). Unset (default): FHIR pseudonyms are separate.
    pub link_imaging_by_identifier_system: Option<String>,
    /// `deidentify` (default): through pixl-text; `remove`: free text is dropped.
    pub free_text: FreeTextPolicy,
    /// Extensions (by URL) that are kept; every other extension is removed.
    pub keep_extensions: Vec<String>,
}

impl Default for FhirPolicy {
    fn default() -> Self {
        Self {
            birth_date: BirthDatePolicy::Year,
            keep_postcode_prefix: false,
            link_imaging_by_identifier_system: None,
            free_text: FreeTextPolicy::Deidentify,
            keep_extensions: vec![
                "http://hl7.org/fhir/us/core/StructureDefinition/us-core-race".into(),
                "http://hl7.org/fhir/us/core/StructureDefinition/us-core-ethnicity".into(),
                "http://hl7.org/fhir/us/core/StructureDefinition/us-core-birthsex".into(),
                "ombCategory".into(),
                "detailed".into(),
            ],
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BirthDatePolicy {
    Year,
    Shift,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FreeTextPolicy {
    Deidentify,
    Remove,
}

/// Why a policy file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("cannot read the FHIR policy {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("FHIR policy {path} is not valid at {at}: {message}")]
    Invalid { path: String, at: String, message: String },
}

impl FhirPolicy {
    /// Reads a policy file (YAML). Unknown keys are errors: a misspelt relaxation must not
    /// pass unnoticed.
    pub fn load(path: &std::path::Path) -> Result<Self, PolicyError> {
        let text = std::fs::read_to_string(path).map_err(|source| PolicyError::Read { path: path.display().to_string(), source })?;
        let de = serde_yaml_ng::Deserializer::from_str(&text);
        serde_path_to_error::deserialize(de).map_err(|e| PolicyError::Invalid {
            path: path.display().to_string(),
            at: e.path().to_string(),
            message: e.inner().to_string(),
        })
    }
}

/// The project's keys, as the rest of pixl uses them.
pub trait Keys: Send + Sync {
    /// The keyed pseudonym of `input`.
    fn pseudonym(&self, input: &str) -> String;
    /// The date shift, in days (subtracted), of the patient whose key is `patient_key`
    /// (the MRN when linked to imaging, as the DICOM side computes it).
    fn offset_days(&self, patient_key: &str) -> i64;
    /// The imaging side's pseudonymous UID for an original DICOM UID, if these keys give
    /// one (else the UID is removed).
    fn dicom_uid(&self, _uid: &str) -> Option<String> {
        None
    }
}

/// What is known of one patient, from their Patient resource.
struct PatientInfo {
    /// Pseudonymous id.
    pseudonym: String,
    offset: i64,
    probes: pixl_text::Patient,
}

/// Counts of what was done, for the summary and release report (no values).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeidCounts {
    pub resources: u64,
    pub removed: BTreeMap<&'static str, u64>,
    pub dates_shifted: u64,
    pub ids_pseudonymised: u64,
    pub free_text_fields: u64,
    pub spans_removed: BTreeMap<&'static str, u64>,
}

impl DeidCounts {
    pub fn add(&mut self, other: &DeidCounts) {
        self.resources += other.resources;
        for (k, v) in &other.removed {
            *self.removed.entry(k).or_default() += v;
        }
        for (k, v) in &other.spans_removed {
            *self.spans_removed.entry(k).or_default() += v;
        }
        self.dates_shifted += other.dates_shifted;
        self.ids_pseudonymised += other.ids_pseudonymised;
        self.free_text_fields += other.free_text_fields;
    }
}

/// De-identifies resources of one project. Learn every Patient first
/// ([`Deidentifier::learn_patient`]), then de-identify each resource.
pub struct Deidentifier<'k> {
    policy: FhirPolicy,
    keys: &'k dyn Keys,
    patients: HashMap<String, PatientInfo>,
    today_year: i32,
    /// The probes of the patients seen last (Bulk Data and Synthea files are mostly in
    /// patient order): building a patient's automaton costs more than using it.
    recent_probes: std::cell::RefCell<std::collections::VecDeque<(String, std::rc::Rc<pixl_text::Probes>)>>,
    /// The patient-independent detection of short texts seen before (coded concepts'
    /// `text`, the same instructions and titles over and over). Used only when the
    /// patient's probes find nothing in the text, when it is exactly what
    /// `pixl_text::detect_with` would give.
    generic_spans: std::cell::RefCell<HashMap<String, Vec<pixl_text::Span>>>,
}

/// Texts up to this length are remembered, and this many of them at most.
const CACHED_TEXT_BYTES: usize = 200;
const CACHED_TEXTS: usize = 100_000;

/// Patients whose probes are kept.
const RECENT_PROBES: usize = 32;

impl std::fmt::Debug for Deidentifier<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deidentifier").field("policy", &self.policy).field("patients", &self.patients.len()).finish_non_exhaustive()
    }
}

static DATE: LazyLock<regex::Regex> = LazyLock::new(|| regex::Regex::new(r"^(\d{4})-(\d{2})(-(\d{2}))?(T.*)?$").unwrap());
static YEAR: LazyLock<regex::Regex> = LazyLock::new(|| regex::Regex::new(r"^\d{4}$").unwrap());

/// Keys whose string value is free text (besides every `...String` and `...Markdown`
/// choice, such as `valueString`, `onsetString`, `authorString`, `contentString`).
const FREE_TEXT: &[&str] = &["conclusion", "description", "comment", "patientInstruction", "summary", "text", "title", "note"];

/// Keys whose object is an Attachment (its `data` and `url` are removed).
const ATTACHMENT_KEYS: &[&str] = &["attachment", "presentedForm", "content", "photo", "valueAttachment", "image", "media"];

/// Any string that starts like a date (`2020-05`, `2020-05-20 10:00`, `2021-02-29`).
static DATE_LIKE: LazyLock<regex::Regex> = LazyLock::new(|| regex::Regex::new(r"^\d{4}-\d{2}").unwrap());

fn is_free_text(key: &str) -> bool {
    FREE_TEXT.contains(&key) || key.ends_with("String") || key.ends_with("Markdown")
}

/// Identifiers kept under other names than `identifier`.
fn is_identifier_key(key: &str) -> bool {
    key.ends_with("Identifier") || matches!(key, "requisition" | "subscriberId" | "lotNumber" | "serialNumber" | "udiCarrier" | "alias")
}

impl<'k> Deidentifier<'k> {
    pub fn new(policy: FhirPolicy, keys: &'k dyn Keys) -> Self {
        use chrono::Datelike;
        Self {
            policy,
            keys,
            patients: HashMap::new(),
            today_year: chrono::Utc::now().year(),
            recent_probes: Default::default(),
            generic_spans: Default::default(),
        }
    }

    /// Records a Patient's pseudonym, date shift and probes (call for every Patient before
    /// de-identifying the resources that refer to them).
    pub fn learn_patient(&mut self, patient: &Value) {
        let Some(id) = patient.get("id").and_then(Value::as_str) else { return };
        let mut probes = pixl_text::Patient::default();
        for name in patient
            .get("name")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .chain(patient.get("contact").and_then(Value::as_array).into_iter().flatten().filter_map(|c| c.get("name")))
        {
            if let Some(family) = name.get("family").and_then(Value::as_str) {
                probes.surnames.push(family.to_owned());
            }
            // "Jane SMITH" as one text: each word is a probe.
            for word in name
                .get("text")
                .and_then(Value::as_str)
                .into_iter()
                .flat_map(str::split_whitespace)
                .filter(|w| w.chars().filter(|c| c.is_alphabetic()).count() >= 2)
            {
                probes.surnames.push(word.trim_matches(|c: char| !c.is_alphanumeric()).to_owned());
            }
            for given in name.get("given").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str) {
                probes.first_names.push(given.to_owned());
            }
        }
        let mut mrn = None;
        for identifier in patient.get("identifier").and_then(Value::as_array).into_iter().flatten() {
            if let Some(value) = identifier.get("value").and_then(Value::as_str).filter(|v| !v.trim().is_empty()) {
                probes.identifiers.push(value.to_owned());
                if self.policy.link_imaging_by_identifier_system.as_deref().is_some_and(|s| identifier.get("system").and_then(Value::as_str) == Some(s)) {
                    mrn = Some(value.to_owned());
                }
            }
        }
        if let Some(dob) = patient.get("birthDate").and_then(Value::as_str) {
            probes.dates_of_birth.push(dob.to_owned());
        }
        let contact_telecoms =
            patient.get("contact").and_then(Value::as_array).into_iter().flatten().filter_map(|c| c.get("telecom")).filter_map(Value::as_array).flatten();
        for telecom in patient.get("telecom").and_then(Value::as_array).into_iter().flatten().chain(contact_telecoms) {
            if let Some(value) = telecom.get("value").and_then(Value::as_str) {
                probes.phones.push(value.to_owned());
            }
        }
        for address in patient.get("address").and_then(Value::as_array).into_iter().flatten() {
            if let Some(code) = address.get("postalCode").and_then(Value::as_str) {
                probes.postcodes.push(code.to_owned());
            }
        }
        let (pseudonym, offset) = match mrn {
            Some(mrn) => (self.keys.pseudonym(&mrn), self.keys.offset_days(&mrn)),
            None => {
                let key = format!("fhir:Patient/{id}");
                (self.keys.pseudonym(&key), self.keys.offset_days(&key))
            }
        };
        self.patients.insert(id.to_owned(), PatientInfo { pseudonym, offset, probes });
    }

    /// The spans of `text` to remove: what `pixl_text::detect_with(text, probes)` finds,
    /// with the patient-independent part remembered for short texts.
    fn free_text_spans(&self, text: &str, probes: Option<&pixl_text::Probes>) -> Vec<pixl_text::Span> {
        if text.len() > CACHED_TEXT_BYTES || probes.is_some_and(|p| !p.find(text).is_empty()) {
            return pixl_text::detect_with(text, probes).spans;
        }
        let mut cache = self.generic_spans.borrow_mut();
        if let Some(spans) = cache.get(text) {
            return spans.clone();
        }
        let spans = pixl_text::detect_with(text, None).spans;
        if cache.len() >= CACHED_TEXTS {
            cache.clear();
        }
        cache.insert(text.to_owned(), spans.clone());
        spans
    }

    fn probes_of(&self, id: &str, patient: &PatientInfo) -> std::rc::Rc<pixl_text::Probes> {
        let mut recent = self.recent_probes.borrow_mut();
        if let Some((_, probes)) = recent.iter().find(|(seen, _)| seen == id) {
            return probes.clone();
        }
        let probes = std::rc::Rc::new(pixl_text::Probes::new(&patient.probes));
        if recent.len() == RECENT_PROBES {
            recent.pop_back();
        }
        recent.push_front((id.to_owned(), probes.clone()));
        probes
    }

    /// The pseudonymous id of `ty/id`.
    fn pseudonym(&self, ty: &str, id: &str) -> String {
        if ty == "Patient"
            && let Some(patient) = self.patients.get(id)
        {
            return patient.pseudonym.clone();
        }
        self.keys.pseudonym(&format!("fhir:{ty}/{id}"))
    }

    /// De-identifies one resource in place.
    pub fn deidentify(&self, resource: &mut Value, counts: &mut DeidCounts) {
        counts.resources += 1;
        let ty = resource.get("resourceType").and_then(Value::as_str).unwrap_or_default().to_owned();
        let patient_id = patient_of(resource, &ty);
        let patient = patient_id.as_deref().and_then(|id| self.patients.get(id).map(|p| (id, p)));
        let offset = match (patient, &patient_id) {
            (Some((_, p)), _) => p.offset,
            (None, Some(id)) => self.keys.offset_days(&format!("fhir:Patient/{id}")),
            (None, None) => {
                let own = resource.get("id").and_then(Value::as_str).unwrap_or_default();
                self.keys.offset_days(&format!("fhir:{ty}/{own}"))
            }
        };
        let mut walk = Walk { deid: self, offset, patient, probes: None, counts };
        if let Value::Object(map) = resource {
            walk.resource(map, &ty, false);
        }
    }
}

/// The patient a resource is about (its own id for a Patient).
fn patient_of(resource: &Value, ty: &str) -> Option<String> {
    if ty == "Patient" {
        return resource.get("id").and_then(Value::as_str).map(str::to_owned);
    }
    for key in ["subject", "patient", "beneficiary", "individual", "for"] {
        let reference = resource.get(key).and_then(|r| r.get("reference")).and_then(Value::as_str);
        if let Some((rty, id)) = reference.and_then(crate::fhirpath::reference_parts)
            && rty == "Patient"
        {
            return Some(id.to_owned());
        }
    }
    None
}

struct Walk<'a, 'k, 'c> {
    deid: &'a Deidentifier<'k>,
    offset: i64,
    patient: Option<(&'a str, &'a PatientInfo)>,
    /// The patient's probes, found or built on the first free-text field of the resource
    /// (most resources have none).
    probes: Option<std::rc::Rc<pixl_text::Probes>>,
    counts: &'c mut DeidCounts,
}

impl Walk<'_, '_, '_> {
    fn removed(&mut self, what: &'static str) {
        *self.counts.removed.entry(what).or_default() += 1;
    }

    fn resource(&mut self, map: &mut Map<String, Value>, ty: &str, contained: bool) {
        match map.get_mut("id") {
            Some(Value::String(id)) if !id.is_empty() => {
                *id = if contained { self.deid.keys.pseudonym(&format!("fhir:contained/{id}")) } else { self.deid.pseudonym(ty, id) };
                self.counts.ids_pseudonymised += 1;
            }
            Some(_) => {
                map.remove("id");
            }
            None => {}
        }
        if let Some(Value::Object(meta)) = map.get_mut("meta") {
            meta.remove("source");
        }
        if ty == "Patient"
            && let Some(Value::String(dob)) = map.get_mut("birthDate")
        {
            match self.deid.policy.birth_date {
                BirthDatePolicy::Year => match dob.get(..4).and_then(|y| y.parse::<i32>().ok()) {
                    Some(year) => *dob = format!("{:04}", year.max(self.deid.today_year - 90)),
                    None => {
                        map.remove("birthDate");
                        self.removed("unparseable date");
                    }
                },
                BirthDatePolicy::Shift => match shift(dob, self.offset) {
                    Some(shifted) => {
                        *dob = shifted;
                        self.counts.dates_shifted += 1;
                    }
                    None => {
                        map.remove("birthDate");
                        self.removed("unparseable date");
                    }
                },
            }
        }
        self.object(map, true, false);
    }

    fn object(&mut self, map: &mut Map<String, Value>, at_root: bool, attachment: bool) {
        let keys: Vec<String> = map.keys().cloned().collect();
        let is_attachment = attachment || ["contentType", "size", "hash", "creation"].iter().any(|k| map.contains_key(*k));
        // A Coding's display is terminology; any other display (a Reference's, with or
        // without its `reference`) names a person or place.
        let is_coding = map.contains_key("system") || map.contains_key("code");
        for key in keys {
            let remove = match key.as_str() {
                "identifier" | "telecom" | "photo" | "contact" | "position" => true,
                k if is_identifier_key(k) => true,
                "text" if map.get("text").is_some_and(Value::is_object) => true,
                "name" if map.get("name").is_some_and(is_human_name) => true,
                "data" | "url" if is_attachment => true,
                // Signature.data, and any other inline document.
                "data" if map.get("data").is_some_and(Value::is_string) => true,
                "display" if !is_coding => true,
                // Original DICOM UIDs (ImagingStudy.series.uid, .instance.uid): the
                // imaging side's pseudonymous UID when the keys give one, else removed.
                "uid" => match map.get("uid").and_then(Value::as_str).and_then(|u| self.deid.keys.dicom_uid(u)) {
                    Some(uid) => {
                        map.insert("uid".into(), Value::String(uid));
                        self.counts.ids_pseudonymised += 1;
                        continue;
                    }
                    None => true,
                },
                "address" => {
                    if self.deid.policy.keep_postcode_prefix {
                        if let Some(value) = map.get_mut("address") {
                            postcode_prefixes(value);
                        }
                        self.removed("address");
                        continue;
                    }
                    true
                }
                _ => false,
            };
            if remove {
                map.remove(&key);
                self.removed(removal_kind(&key));
                continue;
            }
            if (key == "extension" || key == "modifierExtension")
                && let Some(Value::Array(items)) = map.get_mut(&key)
            {
                let before = items.len();
                items.retain(|e| e.get("url").and_then(Value::as_str).is_some_and(|u| self.deid.policy.keep_extensions.iter().any(|k| k == u)));
                for _ in items.len()..before {
                    self.removed("extension");
                }
                if items.is_empty() {
                    map.remove(&key);
                    continue;
                }
            }
            if key == "id" && at_root {
                continue;
            }
            if key == "contained" {
                if let Some(Value::Array(items)) = map.get_mut("contained") {
                    for item in items {
                        let ty = item.get("resourceType").and_then(Value::as_str).unwrap_or_default().to_owned();
                        if let Value::Object(inner) = item {
                            self.resource(inner, &ty, true);
                        }
                    }
                }
                continue;
            }
            if key == "fullUrl" {
                if let Some(Value::String(url)) = map.get_mut("fullUrl") {
                    *url = self.reference(url);
                }
                continue;
            }
            let Some(value) = map.get_mut(&key) else { continue };
            self.value(&key, value);
            if matches!(value, Value::Null) {
                map.remove(&key);
            }
        }
    }

    fn value(&mut self, key: &str, value: &mut Value) {
        match value {
            Value::Object(inner) if inner.get("resourceType").is_some_and(Value::is_string) => {
                // A resource inside another (Bundle.entry.resource, Parameters): walked as one.
                let ty = inner.get("resourceType").and_then(Value::as_str).unwrap_or_default().to_owned();
                self.resource(inner, &ty, false);
            }
            Value::Object(inner) => {
                // Ages of 90 and over: capped.
                let years = ["a", "yr", "year", "years"];
                if inner.get("code").or(inner.get("unit")).and_then(Value::as_str).is_some_and(|u| years.contains(&u))
                    && inner.get("value").and_then(Value::as_f64).is_some_and(|v| v >= 90.0)
                {
                    inner.insert("value".into(), Value::from(90));
                }
                self.object(inner, false, ATTACHMENT_KEYS.contains(&key));
            }
            Value::Array(items) => {
                for item in items.iter_mut() {
                    self.value(key, item);
                }
                items.retain(|v| !v.is_null());
            }
            Value::String(text) => {
                if key == "reference" {
                    *text = self.reference(text);
                } else if is_free_text(key) {
                    self.counts.free_text_fields += 1;
                    match self.deid.policy.free_text {
                        FreeTextPolicy::Remove => {
                            *value = Value::Null;
                            self.removed("free text");
                        }
                        FreeTextPolicy::Deidentify => {
                            if self.probes.is_none()
                                && let Some((id, patient)) = self.patient
                            {
                                self.probes = Some(self.deid.probes_of(id, patient));
                            }
                            let spans = self.deid.free_text_spans(text, self.probes.as_deref());
                            for span in &spans {
                                *self.counts.spans_removed.entry(span.category.as_str()).or_default() += 1;
                            }
                            *text = pixl_text::mask_tags(text, &spans);
                        }
                    }
                } else if !matches!(key, "code" | "system" | "version" | "unit")
                    && (DATE_LIKE.is_match(text) || (is_date_key(key) && text.starts_with(|c: char| c.is_ascii_digit())))
                {
                    // A date is shifted; a date-like value that cannot be (an impossible
                    // day, another layout) is removed rather than left as it was.
                    match shift(text, self.offset) {
                        Some(shifted) => {
                            *text = shifted;
                            self.counts.dates_shifted += 1;
                        }
                        None => {
                            *value = Value::Null;
                            self.removed("unparseable date");
                        }
                    }
                }
            }
            _ => {}
        }
    }

    fn reference(&mut self, reference: &str) -> String {
        self.counts.ids_pseudonymised += 1;
        if let Some(local) = reference.strip_prefix('#') {
            return if local.is_empty() { reference.to_owned() } else { format!("#{}", self.deid.keys.pseudonym(&format!("fhir:contained/{local}"))) };
        }
        if let Some(uuid) = reference.strip_prefix("urn:uuid:") {
            return format!("urn:uuid:{}", self.deid.keys.pseudonym(&format!("fhir:urn:uuid:{uuid}")));
        }
        match crate::fhirpath::reference_parts(reference) {
            Some((ty, id)) => format!("{ty}/{}", self.deid.pseudonym(ty, id)),
            // A reference of no known form could carry anything: replaced whole.
            None => self.deid.keys.pseudonym(&format!("fhir:reference:{reference}")),
        }
    }
}

fn is_human_name(value: &Value) -> bool {
    let looks = |v: &Value| v.as_object().is_some_and(|m| ["family", "given", "text", "prefix", "suffix"].iter().any(|k| m.contains_key(*k)));
    match value {
        Value::Array(items) => items.iter().any(looks),
        other => looks(other),
    }
}

fn removal_kind(key: &str) -> &'static str {
    match key {
        "identifier" => "identifier",
        "telecom" => "telecom",
        "photo" => "photo",
        "contact" => "contact",
        "text" => "narrative",
        "name" => "name",
        "data" => "attachment data",
        "url" => "attachment url",
        "display" => "reference display",
        "address" => "address",
        _ => "other",
    }
}

/// Element names whose bare-year value is a date.
fn is_date_key(key: &str) -> bool {
    key.ends_with("Date")
        || key.ends_with("DateTime")
        || key.ends_with("Instant")
        || matches!(
            key,
            "date"
                | "start"
                | "end"
                | "issued"
                | "recorded"
                | "authoredOn"
                | "lastUpdated"
                | "created"
                | "started"
                | "creation"
                | "timestamp"
                | "lastOccurrence"
                | "whenHandedOver"
                | "whenPrepared"
                | "dateAsserted"
                | "dateWritten"
        )
}

/// In place of each address: only the postcode's outward part (UK: the outward code; US
/// ZIP: the first three digits) and the country.
fn postcode_prefixes(value: &mut Value) {
    let reduce = |address: &Value| -> Value {
        let mut out = Map::new();
        if let Some(code) = address.get("postalCode").and_then(Value::as_str) {
            let compact: String = code.chars().filter(|c| !c.is_whitespace()).collect();
            // A UK postcode's outward code is all but its last three characters ("B1" of
            // "B1 1AA", "NW1" of "NW1 2BU"); a ZIP code keeps its first three digits.
            let prefix: String = if compact.chars().all(|c| c.is_ascii_digit()) {
                compact.chars().take(3).collect()
            } else {
                let n = compact.chars().count();
                compact.chars().take(n.saturating_sub(3).min(4)).collect()
            };
            out.insert("postalCode".into(), Value::String(prefix));
        }
        if let Some(country) = address.get("country") {
            out.insert("country".into(), country.clone());
        }
        Value::Object(out)
    };
    let reduced = match &*value {
        Value::Array(items) => Value::Array(items.iter().map(reduce).collect()),
        other => reduce(other),
    };
    *value = reduced;
}

/// A FHIR date, dateTime or instant moved `offset` days earlier, in its own precision.
pub fn shift(text: &str, offset: i64) -> Option<String> {
    if YEAR.is_match(text) {
        let year: i32 = text.parse().ok()?;
        let date = chrono::NaiveDate::from_ymd_opt(year, 7, 1)? - chrono::Duration::days(offset);
        return Some(chrono::Datelike::year(&date).to_string());
    }
    let captures = DATE.captures(text)?;
    let year: i32 = captures[1].parse().ok()?;
    let month: u32 = captures[2].parse().ok()?;
    let day: Option<u32> = captures.get(4).map(|d| d.as_str().parse()).transpose().ok()?;
    let date = chrono::NaiveDate::from_ymd_opt(year, month, day.unwrap_or(15))? - chrono::Duration::days(offset);
    Some(match (day, captures.get(5)) {
        (None, _) => date.format("%Y-%m").to_string(),
        (Some(_), None) => date.format("%Y-%m-%d").to_string(),
        (Some(_), Some(rest)) => format!("{}{}", date.format("%Y-%m-%d"), rest.as_str()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    struct TestKeys;
    impl Keys for TestKeys {
        fn pseudonym(&self, input: &str) -> String {
            format!("h{:x}", input.bytes().fold(0u64, |a, b| a.wrapping_mul(31).wrapping_add(b as u64)))
        }
        fn offset_days(&self, _: &str) -> i64 {
            100
        }
    }

    #[test]
    fn identifiers_in_less_usual_places_are_removed_too() {
        let keys = TestKeys;
        let policy = FhirPolicy { keep_postcode_prefix: true, ..Default::default() };
        let mut deid = Deidentifier::new(policy, &keys);
        deid.learn_patient(&json!({"resourceType": "Patient", "id": "p9", "name": [{"text": "Jane QUINTON"}]}));
        let mut bundle = json!({"resourceType": "Bundle", "id": "b1", "entry": [
            {"fullUrl": "http://ehr.example/fhir/DocumentReference/d1", "resource": {
                "resourceType": "DocumentReference", "id": "d1", "subject": {"reference": "Patient/p9"},
                "masterIdentifier": {"value": "ACC-778812"},
                "author": [{"display": "Dr Jane Smith"}],
                "content": [{"attachment": {"url": "https://ehr.trust/docs/MRN123.pdf", "data": "c2VjcmV0"}}],
                "note": [{"authorString": "Nurse Quinton", "text": "Seen with Jane QUINTON"}],
                "date": "2021-02-29", "created": "2020-05-20 10:00:00",
                "contained": [{"resourceType": "Practitioner", "id": "pr1"}], "custodian": {"reference": "#pr1"},
                "context": {"related": [{"identifier": {"value": "X1"}}]}
            }},
            {"resource": {"resourceType": "Patient", "id": "p9", "address": [{"postalCode": "B1 1AA"}], "birthDate": "1980-02-03"}}
        ]});
        let mut counts = DeidCounts::default();
        deid.deidentify(&mut bundle, &mut counts);
        let text = bundle.to_string();
        for secret in [
            "ACC-778812",
            "Jane Smith",
            "MRN123",
            "c2VjcmV0",
            "Quinton",
            "QUINTON",
            "2021-02-29",
            "2020-05-20",
            "\"d1\"",
            "DocumentReference/d1",
            "\"p9\"",
            "X1",
        ] {
            assert!(!text.contains(secret), "{secret} survived: {text}");
        }
        let doc = &bundle["entry"][0]["resource"];
        assert_eq!(
            doc["custodian"]["reference"].as_str().unwrap(),
            format!("#{}", doc["contained"][0]["id"].as_str().unwrap()),
            "a contained reference still resolves"
        );
        let patient = &bundle["entry"][1]["resource"];
        assert_eq!(patient["address"][0]["postalCode"], "B1", "the outward code only");
        assert_eq!(patient["birthDate"], "1980");
    }

    #[test]
    fn remembered_free_text_is_still_checked_against_each_patients_probes() {
        let keys = TestKeys;
        let mut deid = Deidentifier::new(FhirPolicy::default(), &keys);
        deid.learn_patient(&json!({"resourceType": "Patient", "id": "a", "name": [{"family": "Whitlock", "given": ["Ann"]}]}));
        deid.learn_patient(&json!({"resourceType": "Patient", "id": "b", "name": [{"family": "Burrage", "given": ["Tom"]}]}));
        let note = |patient: &str| json!({"resourceType": "Observation", "id": "o", "subject": {"reference": format!("Patient/{patient}")}, "note": [{"text": "Reviewed with Burrage today"}]});
        let mut counts = DeidCounts::default();
        let mut texts = Vec::new();
        // The same short text for patient a (remembered), then b (whose surname it is), then a again.
        for patient in ["a", "b", "a"] {
            let mut resource = note(patient);
            deid.deidentify(&mut resource, &mut counts);
            texts.push(resource["note"][0]["text"].as_str().unwrap().to_owned());
        }
        assert!(!texts[1].contains("Burrage"), "patient b's own name is found by the probes: {}", texts[1]);
        assert_eq!(texts[0], texts[2], "the remembered result is the same as the first");
        let direct = pixl_text::detect_with("Reviewed with Burrage today", None).spans;
        assert_eq!(texts[0], pixl_text::mask_tags("Reviewed with Burrage today", &direct));
        assert_eq!(deid.generic_spans.borrow().len(), 1);
    }

    #[test]
    fn dates_shift_in_their_own_precision() {
        assert_eq!(shift("2020-05-20", 100).unwrap(), "2020-02-10");
        assert_eq!(shift("2020-05-20T10:11:12+01:00", 100).unwrap(), "2020-02-10T10:11:12+01:00");
        assert_eq!(shift("2020-05", 100).unwrap(), "2020-02");
        assert_eq!(shift("2020", 400).unwrap(), "2019");
        assert!(shift("not a date", 1).is_none());
    }

    #[test]
    fn a_patient_loses_everything_identifying() {
        let keys = TestKeys;
        let mut deid = Deidentifier::new(FhirPolicy::default(), &keys);
        let patient = json!({
            "resourceType": "Patient", "id": "pat-1",
            "text": {"status": "generated", "div": "<div>Jane Example</div>"},
            "identifier": [{"system": "mrn", "value": "MRN123"}],
            "name": [{"family": "Example", "given": ["Jane"]}],
            "telecom": [{"system": "phone", "value": "07700 900123"}],
            "address": [{"line": ["1 High St"], "postalCode": "NW1 2BU"}],
            "birthDate": "1960-04-03", "gender": "female",
            "photo": [{"data": "aGk="}],
            "extension": [{"url": "http://example.org/mothers-maiden-name", "valueString": "Smith"}]
        });
        deid.learn_patient(&patient);
        let mut out = patient.clone();
        let mut counts = DeidCounts::default();
        deid.deidentify(&mut out, &mut counts);
        let text = out.to_string();
        for secret in ["pat-1", "Jane", "Example", "MRN123", "07700", "NW1", "High St", "1960-04-03", "Smith", "aGk="] {
            assert!(!text.contains(secret), "{secret} survived: {text}");
        }
        assert_eq!(out["birthDate"], "1960");
        assert_eq!(out["gender"], "female");

        let mut obs = json!({"resourceType": "Observation", "id": "o1", "subject": {"reference": "Patient/pat-1", "display": "Jane Example"},
            "effectiveDateTime": "2021-03-04T10:00:00Z", "note": [{"text": "Jane Example called from 07700 900123"}],
            "valueQuantity": {"value": 93, "unit": "a"}});
        deid.deidentify(&mut obs, &mut counts);
        let text = obs.to_string();
        for secret in ["pat-1", "Jane", "Example", "07700", "2021-03-04"] {
            assert!(!text.contains(secret), "{secret} survived: {text}");
        }
        assert_eq!(obs["subject"]["reference"], format!("Patient/{}", out["id"].as_str().unwrap()));
        assert_eq!(obs["effectiveDateTime"], "2020-11-24T10:00:00Z");
        assert_eq!(obs["valueQuantity"]["value"], 90);
    }
}
