//! The DIMSE command sets pixl's DICOM nodes read and write (PS3.7 9.3): C-ECHO and
//! C-STORE for anon-node's SCP, C-FIND and C-MOVE for imaging-api's SCU. Command sets are
//! encoded in Implicit VR Little Endian, as the standard requires; identifiers (the data
//! sets of C-FIND and C-MOVE) in the transfer syntax of their presentation context.

use dicom_core::value::PrimitiveValue;
use dicom_core::{DataElement, Tag, VR};
use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;

/// Command Field values used here.
pub const C_STORE_RQ: u16 = 0x0001;
pub const C_STORE_RSP: u16 = 0x8001;
pub const C_ECHO_RQ: u16 = 0x0030;
pub const C_ECHO_RSP: u16 = 0x8030;
pub const C_FIND_RQ: u16 = 0x0020;
pub const C_FIND_RSP: u16 = 0x8020;
pub const C_MOVE_RQ: u16 = 0x0021;
pub const C_MOVE_RSP: u16 = 0x8021;

/// Study Root Query/Retrieve Information Model, FIND and MOVE (PS3.4 C.6.2).
pub const STUDY_ROOT_FIND: &str = "1.2.840.10008.5.1.4.1.2.2.1";
pub const STUDY_ROOT_MOVE: &str = "1.2.840.10008.5.1.4.1.2.2.2";

/// Status values used here.
pub const SUCCESS: u16 = 0x0000;
/// "Cannot understand" (PS3.4 B.2.3): the data set could not be parsed.
pub const CANNOT_UNDERSTAND: u16 = 0xC000;
/// "Out of resources": the instance could not be stored.
pub const OUT_OF_RESOURCES: u16 = 0xA700;

/// Implicit VR Little Endian: command sets, and the one transfer syntax pixl proposes for
/// query/retrieve identifiers (every SCP must accept it).
pub const IMPLICIT_VR_LE: &str = "1.2.840.10008.1.2";

/// Pending statuses of C-FIND/C-MOVE: more responses follow.
pub fn is_pending(status: u16) -> bool {
    status == 0xFF00 || status == 0xFF01
}

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
    pixl_dicom::element_text(object, tag).unwrap_or_default()
}

/// Refuses bytes whose declared lengths do not fit them, before the parser reserves them.
fn checked(bytes: &[u8], transfer_syntax: &str) -> Result<(), CommandError> {
    pixl_dicom::lengths::check(bytes, pixl_dicom::lengths::Encoding::of(transfer_syntax)).map_err(|e| CommandError(e.to_string()))
}

fn number(object: &InMemDicomObject, tag: Tag) -> Result<u16, CommandError> {
    object.element(tag).map_err(|_| CommandError(format!("missing {tag}")))?.to_int::<u16>().map_err(|_| CommandError(format!("{tag} is not a number")))
}

impl Request {
    /// Decodes a command set received in P-DATA command fragments.
    pub fn decode(bytes: &[u8]) -> Result<Self, CommandError> {
        let ts = transfer_syntax(IMPLICIT_VR_LE)?;
        let object = {
            checked(bytes, IMPLICIT_VR_LE)?;
            InMemDicomObject::read_dataset_with_ts(bytes, ts).map_err(|e| CommandError(e.to_string()))?
        };
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

fn encode(elements: Vec<DataElement<InMemDicomObject>>) -> Vec<u8> {
    let object = InMemDicomObject::command_from_element_iter(elements);
    let ts = transfer_syntax(IMPLICIT_VR_LE).expect("implicit VR little endian is built in");
    let mut bytes = Vec::new();
    object.write_dataset_with_ts(&mut bytes, ts).expect("writing to a Vec cannot fail");
    bytes
}

/// A C-FIND-RQ command (an identifier follows), at medium priority.
pub fn find_request(message_id: u16, sop_class_uid: &str) -> Vec<u8> {
    encode(vec![
        DataElement::new(tags::AFFECTED_SOP_CLASS_UID, VR::UI, PrimitiveValue::from(sop_class_uid)),
        DataElement::new(tags::COMMAND_FIELD, VR::US, PrimitiveValue::from(C_FIND_RQ)),
        DataElement::new(tags::MESSAGE_ID, VR::US, PrimitiveValue::from(message_id)),
        DataElement::new(tags::PRIORITY, VR::US, PrimitiveValue::from(0u16)),
        DataElement::new(tags::COMMAND_DATA_SET_TYPE, VR::US, PrimitiveValue::from(0x0000u16)),
    ])
}

/// A C-MOVE-RQ command to `destination` (an AE title; an identifier follows).
pub fn move_request(message_id: u16, sop_class_uid: &str, destination: &str) -> Vec<u8> {
    encode(vec![
        DataElement::new(tags::AFFECTED_SOP_CLASS_UID, VR::UI, PrimitiveValue::from(sop_class_uid)),
        DataElement::new(tags::COMMAND_FIELD, VR::US, PrimitiveValue::from(C_MOVE_RQ)),
        DataElement::new(tags::MESSAGE_ID, VR::US, PrimitiveValue::from(message_id)),
        DataElement::new(tags::MOVE_DESTINATION, VR::AE, PrimitiveValue::from(destination)),
        DataElement::new(tags::PRIORITY, VR::US, PrimitiveValue::from(0u16)),
        DataElement::new(tags::COMMAND_DATA_SET_TYPE, VR::US, PrimitiveValue::from(0x0000u16)),
    ])
}

/// Sub-operation counts of a C-MOVE response (absent counts are 0).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SubOperations {
    pub remaining: u16,
    pub completed: u16,
    pub failed: u16,
    pub warning: u16,
}

/// A response command, as far as an SCU needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub command_field: u16,
    pub message_id_being_responded_to: u16,
    pub status: u16,
    pub has_dataset: bool,
    pub sub_operations: SubOperations,
}

impl Response {
    /// Decodes a response command set.
    pub fn decode(bytes: &[u8]) -> Result<Self, CommandError> {
        let ts = transfer_syntax(IMPLICIT_VR_LE)?;
        let object = {
            checked(bytes, IMPLICIT_VR_LE)?;
            InMemDicomObject::read_dataset_with_ts(bytes, ts).map_err(|e| CommandError(e.to_string()))?
        };
        let optional = |tag| number(&object, tag).unwrap_or(0);
        Ok(Self {
            command_field: number(&object, tags::COMMAND_FIELD)?,
            message_id_being_responded_to: optional(tags::MESSAGE_ID_BEING_RESPONDED_TO),
            status: number(&object, tags::STATUS)?,
            has_dataset: number(&object, tags::COMMAND_DATA_SET_TYPE)? != 0x0101,
            sub_operations: SubOperations {
                remaining: optional(tags::NUMBER_OF_REMAINING_SUBOPERATIONS),
                completed: optional(tags::NUMBER_OF_COMPLETED_SUBOPERATIONS),
                failed: optional(tags::NUMBER_OF_FAILED_SUBOPERATIONS),
                warning: optional(tags::NUMBER_OF_WARNING_SUBOPERATIONS),
            },
        })
    }
}

/// Encodes a query identifier in Implicit VR Little Endian.
pub fn encode_identifier(identifier: &InMemDicomObject) -> Vec<u8> {
    let ts = transfer_syntax(IMPLICIT_VR_LE).expect("implicit VR little endian is built in");
    let mut bytes = Vec::new();
    identifier.write_dataset_with_ts(&mut bytes, ts).expect("writing to a Vec cannot fail");
    bytes
}

/// Decodes an identifier received in Implicit VR Little Endian.
pub fn decode_identifier(bytes: &[u8]) -> Result<InMemDicomObject, CommandError> {
    let ts = transfer_syntax(IMPLICIT_VR_LE)?;
    checked(bytes, IMPLICIT_VR_LE)?;
    InMemDicomObject::read_dataset_with_ts(bytes, ts).map_err(|e| CommandError(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_move_response_round_trips_with_its_counts() {
        let bytes = encode(vec![
            DataElement::new(tags::COMMAND_FIELD, VR::US, PrimitiveValue::from(C_MOVE_RSP)),
            DataElement::new(tags::MESSAGE_ID_BEING_RESPONDED_TO, VR::US, PrimitiveValue::from(7u16)),
            DataElement::new(tags::COMMAND_DATA_SET_TYPE, VR::US, PrimitiveValue::from(0x0101u16)),
            DataElement::new(tags::STATUS, VR::US, PrimitiveValue::from(0xB000u16)),
            DataElement::new(tags::NUMBER_OF_COMPLETED_SUBOPERATIONS, VR::US, PrimitiveValue::from(9u16)),
            DataElement::new(tags::NUMBER_OF_FAILED_SUBOPERATIONS, VR::US, PrimitiveValue::from(1u16)),
        ]);
        let response = Response::decode(&bytes).unwrap();
        assert_eq!(response.command_field, C_MOVE_RSP);
        assert_eq!(response.message_id_being_responded_to, 7);
        assert_eq!(response.status, 0xB000);
        assert!(!response.has_dataset);
        assert_eq!(response.sub_operations, SubOperations { remaining: 0, completed: 9, failed: 1, warning: 0 });
    }

    #[test]
    fn requests_carry_what_an_scp_reads() {
        let request = Request::decode(&move_request(3, STUDY_ROOT_MOVE, "PIXL_RAW")).unwrap();
        assert_eq!((request.command_field, request.message_id, request.has_dataset), (C_MOVE_RQ, 3, true));
        assert_eq!(request.affected_sop_class_uid, STUDY_ROOT_MOVE);
        let request = Request::decode(&find_request(4, STUDY_ROOT_FIND)).unwrap();
        assert_eq!((request.command_field, request.message_id), (C_FIND_RQ, 4));
        assert!(Response::decode(b"not a command").is_err());
    }
}
