//! The review of flagged reports (`pixl reports`): a report the second check doubts is
//! withheld from export until a person releases it as it is (with a reason) or redacts
//! the doubted places. Each decision is recorded in `report_reviews` with the operator and
//! the time, and the flags it cleared point at it; flags stay on record.

use std::collections::BTreeMap;

use crate::db::DbFailure;
use sqlx::{PgPool, Row};

/// What replaces a redacted span.
pub const REDACTED: &str = "[REDACTED]";

/// A report with flags not yet cleared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flagged {
    pub study_id: i64,
    pub project: String,
    /// Flags per reason.
    pub reasons: BTreeMap<String, i64>,
}

/// One flag of a report: where, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flag {
    pub reason: String,
    /// Character offsets in the de-identified report.
    pub start: usize,
    pub end: usize,
}

/// Why a review command failed. Holds no report text.
#[derive(Debug, thiserror::Error)]
pub enum ReviewError {
    #[error("study {0} has no flagged report (pixl reports list shows those that wait for review)")]
    NotFlagged(i64),
    #[error("a release needs a reason (--reason)")]
    NoReason,
    #[error("the pixl database failed while {step} ({failure})")]
    Database { step: &'static str, failure: DbFailure },
}

fn db(step: &'static str) -> impl Fn(sqlx::Error) -> ReviewError {
    move |e| ReviewError::Database { step, failure: DbFailure::classify(&e) }
}

/// The reports waiting for review (of `project`, or all), by study.
pub async fn list(pool: &PgPool, project: Option<&str>) -> Result<Vec<Flagged>, ReviewError> {
    let rows = sqlx::query(
        "SELECT s.id, s.project_slug, f.reason, count(*) AS n
         FROM report_flags f JOIN studies s ON s.id = f.study_id
         WHERE f.cleared_by IS NULL AND s.ehr_state = 'flagged' AND ($1::text IS NULL OR s.project_slug = $1)
         GROUP BY 1, 2, 3 ORDER BY 1, 3",
    )
    .bind(project)
    .fetch_all(pool)
    .await
    .map_err(db("listing flagged reports"))?;
    let mut out: Vec<Flagged> = Vec::new();
    for row in rows {
        let study_id: i64 = row.get("id");
        if out.last().is_none_or(|f| f.study_id != study_id) {
            out.push(Flagged { study_id, project: row.get("project_slug"), reasons: BTreeMap::new() });
        }
        let last = out.last_mut().expect("pushed above");
        last.reasons.insert(row.get("reason"), row.get("n"));
    }
    Ok(out)
}

/// A flagged report's de-identified text (which the check doubts: it may hold PHI) and
/// its open flags.
pub async fn show(pool: &PgPool, study_id: i64) -> Result<(String, Vec<Flag>), ReviewError> {
    let mut conn = pool.acquire().await.map_err(db("connecting"))?;
    let (text, flags) = flagged(&mut conn, study_id, false).await?;
    Ok((text, flags))
}

async fn flagged(conn: &mut sqlx::PgConnection, study_id: i64, lock: bool) -> Result<(String, Vec<Flag>), ReviewError> {
    let sql = if lock {
        "SELECT a.report_text FROM ehr_anon a JOIN studies s ON s.id = a.study_id WHERE a.study_id = $1 AND s.ehr_state = 'flagged' FOR UPDATE"
    } else {
        "SELECT a.report_text FROM ehr_anon a JOIN studies s ON s.id = a.study_id WHERE a.study_id = $1 AND s.ehr_state = 'flagged'"
    };
    let text: Option<Option<String>> = sqlx::query_scalar(sql).bind(study_id).fetch_optional(&mut *conn).await.map_err(db("reading the report"))?;
    let text = text.flatten().ok_or(ReviewError::NotFlagged(study_id))?;
    let flags = sqlx::query("SELECT reason, span_start, span_end FROM report_flags WHERE study_id = $1 AND cleared_by IS NULL ORDER BY span_start, span_end")
        .bind(study_id)
        .fetch_all(&mut *conn)
        .await
        .map_err(db("reading the flags"))?
        .into_iter()
        .map(|row| Flag {
            reason: row.get("reason"),
            start: usize::try_from(row.get::<i32, _>("span_start")).unwrap_or(0),
            end: usize::try_from(row.get::<i32, _>("span_end")).unwrap_or(0),
        })
        .collect();
    Ok((text, flags))
}

/// The report with each flagged span between `open` and `close` (for the terminal).
pub fn marked(text: &str, flags: &[Flag], open: &str, close: &str) -> String {
    let mut out = String::with_capacity(text.len() + flags.len() * (open.len() + close.len()));
    for (i, c) in text.chars().enumerate() {
        out.extend(flags.iter().filter(|f| f.start == i).map(|_| open));
        out.push(c);
        out.extend(flags.iter().filter(|f| f.end == i + 1).map(|_| close));
    }
    out
}

/// The report with each flagged span replaced by [`REDACTED`] (overlapping spans merged).
pub fn redacted(text: &str, flags: &[Flag]) -> String {
    let mut ranges: Vec<(usize, usize)> = flags.iter().map(|f| (f.start, f.end)).collect();
    ranges.sort_unstable();
    let mut merged: Vec<(usize, usize)> = Vec::with_capacity(ranges.len());
    for (start, end) in ranges {
        match merged.last_mut() {
            Some(last) if start <= last.1 => last.1 = last.1.max(end),
            _ => merged.push((start, end)),
        }
    }
    let mut out = String::with_capacity(text.len());
    let mut next = merged.iter().peekable();
    let mut skip_until = None;
    for (i, c) in text.chars().enumerate() {
        if let Some(end) = skip_until {
            if i < end {
                continue;
            }
            skip_until = None;
        }
        if let Some(&&(start, end)) = next.peek()
            && start == i
        {
            next.next();
            out.push_str(REDACTED);
            skip_until = Some(end);
            continue;
        }
        out.push(c);
    }
    out
}

/// Releases a flagged report as it is: `reason` says why the flags are wrong.
pub async fn release(pool: &PgPool, study_id: i64, reason: &str, operator: &str) -> Result<usize, ReviewError> {
    if reason.trim().is_empty() {
        return Err(ReviewError::NoReason);
    }
    decide(pool, study_id, "release", reason.trim(), operator, false).await
}

/// Redacts the flagged spans of a report, and clears its flags.
pub async fn redact(pool: &PgPool, study_id: i64, operator: &str) -> Result<usize, ReviewError> {
    decide(pool, study_id, "redact", "flagged spans redacted", operator, true).await
}

/// Records the decision, clears the flags it covers, sets the study's EHR state to done;
/// returns how many flags were cleared.
async fn decide(pool: &PgPool, study_id: i64, action: &str, reason: &str, operator: &str, redact: bool) -> Result<usize, ReviewError> {
    let mut tx = pool.begin().await.map_err(db("starting a transaction"))?;
    let (text, flags) = flagged(&mut tx, study_id, true).await?;
    if redact {
        sqlx::query("UPDATE ehr_anon SET report_text = $2, updated_at = now() WHERE study_id = $1")
            .bind(study_id)
            .bind(redacted(&text, &flags))
            .execute(&mut *tx)
            .await
            .map_err(db("storing the redacted report"))?;
    }
    let review: i64 = sqlx::query_scalar("INSERT INTO report_reviews (study_id, action, reason, operator) VALUES ($1, $2, $3, $4) RETURNING id")
        .bind(study_id)
        .bind(action)
        .bind(reason)
        .bind(operator)
        .fetch_one(&mut *tx)
        .await
        .map_err(db("recording the review"))?;
    sqlx::query("UPDATE report_flags SET cleared_by = $2 WHERE study_id = $1 AND cleared_by IS NULL")
        .bind(study_id)
        .bind(review)
        .execute(&mut *tx)
        .await
        .map_err(db("clearing the flags"))?;
    sqlx::query("UPDATE studies SET ehr_state = 'done' WHERE id = $1").bind(study_id).execute(&mut *tx).await.map_err(db("recording the state"))?;
    tx.commit().await.map_err(db("committing"))?;
    Ok(flags.len())
}

/// The operator recorded with a decision: `PIXL_OPERATOR`, else the login name.
pub fn operator() -> String {
    ["PIXL_OPERATOR", "USER", "LOGNAME", "USERNAME"]
        .iter()
        .find_map(|name| std::env::var(name).ok().filter(|v| !v.trim().is_empty()))
        .unwrap_or_else(|| "unknown".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flag(start: usize, end: usize) -> Flag {
        Flag { reason: "name".to_owned(), start, end }
    }

    #[test]
    fn spans_are_marked_and_redacted_by_character() {
        let text = "Seen by Dr Zoë Smyth on ward";
        let flags = [flag(11, 14), flag(15, 20)];
        assert_eq!(marked(text, &flags, ">>", "<<"), "Seen by Dr >>Zoë<< >>Smyth<< on ward");
        assert_eq!(redacted(text, &flags), "Seen by Dr [REDACTED] [REDACTED] on ward");
        // Overlapping spans become one.
        assert_eq!(redacted(text, &[flag(11, 17), flag(15, 20)]), "Seen by Dr [REDACTED] on ward");
        assert_eq!(redacted(text, &[]), text);
    }
}
