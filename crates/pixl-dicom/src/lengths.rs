//! A cheap walk over an encoded data set that refuses, before any parser allocates, an
//! element or item whose declared length is more than the bytes that follow it. dicom-rs
//! reserves and zeroes a value's declared length before reading it, so a 4-byte length
//! field claiming 4 GB would cost 4 GB of memory per instance; checked here first, such an
//! instance costs nothing.
//!
//! The walk covers the whole data set, at every depth (sequences, items, delimiters, the
//! fragments of encapsulated pixel data), in Implicit VR Little Endian, Explicit VR Little
//! Endian and Explicit VR Big Endian, reading headers as dicom-rs does: an unknown explicit
//! VR is UN (a 4-byte length), an undefined-length UN holds implicit VR items, and in
//! implicit VR a tag the dictionary knows as SQ holds items whatever its length.

/// A data set whose declared lengths do not fit its bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{problem} at byte {offset}")]
pub struct LengthError {
    pub problem: &'static str,
    pub offset: usize,
}

/// How a data set is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Encoding {
    pub explicit_vr: bool,
    pub little_endian: bool,
}

impl Encoding {
    /// The encoding of a transfer syntax UID: implicit VR little endian for
    /// `1.2.840.10008.1.2`, big endian for `1.2.840.10008.1.2.2`, explicit VR little
    /// endian for every other (the encapsulated syntaxes included).
    pub fn of(transfer_syntax: &str) -> Self {
        match transfer_syntax.trim_end_matches(['\0', ' ']) {
            "1.2.840.10008.1.2" => Self { explicit_vr: false, little_endian: true },
            "1.2.840.10008.1.2.2" => Self { explicit_vr: true, little_endian: false },
            _ => Self { explicit_vr: true, little_endian: true },
        }
    }
}

const UNDEFINED: u32 = 0xFFFF_FFFF;
const MAX_DEPTH: usize = 64;

struct Walker<'a> {
    bytes: &'a [u8],
    position: usize,
    encoding: Encoding,
}

impl Walker<'_> {
    fn fail(&self, problem: &'static str) -> LengthError {
        LengthError { problem, offset: self.position }
    }

    fn u16(&mut self) -> Result<u16, LengthError> {
        let bytes = self.bytes.get(self.position..self.position + 2).ok_or_else(|| self.fail("the data set ends inside an element header"))?;
        self.position += 2;
        let pair = [bytes[0], bytes[1]];
        Ok(if self.encoding.little_endian { u16::from_le_bytes(pair) } else { u16::from_be_bytes(pair) })
    }

    fn u32(&mut self) -> Result<u32, LengthError> {
        let bytes = self.bytes.get(self.position..self.position + 4).ok_or_else(|| self.fail("the data set ends inside an element header"))?;
        self.position += 4;
        let quad = [bytes[0], bytes[1], bytes[2], bytes[3]];
        Ok(if self.encoding.little_endian { u32::from_le_bytes(quad) } else { u32::from_be_bytes(quad) })
    }

    fn skip(&mut self, length: u32) -> Result<(), LengthError> {
        let length = length as usize;
        if length > self.bytes.len() - self.position {
            return Err(self.fail("a length claims more bytes than the data set holds"));
        }
        self.position += length;
        Ok(())
    }

    /// Elements until `end` (exclusive), or until an item/sequence delimiter when `end` is
    /// `None` (undefined length).
    fn elements(&mut self, end: Option<usize>, depth: usize) -> Result<(), LengthError> {
        if depth > MAX_DEPTH {
            return Err(self.fail("sequences nested too deep"));
        }
        loop {
            match end {
                Some(end) if self.position >= end => return Ok(()),
                None if self.position >= self.bytes.len() => return Err(self.fail("the data set ends inside an item of undefined length")),
                Some(_) | None if self.position >= self.bytes.len() => return Ok(()),
                _ => {}
            }
            let (group, element) = (self.u16()?, self.u16()?);
            if group == 0xFFFE {
                // Item delimiter (E00D) ends an undefined-length item; anything else here
                // is out of place.
                let _ = self.u32()?;
                return if element == 0xE00D && end.is_none() { Ok(()) } else { Err(self.fail("an item tag where an element was expected")) };
            }
            let pixel_data = (group, element) == (0x7FE0, 0x0010);
            let (sequence, length, implicit_items) = if self.encoding.explicit_vr {
                let vr = [
                    *self.bytes.get(self.position).ok_or_else(|| self.fail("the data set ends inside an element header"))?,
                    *self.bytes.get(self.position + 1).ok_or_else(|| self.fail("the data set ends inside an element header"))?,
                ];
                self.position += 2;
                let short = matches!(
                    &vr,
                    b"AE"
                        | b"AS"
                        | b"AT"
                        | b"CS"
                        | b"DA"
                        | b"DS"
                        | b"DT"
                        | b"FL"
                        | b"FD"
                        | b"IS"
                        | b"LO"
                        | b"LT"
                        | b"PN"
                        | b"SH"
                        | b"SL"
                        | b"SS"
                        | b"ST"
                        | b"TM"
                        | b"UI"
                        | b"UL"
                        | b"US"
                );
                if short {
                    (false, u32::from(self.u16()?), false)
                } else {
                    // Every other VR, an unknown one included (read as UN): two reserved
                    // bytes and a 4-byte length.
                    self.position += 2;
                    let length = self.u32()?;
                    let known = matches!(&vr, b"OB" | b"OD" | b"OF" | b"OL" | b"OV" | b"OW" | b"SQ" | b"SV" | b"UC" | b"UR" | b"UT" | b"UV");
                    (&vr == b"SQ", length, !known && length == UNDEFINED)
                }
            } else {
                let length = self.u32()?;
                (length == UNDEFINED || is_sequence(group, element), length, false)
            };
            if pixel_data && length == UNDEFINED {
                // Encapsulated pixel data: fragments (raw bytes) until the delimiter.
                self.fragments()?;
            } else if implicit_items {
                let explicit = self.encoding;
                self.encoding = Encoding { explicit_vr: false, little_endian: true };
                let walked = self.items(length, depth + 1);
                self.encoding = explicit;
                walked?;
            } else if sequence && !pixel_data {
                self.items(length, depth + 1)?;
            } else {
                self.skip(length)?;
            }
        }
    }

    /// The fragments of encapsulated pixel data: items of raw bytes, then the sequence
    /// delimiter.
    fn fragments(&mut self) -> Result<(), LengthError> {
        loop {
            let (group, element) = (self.u16()?, self.u16()?);
            let length = self.u32()?;
            match (group, element) {
                (0xFFFE, 0xE0DD) => return Ok(()),
                (0xFFFE, 0xE000) if length != UNDEFINED => self.skip(length)?,
                _ => return Err(self.fail("encapsulated pixel data holds something other than fragments")),
            }
        }
    }

    /// The items of a sequence of `length` bytes (or undefined length).
    fn items(&mut self, length: u32, depth: usize) -> Result<(), LengthError> {
        let end = if length == UNDEFINED {
            None
        } else {
            let start = self.position;
            self.skip(length)?;
            self.position = start;
            Some(start + length as usize)
        };
        loop {
            if let Some(end) = end
                && self.position >= end
            {
                return Ok(());
            }
            let (group, element) = (self.u16()?, self.u16()?);
            let item_length = self.u32()?;
            match (group, element) {
                (0xFFFE, 0xE0DD) if end.is_none() => return Ok(()),
                (0xFFFE, 0xE000) if item_length == UNDEFINED => self.elements(None, depth)?,
                (0xFFFE, 0xE000) => {
                    let start = self.position;
                    self.skip(item_length)?;
                    self.position = start;
                    self.elements(Some(start + item_length as usize), depth)?;
                    self.position = start + item_length as usize;
                }
                _ => return Err(self.fail("a sequence holds something other than items")),
            }
        }
    }
}

/// Whether the standard dictionary knows the tag as a sequence (how dicom-rs reads an
/// implicit VR element).
fn is_sequence(group: u16, element: u16) -> bool {
    use dicom_core::dictionary::{DataDictionary, DataDictionaryEntry, VirtualVr};
    dicom_dictionary_std::StandardDataDictionary
        .by_tag(dicom_core::Tag(group, element))
        .is_some_and(|entry| matches!(entry.vr(), VirtualVr::Exact(dicom_core::VR::SQ)))
}

/// Checks every declared length of the encoded data set `bytes`.
pub fn check(bytes: &[u8], encoding: Encoding) -> Result<(), LengthError> {
    Walker { bytes, position: 0, encoding }.elements(Some(bytes.len()), 0)
}

/// Checks a Part 10 file's bytes (optional 128-byte preamble, `DICM`, the file meta group
/// in explicit VR little endian, then the data set in the meta group's transfer syntax).
/// Returns where `DICM` starts, for a parser reading from there.
pub fn check_file(bytes: &[u8]) -> Result<usize, LengthError> {
    let magic = if bytes.get(128..132) == Some(b"DICM") {
        128
    } else if bytes.get(0..4) == Some(b"DICM") {
        0
    } else {
        return Err(LengthError { problem: "not a DICOM file (no DICM marker)", offset: 0 });
    };
    let mut walker = Walker { bytes, position: magic + 4, encoding: Encoding { explicit_vr: true, little_endian: true } };
    let mut transfer_syntax = String::new();
    loop {
        let start = walker.position;
        if bytes.len() < start + 8 || u16::from_le_bytes([bytes[start], bytes[start + 1]]) != 0x0002 {
            break;
        }
        let element = u16::from_le_bytes([bytes[start + 2], bytes[start + 3]]);
        walker.position += 4;
        let vr = [bytes[start + 4], bytes[start + 5]];
        walker.position += 2;
        let length = if matches!(&vr, b"OB" | b"UN" | b"UT" | b"UC" | b"UR" | b"SQ") {
            walker.position += 2;
            walker.u32()?
        } else {
            u32::from(walker.u16()?)
        };
        let value_start = walker.position;
        walker.skip(length)?;
        if element == 0x0010 {
            transfer_syntax = String::from_utf8_lossy(&bytes[value_start..walker.position]).into_owned();
        }
    }
    check(&bytes[walker.position..], Encoding::of(&transfer_syntax)).map_err(|e| LengthError { offset: e.offset + walker.position, ..e })?;
    Ok(magic)
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXPLICIT: Encoding = Encoding { explicit_vr: true, little_endian: true };
    const IMPLICIT: Encoding = Encoding { explicit_vr: false, little_endian: true };

    fn element(tag: (u16, u16), vr: &[u8; 2], value: &[u8]) -> Vec<u8> {
        let mut bytes = [tag.0.to_le_bytes(), tag.1.to_le_bytes()].concat();
        bytes.extend_from_slice(vr);
        bytes.extend_from_slice(&(value.len() as u16).to_le_bytes());
        bytes.extend_from_slice(value);
        bytes
    }

    #[test]
    fn lengths_that_fit_pass_and_lengths_that_do_not_fail() {
        let good = [element((0x0008, 0x0018), b"UI", b"1.2.3.4\0"), element((0x0010, 0x0010), b"PN", b"DOE^J ")].concat();
        assert_eq!(check(&good, EXPLICIT), Ok(()));
        // An OB element (4-byte length) claiming almost 4 GB.
        let mut huge = [0x09u8, 0x00, 0x10, 0x10, b'O', b'B', 0, 0].to_vec();
        huge.extend_from_slice(&0xFFFF_FFF0u32.to_le_bytes());
        huge.extend_from_slice(b"abc");
        assert_eq!(check(&huge, EXPLICIT).unwrap_err().problem, "a length claims more bytes than the data set holds");
        // The same in implicit VR.
        let mut implicit = [0x10u8, 0x00, 0x10, 0x00].to_vec();
        implicit.extend_from_slice(&0x8000_0000u32.to_le_bytes());
        assert!(check(&implicit, IMPLICIT).is_err());
        // Cut in a header.
        assert!(check(&good[..good.len() - 3], EXPLICIT).is_err());
    }

    #[test]
    fn nested_items_are_checked_at_every_depth() {
        // SQ of undefined length, one item of undefined length holding an element that
        // claims too much.
        let mut bytes = [0x08u8, 0x00, 0x40, 0x11, b'S', b'Q', 0, 0].to_vec();
        bytes.extend_from_slice(&UNDEFINED.to_le_bytes());
        bytes.extend_from_slice(&[0xFE, 0xFF, 0x00, 0xE0]);
        bytes.extend_from_slice(&UNDEFINED.to_le_bytes());
        let inner_ok = element((0x0008, 0x1155), b"UI", b"1.2.3.4\0");
        let mut valid = bytes.clone();
        valid.extend_from_slice(&inner_ok);
        valid.extend_from_slice(&[0xFE, 0xFF, 0x0D, 0xE0, 0, 0, 0, 0, 0xFE, 0xFF, 0xDD, 0xE0, 0, 0, 0, 0]);
        assert_eq!(check(&valid, EXPLICIT), Ok(()));
        let mut invalid = bytes;
        invalid.extend_from_slice(&[0x08, 0x00, 0x55, 0x11, b'U', b'T', 0, 0]);
        invalid.extend_from_slice(&0x7FFF_FFFFu32.to_le_bytes());
        assert!(check(&invalid, EXPLICIT).is_err());
    }
}
