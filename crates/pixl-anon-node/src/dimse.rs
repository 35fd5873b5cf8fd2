//! The DIMSE command sets the storage SCP reads and writes (PS3.7 9.3.1, 9.3.5), encoded
//! in Implicit VR Little Endian as the standard requires for command sets.

use dicom_core::value::PrimitiveValue;
use dicom_core::{DataElement, Tag, VR};
use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;

/// Command Field values used here.
pub const C_STORE_RQ: u16 = 0x0001;
pub const C_STORE_RSP: u16 = 0x8001;
pub const C_ECHO_RQ: u16 = 0x0030;
pub const C_ECHO_RSP: u16 = 0x8030;

/// Status values used here.
pub const SUCCESS: u16 = 0x0000;
/// "Cannot understand" (PS3.4 B.2.3): the data set could not be parsed.
pub const CANNOT_UNDERSTAND: u16 = 0xC000;
/// "Out of resources": the instance could not be stored.
pub const OUT_OF_RESOURCES: u16 = 0xA700;

const IMPLICIT_VR_LE: &str = "1.2.840.10008.1.2";

/// A request command, as far as the SCP needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub command_field: u16,
    pub message_id: u16,
    pub affected_sop_class_uid: String,
    pub affected_sop_instance_uid: String,
    /// False when the command says no data set follows (0x0101).
    pub has_dataset: bool,
}

/// A command set that cannot be read.
#[derive(Debug, thiserror::Error)]
#[error("malformed DIMSE command: {0}")]
pub struct CommandError(String);

fn text(object: &InMemDicomObject, tag: Tag) -> String {
    object
        .element_opt(tag)
        .ok()
        .flatten()
        .and_then(|e| e.to_str().ok().map(|s| s.trim_end_matches(['\0', ' ']).to_owned()))
        .unwrap_or_default()
}

fn number(object: &InMemDicomObject, tag: Tag) -> Result<u16, CommandError> {
    object
        .element(tag)
        .map_err(|_| CommandError(format!("missing {tag}")))?
        .to_int::<u16>()
        .map_err(|_| CommandError(format!("{tag} is not a number")))
}

impl Request {
    /// Decodes a command set received in P-DATA command fragments.
    pub fn decode(bytes: &[u8]) -> Result<Self, CommandError> {
        let ts = transfer_syntax(IMPLICIT_VR_LE)?;
        let object = InMemDicomObject::read_dataset_with_ts(bytes, ts).map_err(|e| CommandError(e.to_string()))?;
        Ok(Self {
            command_field: number(&object, tags::COMMAND_FIELD)?,
            message_id: number(&object, tags::MESSAGE_ID)?,
            affected_sop_class_uid: text(&object, tags::AFFECTED_SOP_CLASS_UID),
            affected_sop_instance_uid: text(&object, tags::AFFECTED_SOP_INSTANCE_UID),
            has_dataset: number(&object, tags::COMMAND_DATA_SET_TYPE)? != 0x0101,
        })
    }
}

/// A transfer syntax of the registry.
pub fn transfer_syntax(uid: &str) -> Result<&'static dicom_transfer_syntax_registry::TransferSyntax, CommandError> {
    use dicom_transfer_syntax_registry::TransferSyntaxIndex;
    dicom_transfer_syntax_registry::TransferSyntaxRegistry.get(uid).ok_or_else(|| CommandError(format!("transfer syntax {uid} unknown")))
}

/// The response to `request` with `status`, encoded.
pub fn response(request: &Request, command_field: u16, status: u16) -> Vec<u8> {
    let mut elements = vec![
        DataElement::new(tags::AFFECTED_SOP_CLASS_UID, VR::UI, PrimitiveValue::from(request.affected_sop_class_uid.as_str())),
        DataElement::new(tags::COMMAND_FIELD, VR::US, PrimitiveValue::from(command_field)),
        DataElement::new(tags::MESSAGE_ID_BEING_RESPONDED_TO, VR::US, PrimitiveValue::from(request.message_id)),
        DataElement::new(tags::COMMAND_DATA_SET_TYPE, VR::US, PrimitiveValue::from(0x0101u16)),
        DataElement::new(tags::STATUS, VR::US, PrimitiveValue::from(status)),
    ];
    if !request.affected_sop_instance_uid.is_empty() {
        elements.push(DataElement::new(tags::AFFECTED_SOP_INSTANCE_UID, VR::UI, PrimitiveValue::from(request.affected_sop_instance_uid.as_str())));
    }
    let object = InMemDicomObject::command_from_element_iter(elements);
    let ts = transfer_syntax(IMPLICIT_VR_LE).expect("implicit VR little endian is built in");
    let mut bytes = Vec::new();
    object.write_dataset_with_ts(&mut bytes, ts).expect("writing to a Vec cannot fail");
    bytes
}
