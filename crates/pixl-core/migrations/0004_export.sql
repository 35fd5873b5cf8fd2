-- Export bookkeeping. `exported_to` names the destination kind a study was exported to
-- (ftps, dicomweb, xnat, directory, or none when the project exports no DICOM on purpose),
-- so that `pixl status` and the demo can tell "uploaded" from "done without upload".
-- `failed_queue` is the queue a failed study's message was dead-lettered from, so that
-- `pixl retry-failed` resumes there (an export failure need not retrieve the study again).
ALTER TABLE studies ADD COLUMN exported_to text;
ALTER TABLE studies ADD COLUMN failed_queue text;
