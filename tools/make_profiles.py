"""Writes the shipped tag-operation profiles in projects/configs/tag-operations/ from the
keyword lists below (DICOM PS3.15 Annex E, Basic Application Level Confidentiality
Profile with the Retain Longitudinal Temporal Information (Modified Dates), Retain
Patient Characteristics, Retain Device Identity and Clean Descriptors options applied as
an allow-list, plus the image modules each modality needs). Tag numbers come from
pydicom's copy of the PS3.6 data dictionary.

Run: python3 tools/make_profiles.py   (needs `pip install pydicom`)
"""

from pathlib import Path

from pydicom.datadict import dictionary_description, tag_for_keyword

OUT = Path(__file__).resolve().parent.parent / "projects" / "configs" / "tag-operations"

BASE = {
    "keep": [
        # SOP Common, General Image, Image Pixel
        "SpecificCharacterSet", "SOPClassUID", "ImageType", "InstanceNumber", "AcquisitionNumber",
        "PatientOrientation", "BurnedInAnnotation", "RecognizableVisualFeatures",
        "LossyImageCompression", "LossyImageCompressionRatio", "LossyImageCompressionMethod",
        "SamplesPerPixel", "PhotometricInterpretation", "Rows", "Columns", "BitsAllocated",
        "BitsStored", "HighBit", "PixelRepresentation", "PlanarConfiguration", "PixelAspectRatio",
        "SmallestImagePixelValue", "LargestImagePixelValue", "NumberOfFrames", "FrameIncrementPointer",
        "PixelData", "PixelPaddingValue", "RedPaletteColorLookupTableDescriptor",
        "GreenPaletteColorLookupTableDescriptor", "BluePaletteColorLookupTableDescriptor",
        "RedPaletteColorLookupTableData", "GreenPaletteColorLookupTableData", "BluePaletteColorLookupTableData",
        # Modality and VOI LUT
        "RescaleIntercept", "RescaleSlope", "RescaleType", "WindowCenter", "WindowWidth",
        "WindowCenterWidthExplanation", "VOILUTFunction", "PresentationLUTShape",
        # General Series and Study (descriptions kept: Clean Descriptors is the filters' job)
        "Modality", "SeriesNumber", "SeriesDescription", "Laterality", "BodyPartExamined",
        "PatientPosition", "StudyDescription", "StudyTime", "SeriesTime", "AcquisitionTime", "ContentTime",
        # Patient characteristics
        "PatientSex", "PatientAge", "PatientSize", "PatientWeight",
        # Device identity
        "Manufacturer", "ManufacturerModelName", "SoftwareVersions",
        # Image plane
        "PixelSpacing", "ImageOrientationPatient", "ImagePositionPatient", "SliceThickness",
        "SliceLocation", "SpacingBetweenSlices", "PositionReferenceIndicator",
        # Markers written by the engine
        "PatientIdentityRemoved", "DeidentificationMethod",
        # References (their UIDs are remapped below)
        "ReferencedImageSequence", "SourceImageSequence", "ReferencedSeriesSequence",
        "ReferencedSOPClassUID", "ReferencedFrameNumber",
    ],
    "replace_UID": [
        "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID", "FrameOfReferenceUID",
        "ReferencedSOPInstanceUID", "SynchronizationFrameOfReferenceUID",
    ],
    "date-shift": ["StudyDate", "SeriesDate", "AcquisitionDate", "ContentDate", "AcquisitionDateTime"],
    "secure-hash": ["PatientID"],
    # pixl's extension: PIXL's secure-hash takes LO values only; AccessionNumber is SH.
    "secure-hash-any-vr": ["AccessionNumber"],
    "replace": ["PatientName"],
    "empty": ["PatientBirthDate", "ReferringPhysicianName", "StudyID"],
}

MODALITIES = {
    "ct.yaml": ["KVP", "ExposureTime", "XRayTubeCurrent", "Exposure", "FilterType", "ConvolutionKernel",
                "GantryDetectorTilt", "TableHeight", "RotationDirection", "ReconstructionDiameter",
                "DataCollectionDiameter", "CTDIvol", "SpiralPitchFactor", "ScanOptions", "SingleCollimationWidth",
                "TotalCollimationWidth", "TableSpeed", "TableFeedPerRotation", "ExposureModulationType",
                "ReconstructionAlgorithm", "FocalSpots", "GeneratorPower", "ContrastBolusAgent"],
    "mr.yaml": ["ScanningSequence", "SequenceVariant", "ScanOptions", "MRAcquisitionType", "SequenceName",
                "RepetitionTime", "EchoTime", "InversionTime", "NumberOfAverages", "ImagingFrequency",
                "ImagedNucleus", "EchoNumbers", "MagneticFieldStrength", "EchoTrainLength", "PercentSampling",
                "PercentPhaseFieldOfView", "PixelBandwidth", "FlipAngle", "SAR", "dBdt", "AcquisitionMatrix",
                "InPlanePhaseEncodingDirection", "ReceiveCoilName", "TransmitCoilName", "NumberOfPhaseEncodingSteps",
                "DiffusionBValue", "DiffusionGradientOrientation", "TriggerTime", "ContrastBolusAgent"],
    "xray.yaml": ["ViewPosition", "ImageLaterality", "KVP", "ExposureTime", "XRayTubeCurrent", "Exposure",
                  "ExposureInuAs", "DistanceSourceToDetector", "DistanceSourceToPatient", "ImagerPixelSpacing",
                  "PresentationIntentType", "PixelIntensityRelationship", "PixelIntensityRelationshipSign",
                  "DetectorType", "Grid", "FilterType", "FocalSpots", "RelativeXRayExposure", "SensitivityValue",
                  "EstimatedRadiographicMagnificationFactor", "ViewCodeSequence", "CodeValue",
                  "CodingSchemeDesignator", "CodeMeaning"],
    "us.yaml": ["SequenceOfUltrasoundRegions", "RegionSpatialFormat", "RegionDataType", "RegionFlags",
                "RegionLocationMinX0", "RegionLocationMinY0", "RegionLocationMaxX1", "RegionLocationMaxY1",
                "ReferencePixelX0", "ReferencePixelY0", "PhysicalUnitsXDirection", "PhysicalUnitsYDirection",
                "PhysicalDeltaX", "PhysicalDeltaY", "TransducerFrequency", "TransducerData", "ProcessingFunction",
                "FrameTime", "UltrasoundColorDataPresent", "CineRate", "RecommendedDisplayFrameRate",
                "HeartRate", "NumberOfStages", "StageNumber", "ViewNumber", "NumberOfViewsInStage"],
    "pet.yaml": ["RadiopharmaceuticalInformationSequence", "Radiopharmaceutical", "RadionuclideTotalDose",
                 "RadionuclideHalfLife", "RadionuclidePositronFraction", "RadiopharmaceuticalStartTime",
                 "RadiopharmaceuticalStartDateTime", "RadionuclideCodeSequence", "CodeValue",
                 "CodingSchemeDesignator", "CodeMeaning", "SeriesType", "Units", "CountsSource",
                 "DecayCorrection", "CorrectedImage", "RandomsCorrectionMethod", "AttenuationCorrectionMethod",
                 "ScatterCorrectionMethod", "ReconstructionMethod", "DecayFactor", "DoseCalibrationFactor",
                 "FrameReferenceTime", "ActualFrameDuration", "NumberOfSlices", "ImageIndex", "AxialMash",
                 "SliceSensitivityFactor", "PrimaryPromptsCountsAccumulated"],
    "nm.yaml": ["RadiopharmaceuticalInformationSequence", "Radiopharmaceutical", "RadionuclideTotalDose",
                "RadionuclideHalfLife", "RadiopharmaceuticalStartTime", "EnergyWindowInformationSequence",
                "EnergyWindowRangeSequence", "EnergyWindowLowerLimit", "EnergyWindowUpperLimit",
                "DetectorInformationSequence", "ImagePositionPatient", "ImageOrientationPatient",
                "NumberOfDetectors", "NumberOfEnergyWindows", "NumberOfPhases", "NumberOfRotations",
                "NumberOfFramesInRotation", "NumberOfSlices", "ActualFrameDuration", "ZoomFactor",
                "EnergyWindowVector", "DetectorVector", "PhaseVector", "RotationVector", "SliceVector",
                "TimeSlotVector", "CollimatorType", "CollimatorGridName", "CountsAccumulated"],
    "rt.yaml": ["StructureSetLabel", "StructureSetName", "StructureSetDate", "StructureSetTime",
                "ReferencedFrameOfReferenceSequence", "RTReferencedStudySequence", "RTReferencedSeriesSequence",
                "ContourImageSequence", "StructureSetROISequence", "ROINumber", "ReferencedFrameOfReferenceUID",
                "ROIName", "ROIGenerationAlgorithm", "ROIContourSequence", "ROIDisplayColor", "ContourSequence",
                "ContourGeometricType", "NumberOfContourPoints", "ContourData", "ReferencedROINumber",
                "RTROIObservationsSequence", "ObservationNumber", "RTROIInterpretedType", "ROIInterpreter",
                "DoseUnits", "DoseType", "DoseSummationType", "DoseGridScaling", "GridFrameOffsetVector",
                "ReferencedRTPlanSequence", "RTPlanLabel", "RTPlanGeometry", "BeamSequence", "BeamNumber",
                "BeamName", "BeamType", "RadiationType", "NumberOfControlPoints", "ControlPointSequence",
                "FractionGroupSequence", "NumberOfFractionsPlanned", "NumberOfBeams", "ReferencedBeamSequence",
                "BeamMeterset"],
}

# Elements of the modality files whose values are UIDs or dates.
MODALITY_OPS = {"ReferencedFrameOfReferenceUID": "replace_UID", "StructureSetDate": "date-shift",
                "RadiopharmaceuticalStartDateTime": "date-shift"}


def entry(keyword: str, op: str) -> str:
    tag = tag_for_keyword(keyword)
    if tag is None:
        raise SystemExit(f"unknown keyword {keyword}")
    group, element = tag >> 16, tag & 0xFFFF
    name = dictionary_description(tag).replace('"', "'")
    return f'- name: "{name}"\n  group: 0x{group:04X}\n  element: 0x{element:04X}\n  op: "{op}"\n'


def write(name: str, header: str, rules: list[tuple[str, str]]) -> None:
    seen = set()
    body = []
    for keyword, op in rules:
        if keyword not in seen:
            seen.add(keyword)
            body.append(entry(keyword, op))
    (OUT / name).write_text(header + "".join(body))


GENERATED = "# Generated by tools/make_profiles.py from DICOM PS3.15 Annex E and the PS3.3 image\n# modules; edit the script, not this file.\n"
write("base.yaml", GENERATED + "# Base allow-list for every modality: any element not listed is removed.\n",
      [(k, op) for op, keywords in BASE.items() for k in keywords])
for file, keywords in MODALITIES.items():
    write(file, GENERATED + f"# Elements kept for {file.removesuffix('.yaml')} images, on top of base.yaml.\n",
          [(k, MODALITY_OPS.get(k, "keep")) for k in keywords])
print("wrote", ", ".join(["base.yaml", *MODALITIES]))
