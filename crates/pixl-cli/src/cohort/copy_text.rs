//! Encoding of one row in Postgres `COPY ... FROM STDIN` text format.

/// A row being encoded: fields are appended in column order, then [`CopyRow::finish`]
/// gives the line including its newline.
#[derive(Debug, Default)]
pub struct CopyRow {
    line: Vec<u8>,
    fields: usize,
}

impl CopyRow {
    pub fn new() -> Self {
        Self::default()
    }

    fn separator(&mut self) {
        if self.fields > 0 {
            self.line.push(b'\t');
        }
        self.fields += 1;
    }

    /// A text field; `None` is SQL NULL.
    pub fn text(&mut self, value: Option<&str>) -> &mut Self {
        self.separator();
        match value {
            None => self.line.extend_from_slice(b"\\N"),
            Some(text) => {
                for byte in text.bytes() {
                    match byte {
                        b'\\' => self.line.extend_from_slice(b"\\\\"),
                        b'\t' => self.line.extend_from_slice(b"\\t"),
                        b'\n' => self.line.extend_from_slice(b"\\n"),
                        b'\r' => self.line.extend_from_slice(b"\\r"),
                        other => self.line.push(other),
                    }
                }
            }
        }
        self
    }

    /// An integer field; `None` is SQL NULL.
    pub fn int(&mut self, value: Option<i64>) -> &mut Self {
        self.separator();
        match value {
            None => self.line.extend_from_slice(b"\\N"),
            Some(number) => self.line.extend_from_slice(number.to_string().as_bytes()),
        }
        self
    }

    /// The encoded line, newline included.
    pub fn finish(mut self) -> Vec<u8> {
        self.line.push(b'\n');
        self.line
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_copy_specials() {
        let cases: &[(&[Option<&str>], &str)] = &[
            (&[Some("a"), None, Some("")], "a\t\\N\t\n"),
            (&[Some("1.2\\3.4")], "1.2\\\\3.4\n"),
            (&[Some("tab\there"), Some("line\nbreak\r")], "tab\\there\tline\\nbreak\\r\n"),
        ];
        for (fields, expected) in cases {
            let mut row = CopyRow::new();
            for field in *fields {
                row.text(*field);
            }
            assert_eq!(String::from_utf8(row.finish()).unwrap(), *expected);
        }
        let mut row = CopyRow::new();
        row.int(Some(-5)).int(None);
        assert_eq!(row.finish(), b"-5\t\\N\n");
    }
}
