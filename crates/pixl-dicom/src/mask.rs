//! Applies a [`MaskPlan`] to an instance's pixel data: every frame, every sample of the
//! blanked pixels set to zero. Native (uncompressed) pixel data is masked in place and
//! keeps its transfer syntax; encapsulated pixel data that dicom-rs can decode (JPEG
//! baseline, extended and lossless; RLE lossless) is decoded, masked and stored uncompressed in
//! Explicit VR Little Endian (colour as RGB, planar configuration 0). Anything else is an
//! error, and the caller drops the instance: pixel data is never exported unmasked.

use dicom_core::value::{PrimitiveValue, Value};
use dicom_core::{DataElement, VR};
use dicom_dictionary_std::tags;
use dicom_object::{FileDicomObject, InMemDicomObject};
use dicom_transfer_syntax_registry::{TransferSyntaxIndex, TransferSyntaxRegistry};

use crate::recipe::{Area, MaskPlan, Paint};

/// Explicit VR Little Endian, the transfer syntax of pixel data pixl decoded to mask.
pub const EXPLICIT_VR_LITTLE_ENDIAN: &str = "1.2.840.10008.1.2.1";

/// Why pixel data could not be masked. Technical facts only, nothing of the image.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MaskError {
    #[error("the instance has no {0}")]
    Missing(&'static str),
    #[error("bits allocated {0} cannot be masked (8, 16 or 32 can)")]
    BitsAllocated(u16),
    #[error("photometric interpretation {0} cannot be masked in native pixel data")]
    Photometric(String),
    #[error("the pixel data's length does not match its rows, columns, samples and frames")]
    Length,
    #[error("pixel data in transfer syntax {0} cannot be decoded to mask it")]
    Undecodable(String),
    #[error("frame {frame} cannot be decoded: {problem}")]
    Decode { frame: u32, problem: String },
}

/// What masking did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Masked {
    pub frames: u32,
    /// The pixel data was decoded and is now stored uncompressed.
    pub decoded: bool,
}

/// Columns to blank in each row, as runs `(start, end)` (end excluded), sorted and
/// disjoint. Computed from the boxes row by row (interval arithmetic, no bitmap): rows
/// that the same boxes cross share one computation.
fn row_runs(plan: &MaskPlan, rows: usize, columns: usize) -> Vec<Vec<(usize, usize)>> {
    let boxes: Vec<(bool, usize, usize, usize, usize)> = plan
        .steps
        .iter()
        .map(|(paint, area)| {
            let (x0, y0, x1, y1) = match area {
                Area::All => (0, 0, columns, rows),
                Area::Rect(rect) => {
                    ((rect.x0 as usize).min(columns), (rect.y0 as usize).min(rows), (rect.x1 as usize).min(columns), (rect.y1 as usize).min(rows))
                }
            };
            (*paint == Paint::Blank, x0, y0, x1, y1)
        })
        .collect();
    let mut out: Vec<Vec<(usize, usize)>> = Vec::with_capacity(rows);
    let mut last_key: Option<Vec<bool>> = None;
    for y in 0..rows {
        let key: Vec<bool> = boxes.iter().map(|&(_, _, y0, _, y1)| (y0..y1).contains(&y)).collect();
        if last_key.as_ref() == Some(&key) {
            let previous = out.last().expect("a row before").clone();
            out.push(previous);
            continue;
        }
        let mut runs: Vec<(usize, usize)> = Vec::new();
        for (&(blank, x0, _, x1, _), &crosses) in boxes.iter().zip(&key) {
            if !crosses || x0 >= x1 {
                continue;
            }
            runs = if blank { union(&runs, (x0, x1)) } else { subtract(&runs, (x0, x1)) };
        }
        out.push(runs);
        last_key = Some(key);
    }
    out
}

/// `runs` with `(start, end)` added.
fn union(runs: &[(usize, usize)], (start, end): (usize, usize)) -> Vec<(usize, usize)> {
    let mut out = Vec::with_capacity(runs.len() + 1);
    let (mut start, mut end) = (start, end);
    let mut placed = false;
    for &(a, b) in runs {
        if b < start {
            out.push((a, b));
        } else if a > end {
            if !placed {
                out.push((start, end));
                placed = true;
            }
            out.push((a, b));
        } else {
            start = start.min(a);
            end = end.max(b);
        }
    }
    if !placed {
        out.push((start, end));
    }
    out
}

/// `runs` with `(start, end)` taken out.
fn subtract(runs: &[(usize, usize)], (start, end): (usize, usize)) -> Vec<(usize, usize)> {
    let mut out = Vec::with_capacity(runs.len() + 1);
    for &(a, b) in runs {
        if b <= start || a >= end {
            out.push((a, b));
            continue;
        }
        if a < start {
            out.push((a, start));
        }
        if b > end {
            out.push((end, b));
        }
    }
    out
}

struct Layout {
    rows: usize,
    columns: usize,
    samples: usize,
    bytes_per_sample: usize,
    planar: bool,
    frames: usize,
}

impl Layout {
    fn frame_len(&self) -> usize {
        self.rows * self.columns * self.samples * self.bytes_per_sample
    }

    /// Zeroes the blanked runs of every frame of `data` (whole samples of `unit` bytes
    /// each: 1 for byte data, 2 for bytes of 16-bit words as read, etc.).
    fn blank<T: Copy + Default>(&self, data: &mut [T], runs: &[Vec<(usize, usize)>], units_per_sample: usize) {
        let frame_units = self.rows * self.columns * self.samples * units_per_sample;
        for frame in data.chunks_mut(frame_units).take(self.frames) {
            if self.planar {
                let plane = self.rows * self.columns * units_per_sample;
                for sample in 0..self.samples {
                    for (y, row) in runs.iter().enumerate() {
                        for &(start, end) in row {
                            let base = sample * plane + (y * self.columns) * units_per_sample;
                            frame[base + start * units_per_sample..base + end * units_per_sample].fill(T::default());
                        }
                    }
                }
            } else {
                let pixel = self.samples * units_per_sample;
                for (y, row) in runs.iter().enumerate() {
                    for &(start, end) in row {
                        let base = y * self.columns * pixel;
                        frame[base + start * pixel..base + end * pixel].fill(T::default());
                    }
                }
            }
        }
    }
}

fn number(object: &InMemDicomObject, tag: dicom_core::Tag) -> Option<u32> {
    object.element_opt(tag).ok().flatten().and_then(|e| e.to_int::<u32>().ok())
}

/// Masks `object`'s pixel data as `plan` says. An empty plan changes nothing.
pub fn apply(object: &mut FileDicomObject<InMemDicomObject>, plan: &MaskPlan) -> Result<Option<Masked>, MaskError> {
    // No plan, or no pixel data (a structured report, a presentation state): nothing to mask.
    if plan.is_empty() || object.element_opt(tags::PIXEL_DATA).ok().flatten().is_none() {
        return Ok(None);
    }
    let rows = number(object, tags::ROWS).ok_or(MaskError::Missing("Rows"))? as usize;
    let columns = number(object, tags::COLUMNS).ok_or(MaskError::Missing("Columns"))? as usize;
    let frames = number(object, tags::NUMBER_OF_FRAMES).unwrap_or(1).max(1);
    let samples = number(object, tags::SAMPLES_PER_PIXEL).unwrap_or(1).max(1) as usize;
    let bits = number(object, tags::BITS_ALLOCATED).ok_or(MaskError::Missing("BitsAllocated"))? as u16;
    let bytes_per_sample = match bits {
        8 | 16 | 32 => usize::from(bits / 8),
        other => return Err(MaskError::BitsAllocated(other)),
    };
    let runs = row_runs(plan, rows, columns);
    let encapsulated = matches!(object.element_opt(tags::PIXEL_DATA).ok().flatten().map(|e| e.value()), Some(Value::PixelSequence(_)));
    if !encapsulated {
        let photometric = crate::element_text(object, tags::PHOTOMETRIC_INTERPRETATION).unwrap_or_default();
        // Subsampled colour (YBR_FULL_422, ...) does not store a sample per pixel.
        if !matches!(photometric.as_str(), "MONOCHROME1" | "MONOCHROME2" | "PALETTE COLOR" | "RGB" | "YBR_FULL" | "") {
            return Err(MaskError::Photometric(photometric));
        }
        let planar = samples > 1 && number(object, tags::PLANAR_CONFIGURATION) == Some(1);
        let mut layout = Layout { rows, columns, samples, bytes_per_sample, planar, frames: frames as usize };
        // Every whole frame the data holds is masked, declared or not; a remainder longer
        // than the padding byte cannot be placed, so it is an error, never left unmasked.
        let frame_len = layout.frame_len();
        let check = |len: usize| -> Result<usize, MaskError> {
            let (whole, rest) = (len / frame_len.max(1), len % frame_len.max(1));
            if frame_len == 0 || whole < frames as usize || rest > 1 { Err(MaskError::Length) } else { Ok(whole) }
        };
        // Taken out of the object and masked in place (no copy of the pixel data); on an
        // error the instance is dropped, so nothing needs putting back.
        let big_endian = object.meta().transfer_syntax().trim_end_matches('\0') == "1.2.840.10008.1.2.2";
        let element = object.take_element(tags::PIXEL_DATA).map_err(|_| MaskError::Missing("PixelData"))?;
        let vr = element.header().vr();
        let value = match element.into_value() {
            Value::Primitive(PrimitiveValue::U8(mut bytes)) => {
                layout.frames = check(bytes.len())?;
                layout.blank(&mut bytes, &runs, bytes_per_sample);
                PrimitiveValue::U8(bytes)
            }
            // 8-bit samples read as OW words (Implicit VR Little Endian): as bytes, little-endian.
            Value::Primitive(PrimitiveValue::U16(words)) if bytes_per_sample == 1 && !big_endian => {
                let mut bytes: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
                layout.frames = check(bytes.len())?;
                layout.blank(&mut bytes, &runs, 1);
                PrimitiveValue::U8(bytes.into())
            }
            Value::Primitive(PrimitiveValue::U16(mut words)) if bytes_per_sample >= 2 => {
                layout.frames = check(words.len() * 2)?;
                layout.blank(&mut words, &runs, bytes_per_sample / 2);
                PrimitiveValue::U16(words)
            }
            _ => return Err(MaskError::Missing("readable native PixelData")),
        };
        object.put(DataElement::new(tags::PIXEL_DATA, vr, value));
        return Ok(Some(Masked { frames: layout.frames as u32, decoded: false }));
    }

    let syntax = object.meta().transfer_syntax().trim_end_matches('\0').to_owned();
    let reader = TransferSyntaxRegistry.get(&syntax).and_then(|ts| ts.pixel_data_reader()).ok_or_else(|| MaskError::Undecodable(syntax.clone()))?;
    let layout = Layout { rows, columns, samples, bytes_per_sample, planar: false, frames: 1 };
    let frame_len = layout.frame_len();
    let mut pixels = Vec::with_capacity(frame_len * frames as usize);
    let mut frame_bytes = Vec::with_capacity(frame_len);
    for frame in 0..frames {
        frame_bytes.clear();
        // A decoder that panics on a malformed stream (dicom-rs copies a decoded image into
        // a buffer sized from Rows and Columns) costs this instance, not the study.
        let decoded = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| reader.decode_frame(&*object, frame, &mut frame_bytes)));
        match decoded {
            Ok(Ok(())) => {}
            Ok(Err(error)) => return Err(MaskError::Decode { frame, problem: error.to_string() }),
            Err(_) => return Err(MaskError::Decode { frame, problem: "the decoder failed on malformed data".to_owned() }),
        }
        if frame_bytes.len() < frame_len {
            return Err(MaskError::Decode { frame, problem: format!("{} bytes decoded, {frame_len} expected", frame_bytes.len()) });
        }
        layout.blank(&mut frame_bytes[..frame_len], &runs, bytes_per_sample);
        pixels.extend_from_slice(&frame_bytes[..frame_len]);
    }
    let lossy = matches!(syntax.as_str(), "1.2.840.10008.1.2.4.50" | "1.2.840.10008.1.2.4.51");
    let vr = if bytes_per_sample == 1 { VR::OB } else { VR::OW };
    object.put(DataElement::new(tags::PIXEL_DATA, vr, PrimitiveValue::U8(pixels.into())));
    let text = |tag, vr, value: &str| DataElement::new(tag, vr, PrimitiveValue::from(value));
    if samples == 3 {
        object.put(text(tags::PHOTOMETRIC_INTERPRETATION, VR::CS, "RGB"));
        object.put(DataElement::new(tags::PLANAR_CONFIGURATION, VR::US, PrimitiveValue::from(0_u16)));
    } else if !matches!(crate::element_text(object, tags::PHOTOMETRIC_INTERPRETATION).as_deref(), Some("MONOCHROME1" | "MONOCHROME2" | "PALETTE COLOR")) {
        object.put(text(tags::PHOTOMETRIC_INTERPRETATION, VR::CS, "MONOCHROME2"));
    }
    if lossy && crate::element_text(object, tags::LOSSY_IMAGE_COMPRESSION).is_none() {
        object.put(text(tags::LOSSY_IMAGE_COMPRESSION, VR::CS, "01"));
    }
    // Offsets into the encapsulated fragments mean nothing for native data.
    let _ = object.remove_element(tags::EXTENDED_OFFSET_TABLE);
    let _ = object.remove_element(tags::EXTENDED_OFFSET_TABLE_LENGTHS);
    let explicit = TransferSyntaxRegistry.get(EXPLICIT_VR_LITTLE_ENDIAN).expect("explicit VR little endian is built in");
    object.update_meta(|meta| meta.set_transfer_syntax(explicit));
    Ok(Some(Masked { frames, decoded: true }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recipe::Rect;

    #[test]
    fn runs_follow_the_last_paint() {
        let plan = MaskPlan { steps: vec![(Paint::Blank, Area::All), (Paint::Keep, Area::Rect(Rect { x0: 2, y0: 1, x1: 4, y1: 2 }))] };
        let runs = row_runs(&plan, 3, 6);
        assert_eq!(runs, vec![vec![(0, 6)], vec![(0, 2), (4, 6)], vec![(0, 6)]]);
        // Boxes beyond the image are clipped.
        let plan = MaskPlan { steps: vec![(Paint::Blank, Area::Rect(Rect { x0: 4, y0: 0, x1: 99, y1: 99 }))] };
        assert_eq!(row_runs(&plan, 2, 6), vec![vec![(4, 6)], vec![(4, 6)]]);
    }

    #[test]
    fn intervals() {
        assert_eq!(union(&[(0, 2), (5, 7)], (1, 6)), vec![(0, 7)]);
        assert_eq!(union(&[(0, 2), (8, 9)], (4, 5)), vec![(0, 2), (4, 5), (8, 9)]);
        assert_eq!(subtract(&[(0, 10)], (3, 5)), vec![(0, 3), (5, 10)]);
        assert_eq!(subtract(&[(0, 2), (4, 6)], (0, 10)), vec![]);
        let plan = MaskPlan {
            steps: vec![
                (Paint::Blank, Area::All),
                (Paint::Keep, Area::Rect(Rect { x0: 1, y0: 0, x1: 5, y1: 2 })),
                (Paint::Blank, Area::Rect(Rect { x0: 2, y0: 1, x1: 3, y1: 2 })),
            ],
        };
        assert_eq!(row_runs(&plan, 3, 6), vec![vec![(0, 1), (5, 6)], vec![(0, 1), (2, 3), (5, 6)], vec![(0, 6)]]);
    }

    #[test]
    fn planar_and_interleaved_colour() {
        let plan = MaskPlan { steps: vec![(Paint::Blank, Area::Rect(Rect { x0: 1, y0: 0, x1: 2, y1: 1 }))] };
        let runs = row_runs(&plan, 1, 2);
        let interleaved = Layout { rows: 1, columns: 2, samples: 3, bytes_per_sample: 1, planar: false, frames: 2 };
        let mut data = vec![9_u8; 12];
        interleaved.blank(&mut data, &runs, 1);
        assert_eq!(data, [9, 9, 9, 0, 0, 0, 9, 9, 9, 0, 0, 0]);
        let planar = Layout { planar: true, frames: 1, ..interleaved };
        let mut data = vec![9_u8; 6];
        planar.blank(&mut data, &runs, 1);
        assert_eq!(data, [9, 0, 9, 0, 9, 0]);
    }
}
