//! When the PACS may be queried: hospitals keep the clinical PACS for clinical use during
//! the working day. `SECONDARY_DICOM_SOURCE_WINDOW` is `always`, `never`, or
//! `HH:MM-HH:MM` (local time, may wrap past midnight) optionally followed by `+weekends`
//! (all of Saturday and Sunday too). Default: `20:00-08:00+weekends`.

use chrono::{Datelike, NaiveDateTime, NaiveTime, Weekday};

/// An out-of-hours window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Window {
    Always,
    Never,
    Daily { start: NaiveTime, end: NaiveTime, weekends: bool },
}

impl Window {
    pub const DEFAULT: &'static str = "20:00-08:00+weekends";

    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        match text {
            "always" => return Ok(Self::Always),
            "never" => return Ok(Self::Never),
            _ => {}
        }
        let (range, weekends) = match text.strip_suffix("+weekends") {
            Some(range) => (range, true),
            None => (text, false),
        };
        let (start, end) = range.split_once('-').ok_or_else(|| format!("{text:?} is not always, never or HH:MM-HH:MM[+weekends]"))?;
        let time = |t: &str| NaiveTime::parse_from_str(t.trim(), "%H:%M").map_err(|_| format!("{t:?} is not a time HH:MM"));
        Ok(Self::Daily { start: time(start)?, end: time(end)?, weekends })
    }

    /// Whether the PACS may be queried at local time `now`.
    pub fn is_open(&self, now: NaiveDateTime) -> bool {
        match *self {
            Self::Always => true,
            Self::Never => false,
            Self::Daily { start, end, weekends } => {
                if weekends && matches!(now.weekday(), Weekday::Sat | Weekday::Sun) {
                    return true;
                }
                let t = now.time();
                if start <= end { t >= start && t < end } else { t >= start || t < end }
            }
        }
    }

    pub fn is_open_now(&self) -> bool {
        self.is_open(chrono::Local::now().naive_local())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_window_is_nights_and_weekends() {
        let window = Window::parse(Window::DEFAULT).unwrap();
        let at = |s: &str| NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M").unwrap();
        // 2026-11-23 is a Monday.
        let cases = [
            ("2026-11-23 12:00", false),
            ("2026-11-23 20:00", true),
            ("2026-11-23 07:59", true),
            ("2026-11-23 08:00", false),
            ("2026-11-22 12:00", true),
            ("2026-11-21 15:00", true),
        ];
        for (time, open) in cases {
            assert_eq!(window.is_open(at(time)), open, "{time}");
        }
        assert!(Window::parse("09:00-17:00").unwrap().is_open(at("2026-11-22 12:00")));
        assert!(!Window::parse("09:00-17:00").unwrap().is_open(at("2026-11-22 18:00")));
        assert!(Window::parse("always").unwrap().is_open(at("2026-11-23 12:00")));
        assert!(!Window::parse("never").unwrap().is_open(at("2026-11-22 12:00")));
        assert!(Window::parse("8-20").is_err());
        assert!(Window::parse("nights").is_err());
    }
}
