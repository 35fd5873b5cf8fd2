//! When the PACS may be queried: hospitals keep the clinical PACS for clinical use during
//! the working day. `SECONDARY_DICOM_SOURCE_WINDOW` is `always`, `never`, or
//! `[DAYS ]HH:MM-HH:MM[+weekends]`:
//!
//! - `HH:MM-HH:MM`: local time (`TZ`), from the first time up to the second, wrapping past
//!   midnight when the second is earlier;
//! - `DAYS` (default `daily`): the days on which that applies, judged by the current
//!   moment's day: `daily`, `weekdays` (Monday to Friday), `weekends`, or days and ranges
//!   such as `mon-fri` or `mon,wed,fri`;
//! - `+weekends`: all of Saturday and Sunday as well.
//!
//! The default, `weekdays 20:00-08:00`, is PIXL's rule: the PACS only at night, and never
//! at weekends (Friday 20:00 to Saturday 00:00 is open; Saturday 02:00 is not).

use chrono::{Datelike, NaiveDateTime, NaiveTime, Weekday};

/// An out-of-hours window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Window {
    Always,
    Never,
    Daily {
        start: NaiveTime,
        end: NaiveTime,
        /// Days (Monday first) on which `start..end` applies.
        days: [bool; 7],
        /// Saturday and Sunday are open all day.
        weekends: bool,
    },
}

const DAY_NAMES: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

fn parse_days(text: &str) -> Result<[bool; 7], String> {
    let mut days = [false; 7];
    match text {
        "daily" => return Ok([true; 7]),
        "weekdays" => return Ok([true, true, true, true, true, false, false]),
        "weekends" => return Ok([false, false, false, false, false, true, true]),
        _ => {}
    }
    let day = |name: &str| DAY_NAMES.iter().position(|d| *d == name).ok_or_else(|| format!("{name:?} is not a day (mon, tue, wed, thu, fri, sat, sun)"));
    for part in text.split(',') {
        match part.split_once('-') {
            Some((from, to)) => {
                let (from, to) = (day(from)?, day(to)?);
                let mut index = from;
                loop {
                    days[index] = true;
                    if index == to {
                        break;
                    }
                    index = (index + 1) % 7;
                }
            }
            None => days[day(part)?] = true,
        }
    }
    Ok(days)
}

impl Window {
    /// PIXL's rule: weekday nights only.
    pub const DEFAULT: &'static str = "weekdays 20:00-08:00";

    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        match text {
            "always" => return Ok(Self::Always),
            "never" => return Ok(Self::Never),
            _ => {}
        }
        let usage = || format!("{text:?} is not always, never or [DAYS ]HH:MM-HH:MM[+weekends] (for example \"weekdays 20:00-08:00\")");
        let (days, range) = match text.split_once(char::is_whitespace) {
            Some((days, range)) => (parse_days(&days.to_ascii_lowercase())?, range.trim()),
            None => ([true; 7], text),
        };
        let (range, weekends) = match range.strip_suffix("+weekends") {
            Some(range) => (range, true),
            None => (range, false),
        };
        let (start, end) = range.split_once('-').ok_or_else(usage)?;
        let time = |t: &str| NaiveTime::parse_from_str(t.trim(), "%H:%M").map_err(|_| format!("{t:?} is not a time HH:MM"));
        Ok(Self::Daily { start: time(start)?, end: time(end)?, days, weekends })
    }

    /// Whether the PACS may be queried at local time `now`.
    pub fn is_open(&self, now: NaiveDateTime) -> bool {
        match *self {
            Self::Always => true,
            Self::Never => false,
            Self::Daily { start, end, days, weekends } => {
                let weekday = now.weekday();
                if weekends && matches!(weekday, Weekday::Sat | Weekday::Sun) {
                    return true;
                }
                if !days[weekday.num_days_from_monday() as usize] {
                    return false;
                }
                let t = now.time();
                if start <= end { t >= start && t < end } else { t >= start || t < end }
            }
        }
    }

    /// At the local time of this process: `TZ` (compose sets `Europe/London`, as PIXL's),
    /// else the system's zone.
    pub fn is_open_now(&self) -> bool {
        self.is_open(chrono::Local::now().naive_local())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> NaiveDateTime {
        NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M").unwrap()
    }

    #[test]
    fn the_default_window_is_pixls_weekday_nights() {
        let window = Window::parse(Window::DEFAULT).unwrap();
        // 2026-11-23 is a Monday.
        let cases = [
            ("2026-11-23 12:00", false),
            ("2026-11-23 20:00", true),
            ("2026-11-23 07:59", true),
            ("2026-11-23 08:00", false),
            ("2026-11-27 23:00", true),
            // Saturday and Sunday, day and night: never, as in PIXL.
            ("2026-11-28 02:00", false),
            ("2026-11-28 15:00", false),
            ("2026-11-29 23:30", false),
            // Sunday night into Monday: Monday 03:00 is a weekday night.
            ("2026-11-30 03:00", true),
        ];
        for (time, open) in cases {
            assert_eq!(window.is_open(at(time)), open, "{time}");
        }
    }

    #[test]
    fn other_windows_parse_and_apply() {
        let old = Window::parse("20:00-08:00+weekends").unwrap();
        assert!(old.is_open(at("2026-11-28 12:00")));
        assert!(!old.is_open(at("2026-11-23 12:00")));
        assert!(Window::parse("09:00-17:00").unwrap().is_open(at("2026-11-22 12:00")));
        assert!(!Window::parse("09:00-17:00").unwrap().is_open(at("2026-11-22 18:00")));
        let some_days = Window::parse("mon,wed 00:00-23:59").unwrap();
        assert!(some_days.is_open(at("2026-11-25 10:00")));
        assert!(!some_days.is_open(at("2026-11-24 10:00")));
        let wrapping = Window::parse("fri-mon 22:00-06:00").unwrap();
        assert!(wrapping.is_open(at("2026-11-29 23:00")));
        assert!(!wrapping.is_open(at("2026-11-25 23:00")));
        assert!(Window::parse("always").unwrap().is_open(at("2026-11-23 12:00")));
        assert!(!Window::parse("never").unwrap().is_open(at("2026-11-22 12:00")));
        for bad in ["8-20", "nights", "workdays 20:00-08:00", "mon-xyz 20:00-08:00"] {
            assert!(Window::parse(bad).is_err(), "{bad}");
        }
    }

    /// The clock is the TZ's: a child process of this test, run with TZ set, sees that
    /// zone's offset in the local time the window is judged by.
    #[test]
    fn the_local_clock_follows_tz() {
        if let Ok(expected) = std::env::var("PIXL_TZ_CHILD_EXPECTS") {
            let offset = chrono::Local::now().offset().local_minus_utc();
            assert_eq!(offset.to_string(), expected);
            return;
        }
        for (zone, seconds) in [("Asia/Tokyo", 9 * 3600), ("UTC", 0), ("America/Argentina/Buenos_Aires", -3 * 3600)] {
            let output = std::process::Command::new(std::env::current_exe().unwrap())
                .args(["--exact", "window::tests::the_local_clock_follows_tz", "--test-threads", "1"])
                .env("TZ", zone)
                .env("PIXL_TZ_CHILD_EXPECTS", seconds.to_string())
                .output()
                .unwrap();
            let stdout = String::from_utf8_lossy(&output.stdout);
            assert!(output.status.success() && stdout.contains("1 passed"), "{zone}: {stdout}{}", String::from_utf8_lossy(&output.stderr));
        }
    }
}
