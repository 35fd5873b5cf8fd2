//! The query/retrieve SCU: C-FIND and C-MOVE against an archive (Study Root information
//! model), over dicom-ul's async client associations, with TCP_NODELAY. One association
//! per operation: archives limit associations, and a failed one then costs nothing else.
//! Errors name the archive and the operation, never a UID or a patient value.

use std::time::Duration;

use dicom_core::value::PrimitiveValue;
use dicom_core::{DataElement, Tag, VR};
use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;
use dicom_ul::association::client::{AsyncClientAssociation, ClientAssociationOptions};
use dicom_ul::pdu::{PDataValue, PDataValueType, Pdu};
use pixl_core::ids::{AccessionNumber, Mrn, SeriesUid, StudyUid};
use pixl_dimse::{self as dimse, Response, SubOperations};

/// A DICOM archive (VNA or PACS).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Archive {
    /// Its role, for logs and reasons: `VNA` or `PACS`.
    pub name: String,
    pub ae_title: String,
    pub host: String,
    pub port: u16,
}

/// Why an operation did not complete.
#[derive(Debug, thiserror::Error)]
pub enum ScuError {
    /// Association refused or broken, timeout, I/O: may work later.
    #[error("{archive}: {operation}: {problem}")]
    Network { archive: String, operation: &'static str, problem: String },
    /// The archive answered with a failure status.
    #[error("{archive}: {operation} failed with status {status:#06x}")]
    Status { archive: String, operation: &'static str, status: u16 },
    /// The C-MOVE finished but some sub-operations failed or warned.
    #[error("{archive}: C-MOVE moved {completed} instances, {failed} failed, {warning} with warnings")]
    Partial { archive: String, completed: u16, failed: u16, warning: u16 },
}

/// What to look for: a study by UID, or by patient id and accession number; optionally
/// only some of its series.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StudyQuery {
    pub study_uid: Option<StudyUid>,
    pub patient_id: Mrn,
    pub accession_number: Option<AccessionNumber>,
}

/// Query/retrieve client settings.
#[derive(Debug, Clone)]
pub struct Scu {
    pub calling_ae_title: String,
    pub query_timeout: Duration,
    pub transfer_timeout: Duration,
}

type Association = AsyncClientAssociation<tokio::net::TcpStream>;

fn text(object: &InMemDicomObject, tag: Tag) -> Option<String> {
    pixl_dicom::element_text(object, tag).filter(|s| !s.is_empty())
}

/// UIDs joined by a backslash: DICOM's list of values.
fn joined(series: &[SeriesUid]) -> String {
    series.iter().map(SeriesUid::expose).collect::<Vec<_>>().join("\\")
}

fn element(tag: Tag, vr: VR, value: &str) -> DataElement<InMemDicomObject> {
    DataElement::new(tag, vr, PrimitiveValue::from(value))
}

impl Scu {
    async fn associate(&self, archive: &Archive, abstract_syntax: &str, operation: &'static str) -> Result<Association, ScuError> {
        let network = |problem: String| ScuError::Network { archive: archive.name.clone(), operation, problem };
        let options = ClientAssociationOptions::new()
            .calling_ae_title(self.calling_ae_title.as_str())
            .called_ae_title(archive.ae_title.as_str())
            .with_presentation_context(abstract_syntax, vec![dimse::IMPLICIT_VR_LE])
            .max_pdu_length(16_384);
        let address = (archive.host.as_str(), archive.port);
        let mut association = tokio::time::timeout(self.query_timeout, options.establish_async(address))
            .await
            .map_err(|_| network("association timed out".to_owned()))?
            .map_err(|e| network(format!("association failed: {e}")))?;
        association.inner_stream().set_nodelay(true).map_err(|e| network(e.to_string()))?;
        Ok(association)
    }

    /// Sends a command and its identifier on the association's only presentation context.
    async fn request(association: &mut Association, command: Vec<u8>, identifier: Vec<u8>) -> Result<(), dicom_ul::association::Error> {
        let context = association.presentation_contexts()[0].id;
        association
            .send(&Pdu::PData {
                data: vec![
                    PDataValue { presentation_context_id: context, value_type: PDataValueType::Command, is_last: true, data: command },
                    PDataValue { presentation_context_id: context, value_type: PDataValueType::Data, is_last: true, data: identifier },
                ],
            })
            .await
    }

    /// Reads the next response and, when it has one, its identifier.
    async fn response(association: &mut Association) -> Result<(Response, Option<InMemDicomObject>), String> {
        let mut command = Vec::new();
        let mut data = Vec::new();
        let mut response: Option<Response> = None;
        loop {
            match association.receive().await.map_err(|e| e.to_string())? {
                Pdu::PData { data: values } => {
                    for value in values {
                        match value.value_type {
                            PDataValueType::Command => {
                                command.extend_from_slice(&value.data);
                                if value.is_last {
                                    let decoded = Response::decode(&command).map_err(|e| e.to_string())?;
                                    if !decoded.has_dataset {
                                        return Ok((decoded, None));
                                    }
                                    response = Some(decoded);
                                }
                            }
                            PDataValueType::Data => {
                                data.extend_from_slice(&value.data);
                                if value.is_last
                                    && let Some(response) = response.take()
                                {
                                    let identifier = dimse::decode_identifier(&data).map_err(|e| e.to_string())?;
                                    return Ok((response, Some(identifier)));
                                }
                            }
                        }
                    }
                }
                Pdu::AbortRQ { .. } => return Err("the archive aborted the association".to_owned()),
                Pdu::ReleaseRQ => return Err("the archive released the association mid-operation".to_owned()),
                _ => {}
            }
        }
    }

    /// StudyInstanceUIDs matching `query` (none, one, or several).
    pub async fn find_studies(&self, archive: &Archive, query: &StudyQuery) -> Result<Vec<StudyUid>, ScuError> {
        let mut identifier = InMemDicomObject::new_empty();
        identifier.put(element(tags::QUERY_RETRIEVE_LEVEL, VR::CS, "STUDY"));
        match &query.study_uid {
            Some(uid) => {
                identifier.put(element(tags::STUDY_INSTANCE_UID, VR::UI, uid.expose()));
            }
            None => {
                identifier.put(element(tags::STUDY_INSTANCE_UID, VR::UI, ""));
                identifier.put(element(tags::PATIENT_ID, VR::LO, query.patient_id.expose()));
                identifier.put(element(tags::ACCESSION_NUMBER, VR::SH, query.accession_number.as_ref().map_or("", AccessionNumber::expose)));
            }
        }
        let found = self.find(archive, identifier).await?;
        let mut uids: Vec<StudyUid> = found.iter().filter_map(|o| text(o, tags::STUDY_INSTANCE_UID)).filter_map(|u| StudyUid::parse(&u).ok()).collect();
        uids.sort();
        uids.dedup();
        Ok(uids)
    }

    /// Which of `series` exist in study `study_uid`.
    pub async fn find_series(&self, archive: &Archive, study_uid: &StudyUid, series: &[SeriesUid]) -> Result<Vec<SeriesUid>, ScuError> {
        let mut identifier = InMemDicomObject::new_empty();
        identifier.put(element(tags::QUERY_RETRIEVE_LEVEL, VR::CS, "SERIES"));
        identifier.put(element(tags::STUDY_INSTANCE_UID, VR::UI, study_uid.expose()));
        // List of UID matching (PS3.4 C.2.2.2.2): the UIDs joined by a backslash.
        identifier.put(element(tags::SERIES_INSTANCE_UID, VR::UI, &joined(series)));
        let found = self.find(archive, identifier).await?;
        let mut uids: Vec<SeriesUid> =
            found.iter().filter_map(|o| text(o, tags::SERIES_INSTANCE_UID)).filter_map(|u| SeriesUid::parse(&u).ok()).filter(|u| series.contains(u)).collect();
        uids.sort();
        uids.dedup();
        Ok(uids)
    }

    /// Every series of study `study_uid` with its number of instances, when the archive
    /// says (NumberOfSeriesRelatedInstances is optional for an SCP).
    pub async fn find_series_counts(&self, archive: &Archive, study_uid: &StudyUid) -> Result<Vec<(SeriesUid, Option<u32>)>, ScuError> {
        let mut identifier = InMemDicomObject::new_empty();
        identifier.put(element(tags::QUERY_RETRIEVE_LEVEL, VR::CS, "SERIES"));
        identifier.put(element(tags::STUDY_INSTANCE_UID, VR::UI, study_uid.expose()));
        identifier.put(element(tags::SERIES_INSTANCE_UID, VR::UI, ""));
        identifier.put(element(tags::NUMBER_OF_SERIES_RELATED_INSTANCES, VR::IS, ""));
        let found = self.find(archive, identifier).await?;
        Ok(found
            .iter()
            .filter_map(|o| {
                let series = SeriesUid::parse(&text(o, tags::SERIES_INSTANCE_UID)?).ok()?;
                let count = text(o, tags::NUMBER_OF_SERIES_RELATED_INSTANCES).and_then(|c| c.trim().parse().ok());
                Some((series, count))
            })
            .collect())
    }

    async fn find(&self, archive: &Archive, identifier: InMemDicomObject) -> Result<Vec<InMemDicomObject>, ScuError> {
        let operation = "C-FIND";
        let network = |problem: String| ScuError::Network { archive: archive.name.clone(), operation, problem };
        let mut association = self.associate(archive, dimse::STUDY_ROOT_FIND, operation).await?;
        let work = async {
            Self::request(&mut association, dimse::find_request(1, dimse::STUDY_ROOT_FIND), dimse::encode_identifier(&identifier))
                .await
                .map_err(|e| network(e.to_string()))?;
            let mut matches = Vec::new();
            loop {
                let (response, identifier) = Self::response(&mut association).await.map_err(network)?;
                if dimse::is_pending(response.status) {
                    matches.extend(identifier);
                } else if response.status == dimse::SUCCESS {
                    return Ok(matches);
                } else {
                    return Err(ScuError::Status { archive: archive.name.clone(), operation, status: response.status });
                }
            }
        };
        let result = tokio::time::timeout(self.query_timeout, work).await.unwrap_or_else(|_| Err(network("timed out".to_owned())));
        let _ = association.release().await;
        result
    }

    /// Moves a study (or only `series` of it) to `destination` and waits for the final
    /// response. Succeeds only when every sub-operation completed.
    pub async fn move_study(&self, archive: &Archive, study_uid: &StudyUid, series: &[SeriesUid], destination: &str) -> Result<SubOperations, ScuError> {
        let operation = "C-MOVE";
        let network = |problem: String| ScuError::Network { archive: archive.name.clone(), operation, problem };
        let mut identifier = InMemDicomObject::new_empty();
        identifier.put(element(tags::QUERY_RETRIEVE_LEVEL, VR::CS, if series.is_empty() { "STUDY" } else { "SERIES" }));
        identifier.put(element(tags::STUDY_INSTANCE_UID, VR::UI, study_uid.expose()));
        if !series.is_empty() {
            identifier.put(element(tags::SERIES_INSTANCE_UID, VR::UI, &joined(series)));
        }
        let mut association = self.associate(archive, dimse::STUDY_ROOT_MOVE, operation).await?;
        let work = async {
            Self::request(&mut association, dimse::move_request(1, dimse::STUDY_ROOT_MOVE, destination), dimse::encode_identifier(&identifier))
                .await
                .map_err(|e| network(e.to_string()))?;
            loop {
                let (response, _) = Self::response(&mut association).await.map_err(network)?;
                if dimse::is_pending(response.status) {
                    continue;
                }
                let counts = response.sub_operations;
                return match response.status {
                    dimse::SUCCESS if counts.failed == 0 && counts.warning == 0 => Ok(counts),
                    // Success with failures, or B000 "sub-operations complete, one or more
                    // failures or warnings".
                    dimse::SUCCESS | 0xB000 => {
                        Err(ScuError::Partial { archive: archive.name.clone(), completed: counts.completed, failed: counts.failed, warning: counts.warning })
                    }
                    status => Err(ScuError::Status { archive: archive.name.clone(), operation, status }),
                };
            }
        };
        let result = tokio::time::timeout(self.transfer_timeout, work).await.unwrap_or_else(|_| Err(network("timed out".to_owned())));
        let _ = association.release().await;
        result
    }
}
