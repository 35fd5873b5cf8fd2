//! anon-node end to end, on the real Postgres and RabbitMQ: dcmtk `storescu` stores real
//! DICOM files (pydicom's, and generated CT slices referencing each other) into a running
//! node, `anonymise` messages go through the queue, and the output is checked: no
//! identifier in any byte, references consistent, pixel data identical, the `export`
//! messages queued once, the same bytes as `pixl anonymise` offline, and a redelivered
//! message changing nothing. Then the bad-input cases, each ending in the dead-letter queue
//! with its reason and the study failed.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use dicom_dictionary_std::tags;
use pixl_core::ids::{ProjectSlug, StudyId};
use pixl_core::messages::{QueueMessage, StudyRef};
use pixl_core::queues::{Outgoing, WorkQueue};
use pixl_core::testing::TestContext;
use sqlx::Row;

use crate::harness::Services;
use pixl_testkit::dicom::{all_files, assert_no_identifiers, project_dir, pydicom_files};

/// A hasher-api and an anon-node running in this process for one test.
struct Node {
    dicom_port: u16,
    http: SocketAddr,
    anon_store: PathBuf,
    services: Services,
}

impl Node {
    async fn start(ctx: &TestContext, configs: &Path, secrets: &Path, dir: &Path) -> Self {
        let mut services = Services::new();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let hasher = services.hasher_with(listener, secrets, configs).await;
        let mut settings = ctx.settings.clone();
        settings.project_configs_dir = configs.to_owned();
        let node = services
            .anon_node_with(
                &settings,
                dir,
                "ARCHIVE",
                Some(0),
                hasher,
                vec![
                    // One study at a time: deliveries are then handled in queue order.
                    ("ANON_NODE_CONCURRENCY", "1".to_owned()),
                ],
            )
            .await;
        Self { dicom_port: node.dicom_port.unwrap(), http: node.http, anon_store: node.anon_store, services }
    }

    async fn stop(self) {
        self.services.stop().await;
    }
}

/// Stores `files` with storescu, proposing each file's own transfer syntax (storescu
/// proposes one family per run, so compressed files go in runs of their own).
async fn storescu(port: u16, files: &[PathBuf]) {
    let mut groups: BTreeMap<&str, Vec<PathBuf>> = BTreeMap::new();
    for file in files {
        let object = dicom_object::OpenFileOptions::new().read_until(tags::PIXEL_DATA).open_file(file).unwrap();
        let option = match object.meta().transfer_syntax().trim_end_matches('\0') {
            "1.2.840.10008.1.2.4.90" => "-xv",
            "1.2.840.10008.1.2.4.91" => "-xw",
            "1.2.840.10008.1.2.5" => "-xr",
            // Sent as they are, not converted to explicit VR, so that the cached bytes are
            // the file's and the offline run over the files can be compared byte for byte.
            "1.2.840.10008.1.2" => "-xi",
            "1.2.840.10008.1.2.4.70" | "1.2.840.10008.1.2.4.57" => "-xs",
            _ => "-x=",
        };
        groups.entry(option).or_default().push(file.clone());
    }
    for (option, files) in groups {
        storescu_with(port, option, &files).await;
    }
}

async fn storescu_with(port: u16, option: &str, files: &[PathBuf]) {
    let mut args =
        vec![option.to_owned(), "-aet".to_owned(), "ARCHIVE".to_owned(), "-aec".to_owned(), "PIXL_RAW".to_owned(), "127.0.0.1".to_owned(), port.to_string()];
    args.extend(files.iter().map(|f| f.display().to_string()));
    let output =
        tokio::task::spawn_blocking(move || std::process::Command::new("storescu").env("TCP_NODELAY", "1").args(args).output().expect("dcmtk is installed"))
            .await
            .unwrap();
    assert!(output.status.success(), "storescu: {}", String::from_utf8_lossy(&output.stderr));
}

fn text(object: &dicom_object::InMemDicomObject, tag: dicom_core::Tag) -> String {
    object.element_opt(tag).ok().flatten().and_then(|e| e.to_str().ok().map(|s| s.trim().trim_end_matches('\0').to_owned())).unwrap_or_default()
}

/// Inserts an extract and one `retrieved` study per (project, study uid); their ids.
async fn insert_studies(ctx: &TestContext, studies: &[(&str, Option<&str>)]) -> Vec<StudyId> {
    let extract: i64 = sqlx::query_scalar("INSERT INTO extracts (project_slug, extract_datetime) VALUES ('check-project', now()) RETURNING id")
        .fetch_one(&ctx.pool)
        .await
        .unwrap();
    let mut ids = Vec::new();
    for (i, (project, study_uid)) in studies.iter().enumerate() {
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO studies (extract_id, project_slug, mrn, accession_number, study_uid, state) VALUES ($1, $2, $3, $4, $5, 'retrieved') RETURNING id",
        )
        .bind(extract)
        .bind(project)
        .bind(format!("MRN-E2E-{i}"))
        .bind(format!("ACC-E2E-{i}"))
        .bind(study_uid)
        .fetch_one(&ctx.pool)
        .await
        .unwrap();
        ids.push(StudyId(id));
    }
    ids
}

async fn publish_anonymise(ctx: &TestContext, study: StudyId, project: &str) {
    let message = QueueMessage::AnonymiseV1(StudyRef { study_id: study, project: ProjectSlug::parse(project).unwrap() });
    ctx.broker.publish(&Outgoing { queue: WorkQueue::Anonymise, priority: 0, message }).await.unwrap();
}

/// (state, failure reason, pseudo study uid, updated_at) of a study.
async fn study_state(ctx: &TestContext, id: StudyId) -> (String, Option<String>, Option<String>, String) {
    let row = sqlx::query("SELECT state::text AS state, failure_reason, pseudo_study_uid, updated_at::text AS updated_at FROM studies WHERE id = $1")
        .bind(id.0)
        .fetch_one(&ctx.pool)
        .await
        .unwrap();
    (row.get("state"), row.get("failure_reason"), row.get("pseudo_study_uid"), row.get("updated_at"))
}

/// Waits until no study in `ids` is `retrieved` any more.
async fn wait_settled(ctx: &TestContext, ids: &[StudyId]) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let open: i64 = sqlx::query_scalar("SELECT count(*) FROM studies WHERE id = ANY($1) AND state = 'retrieved'")
            .bind(ids.iter().map(|id| id.0).collect::<Vec<_>>())
            .fetch_one(&ctx.pool)
            .await
            .unwrap();
        if open == 0 {
            return;
        }
        assert!(Instant::now() < deadline, "{open} studies still waiting for de-identification");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits for `count` dead letters on the anonymise DLQ.
async fn wait_dead_letters(ctx: &TestContext, count: usize) -> Vec<(Vec<u8>, String)> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut letters = Vec::new();
    while letters.len() < count {
        assert!(Instant::now() < deadline, "only {} of {count} dead letters arrived", letters.len());
        letters.extend(ctx.take_dead_letters(WorkQueue::Anonymise).await);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    letters
}

/// The pixel data as stored (fragments concatenated when encapsulated); `None` for
/// instances without (an RT plan).
fn pixel_bytes(path: &Path) -> Option<Vec<u8>> {
    let object = dicom_object::open_file(path).unwrap();
    let element = object.element_opt(tags::PIXEL_DATA).unwrap()?;
    Some(match element.value() {
        dicom_core::value::Value::PixelSequence(sequence) => sequence.fragments().iter().flatten().copied().collect(),
        _ => element.to_bytes().unwrap().into_owned(),
    })
}

#[tokio::test]
async fn stored_studies_are_deidentified_through_the_queue() {
    let dir = tempfile::tempdir().unwrap();
    let configs = project_dir(dir.path());
    let secrets = dir.path().join("secrets.json");
    // A fixed project salt: with a random one, a shifted date could by chance equal another
    // input's date and be reported as surviving.
    std::fs::write(&secrets, r#"{"hashing-key": "end-to-end-key", "check-project": "5eed5a170000c0de"}"#).unwrap();
    let ctx = TestContext::new().await;
    let node = Node::start(&ctx, &configs, &secrets, dir.path()).await;

    // The input: real files of five studies, one (OT, no Manufacturer) that the project's
    // filters drop entirely, and a three-slice CT study whose slices reference each other.
    let input = dir.path().join("input");
    std::fs::create_dir_all(&input).unwrap();
    for name in ["CT_small.dcm", "MR_small.dcm", "rtplan.dcm", "rtdose.dcm", "JPEG2000.dcm", "SC_rgb_rle.dcm"] {
        std::fs::copy(pydicom_files().join(name), input.join(name)).unwrap();
    }
    pixl_cli::bench::generate_ct(&input.join("ct"), 3).unwrap();
    let mut inputs = Vec::new();
    all_files(&input, &mut inputs);
    inputs.sort();
    storescu(node.dicom_port, &inputs).await;

    let mut by_study: BTreeMap<String, Vec<PathBuf>> = BTreeMap::new();
    for path in &inputs {
        let object = dicom_object::open_file(path).unwrap();
        by_study.entry(text(&object, tags::STUDY_INSTANCE_UID)).or_default().push(path.clone());
    }
    let study_uids: Vec<&String> = by_study.keys().collect();
    let rows: Vec<(&str, Option<&str>)> = study_uids.iter().map(|uid| ("check-project", Some(uid.as_str()))).collect();
    let ids = insert_studies(&ctx, &rows).await;
    for id in &ids {
        publish_anonymise(&ctx, *id, "check-project").await;
    }
    wait_settled(&ctx, &ids).await;

    // Every study but the filtered one is de-identified and queued for export once.
    let mut pseudo_uids = BTreeMap::new();
    let mut failed = Vec::new();
    for (id, uid) in ids.iter().zip(&study_uids) {
        let (state, reason, pseudo, _) = study_state(&ctx, *id).await;
        let only_ot = by_study[*uid].iter().all(|p| p.ends_with("SC_rgb_rle.dcm"));
        if only_ot {
            assert_eq!(state, "failed");
            assert!(reason.as_deref().unwrap().contains("nothing left to export") && reason.as_deref().unwrap().contains("no manufacturer"), "{reason:?}");
            failed.push(*id);
        } else {
            assert_eq!(state, "anonymised", "study {uid}: {reason:?}");
            pseudo_uids.insert(*id, pseudo.expect("pseudonymous study uid recorded"));
        }
    }
    assert_eq!(failed.len(), 1);
    let letters = wait_dead_letters(&ctx, 1).await;
    assert_eq!(QueueMessage::decode(&letters[0].0).unwrap().study_id(), failed[0]);

    let exports: Vec<(StudyId, String)> = ctx
        .take_messages(WorkQueue::Export)
        .await
        .into_iter()
        .map(|m| match m {
            QueueMessage::ExportV1(e) => (e.study_id, e.pseudo_study_uid.as_str().to_owned()),
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    let expected: Vec<(StudyId, String)> = pseudo_uids.iter().map(|(id, uid)| (*id, uid.clone())).collect();
    let mut sorted = exports.clone();
    sorted.sort();
    assert_eq!(sorted, expected, "one export message per de-identified study");

    // The anon store holds exactly those studies; nothing identifying survives.
    let project_store = node.anon_store.join("check-project");
    let stored: BTreeSet<String> = std::fs::read_dir(&project_store).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    assert_eq!(stored, pseudo_uids.values().cloned().collect());
    let mut outputs = Vec::new();
    all_files(&project_store, &mut outputs);
    outputs.sort();
    assert_eq!(outputs.len(), inputs.len() - 1, "every instance but the filtered one");
    assert_no_identifiers(&inputs, &outputs);

    // Pixel data passes through identical.
    let input_pixels: BTreeSet<Vec<u8>> = inputs.iter().filter_map(|p| pixel_bytes(p)).collect();
    let mut with_pixels = 0;
    for output in &outputs {
        if let Some(pixels) = pixel_bytes(output) {
            assert!(input_pixels.contains(&pixels), "pixel data of {} differs from every input", output.display());
            with_pixels += 1;
        }
    }
    assert_eq!(with_pixels, outputs.len() - 1, "only the RT plan has no pixel data");

    // The CT slices' references point at the new SOP Instance UIDs of their neighbours,
    // and they share one new frame of reference.
    let ct: Vec<dicom_object::DefaultDicomObject> =
        outputs.iter().map(|p| dicom_object::open_file(p).unwrap()).filter(|o| text(o, tags::SERIES_DESCRIPTION) == "AXIAL 1.25mm").collect();
    assert_eq!(ct.len(), 3);
    let sops: BTreeSet<String> = ct.iter().map(|o| text(o, tags::SOP_INSTANCE_UID)).collect();
    for slice in &ct {
        let references = slice.element(tags::REFERENCED_IMAGE_SEQUENCE).unwrap().items().unwrap();
        assert_eq!(references.len(), 2);
        for reference in references {
            assert!(sops.contains(&text(reference, tags::REFERENCED_SOP_INSTANCE_UID)), "a reference to a slice of the study");
        }
        assert_eq!(text(slice, tags::FRAME_OF_REFERENCE_UID), text(&ct[0], tags::FRAME_OF_REFERENCE_UID));
        assert!(text(slice, tags::FRAME_OF_REFERENCE_UID).starts_with("2.25."));
    }

    // `pixl anonymise` offline over the same files writes the same bytes.
    let offline = dir.path().join("offline");
    let status = std::process::Command::new(pixl_testkit::bin_path("pixl"))
        .args(["anonymise", "--project", "check-project"])
        .arg(&input)
        .arg(&offline)
        .env("PROJECT_CONFIGS_DIR", &configs)
        .env("PIXL_SECRETS_FILE", &secrets)
        .output()
        .unwrap();
    assert!(status.status.success(), "{}", String::from_utf8_lossy(&status.stderr));
    let mut offline_files = Vec::new();
    all_files(&offline, &mut offline_files);
    offline_files.sort();
    let relative = |root: &Path, files: &[PathBuf]| files.iter().map(|f| f.strip_prefix(root).unwrap().to_owned()).collect::<Vec<_>>();
    assert_eq!(relative(&offline, &offline_files), relative(&project_store, &outputs));
    for (a, b) in offline_files.iter().zip(&outputs) {
        assert!(std::fs::read(a).unwrap() == std::fs::read(b).unwrap(), "{} differs from the service's output", a.display());
    }

    // The archive endpoint serves a study as a zip of its instances.
    let (some_id, some_uid) = pseudo_uids.iter().next().unwrap();
    let url = format!("http://{}/studies/{some_uid}/archive", node.http);
    // Not without anon-node's API token.
    assert_eq!(reqwest::get(&url).await.unwrap().status(), 401);
    let response = reqwest::Client::new().get(&url).bearer_auth(crate::harness::ANON_NODE_TOKEN).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let bytes = response.bytes().await.unwrap();
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(bytes.to_vec())).unwrap();
    let study_files: Vec<&PathBuf> = outputs.iter().filter(|p| p.starts_with(project_store.join(some_uid))).collect();
    assert_eq!(archive.len(), study_files.len());
    for file in study_files {
        let name = file.strip_prefix(project_store.join(some_uid)).unwrap().to_string_lossy().into_owned();
        let mut entry = archive.by_name(&name).unwrap();
        let mut content = Vec::new();
        std::io::Read::read_to_end(&mut entry, &mut content).unwrap();
        assert!(content == std::fs::read(file).unwrap());
    }
    let authorised = |url: String| reqwest::Client::new().get(url).bearer_auth(crate::harness::ANON_NODE_TOKEN).send();
    let missing = authorised(format!("http://{}/studies/2.25.1/archive", node.http)).await.unwrap();
    assert_eq!(missing.status(), 404);
    let traversal = authorised(format!("http://{}/studies/..%2F..%2Fetc/archive", node.http)).await.unwrap();
    assert_eq!(traversal.status(), 400);

    // Redelivering a message changes nothing: no new export, same row, files untouched.
    let before = study_state(&ctx, *some_id).await;
    let modified = |files: &[PathBuf]| files.iter().map(|f| std::fs::metadata(f).unwrap().modified().unwrap()).collect::<Vec<_>>();
    let times = modified(&outputs);
    publish_anonymise(&ctx, *some_id, "check-project").await;
    // A message for an unknown study after it: once it is dead-lettered, the redelivered
    // one (ahead of it, one at a time) has been handled.
    publish_anonymise(&ctx, StudyId(i64::MAX), "check-project").await;
    let letters = wait_dead_letters(&ctx, 1).await;
    assert!(letters[0].1.contains("no study with id"), "{}", letters[0].1);
    assert_eq!(study_state(&ctx, *some_id).await, before);
    assert_eq!(modified(&outputs), times);
    // Handled (the message after it was), and no export was queued for it.
    assert_eq!(pixl_core::outbox::pending(&ctx.pool).await.unwrap(), 0);
    assert!(ctx.take_messages(WorkQueue::Export).await.is_empty(), "no second export message");

    node.stop().await;
    ctx.teardown().await;
}

#[tokio::test]
async fn messages_that_cannot_succeed_are_dead_lettered_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let project = |name: &str, base: &str| {
        format!("project:\n  name: {name}\n  modalities: [CT]\ntag_operation_files:\n  base: [{base}]\ndestination:\n  dicom: none\n  parquet: none\n")
    };
    // The shipped tag-operations directory is a symlink; projects with broken schemes get
    // their own configs directory.
    let bad_configs = dir.path().join("bad-configs");
    std::fs::create_dir_all(bad_configs.join("tag-operations")).unwrap();
    std::fs::write(bad_configs.join("tag-operations/bad-op.yaml"), "- name: Patient Name\n  group: 0x0010\n  element: 0x0010\n  op: scramble\n").unwrap();
    std::fs::write(bad_configs.join("bad-op-project.yaml"), project("bad-op-project", "bad-op.yaml")).unwrap();
    std::fs::write(bad_configs.join("missing-file-project.yaml"), project("missing-file-project", "no-such-file.yaml")).unwrap();
    std::fs::write(bad_configs.join("tag-operations/empty.yaml"), "[]\n").unwrap();
    std::fs::write(bad_configs.join("nothing-cached-project.yaml"), project("nothing-cached-project", "empty.yaml")).unwrap();
    let secrets = dir.path().join("secrets.json");
    // A fixed project salt: with a random one, a shifted date could by chance equal another
    // input's date and be reported as surviving.
    std::fs::write(&secrets, r#"{"hashing-key": "end-to-end-key", "check-project": "5eed5a170000c0de"}"#).unwrap();
    let ctx = TestContext::new().await;
    let node = Node::start(&ctx, &bad_configs, &secrets, dir.path()).await;

    let ids = insert_studies(
        &ctx,
        &[
            ("no-such-project", Some("1.2.3.4.1")),
            ("bad-op-project", Some("1.2.3.4.2")),
            ("missing-file-project", Some("1.2.3.4.3")),
            ("nothing-cached-project", Some("1.2.3.4.4")),
            ("nothing-cached-project", None),
        ],
    )
    .await;
    let projects = ["no-such-project", "bad-op-project", "missing-file-project", "nothing-cached-project", "nothing-cached-project"];
    for (id, project) in ids.iter().zip(projects) {
        publish_anonymise(&ctx, *id, project).await;
    }
    // Not a pixl message at all, a message for another queue, an oversize one, one of an
    // unknown version, and one whose project slug tries to leave its directory.
    let channel = ctx.broker.open_channel().await.unwrap();
    let queue = ctx.broker.topology().queue_name(WorkQueue::Anonymise);
    let oversize = format!(r#"{{"type":"anonymise.v1","study_id":1,"project":"p","pad":"{}"}}"#, "x".repeat(20_000)).into_bytes();
    let unknown_version = br#"{"type":"anonymise.v9","study_id":1,"project":"p"}"#.to_vec();
    let bad_slug = br#"{"type":"anonymise.v1","study_id":1,"project":"../../etc"}"#.to_vec();
    for body in [
        b"{not json".to_vec(),
        QueueMessage::ImagingV1(StudyRef { study_id: ids[0], project: ProjectSlug::parse("no-such-project").unwrap() }).encode(),
        oversize,
        unknown_version,
        bad_slug,
    ] {
        channel.basic_publish("".into(), queue.as_str().into(), Default::default(), &body, Default::default()).await.unwrap().await.unwrap();
    }

    let letters = wait_dead_letters(&ctx, 9).await;
    let reasons: Vec<&str> = letters.iter().map(|(_, r)| r.as_str()).collect();
    let expect = [
        "no-such-project",
        "scramble",
        "no-such-file.yaml",
        "StudyInstanceUID is recorded",
        "invalid JSON at line 1",
        "not an anonymise message",
        "more than the 16384 allowed",
        "unknown type",
        "anonymise.v1 message with a missing, unknown or malformed field",
    ];
    for fragment in expect {
        assert!(reasons.iter().any(|r| r.contains(fragment)), "no dead letter says {fragment:?}: {reasons:#?}");
    }
    // A retrieved study whose raw instances are gone goes back to retrieval, not to failure.
    let refetch = ids[3];
    let deadline = Instant::now() + Duration::from_secs(30);
    let requeued = loop {
        let messages = ctx.take_messages(WorkQueue::ImagingPrimary).await;
        if !messages.is_empty() {
            break messages;
        }
        assert!(Instant::now() < deadline, "no imaging message for the study without raw instances");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(requeued.iter().map(|m| m.study_id()).collect::<Vec<_>>(), [refetch]);
    assert_eq!(study_state(&ctx, refetch).await.0, "queued");
    for (i, id) in ids.iter().enumerate().filter(|(_, id)| **id != refetch) {
        let (state, reason, pseudo, _) = study_state(&ctx, *id).await;
        assert_eq!(state, "failed", "study {i}");
        assert!(pseudo.is_none());
        let reason = reason.unwrap();
        assert!(reasons.contains(&reason.as_str()), "the study's reason is the dead letter's: {reason}");
    }
    node.stop().await;
    ctx.teardown().await;
}
