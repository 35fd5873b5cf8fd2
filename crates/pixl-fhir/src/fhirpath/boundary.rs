//! `lowBoundary()` / `highBoundary()` for dates, dateTimes and times: the earliest and
//! latest instants a partial value can stand for. Decimals are not supported (their
//! precision is lost when JSON numbers are parsed), so they give an empty result.

use super::eval::Item;

pub(super) fn boundary<'a>(item: &Item<'a>, high: bool, _precision: Option<i64>) -> Option<Item<'a>> {
    let type_name = item.type_name()?;
    let text = match item.to_json() {
        serde_json::Value::String(s) => s,
        _ => return None,
    };
    let kind = match type_name.as_ref() {
        "Date" | "date" => Kind::Date,
        "DateTime" | "dateTime" | "Instant" | "instant" => Kind::DateTime,
        "Time" | "time" => Kind::Time,
        "string" => guess(&text)?,
        _ => return None,
    };
    match kind {
        Kind::Date => date_bound(&text, high).map(Item::Date),
        Kind::DateTime => {
            let (date, rest) = text.split_once('T').unwrap_or((text.as_str(), ""));
            let day = date_bound(date, high)?;
            let (time, zone) = split_zone(rest);
            let time = time_bound(time, high)?;
            let zone = if zone.is_empty() { if high { "-12:00" } else { "+14:00" } } else { zone };
            Some(Item::DateTime(format!("{day}T{time}{zone}")))
        }
        Kind::Time => time_bound(&text, high).map(Item::Time),
    }
}

enum Kind {
    Date,
    DateTime,
    Time,
}

fn guess(text: &str) -> Option<Kind> {
    let bytes = text.as_bytes();
    if bytes.len() >= 4 && bytes[..4].iter().all(u8::is_ascii_digit) && (bytes.len() == 4 || bytes[4] == b'-') {
        return Some(if text.contains('T') { Kind::DateTime } else { Kind::Date });
    }
    if bytes.len() >= 5 && bytes[2] == b':' {
        return Some(Kind::Time);
    }
    None
}

fn split_zone(rest: &str) -> (&str, &str) {
    match rest.find(['Z', '+', '-']) {
        Some(at) => (&rest[..at], &rest[at..]),
        None => (rest, ""),
    }
}

fn date_bound(date: &str, high: bool) -> Option<String> {
    let mut parts = date.split('-');
    let year: i32 = parts.next()?.parse().ok()?;
    let month: Option<u32> = parts.next().map(|m| m.parse()).transpose().ok()?;
    let day: Option<u32> = parts.next().map(|d| d.parse()).transpose().ok()?;
    let month = month.unwrap_or(if high { 12 } else { 1 });
    let day = match day {
        Some(day) => day,
        None if high => {
            let first_of_next =
                if month == 12 { chrono::NaiveDate::from_ymd_opt(year + 1, 1, 1) } else { chrono::NaiveDate::from_ymd_opt(year, month + 1, 1) }?;
            first_of_next.pred_opt()?.format("%d").to_string().parse().ok()?
        }
        None => 1,
    };
    chrono::NaiveDate::from_ymd_opt(year, month, day)?;
    Some(format!("{year:04}-{month:02}-{day:02}"))
}

fn time_bound(time: &str, high: bool) -> Option<String> {
    let mut parts = time.split(':');
    let hour = parts.next().filter(|h| !h.is_empty());
    let minute = parts.next();
    let second = parts.next();
    let (hi, lo) = (["23", "59", "59", "999"], ["00", "00", "00", "000"]);
    let pick = |i: usize| if high { hi[i] } else { lo[i] };
    let (second, fraction) = match second {
        Some(s) => match s.split_once('.') {
            Some((s, f)) => (s.to_owned(), format!("{f:0<3}")),
            None => (s.to_owned(), pick(3).to_owned()),
        },
        None => (pick(2).to_owned(), pick(3).to_owned()),
    };
    Some(format!("{}:{}:{second}.{}", hour.unwrap_or(pick(0)), minute.unwrap_or(pick(1)), &fraction[..3.min(fraction.len())]))
}
