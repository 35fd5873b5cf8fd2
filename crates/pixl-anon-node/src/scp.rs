//! The storage SCP: C-ECHO and C-STORE of any storage SOP class, from the calling AE
//! titles it is configured to accept, into the raw cache. TCP_NODELAY is set on every
//! socket (dicom-rs leaves Nagle on, which throttles loopback transfers). A data set that
//! cannot be parsed gets a failure status and the association goes on. Logs name AE
//! titles and counts, never a UID or a value.

use std::collections::BTreeSet;
use std::sync::Arc;

use dicom_ul::association::Association as _;
use dicom_ul::association::server::{AccessControl, ServerAssociationOptions};
use dicom_ul::pdu::{AssociationRJServiceUserReason, PDataValue, PDataValueType, Pdu, UserIdentity};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::raw_cache::{RawCache, StoreError};
use pixl_core::ids::SopInstanceUid;
use pixl_dimse::{self as dimse, Request};

/// Transfer syntaxes accepted, in order of preference.
const TRANSFER_SYNTAXES: &[&str] = &[
    "1.2.840.10008.1.2.1", // Explicit VR Little Endian
    "1.2.840.10008.1.2",   // Implicit VR Little Endian
    "1.2.840.10008.1.2.4.50",
    "1.2.840.10008.1.2.4.51",
    "1.2.840.10008.1.2.4.57",
    "1.2.840.10008.1.2.4.70",
    "1.2.840.10008.1.2.4.80",
    "1.2.840.10008.1.2.4.81",
    "1.2.840.10008.1.2.4.90",
    "1.2.840.10008.1.2.4.91",
    "1.2.840.10008.1.2.5",
    "1.2.840.10008.1.2.1.99",
];

/// Who may talk to the node.
#[derive(Debug, Clone)]
pub struct ScpConfig {
    /// This node's AE title (the archive's C-MOVE destination).
    pub ae_title: String,
    /// Calling AE titles accepted (the archives).
    pub allowed_callers: BTreeSet<String>,
}

#[derive(Debug, Clone)]
struct CallerList(Arc<BTreeSet<String>>);

impl AccessControl for CallerList {
    fn check_access(
        &self,
        this_ae_title: &str,
        calling_ae_title: &str,
        called_ae_title: &str,
        _identity: Option<&UserIdentity>,
    ) -> Result<(), AssociationRJServiceUserReason> {
        if called_ae_title.trim() != this_ae_title.trim() {
            return Err(AssociationRJServiceUserReason::CalledAETitleNotRecognized);
        }
        if !self.0.contains(calling_ae_title.trim()) {
            return Err(AssociationRJServiceUserReason::CallingAETitleNotRecognized);
        }
        Ok(())
    }
}

/// Accepts associations on `listener` until `shutdown`; each runs on its own task.
pub async fn serve(listener: TcpListener, config: ScpConfig, cache: RawCache, shutdown: CancellationToken) -> std::io::Result<()> {
    let mut options = ServerAssociationOptions::new()
        .ae_access_control(CallerList(Arc::new(config.allowed_callers.clone())))
        .ae_title(config.ae_title.clone())
        // Any storage SOP class: an archive sends whatever the study holds.
        .promiscuous(true)
        .max_pdu_length(131_072);
    for ts in TRANSFER_SYNTAXES {
        options = options.with_transfer_syntax(*ts);
    }
    let options = Arc::new(options);
    loop {
        let (socket, _) = tokio::select! {
            () = shutdown.cancelled() => return Ok(()),
            accepted = listener.accept() => accepted?,
        };
        socket.set_nodelay(true)?;
        let options = options.clone();
        let cache = cache.clone();
        tokio::spawn(async move {
            match options.establish_async(socket).await {
                Ok(association) => {
                    let caller = association.peer_ae_title().to_owned();
                    if let Err(error) = handle(association, &cache).await {
                        tracing::warn!(caller, %error, "association ended with an error");
                    }
                }
                Err(error) => tracing::info!(%error, "association refused"),
            }
        });
    }
}

type Association = dicom_ul::association::server::AsyncServerAssociation<tokio::net::TcpStream>;

async fn handle(mut association: Association, cache: &RawCache) -> Result<(), dicom_ul::association::Error> {
    let mut command = Vec::new();
    let mut dataset = Vec::new();
    let mut pending: Option<(u8, Request)> = None;
    let mut stored = 0u64;
    loop {
        match association.receive().await? {
            Pdu::PData { data } => {
                for value in data {
                    match value.value_type {
                        PDataValueType::Command => {
                            command.extend_from_slice(&value.data);
                            if value.is_last {
                                let request = Request::decode(&std::mem::take(&mut command));
                                match request {
                                    Ok(request) if request.has_dataset => pending = Some((value.presentation_context_id, request)),
                                    Ok(request) => {
                                        respond(&mut association, value.presentation_context_id, &request, cache, None, &mut stored).await?;
                                    }
                                    Err(error) => {
                                        tracing::warn!(%error, "unreadable command; aborting the association");
                                        return association.abort().await;
                                    }
                                }
                            }
                        }
                        PDataValueType::Data => {
                            dataset.extend_from_slice(&value.data);
                            if value.is_last
                                && let Some((context, request)) = pending.take()
                            {
                                let data = std::mem::take(&mut dataset);
                                dataset = respond(&mut association, context, &request, cache, Some(data), &mut stored).await?;
                                // Cleared, not dropped: the next instance reuses the capacity.
                                dataset.clear();
                            }
                        }
                    }
                }
            }
            Pdu::ReleaseRQ => {
                association.send(&Pdu::ReleaseRP).await?;
                tracing::info!(caller = association.peer_ae_title(), stored, "association released");
                return Ok(());
            }
            Pdu::AbortRQ { .. } => return Ok(()),
            _ => {}
        }
    }
}

async fn respond(
    association: &mut Association,
    context: u8,
    request: &Request,
    cache: &RawCache,
    dataset: Option<Vec<u8>>,
    stored: &mut u64,
) -> Result<Vec<u8>, dicom_ul::association::Error> {
    let mut buffer = Vec::new();
    let (field, status) = match request.command_field {
        dimse::C_ECHO_RQ => (dimse::C_ECHO_RSP, dimse::SUCCESS),
        dimse::C_STORE_RQ => {
            let transfer_syntax =
                association.presentation_contexts().iter().find(|pc| pc.id == context).map(|pc| pc.transfer_syntax.clone()).unwrap_or_default();
            // Writing and fsyncing blocks: off the association's task.
            // The command's SOP Instance UID is a raw identifier from here on.
            let instance = SopInstanceUid::parse(request.affected_sop_instance_uid.trim_end_matches('\0'));
            let (store_cache, class, data) = (cache.clone(), request.affected_sop_class_uid.clone(), dataset.unwrap_or_default());
            let (result, data) = match instance {
                Ok(instance) => tokio::task::spawn_blocking(move || (store_cache.store(&class, &instance, &transfer_syntax, &data), data))
                    .await
                    .unwrap_or_else(|_| (Err(StoreError::Unreadable("internal error while storing")), Vec::new())),
                Err(_) => (Err(StoreError::Unreadable("the command's SOP Instance UID is not a UID")), data),
            };
            buffer = data;
            let status = match result {
                Ok(_) => {
                    *stored += 1;
                    metrics::counter!("pixl_anon_node_instances_received_total").increment(1);
                    dimse::SUCCESS
                }
                Err(StoreError::Full) => {
                    metrics::counter!("pixl_anon_node_instances_refused_total", "reason" => "cache full").increment(1);
                    tracing::warn!(
                        caller = association.peer_ae_title(),
                        "refusing an instance: the raw cache is full of studies waiting for de-identification"
                    );
                    dimse::OUT_OF_RESOURCES
                }
                Err(StoreError::Unreadable(problem)) => {
                    metrics::counter!("pixl_anon_node_instances_refused_total", "reason" => "unreadable").increment(1);
                    tracing::info!(caller = association.peer_ae_title(), problem, "refusing an instance that cannot be read");
                    dimse::CANNOT_UNDERSTAND
                }
                Err(error) => {
                    tracing::error!(%error, "cannot write to the raw cache");
                    dimse::OUT_OF_RESOURCES
                }
            };
            (dimse::C_STORE_RSP, status)
        }
        // Other services are not offered; answer "unrecognized operation".
        other => (other | 0x8000, 0x0211),
    };
    let bytes = dimse::response(request, field, status);
    association
        .send(&Pdu::PData { data: vec![PDataValue { presentation_context_id: context, value_type: PDataValueType::Command, is_last: true, data: bytes }] })
        .await?;
    Ok(buffer)
}
