//! A synthetic corpus of clinical notes with exact gold spans, for tests, evaluation and
//! the benchmark (`pixl bench generate-notes`). Seeded: the same seed gives the same
//! corpus on every machine.
//!
//! Four kinds of note (radiology reports, clinic letters, discharge summaries, nursing
//! notes), UK and US conventions, a quarter in ALL CAPS, names of many origins (among them
//! names that are also English words: Rose, Hope, Will, Baker), and hard negatives in the
//! surrounding text (eponyms, measurements, doses, scores, vertebral levels, times, words
//! that are also names used as words). The names here are the generator's own lists, not
//! the engine's.

use crate::{Category, Patient, Span, probes::ordinal};

/// One generated note.
#[derive(Debug, Clone)]
pub struct Note {
    pub id: String,
    pub patient_id: String,
    pub text: String,
    /// Gold spans, sorted and disjoint.
    pub spans: Vec<Span>,
}

/// A generated patient, with what a cohort's private files would hold (for probes).
#[derive(Debug, Clone)]
pub struct SynthPatient {
    pub id: String,
    pub record: Patient,
}

/// A small, fast, seeded generator (SplitMix64): reproducible across platforms.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }
    pub fn pick(&mut self, items: &[&'static str]) -> &'static str {
        items[self.below(items.len())]
    }
    pub fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }
    fn digits(&mut self, n: usize) -> String {
        (0..n).map(|_| char::from(b'0' + self.below(10) as u8)).collect()
    }
}

const FIRST_NAMES: &[&str] = &[
    "Oluwaseun",
    "Chidi",
    "Ngozi",
    "Kwame",
    "Abena",
    "Aisha",
    "Fatima",
    "Mohammed",
    "Yusuf",
    "Omar",
    "Layla",
    "Priya",
    "Rajesh",
    "Anjali",
    "Sanjay",
    "Deepika",
    "Arjun",
    "Wei",
    "Mei",
    "Jun",
    "Hiroshi",
    "Yuki",
    "Haruto",
    "Minh",
    "Thi",
    "Seo-yeon",
    "Ji-ho",
    "Agnieszka",
    "Krzysztof",
    "Zofia",
    "Dmitri",
    "Olga",
    "Ioana",
    "Giulia",
    "Matteo",
    "Lucía",
    "Alejandro",
    "João",
    "Inês",
    "Siobhan",
    "Niamh",
    "Ciaran",
    "Eilidh",
    "Rhys",
    "Carys",
    "Margaret",
    "Elizabeth",
    "Jonathan",
    "Catherine",
    "Benjamin",
    "Eleanor",
    "Theodore",
    "Beatrice",
    "Rose",
    "Hope",
    "Will",
    "Faith",
    "Grace",
    "Mark",
    "Dawn",
    "Iris",
    "Violet",
    "Heather",
    "Holly",
    "Ivy",
    "Jack",
    "Frank",
    "Dean",
    "Ray",
    "Amber",
    "Crystal",
    "Robin",
    "Sandy",
];

const SURNAMES: &[&str] = &[
    "Adeyemi",
    "Okafor",
    "Mensah",
    "Owusu",
    "Nwosu",
    "Patel",
    "Shah",
    "Khan",
    "Begum",
    "Chowdhury",
    "Iyer",
    "Reddy",
    "Nguyen",
    "Tran",
    "Zhang",
    "Wang",
    "Chen",
    "Tanaka",
    "Sato",
    "Kim",
    "Park",
    "Kowalczyk",
    "Nowak",
    "Wiśniewski",
    "Müller",
    "Schmidt",
    "Rossi",
    "Bianchi",
    "García",
    "Fernández",
    "Silva",
    "Santos",
    "O'Connor",
    "O'Brien",
    "MacDonald",
    "McAllister",
    "Al-Sayed",
    "Haddad",
    "Cohen",
    "Levy",
    "Ivanov",
    "Petrova",
    "Andersson",
    "Papadopoulos",
    "Yilmaz",
    "Demir",
    "Smith-Jones",
    "Baker",
    "Hope",
    "Young",
    "White",
    "Brown",
    "Green",
    "King",
    "Hall",
    "Wood",
    "Rose",
    "Bishop",
    "Fisher",
    "Hunter",
    "Mason",
    "Porter",
    "Shepherd",
    "Walker",
    "Stone",
    "Frost",
    "Swift",
    "Hart",
    "Fox",
    "Moss",
];

const CLINICIAN_FIRST: &[&str] =
    &["Amelia", "Tobias", "Sunita", "Kofi", "Helen", "Daniel", "Mei-Ling", "Graham", "Farah", "Hope", "Grace", "Will", "Iain", "Nadia", "Pieter"];

const STREETS: &[&str] = &[
    "Elm Grove",
    "Holloway Road",
    "Station Lane",
    "Church Street",
    "Victoria Avenue",
    "Maple Drive",
    "Kingsland Road",
    "Oak Close",
    "Mill Lane",
    "Park Terrace",
];
const UK_TOWNS: &[&str] = &["London", "Leeds", "Bristol", "Manchester", "Croydon", "Luton", "Enfield", "Tottenham", "Harrow", "Ealing"];
const US_TOWNS: &[&str] = &["Boston", "Chicago", "Seattle", "Denver", "Oakland", "Baltimore", "Portland", "Atlanta"];
const UK_POSTCODES: &[&str] = &["N19 5NF", "NW1 2BU", "E8 1DY", "SE1 7EH", "N17 6QT", "W2 1NY", "LS1 3EX", "M13 9WL", "BS2 8HW", "CR7 7YE"];
const HOSPITALS: &[&str] = &[
    "Whittington Hospital",
    "Royal Free Hospital",
    "Homerton University Hospital",
    "St Thomas' Hospital",
    "North Middlesex Hospital",
    "Massachusetts General Hospital",
    "Brigham and Women's Hospital",
    "Leeds General Infirmary",
    "Riverside Medical Practice",
    "Elmwood Surgery",
];
const MONTHS: &[&str] = &["January", "February", "March", "April", "May", "June", "July", "August", "September", "October", "November", "December"];

/// Builds a note's text and its gold spans together.
struct Writer {
    text: String,
    spans: Vec<Span>,
}

impl Writer {
    fn new() -> Self {
        Self { text: String::new(), spans: Vec::new() }
    }
    fn s(&mut self, plain: &str) -> &mut Self {
        self.text.push_str(plain);
        self
    }
    fn phi(&mut self, value: &str, category: Category) -> &mut Self {
        let start = self.text.len();
        self.text.push_str(value);
        self.spans.push(Span { start, end: self.text.len(), category });
        self
    }
}

struct Person {
    first: String,
    last: String,
}

struct Context<'a> {
    rng: &'a mut Rng,
    us: bool,
    patient: &'a Person,
    dob: (u32, u32, u32),
    mrn: String,
    nhs: String,
    phone: String,
    postcode: String,
    town: String,
    street: String,
    house: u32,
}

fn nhs_number(rng: &mut Rng) -> String {
    loop {
        let digits: Vec<u32> = (0..9).map(|_| rng.below(10) as u32).collect();
        let sum: u32 = digits.iter().zip((2..=10).rev()).map(|(d, w)| d * w).sum();
        let check = match 11 - sum % 11 {
            11 => 0,
            10 => continue,
            c => c,
        };
        let all: String = digits.iter().chain([&check]).map(|d| char::from_digit(*d, 10).unwrap_or('0')).collect();
        return format!("{} {} {}", &all[..3], &all[3..6], &all[6..]);
    }
}

impl Context<'_> {
    fn date(&mut self, year: u32) -> String {
        let (d, m) = (1 + self.rng.below(28) as u32, 1 + self.rng.below(12) as u32);
        let month = MONTHS[m as usize - 1];
        match self.rng.below(7) {
            0 => format!("{year}-{m:02}-{d:02}"),
            1 if self.us => format!("{m}/{d}/{year}"),
            1 => format!("{d:02}/{m:02}/{year}"),
            2 => format!("{d} {month} {year}"),
            3 => format!("{month} {d}, {year}"),
            4 => format!("{d:02}-{}-{:02}", &month[..3], year % 100),
            5 => format!("{month} {year}"),
            _ => format!("{d}{} {month} {year}", ordinal(d)),
        }
    }
    fn clinician(&mut self) -> Person {
        Person { first: self.rng.pick(CLINICIAN_FIRST).to_string(), last: self.rng.pick(SURNAMES).to_string() }
    }
    /// A clinician named in one of the usual ways.
    fn sign(&mut self, w: &mut Writer) {
        let c = self.clinician();
        match self.rng.below(5) {
            0 => w.s("Dr ").phi(&format!("{} {}", c.first, c.last), Category::Name),
            1 => w.s("Reported by: ").phi(&format!("{}. {}", &c.first[..1], c.last), Category::Name).s(", FRCR"),
            2 => w.s("Electronically signed by ").phi(&format!("{} {}", c.first, c.last), Category::Name).s(", MD"),
            3 => w.s("Dictated by Dr ").phi(&c.last, Category::Name),
            _ => w.s("Seen by ").phi(&format!("{} {}", c.first, c.last), Category::Name).s(" (consultant)"),
        };
    }
    fn patient_name(&mut self, w: &mut Writer) {
        let (first, last) = (self.patient.first.clone(), self.patient.last.clone());
        match self.rng.below(4) {
            0 => w.phi(&format!("{first} {last}"), Category::Name),
            1 => w.phi(&format!("{}, {first}", last.to_uppercase()), Category::Name),
            2 => w.s(if self.rng.chance(50) { "Mrs " } else { "Mr " }).phi(&last, Category::Name),
            _ => w.phi(&format!("{} {last}", &first[..first.char_indices().nth(1).map_or(first.len(), |(i, _)| i)]), Category::Name),
        };
    }
    fn identifier(&mut self, w: &mut Writer) {
        if self.us {
            w.s("MRN: ").phi(&self.mrn.clone(), Category::Id);
        } else {
            w.s("NHS number: ").phi(&self.nhs.clone(), Category::Id).s(". Hospital number ").phi(&self.mrn.clone(), Category::Id);
        }
    }
    fn address(&mut self, w: &mut Writer) {
        w.phi(&format!("{} {}", self.house, self.street), Category::Location).s(", ").phi(&self.town.clone(), Category::Location);
        if self.us {
            w.s(", MA ").phi(&self.postcode.clone(), Category::Location);
        } else {
            w.s(" ").phi(&self.postcode.clone(), Category::Location);
        }
    }
}

const FINDINGS: &[&str] = &[
    "There is a 12 x 8 mm nodule in the right upper lobe, unchanged. ",
    "Disc protrusion at L4/5 with mild foraminal stenosis; C5/6 is preserved. ",
    "No acute intracranial haemorrhage. Periventricular white matter hyperintensities in keeping with small vessel disease. ",
    "Baker's cyst in the popliteal fossa measuring 3.2 cm. ",
    "Appearances may represent early consolidation; a follow-up radiograph in 6 weeks will confirm resolution. ",
    "Known Parkinson's disease. Background of Crohn's disease with terminal ileal thickening. ",
    "Healing Colles fracture of the left distal radius. ",
    "BI-RADS 4 lesion at 2 o'clock, 15 mm from the nipple. Biopsy recommended. ",
    "Gleason 3+4 adenocarcinoma on prior biopsy. PI-RADS 5 lesion in the left peripheral zone. ",
    "Small right pleural effusion. Heart size is normal. No pneumothorax. ",
    "The liver is of normal size with no focal lesion. Hope this helps with management. ",
    "Mark improvement in the consolidation since the previous study. ",
    "T2 weighted and FLAIR images show no restricted diffusion on DWI. ",
    "The lungs are clear. No focal consolidation, collapse or pleural fluid. The cardiomediastinal contour is within normal limits. ",
    "There is a 4 cm simple cyst in the lower pole of the left kidney (Bosniak I). No hydronephrosis. ",
    "Moderate osteoarthritis of the medial compartment with joint space narrowing and marginal osteophytes. ",
    "Subsegmental atelectasis at both bases. Endotracheal tube tip 4 cm above the carina; nasogastric tube below the diaphragm. ",
    "Hepatic steatosis. The gallbladder contains multiple calculi without wall thickening or pericholecystic fluid. ",
    "Diverticular disease of the sigmoid colon without evidence of diverticulitis or collection. ",
    "Complete tear of the anterior cruciate ligament with a bone bruise of the lateral femoral condyle. ",
    "Old lacunar infarct in the left basal ganglia. Generalised involutional change appropriate for age. ",
    "Ground-glass opacities in a peripheral and basal distribution, in keeping with organising pneumonia. ",
    "Mildly dilated common bile duct measuring 9 mm with no obstructing stone seen. ",
    "Stable appearances of the right adrenal adenoma (12 mm, -5 HU on the unenhanced phase). ",
    "Degenerative changes with a Modic type 1 endplate reaction at L5/S1 and a broad-based disc bulge. ",
    "No fracture or dislocation. Soft tissue swelling over the lateral malleolus. ",
    "Appearances are suspicious for a primary bronchial carcinoma; CT-guided biopsy is suggested. ",
    "Appendix is thickened to 11 mm with surrounding fat stranding, consistent with acute appendicitis. ",
];

const PLANS: &[&str] = &[
    "Continue metformin 500 mg twice daily and ramipril 5 mg once daily. ",
    "Paracetamol 1 g QDS PRN. Review in clinic in 6 weeks. ",
    "GCS 15/15 on arrival, BP 128/76, HR 88, SpO2 96% on air. ",
    "Started on apixaban 5 mg BD. Will need repeat bloods in 2 weeks. ",
    "Observations stable at 14:30 and 22:00. Pain score 3/10. ",
    "Wound clean and dry. Mobilising with a frame. May go home tomorrow if stable. ",
    "Tolerating diet and fluids. Bowels opened today. Catheter removed at 06:00 and passing urine. ",
    "Blood glucose 7.8 mmol/L before breakfast; insulin glargine 12 units given as charted. ",
    "Reviewed on the ward round: plan for physiotherapy, occupational therapy assessment and social work referral. ",
    "Anxious about the results; reassurance given and the plan explained with the family present. ",
    "Pressure areas intact, Waterlow score 14, repositioned every four hours overnight. ",
    "Discussed at the lung cancer multidisciplinary meeting; for PET-CT and clinic review afterwards. ",
    "Chest clear on auscultation. Heart sounds normal with no added sounds. Calves soft and non-tender. ",
    "Hb 98 g/L, WCC 11.2, CRP 45, eGFR 52. Potassium 4.1. ",
];

fn radiology(c: &mut Context, w: &mut Writer) {
    w.s("Examination: ")
        .s(c.rng.pick(&["CT chest, abdomen and pelvis", "MRI lumbar spine", "Chest radiograph", "CT head", "Ultrasound abdomen", "MRI knee"]))
        .s("\n");
    w.s("Patient: ");
    c.patient_name(w);
    w.s("  DOB: ");
    let dob = c.dob;
    w.phi(&fmt_date(dob, c.us), Category::Date).s("\n");
    c.identifier(w);
    w.s("  Accession: ").phi(&format!("RRV{}", c.rng.digits(7)), Category::Id).s("\n");
    w.s("Date of study: ");
    let year = 2020 + c.rng.below(5) as u32;
    let d = c.date(year);
    w.phi(&d, Category::Date).s("\n\nClinical details: ");
    w.s(c.rng.pick(&["Cough and weight loss. ", "Back pain radiating to the left leg. ", "Fall, head injury. ", "Right upper quadrant pain. "]));
    if c.rng.chance(20) {
        let age = 90 + c.rng.below(12);
        w.phi(&age.to_string(), Category::Age).s(if c.rng.chance(50) { " year old with confusion. " } else { "-year-old man with confusion. " });
    }
    w.s("\n\nFindings: ");
    for _ in 0..2 + c.rng.below(3) {
        w.s(c.rng.pick(FINDINGS));
    }
    w.s("Comparison is made with the study from ");
    let d = c.date(2019);
    w.phi(&d, Category::Date).s(" at the ");
    w.phi(c.rng.pick(HOSPITALS), Category::Organisation).s(".\n\nImpression: ").s(c.rng.pick(FINDINGS)).s("\n\n");
    c.sign(w);
    w.s("\n");
}

fn clinic_letter(c: &mut Context, w: &mut Writer) {
    w.phi(c.rng.pick(HOSPITALS), Category::Organisation).s("\nDepartment of Respiratory Medicine\n\n");
    let gp = c.clinician();
    w.s("Dear Dr ").phi(&gp.last, Category::Name).s(",\n\nRe: ");
    c.patient_name(w);
    w.s(", DOB ");
    let dob = c.dob;
    w.phi(&fmt_date(dob, c.us), Category::Date).s("\n");
    c.address(w);
    w.s("\n");
    c.identifier(w);
    w.s("\n\nThank you for referring this ");
    if c.rng.chance(25) {
        let age = 90 + c.rng.below(10);
        w.phi(&age.to_string(), Category::Age).s(if c.rng.chance(50) { "-year-old " } else { " year old " });
    }
    w.s("patient, whom I saw in clinic on ");
    let d = c.date(2023);
    w.phi(&d, Category::Date).s(" with her daughter ").phi(c.rng.pick(&["Rose", "Hope", "Grace", "Amara", "Ngozi"]), Category::Name).s(". ");
    w.s(c.rng.pick(FINDINGS)).s(c.rng.pick(PLANS));
    w.s("She can be contacted on ").phi(&c.phone.clone(), Category::Contact).s(". ");
    w.s("\n\nYours sincerely,\n\n");
    c.sign(w);
    w.s("\ncc: ");
    let other = c.clinician();
    w.phi(&format!("{} {}", other.first, other.last), Category::Name)
        .s(", ")
        .s(c.rng.pick(&["Consultant Radiologist", "Specialist Nurse", "Physiotherapy"]))
        .s("\n");
}

fn discharge(c: &mut Context, w: &mut Writer) {
    w.s("DISCHARGE SUMMARY\nName: ");
    c.patient_name(w);
    w.s("\n");
    c.identifier(w);
    w.s("\nAdmitted: ");
    let a = c.date(2024);
    w.phi(&a, Category::Date).s("  Discharged: ");
    let d = c.date(2024);
    w.phi(&d, Category::Date).s("\nWard: Victoria Ward, ").phi(c.rng.pick(HOSPITALS), Category::Organisation).s("\n\n");
    w.s("Presenting complaint: shortness of breath for 3/7. ").s(c.rng.pick(PLANS)).s(c.rng.pick(FINDINGS));
    w.s("\nFollow-up: outpatient clinic on ");
    let f = c.date(2025);
    w.phi(&f, Category::Date).s(". GP: Dr ").phi(&c.clinician().last, Category::Name).s(", ");
    w.phi(c.rng.pick(HOSPITALS), Category::Organisation).s(". Next of kin: ");
    let kin = Person { first: c.rng.pick(FIRST_NAMES).to_string(), last: c.patient.last.clone() };
    w.phi(&format!("{} {}", kin.first, kin.last), Category::Name).s(" (husband), tel ").phi(&c.phone.clone(), Category::Contact).s(".\n");
    if c.rng.chance(30) {
        w.s("Email: ").phi(&format!("{}.{}@example.org", kin.first.to_lowercase(), c.rng.digits(3)), Category::Contact).s("\n");
    }
}

fn nursing(c: &mut Context, w: &mut Writer) {
    w.s("Nursing note ");
    let d = c.date(2024);
    w.phi(&d, Category::Date).s(" 22:15\n");
    c.patient_name(w);
    w.s(" settled overnight. ").s(c.rng.pick(PLANS)).s(c.rng.pick(PLANS));
    w.s("Family visited: son ").phi(c.rng.pick(&["Will", "Mark", "Jack", "Kwame", "Dmitri"]), Category::Name).s(" will call on ");
    w.phi(&c.phone.clone(), Category::Contact).s(" in the morning. Bleep ").phi(&c.rng.digits(4), Category::Contact).s(" for the night registrar, Dr ");
    w.phi(&c.clinician().last, Category::Name).s(".\n");
    if c.rng.chance(30) {
        w.s("Lives at ");
        c.address(w);
        w.s(" with her husband.\n");
    }
    w.s("Signed: ");
    let nurse = c.clinician();
    w.phi(&format!("{} {}", nurse.first, nurse.last), Category::Name).s(", RN\n");
}

fn fmt_date((y, m, d): (u32, u32, u32), us: bool) -> String {
    if us { format!("{m:02}/{d:02}/{y}") } else { format!("{d:02}/{m:02}/{y}") }
}

/// Which notes are written in ALL CAPS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Case {
    /// A quarter of the notes, chosen by the seed.
    #[default]
    Both,
    Mixed,
    Upper,
}

/// `count` notes from `seed` (a quarter of them in ALL CAPS), and the patients they are
/// about (for probes).
pub fn corpus(seed: u64, count: usize) -> (Vec<Note>, Vec<SynthPatient>) {
    corpus_in(seed, count, Case::Both)
}

/// `count` notes from `seed` in the given case. The same seed gives the same notes in each
/// case, only their letters' case differs.
pub fn corpus_in(seed: u64, count: usize, case: Case) -> (Vec<Note>, Vec<SynthPatient>) {
    let mut rng = Rng::new(seed);
    let mut notes = Vec::with_capacity(count);
    let mut patients = Vec::new();
    let mut at = 0;
    while notes.len() < count {
        let us = rng.chance(40);
        let person = Person { first: rng.pick(FIRST_NAMES).to_string(), last: rng.pick(SURNAMES).to_string() };
        let dob = (1925 + rng.below(80) as u32, 1 + rng.below(12) as u32, 1 + rng.below(28) as u32);
        let mrn = if us { rng.digits(8) } else { format!("{}{}", rng.pick(&["RRV", "H", "MRN"]), rng.digits(7)) };
        let nhs = nhs_number(&mut rng);
        let phone = if us {
            format!("({}) {}-{}", 200 + rng.below(700), rng.digits(3), rng.digits(4))
        } else {
            format!("0{} {} {}", 20 + rng.below(60), rng.digits(4), rng.digits(4))
        };
        let postcode = if us { format!("0{}", rng.digits(4)) } else { rng.pick(UK_POSTCODES).to_string() };
        let town = if us { rng.pick(US_TOWNS) } else { rng.pick(UK_TOWNS) }.to_string();
        let street = rng.pick(STREETS).to_string();
        let house = 1 + rng.below(240) as u32;
        let patient_id = format!("P{at:05}");
        at += 1;
        patients.push(SynthPatient {
            id: patient_id.clone(),
            record: Patient {
                first_names: vec![person.first.clone()],
                surnames: vec![person.last.clone()],
                identifiers: vec![mrn.clone(), nhs.clone()],
                dates_of_birth: vec![format!("{:04}-{:02}-{:02}", dob.0, dob.1, dob.2)],
                phones: vec![phone.clone()],
                postcodes: vec![postcode.clone()],
            },
        });
        let mut context = Context { rng: &mut rng, us, patient: &person, dob, mrn, nhs, phone, postcode, town, street, house };
        for _ in 0..1 + context.rng.below(3) {
            if notes.len() == count {
                break;
            }
            let mut w = Writer::new();
            match context.rng.below(4) {
                0 => radiology(&mut context, &mut w),
                1 => clinic_letter(&mut context, &mut w),
                2 => discharge(&mut context, &mut w),
                _ => nursing(&mut context, &mut w),
            }
            let mut text = w.text;
            let upper = context.rng.chance(25);
            if case == Case::Upper || (case == Case::Both && upper) {
                let upper = text.to_uppercase();
                if upper.len() == text.len() {
                    text = upper;
                }
            }
            notes.push(Note { id: format!("N{:06}", notes.len()), patient_id: patient_id.clone(), text, spans: w.spans });
        }
    }
    (notes, patients)
}
