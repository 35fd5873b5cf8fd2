"""Generate synthetic ultrasound instances for the burned-in annotation masking benchmark.

Usage: python3 bench/us_mask_make.py OUTPUT_DIR N_FILES {mono,rgb} N_FRAMES [--planar 0|1]

Each instance is 640x480, 8 bits per sample, Explicit VR Little Endian (uncompressed),
Modality US, BurnedInAnnotation YES, with a SequenceOfUltrasoundRegions holding one region
(x 100..539, y 80..399, as written in RegionLocationMinX0/MinY0/MaxX1/MaxY1). Pixels:
  - inside the region (inclusive of the maxima, as DICOM defines them): 128
  - burned-in "text": 255 in rows 10..30 (inclusive), columns 20..619
  - everything else: 40 (non-zero, so a mask that zeroes too much is visible)
Every frame is identical. RGB samples are equal on the three channels.
"""

import argparse
import os

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, PYDICOM_IMPLEMENTATION_UID, generate_uid

ROWS, COLS = 480, 640
REGION = (100, 80, 539, 399)  # MinX0, MinY0, MaxX1, MaxY1 (DICOM: inclusive)
TEXT_ROWS = (10, 30)  # inclusive
TEXT_COLS = (20, 619)  # inclusive
INSIDE, TEXT, BACKGROUND = 128, 255, 40

US_IMAGE = "1.2.840.10008.5.1.4.1.1.6.1"
US_MULTIFRAME_IMAGE = "1.2.840.10008.5.1.4.1.1.3.1"


def frame_plane() -> np.ndarray:
    plane = np.full((ROWS, COLS), BACKGROUND, dtype=np.uint8)
    x0, y0, x1, y1 = REGION
    plane[y0 : y1 + 1, x0 : x1 + 1] = INSIDE
    plane[TEXT_ROWS[0] : TEXT_ROWS[1] + 1, TEXT_COLS[0] : TEXT_COLS[1] + 1] = TEXT
    return plane


def pixel_bytes(colour: str, frames: int, planar: int) -> bytes:
    plane = frame_plane()
    if colour == "mono":
        one = plane
    elif planar == 0:
        one = np.repeat(plane[:, :, np.newaxis], 3, axis=2)  # R G B interleaved per pixel
    else:
        one = np.stack([plane, plane, plane], axis=0)  # all R, then all G, then all B
    data = np.ascontiguousarray(np.stack([one] * frames, axis=0)).tobytes()
    return data + (b"\0" if len(data) % 2 else b"")


def region_item() -> Dataset:
    x0, y0, x1, y1 = REGION
    item = Dataset()
    item.RegionSpatialFormat = 1  # 2D
    item.RegionDataType = 1  # tissue
    item.RegionFlags = 0
    item.RegionLocationMinX0 = x0
    item.RegionLocationMinY0 = y0
    item.RegionLocationMaxX1 = x1
    item.RegionLocationMaxY1 = y1
    item.ReferencePixelX0 = (x0 + x1) // 2
    item.ReferencePixelY0 = y0
    item.PhysicalUnitsXDirection = 3  # cm
    item.PhysicalUnitsYDirection = 3  # cm
    item.PhysicalDeltaX = 0.02
    item.PhysicalDeltaY = 0.02
    return item


def make_instance(index: int, colour: str, frames: int, planar: int, study_uid: str, series_uid: str) -> Dataset:
    sop_class = US_MULTIFRAME_IMAGE if frames > 1 else US_IMAGE
    sop_instance = generate_uid()

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = sop_instance
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID

    ds = Dataset()
    ds.file_meta = meta
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = sop_instance
    ds.StudyDate = "20240101"
    ds.StudyTime = "120000"
    ds.AccessionNumber = "ACC%06d" % index
    ds.Modality = "US"
    ds.Manufacturer = "Synthetic"
    ds.PatientName = "Bench^Patient"
    ds.PatientID = "MRN%06d" % index
    ds.PatientBirthDate = ""
    ds.PatientSex = "O"
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.StudyID = "1"
    ds.SeriesNumber = 1
    ds.InstanceNumber = index + 1
    ds.PatientOrientation = ""
    ds.BurnedInAnnotation = "YES"
    ds.SequenceOfUltrasoundRegions = Sequence([region_item()])

    ds.SamplesPerPixel = 1 if colour == "mono" else 3
    ds.PhotometricInterpretation = "MONOCHROME2" if colour == "mono" else "RGB"
    if colour == "rgb":
        ds.PlanarConfiguration = planar
    ds.Rows = ROWS
    ds.Columns = COLS
    ds.BitsAllocated = 8
    ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    if frames > 1:
        ds.NumberOfFrames = frames
        ds.FrameTime = 33.3
        ds.FrameIncrementPointer = 0x00181063  # FrameTime
    ds.PixelData = pixel_bytes(colour, frames, planar)
    ds["PixelData"].VR = "OB"
    return ds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("output_dir")
    parser.add_argument("files", type=int)
    parser.add_argument("colour", choices=["mono", "rgb"])
    parser.add_argument("frames", type=int)
    parser.add_argument("--planar", type=int, choices=[0, 1], default=0, help="PlanarConfiguration for rgb")
    args = parser.parse_args()
    if args.files < 1 or args.frames < 1:
        parser.error("files and frames must be at least 1")

    os.makedirs(args.output_dir, exist_ok=True)
    study_uid, series_uid = generate_uid(), generate_uid()
    for i in range(args.files):
        ds = make_instance(i, args.colour, args.frames, args.planar, study_uid, series_uid)
        ds.save_as(os.path.join(args.output_dir, "us_%05d.dcm" % i), enforce_file_format=True)
    print("wrote %d files (%s, %d frame(s)) to %s" % (args.files, args.colour, args.frames, args.output_dir))


if __name__ == "__main__":
    main()
