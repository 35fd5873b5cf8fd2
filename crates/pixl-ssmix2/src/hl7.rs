//! HL7 v2.5 access over `hl7-parser`, after decoding. Segments are split on CR, LF or
//! CRLF (real storages use CR, generators LF) and blank lines dropped before parsing,
//! because the parser silently stops at a blank line; values are escape-decoded and
//! normalised (NFKC, dashes, white space) one by one, after splitting.

use hl7_parser::Message;
use hl7_parser::message::{Field, Segment};

use crate::normalise::normalise;

/// A message could not be parsed (the text is not quoted: it is patient data).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Hl7Error {
    #[error("the file does not start with an MSH segment")]
    NoMsh,
    #[error("the HL7 parser refused the message")]
    Parse,
}

/// A file's text with its segments joined by CR, as the parser wants them.
#[derive(Debug)]
pub struct Prepared {
    text: String,
}

/// Splits `text` into segments on CR, LF or CRLF, drops blank ones.
pub fn prepare(text: &str) -> Result<Prepared, Hl7Error> {
    prepare_segments(text, None)
}

/// As [`prepare`], keeping only the segments named in `keep`, each up to its last field
/// (0: whole), and MSH up to MSH-9: what is not read is not parsed either.
pub fn prepare_only(text: &str, keep: &[(&str, usize)]) -> Result<Prepared, Hl7Error> {
    prepare_segments(text, Some(keep))
}

/// `segment` up to field `last` (its text before the separator that ends it).
fn up_to_field(segment: &str, separator: char, last: usize) -> &str {
    match segment.match_indices(separator).nth(last) {
        Some((end, _)) => &segment[..end],
        None => segment,
    }
}

fn prepare_segments(text: &str, keep: Option<&[(&str, usize)]>) -> Result<Prepared, Hl7Error> {
    let mut segments = text.split(['\r', '\n']).filter(|s| !s.trim().is_empty());
    let Some(msh) = segments.next().filter(|s| s.starts_with("MSH")) else {
        return Err(Hl7Error::NoMsh);
    };
    let separator = msh[3..].chars().next().unwrap_or('|');
    let mut joined = String::with_capacity(text.len());
    // MSH-1 is the separator itself: MSH-9 ends at the ninth.
    joined.push_str(if keep.is_some() { up_to_field(msh, separator, 8) } else { msh });
    for segment in segments {
        let last = match keep {
            None => Some(0),
            Some(keep) => segment.get(..3).and_then(|name| keep.iter().find(|(wanted, _)| *wanted == name)).map(|(_, last)| *last),
        };
        if let Some(last) = last {
            joined.push('\r');
            joined.push_str(if last == 0 { segment } else { up_to_field(segment, separator, last) });
        }
    }
    Ok(Prepared { text: joined })
}

/// A parsed message.
#[derive(Debug)]
pub struct Msg<'a> {
    pub message: Message<'a>,
}

impl Prepared {
    pub fn parse(&self) -> Result<Msg<'_>, Hl7Error> {
        let message = Message::parse(&self.text).map_err(|_| Hl7Error::Parse)?;
        // The parser stops quietly at what it cannot read; a message must be read whole.
        if message.raw_value().len() < self.text.trim_end_matches('\r').len() {
            return Err(Hl7Error::Parse);
        }
        Ok(Msg { message })
    }
}

impl<'a> Msg<'a> {
    /// MSH-9's message code and trigger event, `ADT^A01`.
    pub fn message_type(&self) -> String {
        let Some(msh) = self.message.segment("MSH") else { return String::new() };
        let part = |n| msh.field(9).and_then(|f| f.component(n)).map(|c| c.raw_value().trim()).unwrap_or_default();
        format!("{}^{}", part(1), part(2))
    }

    pub fn segments(&self) -> impl Iterator<Item = &Segment<'a>> {
        self.message.segments()
    }

    pub fn segment(&self, name: &str) -> Option<&Segment<'a>> {
        self.message.segment(name)
    }

    /// Field `field` of `segment` (component 1 of its first repetition when `component` is
    /// 0, else that component), escape-decoded and normalised; `None` when empty.
    pub fn value(&self, segment: &Segment<'_>, field: usize, component: usize) -> Option<String> {
        let field = field_of(segment, field)?;
        let raw = if component == 0 { field.repeat(1)?.raw_value() } else { field.component(component)?.raw_value() };
        self.text(raw)
    }

    /// Every repetition of a field, as its components (escape-decoded and normalised;
    /// `None` for an empty one). Empty repetitions are left out.
    pub fn repeats(&self, segment: &Segment<'_>, field: usize) -> Vec<Vec<Option<String>>> {
        let Some(field) = field_of(segment, field) else { return Vec::new() };
        let component = self.message.separators.component;
        field
            .repeats()
            .map(|r| r.raw_value().split(component).map(|c| self.text(c)).collect::<Vec<_>>())
            .filter(|parts| parts.iter().any(Option::is_some))
            .collect()
    }

    /// A text field's repetitions as lines (components kept as written, escape-decoded and
    /// normalised); `None` when empty.
    pub fn lines(&self, segment: &Segment<'_>, field: usize) -> Option<String> {
        let field = field_of(segment, field)?;
        let lines: Vec<String> = field.repeats().filter_map(|r| self.text(r.raw_value())).collect();
        (!lines.is_empty()).then(|| lines.join("\n"))
    }

    /// A raw value escape-decoded and normalised; `None` when empty.
    pub fn text(&self, raw: &str) -> Option<String> {
        if raw.is_empty() {
            return None;
        }
        // Escape sequences (`\F\`, `\X..\`) only where the escape character is.
        let value = if raw.contains(self.message.separators.escape) { normalise(&self.message.separators.decode(raw).to_string()) } else { normalise(raw) };
        (!value.is_empty()).then_some(value)
    }

    /// The first (code, text, coding system) triple of a CWE field (components 1–3, then
    /// 4–6) whose coding system satisfies `wanted`.
    pub fn coded(&self, segment: &Segment<'_>, field: usize, wanted: impl Fn(&str) -> bool) -> Option<Coded> {
        let field = field_of(segment, field)?;
        self.coded_in(field.repeat(1)?.raw_value(), &wanted)
    }

    /// As [`Msg::coded`] over every repetition of the field.
    pub fn coded_repeats(&self, segment: &Segment<'_>, field: usize, wanted: impl Fn(&str) -> bool) -> Vec<Coded> {
        let Some(field) = field_of(segment, field) else { return Vec::new() };
        field.repeats().filter_map(|r| self.coded_in(r.raw_value(), &wanted)).collect()
    }

    fn coded_in(&self, raw: &str, wanted: &dyn Fn(&str) -> bool) -> Option<Coded> {
        let component = self.message.separators.component;
        let parts: Vec<&str> = raw.split(component).collect();
        for start in [0, 3] {
            let system = parts.get(start + 2).and_then(|s| self.text(s));
            if let Some(system) = system
                && wanted(&system)
            {
                return Some(Coded { code: parts.get(start).and_then(|s| self.text(s)), text: parts.get(start + 1).and_then(|s| self.text(s)), system });
            }
        }
        None
    }

    /// The CWE triple of a field split on the subcomponent separator (RXE-19 style
    /// `4^TAB&錠&MR9P` components): component `component`'s subcomponents 1–3.
    pub fn coded_subcomponents(&self, segment: &Segment<'_>, field: usize, component: usize) -> Option<Coded> {
        let raw = field_of(segment, field)?.component(component)?.raw_value();
        let parts: Vec<&str> = raw.split(self.message.separators.subcomponent).collect();
        let system = parts.get(2).and_then(|s| self.text(s))?;
        Some(Coded { code: parts.first().and_then(|s| self.text(s)), text: parts.get(1).and_then(|s| self.text(s)), system })
    }
}

fn field_of<'s, 'm>(segment: &'s Segment<'m>, field: usize) -> Option<&'s Field<'m>> {
    if field == 0 {
        return None;
    }
    // MSH-1 is the field separator itself: MSH-n is the parser's field n.
    segment.field(field)
}

/// A coded value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Coded {
    pub code: Option<String>,
    pub text: Option<String>,
    pub system: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_split_on_any_newline_and_blank_lines_are_dropped() {
        for sep in ["\r", "\n", "\r\n", "\n\n"] {
            let text = ["MSH|^~\\&|A|B|C|D|20220110||ADT^A08^ADT_A01|1|P|2.5", "PID|||123||日本^太郎||19580110|M", "PV1||O||||||||102"].join(sep);
            let prepared = prepare(&text).unwrap();
            let msg = prepared.parse().unwrap();
            assert_eq!(msg.message_type(), "ADT^A08");
            let pid = msg.segment("PID").unwrap();
            assert_eq!(msg.value(pid, 7, 0).as_deref(), Some("19580110"));
            assert_eq!(msg.value(pid, 5, 1).as_deref(), Some("日本"));
            assert_eq!(msg.value(msg.segment("PV1").unwrap(), 10, 0).as_deref(), Some("102"));
        }
        assert_eq!(prepare("PID|1").unwrap_err(), Hl7Error::NoMsh);
    }

    #[test]
    fn only_the_segments_read_are_parsed() {
        let text = "MSH|^~\\&|||||20220110||ADT^A08|1|P|2.5\nPID|||123||日本^太郎\n\nNK1|1|日本^花子\nIN1|1|保険者番号\nDB1|1\r\nNK1|2|京本^一郎";
        let prepared = prepare_only(text, &[("PID", 3), ("NK1", 0)]).unwrap();
        let msg = prepared.parse().unwrap();
        let names: Vec<&str> = msg.segments().map(|s| s.name).collect();
        assert_eq!(names, ["MSH", "PID", "NK1", "NK1"]);
        assert_eq!(msg.message_type(), "ADT^A08");
        assert_eq!(msg.value(msg.segment("MSH").unwrap(), 7, 1).as_deref(), Some("20220110"));
        assert_eq!(msg.value(msg.segment("MSH").unwrap(), 10, 1), None, "MSH ends at MSH-9");
        let pid = msg.segment("PID").unwrap();
        assert_eq!(msg.value(pid, 3, 1).as_deref(), Some("123"));
        assert_eq!(msg.value(pid, 5, 1), None, "PID ends at PID-3: the name is not parsed");
        assert_eq!(msg.value(msg.segments().nth(3).unwrap(), 2, 1).as_deref(), Some("京本"));
        assert_eq!(prepare_only("PID|1\rMSH|^~\\&", &[("PID", 0)]).unwrap_err(), Hl7Error::NoMsh);
    }

    #[test]
    fn coded_values_by_system_and_full_width_bars_stay_text() {
        let text = "MSH|^~\\&|||||20220110||PPR^ZD1|1|P|2.5\rPRB|AD|20220110|20064316^２型糖尿病｜疑い^MDCDX2|||||||E119^^I10^F^最終^JHSD0004";
        let prepared = prepare(text).unwrap();
        let msg = prepared.parse().unwrap();
        let prb = msg.segment("PRB").unwrap();
        let dx = msg.coded(prb, 3, |s| s == "MDCDX2").unwrap();
        assert_eq!((dx.code.as_deref(), dx.text.as_deref()), (Some("20064316"), Some("2型糖尿病|疑い")));
        let icd = msg.coded(prb, 10, |s| s == "I10").unwrap();
        assert_eq!(icd.code.as_deref(), Some("E119"));
        let kind = msg.coded(prb, 10, |s| s == "JHSD0004").unwrap();
        assert_eq!((kind.code.as_deref(), kind.text.as_deref()), (Some("F"), Some("最終")));
        assert_eq!(msg.coded(prb, 10, |s| s == "XYZ"), None);
    }
}
