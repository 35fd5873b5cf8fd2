//! Burned-in annotation masking with PIXL's own ultrasound project and its `us-deid.recipe`
//! (`../shared/fixtures/pixl-configs/`): generated ultrasound instances carry "text"
//! burned into known pixels outside their SequenceOfUltrasoundRegions; after
//! de-identification those pixels are zero and the regions' pixels are what they were,
//! for monochrome, RGB (interleaved and planar), multi-frame, Implicit VR Little Endian, JPEG
//! baseline, JPEG lossless and RLE input (converted with dcmtk, a real peer). Pixel data that cannot be decoded is dropped with
//! its reason, never written unmasked.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use dicom_dictionary_std::tags;
use pixl_core::hashing::{HashAlgorithm, ProjectKeys};
use pixl_core::ids::ProjectSlug;
use pixl_deid::Project;
use pixl_dicom::filters::DropReason;
use pixl_testkit::dicom::Synthetic;

const SLUG: &str = "ultrasound-learning-for-timely-rapid-assessment-of-cts";
const COLUMNS: usize = 64;
const ROWS: usize = 48;
/// The region, inclusive as DICOM gives it: columns 10..=53, rows 8..=39.
const REGION: (u32, u32, u32, u32) = (10, 8, 53, 39);

fn project() -> Arc<Project> {
    let configs = pixl_testkit::repo_root().join("../shared/fixtures/pixl-configs");
    let project = Project::load(&configs, &ProjectSlug::parse(SLUG).unwrap()).unwrap();
    assert_eq!(project.recipes.len(), 1, "PIXL's project names us-deid.recipe");
    Arc::new(project)
}

fn in_region(x: usize, y: usize) -> bool {
    (REGION.0 as usize..=REGION.2 as usize).contains(&x) && (REGION.1 as usize..=REGION.3 as usize).contains(&y)
}

/// A pixel's value before masking: "text" (255) in rows 1..6 outside the region, an
/// image gradient inside it, 40 elsewhere; each sample and frame a little different.
fn value(x: usize, y: usize, sample: usize, frame: usize) -> u8 {
    if in_region(x, y) {
        (60 + (x + y) % 64 + sample * 20 + frame * 3) as u8
    } else if (1..6).contains(&y) {
        255
    } else {
        40
    }
}

fn instance(n: u32, samples: u16, frames: u32, planar: bool) -> Synthetic {
    let mut instance = Synthetic::new("US", n);
    instance.manufacturer = Some("FUJIFILM".to_owned());
    instance.sop_uid = format!("1.2.826.0.1.3680043.10.1002.1.1.{n}");
    (instance.rows, instance.columns, instance.samples_per_pixel, instance.frames) = (ROWS as u16, COLUMNS as u16, samples, frames);
    instance.us_regions = vec![REGION];
    let mut pixels = Vec::new();
    for frame in 0..frames as usize {
        for y in 0..ROWS {
            for x in 0..COLUMNS {
                for sample in 0..usize::from(samples) {
                    pixels.push(value(x, y, sample, frame));
                }
            }
        }
    }
    if planar {
        instance.planar_configuration = 1;
        pixels = to_planar(&pixels, usize::from(samples), frames as usize);
    }
    instance.pixels = Some(pixels);
    instance
}

fn keys() -> ProjectKeys {
    ProjectKeys::new(b"us-test-key".to_vec(), "0123456789abcdef".to_owned(), String::new(), HashAlgorithm::HmacSha256).unwrap()
}

fn outputs(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    if dir.exists() {
        pixl_testkit::dicom::all_files(dir, &mut files);
    }
    files
}

fn pixels(path: &Path) -> (dicom_object::DefaultDicomObject, Vec<u8>) {
    let object = dicom_object::open_file(path).unwrap();
    let bytes = object.element(tags::PIXEL_DATA).unwrap().to_bytes().unwrap().into_owned();
    (object, bytes)
}

fn run(tool: &str, args: &[&str]) {
    let status = Command::new(tool).args(args).status().unwrap_or_else(|e| panic!("{tool} runs (dcmtk, installed by test/run.sh): {e}"));
    assert!(status.success(), "{tool} {args:?}");
}

/// Checks every pixel of `masked` against `expected` (the input's pixels, decoded):
/// zero outside the region, unchanged inside.
/// `tolerance`: lossy JPEG decoders (dcmtk's and pixl's) may round a value differently.
fn assert_masked(masked: &[u8], expected: &[u8], samples: usize, frames: usize, tolerance: u8, label: &str) {
    assert!(masked.len() >= COLUMNS * ROWS * samples * frames, "{label}: {} bytes", masked.len());
    let mut kept = 0;
    for frame in 0..frames {
        for y in 0..ROWS {
            for x in 0..COLUMNS {
                for sample in 0..samples {
                    let at = ((frame * ROWS + y) * COLUMNS + x) * samples + sample;
                    if in_region(x, y) {
                        assert!(masked[at].abs_diff(expected[at]) <= tolerance, "{label}: region pixel ({x},{y}) sample {sample} frame {frame} changed");
                        kept += 1;
                    } else {
                        assert_eq!(masked[at], 0, "{label}: pixel ({x},{y}) sample {sample} frame {frame} outside the region is not blanked");
                    }
                }
            }
        }
    }
    assert_eq!(kept, 44 * 32 * samples * frames, "{label}: the region's last column and row are kept");
}

#[tokio::test]
async fn burned_in_text_outside_the_regions_is_blanked_and_the_regions_kept() {
    let project = project();
    let dir = tempfile::tempdir().unwrap();
    // (label, samples, frames, planar, how the input is made from the native file: a dcmtk
    // tool and its options).
    type Convert = Option<(&'static str, &'static [&'static str])>;
    let cases: [(&str, u16, u32, bool, Convert); 9] = [
        ("monochrome", 1, 1, false, None),
        ("rgb multi-frame", 3, 4, false, None),
        ("monochrome multi-frame", 1, 5, false, None),
        ("implicit vr little endian (8-bit samples read as OW words)", 1, 2, false, Some(("dcmconv", &["+ti"]))),
        ("rgb planar configuration 1", 3, 2, true, None),
        ("jpeg baseline", 1, 1, false, Some(("dcmcjpeg", &["+eb"]))),
        ("jpeg baseline rgb", 3, 2, false, Some(("dcmcjpeg", &["+eb"]))),
        ("jpeg lossless", 1, 3, false, Some(("dcmcjpeg", &["+el"]))),
        ("rle lossless", 3, 2, false, Some(("dcmcrle", &[]))),
    ];
    for (n, (label, samples, frames, planar, convert)) in cases.into_iter().enumerate() {
        let case = dir.path().join(format!("case{n}"));
        std::fs::create_dir_all(&case).unwrap();
        let native = case.join("native.dcm");
        instance(n as u32 + 1, samples, frames, planar).write(&native);
        let input = match convert {
            None => native.clone(),
            Some((tool, options)) => {
                let converted = case.join("converted.dcm");
                let mut args = options.to_vec();
                args.extend([native.to_str().unwrap(), converted.to_str().unwrap()]);
                run(tool, &args);
                converted
            }
        };
        let lossy = convert.is_some_and(|(_, options)| options == ["+eb"]);
        let encapsulated = convert.is_some_and(|(tool, _)| tool != "dcmconv");
        // What the input's pixels are once decoded: the native file's, except after a lossy
        // JPEG (dcmtk's decoding of it).
        let expected = if lossy {
            let decoded = case.join("decoded.dcm");
            run("dcmdjpeg", &[input.to_str().unwrap(), decoded.to_str().unwrap()]);
            pixels(&decoded).1
        } else {
            pixels(&native).1
        };
        let output = case.join("out");
        let summary = pixl_deid::deidentify_files(Arc::clone(&project), vec![input], Default::default(), &keys(), output.clone()).await.unwrap();
        assert_eq!(summary.written, 1, "{label}: {summary}");
        let files = outputs(&output);
        let (object, masked) = pixels(&files[0]);
        let tolerance = if lossy { 3 } else { 0 };
        // Planar input is compared plane by plane: the expected pixels are the native
        // (interleaved) file's, so the output is read back in its own layout.
        let (masked, expected) = if planar {
            (interleave(&masked, usize::from(samples), frames as usize), interleave(&expected, usize::from(samples), frames as usize))
        } else {
            (masked, expected)
        };
        assert_masked(&masked, &expected, usize::from(samples), frames as usize, tolerance, label);
        if encapsulated {
            assert_eq!(object.meta().transfer_syntax().trim_end_matches('\0'), "1.2.840.10008.1.2.1", "{label}: stored uncompressed");
        }
        if samples == 3 {
            assert_eq!(object.element(tags::PHOTOMETRIC_INTERPRETATION).unwrap().to_str().unwrap().trim(), "RGB", "{label}");
        }
    }
}

/// Interleaved pixels in planar configuration 1.
fn to_planar(interleaved: &[u8], samples: usize, frames: usize) -> Vec<u8> {
    let plane = COLUMNS * ROWS;
    let mut out = vec![0; plane * samples * frames];
    for frame in 0..frames {
        for sample in 0..samples {
            for pixel in 0..plane {
                out[frame * plane * samples + sample * plane + pixel] = interleaved[(frame * plane + pixel) * samples + sample];
            }
        }
    }
    out
}

/// Planar configuration 1 (all of one sample, then the next) as interleaved pixels.
fn interleave(planar: &[u8], samples: usize, frames: usize) -> Vec<u8> {
    let plane = COLUMNS * ROWS;
    let mut out = vec![0; plane * samples * frames];
    for frame in 0..frames {
        for sample in 0..samples {
            for pixel in 0..plane {
                out[(frame * plane + pixel) * samples + sample] = planar[frame * plane * samples + sample * plane + pixel];
            }
        }
    }
    out
}

#[tokio::test]
async fn pixel_data_that_cannot_be_decoded_is_dropped_never_exported_unmasked() {
    let project = project();
    let dir = tempfile::tempdir().unwrap();
    let native = dir.path().join("native.dcm");
    instance(1, 1, 1, false).write(&native);
    let compressed = dir.path().join("jpeg.dcm");
    run("dcmcjpeg", &["+eb", native.to_str().unwrap(), compressed.to_str().unwrap()]);
    // The same fragments declared as JPEG 2000, which pixl does not decode.
    let bytes = std::fs::read(&compressed).unwrap();
    let (from, to) = (b"1.2.840.10008.1.2.4.50", b"1.2.840.10008.1.2.4.90");
    let at = bytes.windows(from.len()).position(|w| w == from).expect("the transfer syntax UID is in the file meta");
    let mut relabelled = bytes.clone();
    relabelled[at..at + from.len()].copy_from_slice(to);
    let j2k = dir.path().join("j2k.dcm");
    std::fs::write(&j2k, relabelled).unwrap();

    let output = dir.path().join("out");
    let summary = pixl_deid::deidentify_files(project, vec![j2k], Default::default(), &keys(), output.clone()).await.unwrap();
    assert_eq!(summary.written, 0, "{summary}");
    assert_eq!(summary.dropped.get(&DropReason::PixelsNotMaskable), Some(&1), "{summary}");
    assert!(outputs(&output).is_empty(), "nothing is written");
}
