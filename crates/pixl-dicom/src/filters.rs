//! A project's series filters: which instances are exported at all. Applied before
//! de-identification; a dropped instance is counted with its reason, never silently lost.

use std::collections::{BTreeMap, BTreeSet};

use dicom_core::Tag;
use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;

/// One `allowed_manufacturers` entry.
#[derive(Debug, Clone)]
pub struct AllowedManufacturer {
    /// Searched case-insensitively in Manufacturer (0008,0070).
    pub pattern: regex::Regex,
    pub exclude_series_numbers: Vec<i64>,
}

/// The filters of a project config.
#[derive(Debug, Clone)]
pub struct SeriesFilter {
    /// Modality (0008,0060) allow-list, upper case.
    pub modalities: Vec<String>,
    pub allowed_manufacturers: Vec<AllowedManufacturer>,
    /// Lower-cased substrings of SeriesDescription (0008,103E) that drop a series.
    pub description_filters: Vec<String>,
    pub min_instances_per_series: usize,
}

/// Why an instance is not exported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DropReason {
    ModalityNotAllowed,
    MissingManufacturer,
    ManufacturerNotAllowed,
    MissingSeriesNumber,
    ExcludedSeriesNumber,
    SeriesDescriptionFiltered,
    TooFewInstancesInSeries,
    /// The cohort asked for some series of the study only, and this is not one of them.
    SeriesNotRequested,
    /// PIXL's `secure-hash` met a value that is not LO; PIXL skips such an instance.
    SecureHashNotLo,
    /// The project's deid recipes mask the pixels, and this instance's pixel data cannot
    /// be masked (a compression pixl cannot decode, or an unusual layout).
    PixelsNotMaskable,
}

impl DropReason {
    /// A short, stable label for reports and metrics.
    pub fn label(self) -> &'static str {
        match self {
            Self::ModalityNotAllowed => "modality not allowed",
            Self::MissingManufacturer => "no manufacturer",
            Self::ManufacturerNotAllowed => "manufacturer not allowed",
            Self::MissingSeriesNumber => "no series number",
            Self::ExcludedSeriesNumber => "series number excluded",
            Self::SeriesDescriptionFiltered => "series description filtered",
            Self::TooFewInstancesInSeries => "too few instances in series",
            Self::SeriesNotRequested => "series not in the cohort",
            Self::SecureHashNotLo => "secure-hash of a value that is not LO",
            Self::PixelsNotMaskable => "pixel data that cannot be masked",
        }
    }
}

fn text(object: &InMemDicomObject, tag: Tag) -> Option<String> {
    crate::element_text(object, tag).filter(|s| !s.is_empty())
}

impl SeriesFilter {
    /// Builds the filter; `series_filters` are matched case-insensitively.
    pub fn new(modalities: &[String], allowed_manufacturers: Vec<AllowedManufacturer>, series_filters: &[String], min_instances: usize) -> Self {
        Self {
            modalities: modalities.iter().map(|m| m.trim().to_uppercase()).collect(),
            allowed_manufacturers,
            description_filters: series_filters.iter().map(|f| f.to_lowercase()).filter(|f| !f.is_empty()).collect(),
            min_instances_per_series: min_instances.max(1),
        }
    }

    /// The instance-level checks, in PIXL's order.
    pub fn check(&self, object: &InMemDicomObject) -> Result<(), DropReason> {
        let modality = text(object, tags::MODALITY).map(|m| m.to_uppercase());
        if !modality.is_some_and(|m| self.modalities.contains(&m)) {
            return Err(DropReason::ModalityNotAllowed);
        }
        // Present but empty is matched as the empty string, as PIXL does (".*" allows it).
        let manufacturer = crate::element_text(object, tags::MANUFACTURER).ok_or(DropReason::MissingManufacturer)?;
        let entry = self.allowed_manufacturers.iter().find(|entry| entry.pattern.is_match(&manufacturer)).ok_or(DropReason::ManufacturerNotAllowed)?;
        let series_number = text(object, tags::SERIES_NUMBER).and_then(|n| n.parse::<f64>().ok()).map(|n| n as i64).ok_or(DropReason::MissingSeriesNumber)?;
        if entry.exclude_series_numbers.contains(&series_number) {
            return Err(DropReason::ExcludedSeriesNumber);
        }
        if let Some(description) = text(object, tags::SERIES_DESCRIPTION).map(|d| d.to_lowercase())
            && self.description_filters.iter().any(|f| description.contains(f))
        {
            return Err(DropReason::SeriesDescriptionFiltered);
        }
        Ok(())
    }

    /// Series (by key) with fewer instances than the minimum, given the instances of each
    /// series (PIXL counts every instance of the study, before any other filter).
    pub fn series_below_minimum<'a>(&self, instances_per_series: &'a BTreeMap<String, usize>) -> BTreeSet<&'a str> {
        instances_per_series.iter().filter(|(_, count)| **count < self.min_instances_per_series).map(|(series, _)| series.as_str()).collect()
    }
}

#[cfg(test)]
mod tests {
    use dicom_core::value::PrimitiveValue;
    use dicom_core::{DataElement, VR};

    use super::*;

    fn object(fields: &[(Tag, &str)]) -> InMemDicomObject {
        InMemDicomObject::from_element_iter(fields.iter().map(|(tag, value)| DataElement::new(*tag, VR::LO, PrimitiveValue::from(*value))))
    }

    fn filter() -> SeriesFilter {
        SeriesFilter::new(
            &["DX".into(), "CR".into()],
            vec![
                AllowedManufacturer {
                    pattern: regex::RegexBuilder::new("^philips").case_insensitive(true).build().unwrap(),
                    exclude_series_numbers: vec![3, 4],
                },
                AllowedManufacturer { pattern: regex::Regex::new("carestream").unwrap(), exclude_series_numbers: vec![] },
            ],
            &["Positioning".into(), "scout".into()],
            2,
        )
    }

    #[test]
    fn instance_checks() {
        let m = tags::MODALITY;
        let man = tags::MANUFACTURER;
        let n = tags::SERIES_NUMBER;
        let d = tags::SERIES_DESCRIPTION;
        type Case<'a> = (&'a [(Tag, &'a str)], Result<(), DropReason>);
        let cases: &[Case] = &[
            (&[(m, "DX"), (man, "Philips Medical"), (n, "1"), (d, "AP")], Ok(())),
            (&[(m, "cr"), (man, "carestream"), (n, "7"), (d, "include123")], Ok(())),
            (&[(m, "MR"), (man, "Philips"), (n, "1")], Err(DropReason::ModalityNotAllowed)),
            (&[(man, "Philips"), (n, "1")], Err(DropReason::ModalityNotAllowed)),
            (&[(m, "DX"), (n, "1")], Err(DropReason::MissingManufacturer)),
            (&[(m, "DX"), (man, "Siemens"), (n, "1")], Err(DropReason::ManufacturerNotAllowed)),
            (&[(m, "DX"), (man, "Philips")], Err(DropReason::MissingSeriesNumber)),
            (&[(m, "DX"), (man, "Philips"), (n, "3")], Err(DropReason::ExcludedSeriesNumber)),
            (&[(m, "DX"), (man, "Carestream"), (n, "3")], Err(DropReason::ManufacturerNotAllowed)),
            (&[(m, "DX"), (man, "carestream"), (n, "3"), (d, "Patient POSITIONING view")], Err(DropReason::SeriesDescriptionFiltered)),
        ];
        for (fields, expected) in cases {
            assert_eq!(filter().check(&object(fields)), *expected, "{fields:?}");
        }
    }

    #[test]
    fn series_below_the_minimum() {
        let counts = BTreeMap::from([("a".to_owned(), 1), ("b".to_owned(), 2), ("c".to_owned(), 5)]);
        assert_eq!(filter().series_below_minimum(&counts), BTreeSet::from(["a"]));
    }
}
