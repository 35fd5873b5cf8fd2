//! The `directory` destination: a local or mounted path (`EXPORT_DIRECTORY_ROOT`), with the
//! FTPS layout (`<slug>/<pseudo study uid>.zip`, `<slug>/<extract>/parquet/...`). Useful
//! for `pixl demo` and for air-gapped transfers. Each file is copied to a hidden
//! temporary name beside its target, flushed to disk, then renamed, so a reader never
//! sees half a file; a crash leaves at most a hidden partial file, replaced by the retry.

use std::path::{Path, PathBuf};

use futures_util::future::BoxFuture;

use super::{ParquetBundle, StudyPackage, UploadError, Uploader};

const KIND: &str = "directory";

/// Writes into a directory tree.
#[derive(Debug, Clone)]
pub struct DirectoryUploader {
    root: PathBuf,
}

impl DirectoryUploader {
    pub fn new(root: PathBuf) -> Self {
        Self { root }
    }

    /// Copies `source` to `<root>/<components...>`, atomically.
    async fn put(&self, source: &Path, components: &[String]) -> Result<String, UploadError> {
        let source = source.to_owned();
        let relative: PathBuf = components.iter().collect();
        let target = self.root.join(&relative);
        let shown = relative.display().to_string();
        tokio::task::spawn_blocking(move || copy_atomically(&source, &target))
            .await
            .map_err(|e| UploadError::transient(KIND, format!("copy task: {e}")))?
            // Disk full, permissions, a missing mount: an operator's matter, but it may be
            // fixed without touching pixl, so it is worth retrying.
            .map_err(|e| UploadError::transient(KIND, format!("cannot write {shown} under the export directory: {e}")))?;
        Ok(shown)
    }
}

fn copy_atomically(source: &Path, target: &Path) -> std::io::Result<()> {
    let parent = target.parent().ok_or_else(|| std::io::Error::other("no parent directory"))?;
    std::fs::create_dir_all(parent)?;
    let name = target.file_name().ok_or_else(|| std::io::Error::other("no file name"))?.to_string_lossy();
    let partial = parent.join(format!(".{name}.partial"));
    {
        let mut input = std::fs::File::open(source)?;
        let mut output = std::fs::File::create(&partial)?;
        std::io::copy(&mut input, &mut output)?;
        output.sync_all()?;
    }
    std::fs::rename(&partial, target)?;
    // The rename itself is durable only once the directory is.
    std::fs::File::open(parent)?.sync_all()
}

impl Uploader for DirectoryUploader {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn upload_study<'a>(&'a self, study: &'a StudyPackage) -> BoxFuture<'a, Result<String, UploadError>> {
        Box::pin(async move { self.put(&study.zip, &study.remote_path()).await })
    }

    fn upload_parquet<'a>(&'a self, bundle: &'a ParquetBundle) -> BoxFuture<'a, Result<Vec<String>, UploadError>> {
        Box::pin(async move {
            let mut written = Vec::with_capacity(bundle.files.len());
            for relative in &bundle.files {
                super::check_relative(relative)?;
                written.push(self.put(&bundle.root.join(relative), &bundle.remote_path(relative)).await?);
            }
            Ok(written)
        })
    }
}

#[cfg(test)]
mod tests {
    use pixl_core::ids::{ProjectSlug, PseudoPatientId, PseudoStudyUid};

    use super::*;

    #[tokio::test]
    async fn writes_the_ftps_layout_and_replaces_on_retry() {
        let dir = tempfile::tempdir().unwrap();
        let zip = dir.path().join("in.zip");
        std::fs::write(&zip, b"first").unwrap();
        let study = StudyPackage {
            project: ProjectSlug::parse("my-project").unwrap(),
            pseudo_study_uid: PseudoStudyUid::parse("2.25.77").unwrap(),
            pseudo_patient_id: PseudoPatientId::parse("abc123").unwrap(),
            zip: zip.clone(),
            bytes: 5,
            instances: 1,
        };
        let uploader = DirectoryUploader::new(dir.path().join("out"));
        assert_eq!(uploader.upload_study(&study).await.unwrap(), "my-project/2.25.77.zip");
        std::fs::write(&zip, b"second").unwrap();
        uploader.upload_study(&study).await.unwrap();
        let names: Vec<String> =
            std::fs::read_dir(dir.path().join("out/my-project")).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        assert_eq!(names, ["2.25.77.zip"], "one file, no partial left");
        assert_eq!(std::fs::read(dir.path().join("out/my-project/2.25.77.zip")).unwrap(), b"second");
    }

    #[tokio::test]
    async fn parquet_paths_keep_their_relative_layout() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("extract");
        std::fs::create_dir_all(root.join("omop/public")).unwrap();
        std::fs::write(root.join("omop/public/PROCEDURE_OCCURRENCE.parquet"), b"p").unwrap();
        let bundle = ParquetBundle {
            project: ProjectSlug::parse("my-project").unwrap(),
            extract_time_slug: "2023-12-07t14-08-58".to_owned(),
            root,
            files: vec![PathBuf::from("omop/public/PROCEDURE_OCCURRENCE.parquet")],
        };
        let uploader = DirectoryUploader::new(dir.path().join("out"));
        let written = uploader.upload_parquet(&bundle).await.unwrap();
        assert_eq!(written, ["my-project/2023-12-07t14-08-58/parquet/omop/public/PROCEDURE_OCCURRENCE.parquet"]);
        assert!(dir.path().join("out").join(&written[0]).is_file());
    }
}
