//! Pure DICOM de-identification: PIXL's tag-operation schemes applied to in-memory DICOM
//! objects, and the series filters of a project. No I/O, no queue, no database: services
//! read and write files and networks, and give this crate the keyed pseudonyms it needs
//! (computed by the hasher-api) through [`deid::Pseudonyms`]. Burned-in annotations are
//! masked by [`recipe`] (deid recipes) and [`mask`].

pub mod deid;
pub mod filters;
pub mod lengths;
pub mod mask;
pub mod recipe;
pub mod scheme;

use dicom_core::Tag;
use dicom_object::InMemDicomObject;

/// The value of a text element without DICOM's padding (trailing spaces or NULs) and
/// leading spaces; `Some("")` when present but empty, `None` when absent or not text.
/// The one way pixl reads a DICOM string.
pub fn element_text(object: &InMemDicomObject, tag: Tag) -> Option<String> {
    let element = object.element_opt(tag).ok().flatten()?;
    let value = element.to_str().ok()?;
    Some(value.trim_matches([' ', '\0']).to_owned())
}
