-- What de-identification did with a study's instances, as labels and counts only (for
-- example "6 of 8 instances de-identified, 2 dropped (series description filtered)").
-- Written by anon-node; shown by `pixl status` and `pixl demo`. Never holds an identifier.
ALTER TABLE studies ADD COLUMN deid_summary text;
