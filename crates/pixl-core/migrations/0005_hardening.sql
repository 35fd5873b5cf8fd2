-- The queue a study's next message waits on, written with every outbox row, so that
-- `pixl stop --purge` of one queue fails only the studies whose message it dropped.
ALTER TABLE studies ADD COLUMN waiting_queue text;
-- When anon-node deleted the study's de-identified files (exported, retention passed).
ALTER TABLE studies ADD COLUMN anon_purged_at timestamptz;
CREATE INDEX studies_exported_unpurged ON studies (exported_at) WHERE state = 'exported' AND anon_purged_at IS NULL;

-- Outbox rows that could not become messages, moved aside with the reason so that one bad
-- row never blocks the relay. The reason is pixl's own text, never an identifier.
CREATE TABLE outbox_rejected (
    id bigint PRIMARY KEY,
    study_id bigint NOT NULL,
    kind text NOT NULL,
    queue text NOT NULL,
    reason text NOT NULL,
    rejected_at timestamptz NOT NULL DEFAULT now()
);

-- Populate's queued rows name their queue too.
UPDATE studies s SET waiting_queue = o.queue FROM outbox o WHERE o.study_id = s.id;

-- How often anon-node found a retrieved study's raw instances gone and sent it back to
-- retrieval; it gives up after a few.
ALTER TABLE studies ADD COLUMN raw_refetches integer NOT NULL DEFAULT 0;

-- The SHA-256 digests of a project's raw identifiers (MRNs, accession numbers, original
-- UIDs, participant ids; trimmed and upper-cased), for the check export-api runs on
-- parquet files before they leave: it compares digests and never reads a raw column.
CREATE FUNCTION pixl_identifier_digests(project text)
RETURNS TABLE (kind text, digest bytea)
LANGUAGE sql STABLE AS $$
    SELECT DISTINCT kind, sha256(convert_to(upper(btrim(value)), 'UTF8'))
    FROM studies s,
         LATERAL (VALUES ('MRN', s.mrn), ('accession number', s.accession_number), ('study UID', s.study_uid),
                         ('study UID', s.resolved_study_uid), ('participant id', s.participant_id)) AS v (kind, value)
    WHERE s.project_slug = project AND value IS NOT NULL AND btrim(value) <> ''
$$;
