//! SS-MIX2 timestamps `YYYYMMDD[HHMM[SS[.F{1,4}]]]` (a time-zone suffix is ignored), with
//! hours 24–47 meaning the next day, as some order systems write them.

use chrono::{Duration, NaiveDate, NaiveDateTime, NaiveTime};

/// How much of a timestamp was given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precision {
    Day,
    Minute,
    Second,
    Fraction,
}

/// A parsed timestamp.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    pub at: NaiveDateTime,
    pub precision: Precision,
}

/// Parses a timestamp; `None` when it is not one (counted by the caller).
pub fn parse(text: &str) -> Option<Stamp> {
    let text = text.trim();
    let text = text.find(['+', '-']).map_or(text, |at| &text[..at]);
    let (main, fraction) = match text.split_once('.') {
        Some((main, fraction)) if !fraction.is_empty() && fraction.len() <= 4 && fraction.bytes().all(|b| b.is_ascii_digit()) => (main, Some(fraction)),
        Some(_) => return None,
        // Seconds followed by 1 to 3 fraction digits without a dot (file names' event times).
        None if (15..=17).contains(&text.len()) => (&text[..14], Some(&text[14..])),
        None => (text, None),
    };
    if !main.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let number = |range: std::ops::Range<usize>| main.get(range).and_then(|s| s.parse::<u32>().ok());
    let date = NaiveDate::from_ymd_opt(number(0..4)? as i32, number(4..6)?, number(6..8)?)?;
    let (hours, minutes, seconds, precision) = match main.len() {
        8 => (0, 0, 0, Precision::Day),
        12 => (number(8..10)?, number(10..12)?, 0, Precision::Minute),
        14 => (number(8..10)?, number(10..12)?, number(12..14)?, Precision::Second),
        _ => return None,
    };
    if fraction.is_some() && precision != Precision::Second {
        return None;
    }
    if hours > 47 || minutes > 59 || seconds > 59 {
        return None;
    }
    let micros = fraction.map(|f| format!("{f:0<6}").parse::<u32>().unwrap_or(0)).unwrap_or(0);
    let time = NaiveTime::from_hms_micro_opt(hours % 24, minutes, seconds, micros)?;
    let at = date.and_time(time) + Duration::days(i64::from(hours / 24));
    Some(Stamp { at, precision: if fraction.is_some() { Precision::Fraction } else { precision } })
}

impl Stamp {
    /// The time since `birth` (midnight of the date of birth) as ssmixtools writes it
    /// (pandas' Timedelta text), with its marker of the precision in the last microsecond
    /// digit: 9 for a date, 5 for minutes, 3 for seconds, none for a fraction.
    pub fn since_birth(&self, birth: NaiveDate) -> String {
        let marker = match self.precision {
            Precision::Day => 9,
            Precision::Minute => 5,
            Precision::Second => 3,
            Precision::Fraction => 0,
        };
        let elapsed = self.at - birth.and_hms_opt(0, 0, 0).expect("midnight") + Duration::microseconds(marker);
        let micros = elapsed.num_microseconds().unwrap_or(0);
        let (days, rest) = (micros.div_euclid(86_400_000_000), micros.rem_euclid(86_400_000_000));
        let (h, m, s, us) = (rest / 3_600_000_000, rest / 60_000_000 % 60, rest / 1_000_000 % 60, rest % 1_000_000);
        let day_word = if days == 1 || days == -1 { "day" } else { "days" };
        if us == 0 { format!("{days} {day_word} {h:02}:{m:02}:{s:02}") } else { format!("{days} {day_word} {h:02}:{m:02}:{s:02}.{us:06}") }
    }

    /// Shifted by `days` (pixl's per-patient offset), in ISO form with the given precision.
    pub fn shifted(&self, days: i64) -> String {
        let at = self.at + Duration::days(days);
        match self.precision {
            Precision::Day => at.format("%Y-%m-%d").to_string(),
            Precision::Minute => at.format("%Y-%m-%dT%H:%M").to_string(),
            Precision::Second => at.format("%Y-%m-%dT%H:%M:%S").to_string(),
            Precision::Fraction => at.format("%Y-%m-%dT%H:%M:%S%.6f").to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_birth_matches_ssmixtools_values() {
        // Computed with ssmixtools' own steps for a patient born 1958-01-10.
        let birth = NaiveDate::from_ymd_opt(1958, 1, 10).unwrap();
        let cases = [
            ("20220110", "23376 days 00:00:00.000009"),
            ("202201101100", "23376 days 11:00:00.000005"),
            ("20220110100500", "23376 days 10:05:00.000003"),
            ("20220620093733.43", "23537 days 09:37:33.430000"),
            ("202201102530", "23377 days 01:30:00.000005"),
        ];
        for (text, expected) in cases {
            assert_eq!(parse(text).unwrap().since_birth(birth), expected, "{text}");
        }
    }

    #[test]
    fn irregular_stamps_are_refused_and_late_hours_roll_over() {
        for bad in ["", "2022", "2022011", "20221301", "20220230", "2022011012", "202201104800", "20220110106000", "20220110.5", "2022O110"] {
            assert_eq!(parse(bad), None, "{bad:?}");
        }
        let late = parse("202201104730").unwrap();
        assert_eq!(late.at.to_string(), "2022-01-11 23:30:00");
        assert_eq!(parse("20220110100500+0900").unwrap().precision, Precision::Second);
        assert_eq!(parse("20220110123151000").unwrap().at.to_string(), "2022-01-10 12:31:51");
        assert_eq!(parse("202201101231515").unwrap().precision, Precision::Fraction);
        assert_eq!(parse("20220110").unwrap().shifted(-10), "2021-12-31");
        assert_eq!(parse("20220110100500").unwrap().shifted(1), "2022-01-11T10:05:00");
    }
}
